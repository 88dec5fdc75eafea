"""The append path: drafts -> rules and policy -> signed rows -> one durable segment.

One :class:`Writer` serves one ``Ledger`` object, however many threads call it. Calls
that arrive while a commit is under way wait for it and are then committed together by
one of them (*group commit*): one flock, one segment, one pair of fsyncs for every batch
waiting at that moment. Each batch is still checked as a unit — a refused batch is
undone (:meth:`State.savepoint`) and fails alone — and each caller returns only once its
own events are durable. After the write the leader runs the merges the compaction
policy calls for (:meth:`Store.maintain`), still under the lock.

A writer keeps the full :class:`State` between commits and brings it up to date from
the newest rows only, so a long-lived writer never re-reads the ledger; a one-off
writer (a CLI command) replays just the models it touches.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pyarrow as pa

from . import events as E
from .errors import InputError, LedgerError, NotFoundError, RuleViolation, StorageError
from .gcpause import collector_paused
from .keys import SigningKey, pae
from .merges import merge_fanout
from .replay import replay
from .segments import COLUMNS, SCHEMA, STATE_COLUMNS
from .signer import BatchSigner, parallel_enabled
from .state import State
from .store import Store, file_id

#: A commit groups at most this many events (batches are never split).
GROUP_EVENTS = 10_000


@dataclass(frozen=True)
class Receipt:
    """What an append returns once the event is durably on disk."""

    seq: int
    hash: str
    ts: str
    action: str
    model: str | None = None
    version: int | None = None

    @property
    def ref(self) -> str | None:
        return f"{self.model}:{self.version}" if self.model else None


@dataclass
class _Request:
    """One caller's batch, waiting for a commit."""

    drafts: list[E.Draft]
    key: SigningKey
    enforce_policy: bool
    models: set[str]
    parallel: bool
    receipts: list[Receipt] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False
    #: append_planned's: drafts made from the State under the lock, and what must happen
    #: (in the caller's thread, still under the lock) once they are signed, before the
    #: write that makes them durable
    plan: Callable[[State], Iterable[E.Draft]] | None = None
    before_write: Callable[[list[Receipt]], None] | None = None


class Writer:
    """Appends for one Ledger object; safe to call from many threads at once."""

    def __init__(self, store: Store, origin: str) -> None:
        self.store = store
        self.origin = origin
        # The State after this writer's last commit, as (events, head hash, state); see
        # _writer_state. None until the second commit or after a failure.
        self._cache: tuple[int, bytes, State] | None = None
        self._commits = 0
        # (identity of the last segment, the tail it ends with): lets the next commit
        # skip reading the tail back while that segment is still the last one.
        self._tail_memo: (
            tuple[tuple[str, tuple[int, int, int, int] | None], tuple[int, bytes, int]] | None
        ) = None
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Request] = []
        self._leading = False

    # --- the callers' side ------------------------------------------------------------
    def append_many(
        self, drafts: Iterable[E.Draft], key: SigningKey, enforce_policy: bool = True
    ) -> list[Receipt]:
        """Sign and durably append ``drafts`` as one unit (all or nothing)."""
        drafts = list(drafts)
        if not drafts:
            return []
        models: set[str] = set()
        for d in drafts:
            if d.model is not None and d.model not in models:
                models.add(E.check_model_name(d.model))
            if d.action == E.REGISTER:
                models.update(
                    p["model"]
                    for p in d.payload.get("parents", ())
                    if isinstance(p, dict) and isinstance(p.get("model"), str)
                )
        req = _Request(drafts, key, enforce_policy, models, parallel_enabled(len(drafts)))
        with self._cond:
            self._queue.append(req)
            while not req.done:
                if self._leading:
                    self._cond.wait()
                    continue
                self._leading = True
                group = self._take_group()
                self._cond.release()
                try:
                    self._commit(group)
                finally:
                    self._cond.acquire()
                    self._leading = False
                    self._cond.notify_all()
        if req.error is not None:
            raise req.error
        return req.receipts

    def append_planned(
        self,
        models: set[str],
        plan: Callable[[State], Iterable[E.Draft]],
        key: SigningKey,
        before_write: Callable[[list[Receipt]], None],
        enforce_policy: bool = True,
    ) -> list[Receipt]:
        """Append the drafts ``plan`` makes from the ledger's state, as one unit.

        Under the writer lock, in the calling thread and alone in its commit: ``plan``
        gets the State (of key and policy events, and of ``models``: the only models
        it may read or name) and returns the drafts; they are checked and signed; then
        ``before_write(receipts)`` runs, and only if it returns are they written. So
        a caller can commit another store's transaction between the ledger's decision
        and its durable write, knowing no other writer can come in between (the MLflow
        store does: ledger/mlflowstore.py). ``plan`` may raise a LedgerError to refuse;
        nothing is then written and ``before_write`` is not called. With no drafts,
        ``before_write([])`` still runs.
        """
        req = _Request([], key, enforce_policy, set(models), False)
        req.plan, req.before_write = plan, before_write
        with self._cond:
            while self._leading:
                self._cond.wait()
            self._leading = True
        try:
            self._commit([req])
        finally:
            with self._cond:
                self._leading = False
                self._cond.notify_all()
        if req.error is not None:
            raise req.error
        return req.receipts

    def _take_group(self) -> list[_Request]:
        """The requests to commit together: the first waiting one and those after it,
        up to GROUP_EVENTS events; a batch signed on the helper process goes alone."""
        group = [self._queue.pop(0)]
        if not group[0].parallel:
            events = len(group[0].drafts)
            while self._queue and not self._queue[0].parallel:
                n = len(self._queue[0].drafts)
                if events + n > GROUP_EVENTS:
                    break
                group.append(self._queue.pop(0))
                events += n
        return group

    # --- the leader's side ------------------------------------------------------------
    def _commit(self, group: list[_Request]) -> None:
        """Check, sign and write ``group``; every request ends done, with receipts or
        an error. Runs in one caller's thread while the others wait."""
        try:
            self._commit_locked(group)
        except BaseException as exc:
            self._cache = None
            for req in group:
                if not req.done:
                    req.error = _for_caller(exc, req is group[0])
                    req.done = True
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt and the like stop the leader too

    def _commit_locked(self, group: list[_Request]) -> None:
        models = set().union(*(r.models for r in group))
        fanout = merge_fanout()  # (a bad knob is refused before anything is written)
        # A commit makes many small acyclic objects: each collector pass would scan them
        # and the whole cached State again (a fifth of a batch's time, measured).
        with self.store.lock(), collector_paused():
            n, last_hash, last_ts = self._tail()
            state, keep = self._writer_state(models, n, last_hash)
            state.next_seq, state.last_ts = n, last_ts
            prev = last_hash.hex()
            parallel = group[0].parallel
            cols = _Columns(BatchSigner(group[0].key, parallel) if parallel else None)
            accepted: list[tuple[_Request, list[Receipt]]] = []
            try:
                for req in group:
                    mark = len(cols.rows)
                    undo = state.savepoint(req.models) if len(req.drafts) > 1 else None
                    try:
                        if req.plan is not None:
                            req.drafts = list(req.plan(state))
                            self._planned_models(req)
                            undo = state.savepoint(req.models)
                        receipts, prev = self._batch(req, state, prev, cols)
                    except LedgerError as exc:
                        if parallel:
                            raise
                        # A single draft that fails leaves the state as it was (step()
                        # checks before it applies); a batch is undone.
                        if undo is not None:
                            undo()
                        cols.truncate(mark)
                        req.error, req.done = exc, True
                        continue
                    accepted.append((req, receipts))
                first = group[0]
                if first.before_write is not None and first.error is None:
                    first.before_write(accepted[0][1] if accepted else [])
                if accepted and cols.rows:
                    written = self.store.append(cols.table())
                    self._remember_tail(written[-1].path, state, prev)
            finally:
                cols.close()  # also when a draft is refused: the helper must not owe us
            if keep:
                self._cache = (state.next_seq, bytes.fromhex(prev), state)
            with self._cond:  # durable: the callers may go
                for req, receipts in accepted:
                    req.receipts, req.done = receipts, True
                self._cond.notify_all()
            if accepted:
                self._maintain(state, prev, fanout)

    @staticmethod
    def _planned_models(req: _Request) -> None:
        # The State read for a first commit holds only the models named in advance.
        for d in req.drafts:
            named: list[Any] = [d.model] if d.model is not None else []
            if d.action == E.REGISTER:
                named += [
                    p.get("model") for p in d.payload.get("parents", ()) if isinstance(p, dict)
                ]
            for m in named:
                if m not in req.models:
                    raise InputError(f"a planned draft names {m}, which the plan did not name")

    def _maintain(self, state: State, prev: str, fanout: int) -> None:
        """The merges the compaction policy calls for. The events are durable already,
        so a merge that fails (a full disk) fails nothing: its parts stay, and the
        next commit tries again."""
        try:
            self.store.maintain(fanout)
            head = self.store.head_file()  # (a merge, or the journal moved to a segment)
            if head is not None:
                self._remember_tail(head, state, prev)
        except (LedgerError, OSError):
            self._tail_memo = None

    def _remember_tail(self, path: Path, state: State, prev: str) -> None:
        self._tail_memo = (_identity(path), (state.next_seq, bytes.fromhex(prev), state.last_ts))

    def _batch(
        self, req: _Request, state: State, prev: str, cols: _Columns
    ) -> tuple[list[Receipt], str]:
        """Step and sign one request's drafts; returns its receipts and the new head."""
        receipts = []
        now = E.now_micros()
        key = req.key
        # One key signs the whole batch, and a key's actor never changes.
        kid, actor = key.key_id, _actor_of(state, key)
        for d in req.drafts:
            version = d.version
            if d.action == E.REGISTER and version is None:
                version = state.latest.get(d.model, 0) + 1  # type: ignore[arg-type]
            elif d.alias is not None:  # (under the lock: the version it names now)
                version = _aliased(state, cast(str, d.model), d.alias)
            if d.ts is not None and d.ts < state.last_ts:
                raise InputError(
                    f"timestamp {E.format_ts(d.ts)} is earlier than the ledger's last event"
                    f" ({E.format_ts(state.last_ts)}); events must not go back in time"
                )
            ev = E.Event(
                seq=state.next_seq,
                ts=d.ts if d.ts is not None else max(now, state.last_ts),
                origin=self.origin,
                action=d.action,
                actor=actor,
                key_id=kid,
                payload=d.payload,
                prev_hash=prev,
                model=d.model,
                version=version,
            )
            if d.unless_live:
                live_guard(state, ev)
            if req.enforce_policy:
                ev = _enforce_policy(state, ev)
            encoded = ev.encode()  # (may refuse the payload: before the state changes)
            state.step(ev)
            prev = cols.add(ev, key, encoded).hex()
            receipts.append(
                Receipt(ev.seq, prev, E.format_ts(ev.ts), ev.action, ev.model, ev.version)
            )
        return receipts, prev

    def _tail(self) -> tuple[int, bytes, int]:
        """``store.tail()``, without reading the segment back when it is the one this
        writer wrote last (segments are immutable once renamed into place)."""
        memo, self._tail_memo = self._tail_memo, None
        if memo is not None:
            head = self.store.head_file()
            if head is not None and _identity(head) == memo[0]:
                self._tail_memo = memo
                return memo[1]
        return self.store.tail()

    def _writer_state(self, models: set[str], n: int, head: bytes) -> tuple[State, bool]:
        """The State a commit checks against, and whether to keep it afterwards.

        The cache is taken out here and put back only after a successful commit, so a
        failure can never leave a half-stepped State behind.
        """
        cache, self._cache = self._cache, None
        self._commits += 1
        if cache is not None:
            cn, chead, state = cache
            if cn == n and chead == head:
                return state, True
            if 0 < cn < n:  # another writer appended meanwhile: replay just its events
                table = self._rows_since(cn - 1, [*STATE_COLUMNS, "hash"])
                if table.num_rows == n - cn + 1 and table["hash"][0].as_py() == chead:
                    replay(table.slice(1), self.origin, state)
                    if table["hash"][table.num_rows - 1].as_py() == head:
                        return state, True
        actions = E.KEY_ACTIONS | E.POLICY_ACTIONS
        if self._commits == 1:
            table = self.store.read_where(STATE_COLUMNS, actions, models)
            return replay(table, self.origin, State()), False
        return replay(self.store.read(STATE_COLUMNS), self.origin, State()), True

    def _rows_since(self, first: int, columns: list[str]) -> pa.Table:
        """Rows with seq >= ``first``, reading only the segments that hold them."""
        parts = []
        for s in self.store.segments():
            if s.last >= first:
                t = self.store.read_segment(s, columns)
                parts.append(t.slice(max(0, first - s.first)))  # rows are in seq order
        return pa.concat_tables(parts)


def _for_caller(exc: BaseException, leader: bool) -> BaseException:
    """The error a waiting caller raises when its group failed as a whole: the leader's
    own exception for the leader, a copy for the others (one object raised in several
    threads would collect their tracebacks)."""
    if not isinstance(exc, Exception):
        return StorageError("the append was abandoned: the thread committing it was stopped")
    return exc if leader else copy.copy(exc)


def live_guard(state: State, ev: E.Event) -> None:
    """The write path's lifecycle guard: a version is not rejected or deprecated while
    it is live (FORMAT.md keeps that legal, as a "zombie" deployment; the ledger's own
    writers refuse to make one). Key and lifecycle errors are reported first."""
    action = ev.action
    if action not in (E.REJECT, E.DEPRECATE):
        return
    state.authorize(ev)
    state.check(ev)
    v = state.versions[(cast(str, ev.model), cast(int, ev.version))]
    if not v.live:
        return
    where = ", ".join(f"{env} (deployed at seq {seq})" for env, seq in sorted(v.live.items()))
    verb = "reject" if action == E.REJECT else "deprecate"
    raise RuleViolation(
        f"cannot {verb} {v.ref}: it is live in {where}; undeploy it first, or give"
        " --undeploy to record the undeploys with it",
        kind="live_version",
    )


def _aliased(state: State, model: str, alias: str) -> int:
    version = state.aliases.get((model, alias))
    if version is None:
        if model not in state.latest:
            raise NotFoundError(f"model {model} is not registered", kind="unknown_model")
        raise NotFoundError(f"model {model} has no alias {alias}", kind="unknown_alias")
    return version


def _actor_of(state: State, key: SigningKey) -> str:
    # The actor is whoever the registry binds the key to; unknown keys fail in step().
    rec = state.keys.get(key.key_id)
    return rec.actor if rec else "unknown"


def _enforce_policy(state: State, ev: E.Event) -> E.Event:
    """The policy gate (ledger/policy.py): key and lifecycle errors are reported first,
    then the policy in force; returns ``ev``, citing any break-glass grant it uses. Pure
    checks only: ``state`` is stepped by the caller."""
    if ev.action not in E.ACTION_ROLE or (state.policy is None and "break_glass" not in ev.payload):
        return ev
    from . import policy

    state.authorize(ev)
    state.check(ev)
    return policy.enforce(state, ev)


class _Columns:
    """Accumulates signed events as rows, turned into Arrow columns by ``table()``. With a
    ``signer`` (large batches), the signatures are made by it, possibly on another core,
    and collected in ``table()``."""

    def __init__(self, signer: BatchSigner | None = None) -> None:
        self.rows: list[tuple[Any, ...]] = []
        self.sigs: list[bytes] = []
        self.signer = signer

    def add(
        self, ev: E.Event, key: SigningKey, encoded: tuple[bytes, bytes] | None = None
    ) -> bytes:
        canon, body = ev.encode() if encoded is None else encoded
        h = E.event_hash(canon)
        # In COLUMNS order, without ``sig``.
        self.rows.append(
            (ev.seq, ev.ts, ev.action, ev.model, ev.version, ev.actor, ev.key_id,
             body.decode("utf-8"), h, canon)
        )  # fmt: skip
        if self.signer is None:
            self.sigs.append(key.sign(pae(canon)))
        else:
            self.signer.add(pae(canon))
        return h

    def truncate(self, n: int) -> None:
        """Drop the rows after the first ``n`` (a refused request's; never with a signer)."""
        del self.rows[n:]
        del self.sigs[n:]

    def close(self) -> None:
        if self.signer is not None:
            self.signer.close()

    def table(self) -> pa.Table:
        if self.signer is not None:
            self.signer.finish()
        # Built while the helper signs its last chunks.
        cols = {
            name: pa.array(values, type=SCHEMA.field(name).type)
            for name, values in zip(_ROW_COLUMNS, zip(*self.rows, strict=True), strict=True)
        }
        sigs = self.signer.signatures() if self.signer is not None else self.sigs
        cols["sig"] = pa.array(sigs, type=SCHEMA.field("sig").type)
        return pa.Table.from_arrays([cols[name] for name in COLUMNS], schema=SCHEMA)


_ROW_COLUMNS = [c for c in COLUMNS if c != "sig"]


def _identity(path: Path) -> tuple[str, tuple[int, int, int, int] | None]:
    return (path.name, file_id(path))
