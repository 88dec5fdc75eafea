"""Reads the facade answers without DuckDB: one model's rows kept warm between calls,
and the policy in force at an instant.

A long-lived :class:`~ledger.ledger.Ledger` (a server) asks about the same models again
and again; :class:`PointReads` keeps their index rows while the ledger's head does not
move, and adds the new events when it does (``ledger/pointread.py`` turns the rows into
answers).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pyarrow as pa

from . import events as E
from . import family as F
from . import policydoc as P
from .errors import InputError
from .inputs import check_seq, instant
from .store import Store
from .tree import read_rows


class PointReads:
    """One model's index rows, kept for as long as the ledger's head does not move (a
    server's repeated reads cost a stat and a tail read, no scan); when it moves on, the
    new events are read and added, after checking the old head is still there."""

    #: Models kept at most (least recently asked dropped first).
    KEEP = 256

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._n = -1
        self._head = b""
        self._rows: dict[str, list[dict[str, Any]]] = {}

    def rows(
        self, model: str, as_of: int | str | None = None, at_seq: int | None = None
    ) -> list[dict[str, Any]]:
        """``model``'s events (index rows, seq order), as of an instant if given."""
        if as_of is not None and at_seq is not None:
            raise InputError("give --as-of or --at-seq, not both")
        with self._lock:
            n, head, _ = self.store.tail()
            if (n, head) != (self._n, self._head):
                self._catch_up(n, head)
            rows = self._rows.pop(model, None)
            if rows is None:
                fam = F.Family(self.store.bundles(), n - 1)
                rows = fam.model_rows(model)
            self._rows[model] = rows  # (most recent last)
            while len(self._rows) > self.KEEP:
                del self._rows[next(iter(self._rows))]
        upto = _cutoff(self.store, n, as_of, at_seq)
        return rows if upto is None else [r for r in rows if r["seq"] <= upto]

    def _catch_up(self, n: int, head: bytes) -> None:
        """The ledger's head moved from (self._n, self._head) to (n, head): add the new
        events to the models kept, or forget them all if the old head is not an event
        of this ledger any more (a rollback, a rewrite)."""
        old_n, old_head = self._n, self._head
        self._n, self._head = n, head
        if not self._rows:
            return
        if (
            not 0 < old_n < n
            or read_rows(self.store.segments(), old_n - 1, old_n, "hash")[0] != old_head
        ):
            self._rows.clear()
            return
        fam = F.Family(self.store.bundles(since=old_n), n - 1)
        for model, rows in self._rows.items():
            rows.extend(r for r in fam.model_rows(model) if r["seq"] >= old_n)


def _cutoff(store: Store, n: int, as_of: int | str | None, at_seq: int | None) -> int | None:
    """The last seq an as-of question counts (None: all), checked as the views do."""
    if at_seq is not None:
        if type(at_seq) is not int or at_seq < 0:
            raise InputError(f"--at-seq must be a seq number >= 0, got {at_seq!r}")
        if at_seq > n - 1:
            raise InputError(f"--at-seq {at_seq} is beyond the last event (seq {n - 1})")
        return at_seq
    when = instant(as_of)
    return None if when is None else store.last_seq_at(when)


def policy_at(store: Store, as_of: int | str | None = None, at_seq: int | None = None) -> Any:
    """The policy in force now, ``as_of`` an instant or after event ``at_seq``: a
    ``PolicyRecord``, or None when no policy was set by then."""
    import pyarrow.compute as pc

    if as_of is not None and at_seq is not None:
        raise InputError("give --as-of or --at-seq, not both")
    as_of = instant(as_of)
    if at_seq is not None:
        last = store.tail()[0] - 1
        if type(at_seq) is not int or not 0 <= at_seq <= last:
            raise InputError(f"--at-seq must be a seq from 0 to {last}, got {at_seq!r}")
    table = store.read(["seq", "ts", "action", "actor", "payload"])
    table = table.filter(pc.equal(table["action"], E.POLICY_SET))
    ts = table["ts"].cast(pa.int64()).to_pylist()
    found = None
    for i, (seq, actor, payload) in enumerate(
        zip(*(table[c].to_pylist() for c in ("seq", "actor", "payload")), strict=True)
    ):
        if (at_seq is not None and seq > at_seq) or (as_of is not None and ts[i] > as_of):
            break
        found = (seq, ts[i], actor, payload)
    if found is None:
        return None
    seq, t, actor, payload = found
    doc = json.loads(payload)
    return P.PolicyRecord(P.policy_from_payload(doc), seq, t, actor, doc.get("comment"))


def family_at(store: Store, as_of: int | str | None, at_seq: int | None) -> F.Family:
    """The index of every segment (``ledger.family.Family``) as of an instant (µs or a
    timestamp string) and/or just after event ``at_seq``."""
    upto, when = check_seq(at_seq), instant(as_of)
    if when is not None:
        before = store.last_seq_at(when)
        upto = before if upto is None else min(upto, before)
    return F.Family(store.bundles(), upto)
