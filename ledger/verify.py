"""Verification of the hash chain, signatures, key registry and rules (pure, no I/O).

The caller feeds segments in seq order as column lists; ``Verifier`` replays every event
through the same ``State`` the write path uses and stops at the first problem. Every
problem has a stable ``kind`` (see docs/FORMAT.md, "Verification") so that tools and
tests can tell a deleted event from a forged signature without parsing messages.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from . import events as E
from .canonical import canonicalize
from .compat import json_scanner
from .errors import LedgerError
from .keys import pae, verify_signature
from .state import State, _public_key


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str
    seq: int | None = None
    segment: str | None = None

    def __str__(self) -> str:
        where = []
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.segment is not None:
            where.append(f"in {self.segment}")
        return f"{' '.join(where)}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "seq": self.seq,
            "segment": self.segment,
            "message": self.message,
        }


@dataclass
class VerifyReport:
    """Outcome of a verification; truthy when the ledger verified."""

    events: int = 0
    head: str | None = None
    segments: int = 0
    problems: list[Problem] = field(default_factory=list)
    unknown_actions: int = 0
    #: Merkle tree root (hex) over the events verified, when computed
    root: str | None = None
    #: events before this seq were not re-verified (``verify --since``)
    since: int = 0
    #: the trusted checkpoint the ledger was checked against, if any
    checkpoint: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def summary(self) -> str:
        if self.ok:
            return f"OK: {self.events} events, head {self.head}"
        return f"FAIL: {self.problems[0]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "head": self.head,
            "segments": self.segments,
            "unknown_actions": self.unknown_actions,
            "root": self.root,
            "since": self.since,
            "checkpoint": self.checkpoint,
            "problems": [p.to_dict() for p in self.problems],
        }


class Failed(Exception):
    """Internal: stops the replay at the first problem."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


_TYPED = ("action", "model", "version", "actor", "key_id")
#: The members of an event (FORMAT.md §3.1): exactly these.
_MEMBERS = frozenset(
    ("action", "actor", "key_id", "model", "origin", "payload", "prev_hash", "seq", "ts", "version")
)

#: Typed columns the fast path reads in the main process (canonical and sig stay in workers).
#: The caller may add ``env``: per row, the environment when the payload column is exactly
#: ``{"env":"<env>"}`` (no escapes), else None; such a payload is then not parsed again.
FAST_COLUMNS = ("seq", "ts", "action", "model", "version", "actor", "key_id", "payload", "hash")


#: Each segment column's Parquet type (FORMAT.md §5): physical type, the logical types
#: allowed (Parquet's JSON spelling, without the writer-side flags), fixed byte length.
_INT64 = ("INT64", ('{"Type":"None"}', '{"Type":"Int","bitWidth":64,"isSigned":true}'), 0)
_STRING = ("BYTE_ARRAY", ('{"Type":"String"}',), 0)
_TIMESTAMP = '{"Type":"Timestamp","isAdjustedToUTC":true,"timeUnit":"microseconds"}'
PARQUET_TYPES: dict[str, tuple[str, tuple[str, ...], int]] = {
    "seq": _INT64,
    "ts": ("INT64", (_TIMESTAMP,), 0),
    "action": _STRING,
    "model": _STRING,
    "version": _INT64,
    "actor": _STRING,
    "key_id": _STRING,
    "payload": _STRING,
    "hash": ("FIXED_LEN_BYTE_ARRAY", ('{"Type":"None"}',), 32),
    "sig": ("FIXED_LEN_BYTE_ARRAY", ('{"Type":"None"}',), 64),
    "canonical": ("BYTE_ARRAY", ('{"Type":"None"}',), 0),
}
_ORDER = ", ".join(PARQUET_TYPES)


def _logical(text: str) -> str:
    """A logical type's JSON without pyarrow's writer-side flags (``is_from_converted_type``,
    ``force_set_converted_type``), which say how it was written, not what it is."""
    try:
        d = json.loads(text)
    except ValueError:
        return text
    if not isinstance(d, dict):
        return text
    d = {
        k: v
        for k, v in d.items()
        if k not in ("is_from_converted_type", "force_set_converted_type")
    }
    return json.dumps(d, separators=(",", ":"))


def schema_problem(columns: Sequence[tuple[str, str, str, int]]) -> str | None:
    """What is wrong with a segment's columns as :meth:`Store.segment_columns` gives them
    (None if they are exactly FORMAT.md §5's, in its order)."""
    names = [c[0] for c in columns]
    for name in PARQUET_TYPES:
        if name not in names:
            return f"segment lacks the column {name!r}"
    for name in names:
        if name not in PARQUET_TYPES:
            return f"segment has a column {_brief(name)} that FORMAT.md §5 does not define"
    if names != list(PARQUET_TYPES):
        return f"segment's columns are in the order {', '.join(names)}; FORMAT.md §5's is {_ORDER}"
    for name, physical, logical, length in columns:
        want_physical, want_logical, want_length = PARQUET_TYPES[name]
        got = _logical(logical)
        if physical != want_physical or got not in want_logical or length != want_length:
            have = _spell(physical, got, length)
            want = _spell(want_physical, want_logical[0], want_length)
            return f"column {name!r} has Parquet type {have}, expected {want}"
    return None


def _spell(physical: str, logical: str, length: int) -> str:
    """``INT64 Timestamp(isAdjustedToUTC=true, timeUnit=microseconds)``, ``BYTE_ARRAY``…"""
    text = f"{physical}({length})" if length else physical
    try:
        d = json.loads(logical)
    except ValueError:
        return f"{text} {logical}"
    kind = d.pop("Type", None) if isinstance(d, dict) else None
    if not isinstance(d, dict) or kind in (None, "None"):
        return text
    args = ", ".join(f"{k}={json.dumps(v)}" for k, v in d.items())
    return f"{text} {kind}({args})" if args else f"{text} {kind}"


@dataclass(frozen=True)
class Clean:
    """What a worker proved about the first ``rows`` rows of a run of one segment.

    For each of those rows: SHA-256 of ``canonical`` equals ``hash``; ``canonical`` is
    exactly the event the typed columns describe, with this ledger's origin, the seq of
    its position and a ``prev_hash`` equal to the previous row's hash (for rows after the
    first); and its signature verifies under ``keys[key_id]``. ``prev`` is the first
    row's ``prev_hash``; ``leaves`` the rows' RFC 6962 leaf hashes, concatenated.
    """

    rows: int
    prev: str
    leaves: bytes
    roots: dict[tuple[int, int], bytes] = field(default_factory=dict)


class _Ev:
    """The fields of :class:`events.Event` for the fast path's hot loop: State only reads
    attributes, and building a frozen dataclass costs about four times as much."""

    __slots__ = E.Event.__slots__

    def __init__(
        self,
        seq: int,
        ts: int,
        origin: str,
        action: str,
        actor: str,
        key_id: str,
        payload: dict[str, Any],
        prev_hash: str,
        model: str | None,
        version: int | None,
    ) -> None:
        self.seq, self.ts, self.origin, self.action, self.actor = seq, ts, origin, action, actor
        self.key_id, self.payload, self.prev_hash = key_id, payload, prev_hash
        self.model, self.version = model, version


class Verifier:
    """Replays events segment by segment; ``report`` holds the outcome.

    ``feed`` is the reference: every check of docs/FORMAT.md section 7, row by row, in
    order. ``feed_clean`` is the fast path for rows a worker process already checked
    (see :class:`Clean`); it does only the sequential part (chain across segments, key
    registry, roles, lifecycle, time) and hands the first row it has any doubt about to
    the reference, so the verdict is always the reference's.
    """

    def __init__(self, origin: str, genesis_hash: str, since: int = 0) -> None:
        self.origin = origin
        self.genesis_hash = genesis_hash
        self.state = State()
        self.prev_hash = E.GENESIS_PREV_HASH
        #: event hashes (index = seq); before ``since`` only placeholders
        self.hashes: list[bytes] = []
        #: RFC 6962 leaf hashes of the events verified (index = seq - since)
        self.leaves: list[bytes] = []
        #: roots of full aligned subtrees that workers computed
        self.roots: dict[tuple[int, int], bytes] = {}
        self.since = since
        self.report = VerifyReport(since=since)

    def fail(
        self, kind: str, message: str, seq: int | None = None, segment: str | None = None
    ) -> None:
        raise Failed(Problem(kind, message, seq, segment))

    def resume(self, state: State, prev_hash: str, size: int) -> None:
        """Start after ``size`` events already trusted (``verify --since``)."""
        self.state = state
        self.state.next_seq = size
        self.prev_hash = prev_hash
        self.hashes = [b""] * size

    def feed(
        self,
        segment: str,
        first: int,
        last: int,
        cols: Mapping[str, Sequence[Any]],
        start: int = 0,
    ) -> None:
        """Check one segment's rows from ``start``. ``cols`` maps column name to a
        sequence of values, with ``ts`` as integer microseconds. Raises Failed at the
        first problem."""
        canon = cols["canonical"]
        n = len(canon)
        for i in range(start, n):
            self._row(segment, cols, i)
        self._end_segment(segment, first, last, n)

    def _end_segment(self, segment: str, first: int, last: int, n: int) -> None:
        if n != last - first + 1:
            end = first + n - 1
            self.fail(
                "segment_range",
                f"segment holds events {first}..{end} but its name says {first}..{last}"
                " (events removed from the segment)",
                end + 1 if n < last - first + 1 else last + 1,
                segment,
            )
        self.report.segments += 1

    def feed_clean(
        self,
        segment: str,
        cols: Mapping[str, Sequence[Any]],
        clean: Clean,
        keys: dict[str, bytes],
        offset: int = 0,
    ) -> int:
        """Fast path over ``clean.rows`` rows of ``cols`` starting at row ``offset``.

        Returns how many rows it accepted; the caller feeds the rest to :meth:`feed`.
        """
        state, origin = self.state, self.origin
        rows = clean.rows
        if not rows:
            return 0
        seqs, tss, actions = cols["seq"], cols["ts"], cols["action"]
        models, versions, actors = cols["model"], cols["version"], cols["actor"]
        kids, payloads, hashes = cols["key_id"], cols["payload"], cols["hash"]
        envs = cols.get("env") or [None] * len(seqs)
        authorize, check, apply = state.authorize, state.check, state.apply
        plain = state.step_plain
        # (_Ev has Event's fields: State reads nothing else)
        known, Event, keys_get = E.ACTION_ROLE, cast(Any, _Ev), keys.get
        # The C scanner behind json.loads, without its whitespace regexes: the payload
        # column is canonical JSON (the worker matched it against the signed bytes).
        scan = json_scanner()
        base = len(self.hashes)
        # The worker proved the typed seqs are its run's positions: check where it starts.
        if clean.prev != self.prev_hash or seqs[offset] != base:
            return 0
        if base == 0 and hashes[offset].hex() != self.genesis_hash:
            return 0
        done = 0
        seq = base
        end = offset + rows
        try:
            for env, text, action, kid, ts, actor, model, version in zip(
                envs[offset:end], payloads[offset:end], actions[offset:end],
                kids[offset:end], tss[offset:end], actors[offset:end], models[offset:end],
                versions[offset:end], strict=True,
            ):  # fmt: skip
                if env is not None:  # the payload is exactly {"env": env}
                    if plain(seq, ts, action, actor, kid, keys_get(kid), model, version, env):
                        seq += 1
                        done += 1
                        continue
                    payload = {"env": env}
                else:
                    payload, stop = scan(text, 0)
                    if type(payload) is not dict or stop != len(text):
                        break
                    # (the worker matched the signed bytes around this text, verbatim:
                    # it must also be the payload's canonical form, within the limits)
                    if canonicalize(payload, depth=1) != text.encode():
                        break
                ev = Event(seq, ts, origin, action, actor, kid, payload, "", model, version)
                rec = authorize(ev)
                if rec is None:
                    if _public_key(payload) != keys_get(kid):
                        break
                elif rec.public_key != keys_get(kid):
                    break
                if action in known:
                    check(ev)
                    apply(ev)
                else:
                    state.pass_unknown(ev)
                seq += 1
                done += 1
        except (LedgerError, ValueError, RecursionError, TypeError, StopIteration, AttributeError):
            pass  # the reference will name it
        if done:
            self.hashes.extend(hashes[offset : offset + done])
            leaves = clean.leaves
            self.leaves.extend([leaves[j : j + 32] for j in range(0, 32 * done, 32)])
            self.prev_hash = self.hashes[-1].hex()
        if done == rows:
            self.roots.update(clean.roots)
        return done

    def _signed_seq(self, canon: Any) -> Any:
        try:
            return json.loads(canon).get("seq")
        except (ValueError, AttributeError, TypeError, RecursionError):
            return None

    def _row(self, segment: str, cols: Mapping[str, Sequence[Any]], i: int) -> None:
        expected = len(self.hashes)
        canon: bytes = cols["canonical"][i]
        stored = cols["hash"][i]
        typed_seq = cols["seq"][i]
        where = typed_seq if isinstance(typed_seq, int) else expected
        h = hashlib.sha256(canon).digest()
        if h != stored:
            self.fail(
                "bytes_modified",
                "event bytes do not match their stored hash (event bytes modified)",
                where,
                segment,
            )
        if len(canon) > E.MAX_EVENT_BYTES:
            self.fail(
                "malformed",
                f"event is {len(canon)} bytes; the limit is {E.MAX_EVENT_BYTES}",
                where,
                segment,
            )
        try:
            doc = json.loads(canon)
            ev = E.event_from_document(doc)
        except (ValueError, RecursionError) as exc:
            self.fail("malformed", f"event bytes are not a valid event: {exc}", where, segment)
        extra = sorted(set(doc) - _MEMBERS)
        if extra:
            self.fail(
                "malformed",
                f"event has the member {_brief(extra[0])}; an event has exactly the ten"
                " members of FORMAT.md §3.1",
                ev.seq,
                segment,
            )
        # The hash and the signature are over the canonical form (FORMAT.md §3.2): bytes
        # that are not exactly it (a space, a duplicate key, escaped characters) would let
        # two byte strings stand for one event.
        try:
            canonical = canonicalize(doc) == canon
        except LedgerError as exc:  # a value JSON cannot carry exactly: say which
            self.fail("malformed", f"event bytes are not a valid event: {exc}", ev.seq, segment)
        if not canonical:
            self.fail(
                "malformed",
                "event bytes are not in RFC 8785 canonical form (re-encoding them gives other"
                " bytes)",
                ev.seq,
                segment,
            )
        # The typed columns are what queries read; they must say what was signed.
        if typed_seq != ev.seq or type(typed_seq) is not int:
            self.fail(
                "column_mismatch",
                f"typed column 'seq' ({_brief(typed_seq)}) disagrees with the signed bytes ({ev.seq})",
                ev.seq,
                segment,
            )
        if cols["ts"][i] != ev.ts:
            self.fail(
                "column_mismatch",
                "typed column 'ts' disagrees with the signed bytes",
                ev.seq,
                segment,
            )
        for name in _TYPED:
            v = cols[name][i]
            if v != getattr(ev, name) or type(v) is not type(getattr(ev, name)):
                self.fail(
                    "column_mismatch",
                    f"typed column {name!r} ({_brief(v)}) disagrees with the signed bytes"
                    f" ({_brief(getattr(ev, name))})",
                    ev.seq,
                    segment,
                )
        try:
            typed_payload = json.loads(cols["payload"][i])
        except (ValueError, TypeError):
            typed_payload = None
        if not _same(typed_payload, ev.payload):
            self.fail(
                "column_mismatch",
                "typed column 'payload' disagrees with the signed bytes",
                ev.seq,
                segment,
            )
        if ev.origin != self.origin:
            self.fail(
                "foreign_origin",
                f"event belongs to ledger {_brief(ev.origin)}, not this one ({self.origin!r})"
                " (replayed from another ledger)",
                ev.seq,
                segment,
            )
        if ev.seq != expected:
            self._misplaced(segment, cols, i, ev.seq, h, expected)
        if ev.prev_hash != self.prev_hash:
            self.fail(
                "chain_broken",
                f"prev_hash {ev.prev_hash[:16]}… does not match the hash of the previous event"
                f" {self.prev_hash[:16]}… (history rewritten)",
                ev.seq,
                segment,
            )
        if ev.seq == 0 and h.hex() != self.genesis_hash:
            self.fail(
                "genesis_mismatch",
                "genesis event does not match the genesis_hash in ledger.json",
                0,
                segment,
            )
        try:
            rec = self.state.authorize(ev)
            if rec is None:  # genesis: self-signed by the key it registers
                public = _public_key(ev.payload)
                signer = ev.key_id
            else:
                public, signer = rec.public_key, f"{rec.key_id} ({rec.actor})"
            if not verify_signature(public, pae(canon), cols["sig"][i]):
                self.fail(
                    "bad_signature",
                    f"signature does not verify against key {signer}",
                    ev.seq,
                    segment,
                )
            if ev.action in E.ACTION_ROLE:
                self.state.check(ev)
                self.state.apply(ev)
            else:
                self.state.pass_unknown(ev)
        except LedgerError as exc:
            kind = exc.kind if exc.kind != type(exc).__name__ else "rule_violation"
            self.fail(kind, str(exc), ev.seq, segment)
        self.hashes.append(h)
        self.leaves.append(hashlib.sha256(b"\x00" + canon).digest())
        self.prev_hash = h.hex()

    def _misplaced(
        self,
        segment: str,
        cols: Mapping[str, Sequence[Any]],
        i: int,
        seq: int,
        h: bytes,
        expected: int,
    ) -> None:
        """Name what put the event signed as ``seq`` at position ``expected``."""
        if seq < expected:
            if seq >= self.since and self.hashes[seq] == h:
                self.fail(
                    "duplicate",
                    f"event is a copy of seq {seq} (duplicated or replayed event)",
                    expected,
                    segment,
                )
            self.fail(
                "inserted",
                f"found a second event signed as seq {seq}, different from the one already"
                f" at seq {seq} (event inserted)",
                expected,
                segment,
            )
        # A larger seq: was the event we expected moved later, or is it gone?
        canon = cols["canonical"]
        for j in range(i + 1, len(canon)):
            if self._signed_seq(canon[j]) == expected:
                self.fail(
                    "reordered",
                    f"found the event signed as seq {seq} at position {expected}, and seq"
                    f" {expected} later at position {expected + j - i} (events reordered)",
                    expected,
                    segment,
                )
        missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
        self.fail(
            "deleted",
            f"event seq {missing} is missing: the next event carries seq {seq} (event deleted)",
            expected,
            segment,
        )

    def finish(self) -> VerifyReport:
        self.report.events = len(self.hashes)
        self.report.head = self.prev_hash if self.hashes else None
        self.report.unknown_actions = self.state.unknown_actions
        return self.report


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells ``1`` from ``1.0`` and ``true`` from ``1``."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _brief(value: Any, limit: int = 80) -> str:
    """repr() cut short: a verdict is one readable line even for a 32 MB value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
