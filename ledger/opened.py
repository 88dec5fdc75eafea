"""An opened ledger: its store and its identity.

This is all that the modules below the facade (verification, checkpoints, evidence,
verified reads) need of a ledger, so they take an :class:`Opened` and never the
:class:`~ledger.ledger.Ledger` facade, which is one (it adds the write path, the
queries and the read checks on top)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import events as E
from .replay import replay
from .segments import STATE_COLUMNS
from .state import State
from .store import Store


class Opened:
    """A ledger's :class:`~ledger.store.Store` and its identity (``ledger.json``)."""

    def __init__(self, store: Store, identity: dict[str, Any]) -> None:
        self.store = store
        self.identity = identity

    @property
    def path(self) -> Path:
        return self.store.root

    @property
    def origin(self) -> str:
        return str(self.identity["origin"])


def partial_state(
    led: Opened, upto: int | None = None, models: set[str] | frozenset[str] = frozenset()
) -> State:
    """The State after replaying, from the typed columns, the events before ``upto``
    that are key or policy events or concern one of ``models``.

    The rows are selected column-wise (see :meth:`Store.read_where`) and only those are
    turned into events, so the key registry of a million-event ledger loads in a
    fraction of a second. The typed columns are trusted here, as by ``Ledger.state``:
    callers replay only history that a verification already covered."""
    actions = E.KEY_ACTIONS | E.POLICY_ACTIONS
    table = led.store.read_where(STATE_COLUMNS, actions, models, before=upto)
    state = replay(table, led.origin, State())
    if upto is not None:
        state.next_seq = upto
    return state


def state_of(led: Opened, models: set[str] | None = None, at_seq: int | None = None) -> State:
    """The State after replaying the typed columns (``Ledger.state``): every event, or
    with ``models`` only those models' events plus every key and policy event, all or
    only those up to event ``at_seq``."""
    keyed = E.KEY_ACTIONS | E.POLICY_ACTIONS
    if models is not None and at_seq is None:
        return replay(led.store.read_where(STATE_COLUMNS, keyed, models), led.origin, State())
    table = led.store.read(STATE_COLUMNS)
    if models is not None or at_seq is not None:
        import pyarrow as pa
        import pyarrow.compute as pc

        mask = None
        if models is not None:
            mask = pc.is_in(table["action"], pa.array(sorted(keyed)))
            if models:
                mask = pc.or_(mask, pc.is_in(table["model"], pa.array(sorted(models))))
        if at_seq is not None:
            upto = pc.less_equal(table["seq"], at_seq)
            mask = upto if mask is None else pc.and_(mask, upto)
        table = table.filter(mask)
    return replay(table, led.origin, State())
