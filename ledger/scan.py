"""Verifying a ledger folder: layout, segments checked in worker processes, checkpoints.

Full verification splits the work the way its cost splits. Signatures dominate (one
Ed25519 verify per event), and every per-event check that needs no earlier event can be
done anywhere: SHA-256 of the bytes against the stored hash, typed columns against the
signed bytes, origin, seq and ``prev_hash`` within a run of rows, the RFC 6962 leaf hash
and the signature under the key the registry's key events name. Worker processes
(:mod:`ledger.scanworkers`, the worker side) do that for runs of rows (one Parquet row
group each) and return a compact :class:`~ledger.verify.Clean`. This module is the main
process: the layout, the tasks it hands the workers, and the sequential part — the chain
across runs, the key registry, roles, lifecycle rules and time — with the same
:class:`~ledger.verify.Verifier` the reference path uses, replaying the first row it
has any doubt about through the reference checks, so the verdict and its order are
exactly those of a one-row-at-a-time verification.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from . import checkpoint as C
from . import events as E
from . import merkle
from . import tree as T
from .derived import (
    Vanished,
    against,
    check_index,
    check_story_maps,
    check_tree,
    read_listed,
    why_unreadable,
)
from .errors import CorruptLedgerError
from .gcpause import collector_paused
from .opened import partial_state
from .scanpool import RunPool as RunPool
from .scanpool import _results
from .scanpool import default_jobs as default_jobs
from .scanworkers import Task
from .scanworkers import check_run as check_run
from .store import COLUMNS, SCHEMA, Segment, Store, micros, open_parquet, pylist
from .tree import LeafTree, Tree
from .verify import (
    FAST_COLUMNS,
    Failed,
    Problem,
    Verifier,
    VerifyReport,
    schema_problem,
)

if TYPE_CHECKING:
    from .opened import Opened


def _runs(seg: Segment) -> list[tuple[str, int | None, int, int]]:
    """One task per row group of ``seg`` (the file's metadata gives their sizes)."""
    try:
        md = open_parquet(seg.path).metadata
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
    except (OSError, pa.ArrowException):
        return [(str(seg.path), None, seg.first, seg.count)]
    out: list[tuple[str, int | None, int, int]] = []
    off = 0
    for i, n in enumerate(sizes):
        out.append((str(seg.path), i, seg.first + off, n))
        off += n
    return out or [(str(seg.path), None, seg.first, 0)]


def key_map(store: Store, segments: Sequence[Segment]) -> dict[str, bytes]:
    """key_id -> public key from the key events, read from the typed columns.

    Typed columns are untrusted, but only as a hint: a worker checks a signature under
    this key, and the main process accepts it only if the registry replayed from
    verified rows binds the same key to that key id.
    """
    import base64

    import pyarrow.compute as pc

    keys: dict[str, bytes] = {}
    wanted = pa.array(sorted(E.KEY_ACTIONS))
    for seg in segments:
        try:
            pf = open_parquet(seg.path)
            for rg in range(pf.metadata.num_row_groups):
                act = pf.read_row_group(rg, columns=["action"]).column("action")
                mask = pc.is_in(act, wanted)
                if not pc.any(mask).as_py():
                    continue
                t = pf.read_row_group(rg, columns=["payload"]).filter(mask)
                for text in t.column("payload").to_pylist():
                    try:
                        p = json.loads(text)
                        raw = base64.b64decode(p["public_key"], validate=True)
                        keys.setdefault(p["key_id"], raw)
                    except (ValueError, TypeError, KeyError):
                        continue
        except (OSError, pa.ArrowException, ValueError):
            continue
    return keys


#: A payload column value that is exactly ``{"env":"<env>"}``, the env a valid name.
_ENV_ONLY = E.ENV_ONLY_ANCHORED


#: How many times a verify starts over when segments vanish under it (a compaction
#: running meanwhile); after that the verdict is ``unreadable``, naming the file.
ATTEMPTS = 3


def _retrying(check: Callable[[bool], VerifyReport]) -> VerifyReport:
    """``check(last)``, started over while segments vanish under it (:class:`Vanished`);
    on the ``last`` attempt a vanished segment is reported as ``unreadable``."""
    for _ in range(ATTEMPTS - 1):
        try:
            return check(False)
        except Vanished:
            continue
    return check(True)


def _columns(
    v: Verifier, store: Store, seg: Segment, names: Sequence[str] = COLUMNS, env: bool = False
) -> dict[str, list[Any]]:
    """A segment's columns as Python lists (``ts`` in µs), failing ``unreadable``; with
    ``env``, also the ``env`` list of :data:`~ledger.verify.FAST_COLUMNS`."""
    try:
        table = read_listed(store, seg, names, dictionary=env)
    except CorruptLedgerError as exc:
        v.fail(
            "unreadable", f"segment is unreadable: {why_unreadable(seg, exc)}", seg.first, seg.name
        )
    for name in names:
        want = SCHEMA.field(name).type
        if name not in table.column_names:
            v.fail("unreadable", f"segment lacks the column {name!r}", seg.first, seg.name)
        got = table.schema.field(name).type
        if pa.types.is_dictionary(got):
            got = got.value_type
        if got != want and not (name == "ts" and pa.types.is_timestamp(got)):
            v.fail(
                "unreadable",
                f"column {name!r} has type {got}, expected {want}",
                seg.first,
                seg.name,
            )
    try:
        out = {}
        for name in names:
            if name != "ts":
                c = table.column(name)
                if pa.types.is_fixed_size_binary(c.type):  # ~15x faster to convert
                    c = c.cast(pa.binary())
                out[name] = pylist(c)
        if env:
            import pyarrow.compute as pc

            # Payloads that are exactly {"env":"<env>"}: the fast path need not parse them.
            found = pc.extract_regex(table.column("payload"), _ENV_ONLY)
            out["env"] = pc.struct_field(found, [0]).to_pylist()
        if "ts" in names:
            out["ts"] = micros(table.column("ts"))
    except (ValueError, pa.ArrowException) as exc:  # e.g. a string column that is not UTF-8
        v.fail(
            "unreadable", f"segment is unreadable: {why_unreadable(seg, exc)}", seg.first, seg.name
        )
    return out


def _schema(v: Verifier, store: Store, seg: Segment) -> None:
    """The segment's columns are exactly FORMAT.md §5's, in order (else ``bad_schema``)."""
    try:
        columns = store.segment_columns(seg)
    except FileNotFoundError as exc:
        why = f"segment is unreadable: {why_unreadable(seg, exc)}"
        raise Vanished(Problem("unreadable", why, seg.first, seg.name)) from None
    except CorruptLedgerError as exc:
        v.fail(
            "unreadable", f"segment is unreadable: {why_unreadable(seg, exc)}", seg.first, seg.name
        )
    problem = schema_problem(columns)
    if problem is not None:
        v.fail("bad_schema", problem, seg.first, seg.name)


@collector_paused()  # the State replay makes millions of acyclic objects
def verify_segments(
    led: Opened,
    v: Verifier,
    progress: Callable[[int, int], None] | None = None,
    jobs: int | None = None,
    since: int = 0,
    pool: RunPool | None = None,
) -> None:
    """Check the layout and every event from ``since`` on; raises Failed at the first
    problem. The per-run checks go to ``pool`` if given, else to ``jobs`` local worker
    processes."""
    store = led.store
    layout = store.layout()
    for p in layout.strays:
        kind = "symlink" if p.is_symlink() else "stray_file"
        what = "a symbolic link" if p.is_symlink() else "not a segment"
        v.fail(
            kind,
            f"events/{p.name} is {what}; a ledger's events/ holds only segments",
            segment=p.name,
        )
    if layout.overlapping:
        a, b = layout.overlapping[0]
        v.fail(
            "overlap",
            f"segment overlaps {a.name} (seq {b.first}..{a.last} in both)",
            b.first,
            b.name,
        )
    if not layout.live:
        v.fail("segment_missing", "events/ holds no segments", 0)
    total = sum(s.count for s in layout.live)
    segs = [s for s in layout.live if s.last >= since]
    keys = key_map(store, layout.live)
    tasks: list[Task] = []
    owner: list[int] = []
    for k, seg in enumerate(segs):
        if seg.source is not None:
            # The journal: its copy is this process's own file, which another host's
            # workers cannot open; a few hundred events at most, checked here.
            continue
        for path, rg, first, count in _runs(seg):
            if first + count > since:
                tasks.append((path, rg, first, count, max(0, since - first)))
                owner.append(k)
    results = _results(tasks, led.origin, keys, jobs or default_jobs(), pool)
    expected = since
    done = 0
    ti = 0
    try:
        next(results)  # start the workers
        for k, seg in enumerate(segs):
            if seg.first > expected:
                v.fail(
                    "segment_missing",
                    f"events {expected}..{seg.first - 1} are missing: no segment holds them"
                    f" (segment file deleted?); next segment is {seg.name}",
                    expected,
                )
            start = max(0, since - seg.first)
            _schema(v, store, seg)
            cols = _columns(v, store, seg, FAST_COLUMNS, env=True)
            n = len(cols["seq"])
            row = start
            slow = False
            while ti < len(tasks) and owner[ti] == k:
                clean = next(results)
                _, _, tfirst, tcount, skip = tasks[ti]
                ti += 1
                if slow:
                    continue
                off = tfirst - seg.first + skip
                tcount -= skip
                if off + tcount <= row:  # a run before ``since``
                    continue
                if off != row or off + clean.rows > n:  # e.g. a run straddling ``since``
                    slow = True
                    continue
                accepted = v.feed_clean(seg.name, cols, clean, keys, offset=row)
                row += accepted
                if accepted < tcount:
                    slow = True
            if slow or row < n:
                full = _columns(v, store, seg)
                v.feed(seg.name, seg.first, seg.last, full, start=row)
            else:
                v._end_segment(seg.name, seg.first, seg.last, n)
            expected = seg.last + 1
            done += seg.count
            if progress:
                progress(done, total)
    finally:
        results.close()
    for leftover, live in layout.superseded:
        if leftover.last < since:
            continue
        try:
            _schema(v, store, leftover)
            cols = _columns(v, store, leftover, ["seq", "hash"])
        except Vanished:  # the compaction that superseded it has removed it since
            continue
        if cols["seq"] != list(range(leftover.first, leftover.last + 1)):
            v.fail(
                "segment_range",
                f"segment lies inside {live.name} but does not hold the events its name says",
                leftover.first,
                leftover.name,
            )
        for s, h in zip(cols["seq"], cols["hash"], strict=True):
            if type(s) is not int or not leftover.first <= s < len(v.hashes) or v.hashes[s] != h:
                v.fail(
                    "overlap",
                    f"segment lies inside {live.name} but holds different events",
                    s if isinstance(s, int) else leftover.first,
                    leftover.name,
                )
        _same_bytes(v, store, leftover, live)


def _same_bytes(v: Verifier, store: Store, leftover: Segment, live: Segment) -> None:
    """A compaction's leftover is a byte-identical copy of the rows the merged segment
    holds, every column (a same-hash copy with another signature is not)."""
    try:
        mine, theirs = _columns(v, store, leftover), _columns(v, store, live)
    except Vanished:
        return
    at = leftover.first - live.first
    for name in COLUMNS:
        got, want = mine[name], theirs[name][at : at + leftover.count]
        if got != want:
            i = next(i for i, (a, b) in enumerate(zip(got, want, strict=True)) if a != b)
            v.fail(
                "overlap",
                f"segment lies inside {live.name} but differs from it in column {name!r}"
                " (a leftover of a merge must be a byte-identical copy)",
                leftover.first + i,
                leftover.name,
            )


def trusted_state(led: Opened, size: int) -> Any:
    """What the events after ``size`` need of the state before them: the key registry,
    the policy, and the models they (and their parents) concern. Replayed from the typed
    columns, which the full verification the trusted checkpoint stands for covered."""
    if size == 0:
        from .state import State

        return State()
    state = partial_state(led, size, models_after(led, size))
    state.last_ts = _value_at(led.store, size - 1, "ts")
    return state


def verify_since(
    led: Opened,
    cp: C.SignedCheckpoint,
    progress: Callable[[int, int], None] | None = None,
    jobs: int | None = None,
    pool: RunPool | None = None,
) -> VerifyReport:
    """Check the events after trusted checkpoint ``cp`` and that the tree extends it;
    the per-run checks in ``pool`` if given."""
    return _retrying(lambda last: _verify_since(led, cp, progress, jobs, last, pool))


@contextlib.contextmanager
def _stopping(v: Verifier, last: bool) -> Iterator[None]:
    """Make the first problem (:class:`Failed`) the report's verdict. A segment that
    vanished under a compaction is raised for a retry, unless this is the last attempt."""
    try:
        yield
    except Failed as f:
        v.report.problems.append(f.problem)
    except Vanished as gone:
        if not last:
            raise
        v.report.problems.append(gone.problem)


def _verify_since(
    led: Opened,
    cp: C.SignedCheckpoint,
    progress: Callable[[int, int], None] | None,
    jobs: int | None,
    last: bool,
    pool: RunPool | None = None,
) -> VerifyReport:
    m = cp.size
    v = Verifier(led.origin, led.identity["genesis_hash"], since=m)
    v.report.checkpoint = {"size": cp.size, "root": cp.root_hex, "signer": cp.signer}
    where = cp.path.name if cp.path else "trusted checkpoint"
    with _stopping(v, last):
        n = led.store.tail()[0] if led.store.layout().live else 0
        if m > n:
            against(v, cp, n, lambda _m: b"", where)
        state = trusted_state(led, m)
        prev = _hash_at(led.store, m - 1).hex() if m else E.GENESIS_PREV_HASH
        v.resume(state, prev, m)
        jobs = jobs if jobs is not None else 1
        verify_segments(led, v, progress, jobs=jobs, since=m, pool=pool)
        check_index(led, v, since=m)
        n = len(v.hashes)
        tree = Tree(led.store, n, fresh_from=m)
        root = tree.root()
        if m:
            proof = tree.consistency(m, n)
            try:
                merkle.verify_consistency(m, n, proof, cp.root, root)
            except merkle.MerkleProofError:
                # The cache may be what is wrong: decide on events alone.
                tree = Tree(led.store, n, use_cache=False)
                root = tree.root()
                against(v, cp, n, tree.root, where)
        check_story_maps(led, v, since=m, trusted=cp.story_root)
        v.report.root = root.hex()
    return v.finish()


def verify_after(led: Opened, size: int, head: str) -> VerifyReport:
    """Check the events from ``size`` on as ``verify --since`` does, the chain continuing
    from ``head`` (the hash of event ``size - 1``, accepted earlier), and the index
    bundles of the segments holding them; no tree, no checkpoint. The events before
    ``size`` are trusted (the key registry and the models the new events concern are
    replayed from their typed columns): the caller vouches for them."""
    return _retrying(lambda last: _verify_after(led, size, head, last))


def _verify_after(led: Opened, size: int, head: str, last: bool) -> VerifyReport:
    v = Verifier(led.origin, led.identity["genesis_hash"], since=size)
    with _stopping(v, last):
        v.resume(trusted_state(led, size), head, size)
        verify_segments(led, v, None, jobs=1, since=size)
        check_index(led, v, since=size)
    return v.finish()


def _value_at(store: Store, seq: int, column: str) -> Any:
    """One column of event ``seq`` (``ts`` in µs)."""
    value = T.read_rows(store.segments(), seq, seq + 1, column)[0]
    if column == "ts":
        value = pa.scalar(value, pa.timestamp("us", tz="UTC")).cast(pa.int64()).as_py()
    return value


def _hash_at(store: Store, seq: int) -> bytes:
    return _value_at(store, seq, "hash")


def verify_full(
    led: Opened,
    progress: Callable[[int, int], None] | None = None,
    jobs: int | None = None,
    trusted: C.SignedCheckpoint | None = None,
    pool: RunPool | None = None,
) -> VerifyReport:
    """Check every segment, event, hash, signature, key, rule, the tree and the stored
    checkpoints (and ``trusted``); stop at the first problem. A compaction running
    meanwhile makes it start over (up to :data:`ATTEMPTS` times in all). The per-run
    checks go to ``pool`` if given (e.g. a Dask cluster), else to ``jobs`` processes."""
    return _retrying(lambda last: _verify_full(led, progress, jobs, trusted, last, pool))


def _verify_full(
    led: Opened,
    progress: Callable[[int, int], None] | None,
    jobs: int | None,
    trusted: C.SignedCheckpoint | None,
    last: bool,
    pool: RunPool | None = None,
) -> VerifyReport:
    v = Verifier(led.origin, led.identity["genesis_hash"])
    with _stopping(v, last):
        verify_segments(led, v, progress, jobs, pool=pool)
        check_index(led, v)
        check_tree(led, v)
        if trusted is not None:
            v.report.checkpoint = {
                "size": trusted.size,
                "root": trusted.root_hex,
                "signer": trusted.signer,
            }
            lt = LeafTree(v.leaves, {})
            against(
                v,
                trusted,
                len(v.leaves),
                lambda m: merkle.root_from(m, lt.subtree_root),
                trusted.path.name if trusted.path else "trusted checkpoint",
            )
        # (after the trusted checkpoint: a rewritten history is named as such, not by
        # the caches it left behind)
        check_story_maps(led, v)
    return v.finish()


__all__ = [
    "Problem",
    "RunPool",
    "check_run",
    "default_jobs",
    "verify_after",
    "verify_full",
    "verify_since",
]


# --- partial state replays (typed columns, only the rows a check needs) ---------------------


def models_after(led: Opened, since: int) -> set[str]:
    """Models the events from ``since`` on concern, with the parents their registers name."""
    out: set[str] = set()
    for seg in led.store.segments():
        if seg.last < since:
            continue
        t = read_listed(led.store, seg, ["model", "payload", "action"])
        t = t.slice(max(0, since - seg.first))  # (rows are in seq order)
        for m, p, a in zip(
            t["model"].to_pylist(), t["payload"].to_pylist(), t["action"].to_pylist(), strict=True
        ):
            if m is not None:
                out.add(m)
            if a == E.REGISTER:  # a malformed payload: the verification names it
                with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                    out.update(x["model"] for x in json.loads(p).get("parents", ()))
    return out
