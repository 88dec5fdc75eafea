"""Segment rows as events, and events applied to a :class:`ledger.state.State`.

What the write path, the facade and :mod:`ledger.opened` rebuild the key registry and
the model lifecycle from: the typed STATE_COLUMNS of rows the :class:`~ledger.store.Store`
read, trusted as they are (``verify`` is what checks them against the signed bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from . import events as E
from .compat import json_scanner
from .errors import CorruptLedgerError
from .gcpause import collector_paused
from .segments import STATE_COLUMNS, micros, pylist


def typed_events(table: pa.Table, origin: str) -> Iterator[E.Event]:
    """Events rebuilt from the typed STATE_COLUMNS of ``table`` (``prev_hash`` left empty).

    The typed columns are trusted here, as by every state replay: ``verify`` is what
    checks them against the signed bytes."""
    ts = micros(table["ts"])
    cols = [pylist(table[c]) for c in STATE_COLUMNS if c != "ts"]
    # json's C scanner without json.loads' whitespace handling (a third of its time):
    # the write path stores canonical JSON, so a payload is one value, end to end.
    scan = json_scanner()
    Event = E.Event
    for i, (seq, action, model, version, actor, kid, payload) in enumerate(zip(*cols, strict=True)):
        try:
            p, end = scan(payload, 0)
            if end != len(payload):
                raise ValueError
        except (ValueError, TypeError, StopIteration, RecursionError):
            raise CorruptLedgerError(
                f"seq {seq}: payload column is not JSON; run ledger verify"
            ) from None
        yield Event(seq, ts[i], origin, action, actor, kid, p, "", model, version)


def replay(table: pa.Table, origin: str, state: Any) -> Any:
    """Apply the events of ``table`` (the typed STATE_COLUMNS, trusted as by
    :func:`typed_events`) to ``state``, a :class:`ledger.state.State`; returns it."""
    with collector_paused():  # a million events: collector passes cost a third of it
        for ev in typed_events(table, origin):
            if ev.action in E.ACTION_ROLE:  # a newer format's action changes no state here
                state.apply(ev)
    return state
