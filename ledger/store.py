"""Parquet segments on disk: the only module that reads or writes the ledger folder.

Layout::

    LEDGER/ledger.json                          identity: format, origin, genesis hash
    LEDGER/events/<first>-<last>.parquet        immutable segments, 12-digit seq bounds
    LEDGER/.lock                                flock(2) target serialising writers
    LEDGER/.readers                             flock(2) target: readers share it
    LEDGER/index/<first>-<last>.parquet         the event index of each segment (a cache)

A segment is written to a dot-named temporary file in ``events/``, fsynced, renamed
into place and the folder fsynced; only then is the append acknowledged. Readers look
only at names matching the segment pattern, so a half-written temporary file is never
mistaken for a segment. A merge (automatic after appends, see
:mod:`ledger.compaction`, or a full ``compact``) writes the merged segment before the
ones it replaces are deleted; a segment whose range lies inside another's is such a
leftover and is ignored by readers (``verify`` checks that its events are identical to
the live ones). Leftovers are deleted only while no reader holds ``.readers`` (readers
take it shared for as long as they read, writers try it exclusively and otherwise leave
the deletion to a later writer), so a segment never vanishes under a reader.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from . import bundles, compaction, eventindex
from . import events as E
from .bundles import Bundle
from .compat import json_scanner
from .errors import CorruptLedgerError, InputError, NotFoundError, StorageError
from .events import FORMAT
from .gcpause import collector_paused

IDENTITY = "ledger.json"
EVENTS = "events"
LOCK = ".lock"
READERS = ".readers"
INDEX = "index"
#: The folder of caches derived from the events (tree block roots, story maps).
CACHE_DIR = "tree"
CHECKPOINTS_DIR = "checkpoints"
SEGMENT_RE = re.compile(r"(\d{12})-(\d{12})\.parquet")
#: Compaction builds segments of this many events aligned on multiples of it, so each
#: full segment is a complete Merkle subtree.
SEGMENT_EVENTS = 1 << 16
ROW_GROUP = 1 << 14
#: Seconds a writer waits for the lock; $LEDGER_LOCK_TIMEOUT overrides it (read per lock).
LOCK_TIMEOUT = 60.0
#: Seconds a reader waits for a writer that is deleting merged-away segments (it holds
#: ``.readers`` for a few unlinks); after that the reader goes on unprotected and, should
#: a segment vanish, retries from a fresh listing as before.
READERS_TIMEOUT = 10.0
assert SEGMENT_EVENTS == compaction.TOP

SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("action", pa.string()),
        ("model", pa.string()),
        ("version", pa.int64()),
        ("actor", pa.string()),
        ("key_id", pa.string()),
        ("payload", pa.string()),
        ("hash", pa.binary(32)),
        ("sig", pa.binary(64)),
        ("canonical", pa.binary()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
#: The typed columns a State replay needs (no signature work).
STATE_COLUMNS = ["seq", "ts", "action", "model", "version", "actor", "key_id", "payload"]
_DICT_COLUMNS = ["action", "model", "actor", "key_id"]
_STATS_COLUMNS = ["seq", "ts", "action", "model", "version", "actor", "key_id"]


@dataclass(frozen=True, order=True)
class Segment:
    first: int
    last: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True)
class Layout:
    """Segments found in ``events/``: the live tiling and anything that does not fit."""

    live: list[Segment]
    superseded: list[tuple[Segment, Segment]]  # (leftover, the live segment containing it)
    overlapping: list[tuple[Segment, Segment]]
    strays: list[Path]  # files in events/ that are neither segments nor our temporaries


def segment_name(first: int, last: int) -> str:
    return f"{first:012d}-{last:012d}.parquet"


def _oserror(exc: OSError, what: str) -> StorageError:
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        reason = f"{reason} (is the ledger folder read-only?)"
    return StorageError(f"cannot {what}: {reason}")


def _lock_timeout() -> float:
    text = os.environ.get("LEDGER_LOCK_TIMEOUT")
    if text is None:
        return LOCK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses NaN, which would wait forever
        raise InputError(f"LEDGER_LOCK_TIMEOUT must be a number of seconds, got {text[:40]!r}")
    return value


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_parquet(path: str | os.PathLike[str]) -> pq.ParquetFile:
    """Open a segment for reading its metadata and row groups: the one place a segment
    file is opened for reading outside this class (verify's worker processes hold no
    Store, so they are handed the path a Store listed)."""
    return pq.ParquetFile(path)


def file_id(path: str | os.PathLike[str]) -> tuple[int, int, int, int] | None:
    """(size, inode, mtime ns, ctime ns) of a file a Store listed, without following a
    symbolic link; None if it is gone. What tells a file that changed from one that did
    not, short of reading it."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns


class Store:
    """A ledger folder on disk."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.events_dir = self.root / EVENTS
        # Per thread: the lock is re-entrant for the thread holding it, and another thread
        # sharing this Store must take the flock itself (it then waits), or two threads
        # would write the same segment at once.
        self._local = threading.local()
        # The readers' shared flock, held while any thread of this Store reads.
        self._gate = threading.Lock()
        self._readers = 0
        self._readers_fd: int | None = None
        # Small segments this Store wrote, by name: (file identity, rows), so that the
        # merges after an append need not read back what was just written.
        self._written: dict[str, tuple[tuple[int, int, int], pa.Table, pa.Table | None]] = {}
        self.index_dir = self.root / INDEX

    @property
    def _lock_fd(self) -> int | None:
        return getattr(self._local, "fd", None)

    @_lock_fd.setter
    def _lock_fd(self, fd: int | None) -> None:
        self._local.fd = fd

    # --- identity ---------------------------------------------------------------------
    def read_identity(self) -> dict[str, Any]:
        p = self.root / IDENTITY
        if not self.root.is_dir():
            raise NotFoundError(f"{self.root} is not a ledger: no such folder")
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{self.root} is not a ledger: {IDENTITY} is missing") from None
        except OSError as exc:
            raise CorruptLedgerError(f"cannot read {p}: {exc.strerror}") from None
        try:
            ident = json.loads(data)
        except (ValueError, RecursionError):
            raise CorruptLedgerError(f"{p} is not valid JSON") from None
        if not isinstance(ident, dict):
            raise CorruptLedgerError(f"{p} is not a JSON object")
        if ident.get("format") != FORMAT:
            raise CorruptLedgerError(
                f"{p}: unsupported format {ident.get('format')!r} (this version reads {FORMAT})"
            )
        for name in ("origin", "genesis_hash"):
            if not isinstance(ident.get(name), str):
                raise CorruptLedgerError(f"{p} lacks {name!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", ident["genesis_hash"]):
            raise CorruptLedgerError(f"{p}: genesis_hash is not 64 hex digits")
        return ident

    def create(self, identity: dict[str, Any], genesis: pa.Table) -> None:
        """Create a new ledger folder holding the identity file and the genesis segment."""
        if (self.root / IDENTITY).exists():
            raise InputError(f"{self.root} is already a ledger")
        if self.root.exists() and any(self.root.iterdir()):
            raise InputError(f"{self.root} exists and is not empty; choose a new folder")
        try:
            self.events_dir.mkdir(parents=True, exist_ok=True)
            with self.lock():
                self._ensure_readers_file()
                self.write_segment(genesis, eventindex.derive(genesis))
                self._write_atomic(
                    self.root / IDENTITY,
                    (json.dumps(identity, indent=2, sort_keys=True) + "\n").encode(),
                )
        except OSError as exc:
            raise _oserror(exc, f"create the ledger in {self.root}") from None

    # --- locking ----------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the writer lock. flock is released by the kernel if the holder dies,
        so a crashed writer can never leave a stale lock behind."""
        if self._lock_fd is not None:  # re-entrant within one Store
            yield
            return
        timeout = _lock_timeout() if timeout is None else timeout
        try:
            fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _oserror(exc, f"open the lock file in {self.root}") from None
        deadline = time.monotonic() + timeout
        delay = 0.001
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StorageError(
                            f"timed out after {timeout:g}s waiting for another writer to release"
                            f" {self.root / LOCK}"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            self._lock_fd = fd
            try:
                self._clean()
                yield
            finally:
                self._lock_fd = None
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _clean(self) -> None:
        """Remove what an interrupted writer left (temporaries) and the leftovers of
        merges, when no reader holds ``.readers``."""
        if not self.events_dir.is_dir():
            return
        self._ensure_readers_file()
        removed = False
        with os.scandir(self.events_dir) as it:
            tmps = [e.path for e in it if e.name.startswith(".tmp-")]
        for p in tmps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
            removed = True
        # Checkpoints, the tree cache and the index are written the same way.
        for folder in (self.root / "checkpoints", self.root / "tree", self.index_dir):
            if folder.is_dir() and not folder.is_symlink():
                for f in folder.iterdir():
                    if f.name.startswith(".tmp-") and f.is_file():
                        f.unlink(missing_ok=True)
        if removed:
            _fsync_dir(self.events_dir)
        self.delete_superseded()

    def delete_superseded(self, known: Sequence[Segment] = ()) -> int:
        """Delete merge leftovers if no reader holds ``.readers``; returns how many.

        ``known`` are segments this writer has just merged into a live segment (their
        rows are the live rows by construction); any other leftover is deleted only if
        its rows are exactly the live segment's rows for its range, so that whatever
        else lies there stays as evidence for ``verify``. Caller holds the writer lock.
        """
        self._require_lock()
        layout = self.layout()
        if not layout.superseded:
            return 0
        gate = self._exclusive_readers()
        if gate is None:
            return 0  # a reader is reading: a later writer deletes them
        try:
            merged = {s.path for s in known}
            doomed: list[Path] = []
            cache: dict[Path, pa.Table | None] = {}
            for leftover, live in layout.superseded:
                if leftover.path in merged or self._same_events(leftover, live, cache):
                    doomed.append(leftover.path)
            for p in doomed:
                p.unlink(missing_ok=True)
                for q in _bundle_paths(self.index_dir, p.name):
                    with contextlib.suppress(OSError):
                        q.unlink()
            if doomed:
                _fsync_dir(self.events_dir)
            return len(doomed)
        except OSError as exc:
            raise _oserror(exc, "remove merged segments") from None
        finally:
            os.close(gate)  # (closing the descriptor releases the flock)

    def _same_events(
        self, leftover: Segment, live: Segment, cache: dict[Path, pa.Table | None]
    ) -> bool:
        """True when ``leftover`` holds exactly the rows ``live`` holds for its range."""
        try:
            if live.path not in cache:
                cache[live.path] = None
                cache[live.path] = pq.read_table(live.path, columns=list(COLUMNS))
            b = cache[live.path]
            a = pq.read_table(leftover.path, columns=list(COLUMNS))
        except (OSError, pa.ArrowException):
            return False
        return (
            b is not None
            and a.num_rows == leftover.count
            and a.equals(b.slice(leftover.first - live.first, a.num_rows))
        )

    # --- the readers' gate --------------------------------------------------------------
    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Hold ``.readers`` shared while reading, so that no segment this reader may
        have listed is deleted meanwhile (merged segments stay until every reader is
        done). Re-entrant, shared by the threads of this Store, and never a write: a
        ledger without ``.readers`` (written by an older version, or a read-only copy)
        is read unprotected."""
        with self._gate:
            if self._readers == 0:
                self._readers_fd = self._shared_readers()
            self._readers += 1
        try:
            yield
        finally:
            with self._gate:
                self._readers -= 1
                if self._readers == 0 and self._readers_fd is not None:
                    os.close(self._readers_fd)
                    self._readers_fd = None

    def _shared_readers(self) -> int | None:
        try:
            fd = os.open(self.root / READERS, os.O_RDONLY)
        except OSError:
            return None
        deadline = time.monotonic() + READERS_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.002)
            except OSError:  # a filesystem without flock: read unprotected
                os.close(fd)
                return None

    def _exclusive_readers(self) -> int | None:
        """``.readers`` held exclusively (no reader is reading), or None."""
        try:
            fd = os.open(self.root / READERS, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def _ensure_readers_file(self) -> None:
        p = self.root / READERS
        if not os.path.lexists(p):
            with contextlib.suppress(OSError):
                os.close(os.open(p, os.O_RDWR | os.O_CREAT, 0o644))

    # --- listing ----------------------------------------------------------------------
    def layout(self) -> Layout:
        segs: list[Segment] = []
        strays: list[Path] = []
        try:
            # scandir's file types come from the listing itself: no stat per entry.
            with os.scandir(self.events_dir) as it:
                entries = [(self.events_dir / e.name, e.is_file(follow_symlinks=False)) for e in it]
        except FileNotFoundError:
            raise CorruptLedgerError(f"{self.events_dir} is missing") from None
        except OSError as exc:  # not a folder, unreadable
            raise CorruptLedgerError(f"cannot list {self.events_dir}: {exc.strerror}") from None
        for p, regular in entries:
            m = SEGMENT_RE.fullmatch(p.name)
            if m and regular:
                first, last = int(m[1]), int(m[2])
                if last >= first:
                    segs.append(Segment(first, last, p))
                    continue
            # A segment a compaction deleted since iterdir() is gone, not a stray.
            if not p.name.startswith(".tmp-") and (p.is_symlink() or p.exists()):
                strays.append(p)
        # Longest first among equal starts, so a compacted segment wins over its parts.
        segs.sort(key=lambda s: (s.first, -s.last))
        live: list[Segment] = []
        superseded: list[tuple[Segment, Segment]] = []
        overlapping: list[tuple[Segment, Segment]] = []
        for s in segs:
            if live and s.first <= live[-1].last:
                if s.last <= live[-1].last:
                    superseded.append((s, live[-1]))
                else:
                    overlapping.append((live[-1], s))
                continue
            live.append(s)
        return Layout(live, superseded, overlapping, sorted(strays))

    def segments(self) -> list[Segment]:
        """Live segments, checked to tile 0..n-1 with no gap or overlap."""
        layout = self.layout()
        if layout.overlapping:
            a, b = layout.overlapping[0]
            raise CorruptLedgerError(f"segments {a.name} and {b.name} overlap; run ledger verify")
        expected = 0
        for s in layout.live:
            if s.first != expected:
                raise CorruptLedgerError(
                    f"events {expected}..{s.first - 1} are missing before {s.name}; run ledger verify"
                )
            expected = s.last + 1
        return layout.live

    # --- reading ----------------------------------------------------------------------
    def read_segment(
        self, seg: Segment, columns: Sequence[str] | None = None, dictionary: bool = False
    ) -> pa.Table:
        """One segment's columns; with ``dictionary``, the name columns (action, model,
        actor, key_id: a few thousand distinct values) dictionary-encoded, for
        :func:`pylist`."""
        try:
            # (ParquetFile, not read_table: that goes through pyarrow.dataset, whose
            # import alone costs a short command a tenth of a second)
            pf = pq.ParquetFile(seg.path)
            if dictionary:  # (only columns the file has: read_dictionary raises KeyError)
                have = set(pf.schema_arrow.names)
                names = [c for c in (columns or COLUMNS) if c in _NAMES and c in have]
                pf = pq.ParquetFile(seg.path, metadata=pf.metadata, read_dictionary=names)
            table = pf.read(columns=list(columns) if columns else None)
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise CorruptLedgerError(f"segment {seg.name} is unreadable: {_short(exc)}") from None
        return table

    def read(
        self,
        columns: Sequence[str] | None = None,
        model: str | None = None,
        last: int | None = None,
    ) -> pa.Table:
        """All live events (or ``model``'s), in seq order; with ``last``, only the last
        ``last`` of them, read from the newest segments back until that many are found.
        Retries if a compaction swaps files meanwhile (possible only when ``.readers``
        could not be held)."""
        for attempt in range(5):
            try:
                with self.reading():
                    tables = self._read_back(columns, model, last)
                break
            except FileNotFoundError:
                if attempt == 4:
                    raise CorruptLedgerError("segments kept disappearing while reading") from None
        if not tables:
            return SCHEMA.empty_table().select(list(columns) if columns else COLUMNS)
        try:
            return pa.concat_tables(tables)
        except pa.ArrowInvalid as exc:
            raise CorruptLedgerError(f"segments have incompatible columns: {_short(exc)}") from None

    def _read_back(
        self, columns: Sequence[str] | None, model: str | None, last: int | None
    ) -> list[pa.Table]:
        names = list(columns or COLUMNS)
        read = names if model is None or "model" in names else [*names, "model"]
        tables: list[pa.Table] = []
        found = 0
        for seg in reversed(self.segments()):
            if last is not None and found >= last:
                break
            table = self.read_segment(seg, read)
            if model is not None:
                import pyarrow.compute as pc

                table = table.filter(pc.equal(table["model"], model)).select(names)
            tables.append(table)
            found += table.num_rows
        tables.reverse()
        if last is not None and found > last:
            tables[0] = tables[0].slice(found - last)
        return tables

    def read_where(
        self,
        columns: Sequence[str],
        actions: AbstractSet[str],
        models: AbstractSet[str],
        before: int | None = None,
    ) -> pa.Table:
        """The live events whose action is in ``actions`` or whose model is in ``models``
        (and, if given, whose seq is below ``before``), in seq order.

        A one-off writer, or a ``verify --since``, needs only these rows. Each segment
        is read in one pass with the name columns dictionary-encoded, which costs about
        what a first pass over ``action`` and ``model`` alone would (measured: such a
        pass, to skip row groups, was slower, as a model's events are spread over nearly
        every row group). Those columns come back dictionary-encoded; :func:`pylist`
        decodes them cheaply. Only a big ledger's selection imports ``pyarrow.compute``
        and uses threads: the import costs a fresh ``ledger register`` on a small ledger
        more than its whole selection.
        """
        names = list(dict.fromkeys([*columns, "action", "model"]))
        for attempt in range(5):
            try:
                with self.reading():
                    segs = [s for s in self.segments() if before is None or s.first < before]
                    # A big selection is worth pyarrow.compute's import and the thread pool.
                    big = sum(s.count for s in segs) > _BIG_READ
                    parts = [
                        t for s in segs for t in self._where(s, names, actions, models, before, big)
                    ]
                break
            except FileNotFoundError:  # a compaction swapped files meanwhile
                if attempt == 4:
                    raise CorruptLedgerError("segments kept disappearing while reading") from None
        if not parts:
            return SCHEMA.empty_table().select(list(columns))
        try:
            return pa.concat_tables(parts).select(list(columns))
        except pa.ArrowInvalid as exc:
            raise CorruptLedgerError(f"segments have incompatible columns: {_short(exc)}") from None

    def _where(
        self,
        seg: Segment,
        names: list[str],
        actions: AbstractSet[str],
        models: AbstractSet[str],
        before: int | None,
        big: bool,
    ) -> list[pa.Table]:
        limit = None if before is None else before - seg.first
        try:
            pf = pq.ParquetFile(seg.path, read_dictionary=[c for c in names if c in _NAMES])
            md = pf.metadata
            rgs, at = [], 0
            for rg in range(md.num_row_groups):  # the row groups holding rows below limit
                if limit is not None and at >= limit:
                    break
                rgs.append(rg)
                at += md.row_group(rg).num_rows
            t = pf.read_row_groups(rgs, columns=names, use_threads=big)
            if limit is not None and t.num_rows > limit:  # rows are in seq order
                t = t.slice(0, limit)
            if big:
                import pyarrow.compute as pc

                mask = pc.or_(
                    pc.is_in(t["action"], value_set=pa.array(sorted(actions), pa.string())),
                    pc.is_in(t["model"], value_set=pa.array(sorted(models), pa.string())),
                )
                return [t.filter(pc.fill_null(mask, False))]
            rows = sorted(_members(t["action"], actions) | _members(t["model"], models))
            runs = _runs_of(rows)
            if len(runs) > _MAX_SLICES:
                return [t.take(pa.array(rows, pa.int64()))]
            # (slices share the table's buffers: no copy, and no compute kernel to import)
            return [t.slice(a, b - a) for a, b in runs]
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException, KeyError) as exc:
            raise CorruptLedgerError(f"segment {seg.name} is unreadable: {_short(exc)}") from None

    def tail(self) -> tuple[int, bytes, int]:
        """(number of events, hash of the last event, its ts in µs) from the last segment."""
        try:
            with self.reading():
                segs = self.segments()
                if not segs:
                    raise CorruptLedgerError(f"{self.events_dir} holds no segments")
                last = segs[-1]
                pf = pq.ParquetFile(last.path)
                # One small row group: pyarrow's thread pool only adds hand-off latency.
                rg = pf.read_row_group(
                    pf.num_row_groups - 1, columns=["seq", "ts", "hash"], use_threads=False
                )
        except (OSError, pa.ArrowException, IndexError) as exc:
            raise CorruptLedgerError(f"segment {last.name} is unreadable: {_short(exc)}") from None
        n = rg.num_rows
        if n == 0 or rg.column("seq")[n - 1].as_py() != last.last:
            raise CorruptLedgerError(f"segment {last.name} does not end at seq {last.last}")
        return last.last + 1, rg.column("hash")[n - 1].as_py(), micros(rg.column("ts"))[n - 1]

    def last_seq_at(self, ts: int) -> int:
        """The seq of the last event with ``ts`` (µs) at or before ``ts``, or -1 (the
        chain's timestamps never go backwards). Reads one segment's ``ts`` column."""
        with self.reading():
            for seg in reversed(self.segments()):
                try:
                    pf = pq.ParquetFile(seg.path)
                    first = pf.read_row_group(0, columns=["ts"], use_threads=False)["ts"]
                    if not len(first) or micros(first)[0] > ts:
                        continue
                    values = micros(pf.read(columns=["ts"], use_threads=False)["ts"])
                except (OSError, pa.ArrowException) as exc:
                    raise CorruptLedgerError(
                        f"segment {seg.name} is unreadable: {_short(exc)}"
                    ) from None
                return seg.first + bisect.bisect_right(values, ts) - 1
        return -1

    # --- writing ----------------------------------------------------------------------
    def _require_lock(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError("write attempted without holding the ledger lock")

    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    # --- signed checkpoints (``checkpoints/``): kept forever, never rewritten -----------

    def checkpoint_names(self) -> list[str]:
        """The files in ``checkpoints/`` (temporaries left out), sorted by name."""
        try:
            names = os.listdir(self.root / CHECKPOINTS_DIR)
        except OSError:
            return []
        return sorted(n for n in names if not n.startswith(".tmp-"))

    def checkpoint_path(self, name: str) -> Path:
        """Where ``checkpoints/NAME`` is (for messages and for ``SignedCheckpoint.path``)."""
        return self.root / CHECKPOINTS_DIR / name

    def read_checkpoint(self, name: str, limit: int) -> bytes:
        """At most ``limit + 1`` bytes of ``checkpoints/NAME`` (OSError if unreadable)."""
        with open(self.root / CHECKPOINTS_DIR / name, "rb") as f:
            return f.read(limit + 1)

    def write_checkpoint(self, name: str, data: bytes) -> None:
        """Durably add ``checkpoints/NAME`` unless it is already there (caller holds the
        lock): a checkpoint, once issued, is evidence and is never replaced."""
        self._require_lock()
        folder = self.root / CHECKPOINTS_DIR
        try:
            folder.mkdir()
            _fsync_dir(self.root)
        except FileExistsError:
            pass
        if not os.path.lexists(folder / name):
            self._write_atomic(folder / name, data)

    # --- caches derived from the events (``tree/``): untrusted, checked on use ---------

    def read_cached(self, name: str) -> bytes | None:
        """The bytes of cache file ``tree/NAME``, or None if it cannot be read."""
        try:
            return (self.root / CACHE_DIR / name).read_bytes()
        except OSError:
            return None

    def cached_names(self, prefix: str = "") -> list[str]:
        """The cache files in ``tree/`` whose names start with ``prefix``, sorted."""
        try:
            names = os.listdir(self.root / CACHE_DIR)
        except OSError:
            return []
        return sorted(n for n in names if n.startswith(prefix) and not n.startswith(".tmp-"))

    def write_cached(self, name: str, data: bytes) -> None:
        """Replace cache file ``tree/NAME`` atomically (caller holds the lock)."""
        self._require_lock()
        folder = self.root / CACHE_DIR
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        self._write_atomic(folder / name, data)

    def drop_cached(self, name: str) -> None:
        """Delete cache file ``tree/NAME`` if it is there (caller holds the lock)."""
        self._require_lock()
        with contextlib.suppress(FileNotFoundError):
            (self.root / CACHE_DIR / name).unlink()

    def write_segment(self, table: pa.Table, index: pa.Table | None = None) -> Segment:
        """Durably add a segment, then (a cache: not fsynced, and a failure to write it
        fails nothing) its event ``index``. Caller holds the lock and has checked the
        seq range."""
        self._require_lock()
        seqs = table.column("seq")
        first, last = seqs[0].as_py(), seqs[len(seqs) - 1].as_py()
        final = self.events_dir / segment_name(first, last)
        if os.path.lexists(final):  # never clobber: whatever is there is verify's evidence
            raise CorruptLedgerError(
                f"events/{final.name} already exists but is not a live segment; run ledger verify"
            )
        tmp = self.events_dir / f".tmp-{os.getpid()}-{final.name}"
        renamed = False
        try:
            with open(tmp, "wb") as f:
                pq.write_table(
                    table,
                    f,
                    compression="zstd",
                    row_group_size=ROW_GROUP,
                    use_dictionary=_DICT_COLUMNS,
                    write_statistics=_STATS_COLUMNS,
                )
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, final)
            renamed = True
            _fsync_dir(self.events_dir)
            if table.num_rows <= _KEEP_ROWS:
                st = os.stat(final)
                kept = ((st.st_ino, st.st_size, st.st_mtime_ns), table, index)
                self._written[final.name] = kept
                while len(self._written) > _KEEP_SEGMENTS:  # merges off, or another layout
                    del self._written[next(iter(self._written))]
        except OSError as exc:
            # A write that reports failure leaves nothing behind, even when the failure
            # came after the rename (the folder's fsync): the caller was told it failed.
            with contextlib.suppress(OSError):
                (final if renamed else tmp).unlink()
            raise _oserror(exc, f"write segment {final.name}") from None
        if index is not None and table.num_rows >= INDEX_MIN_ROWS:
            self._write_index(final.name, index)
        return Segment(first, last, final)

    def _write_index(self, name: str, index: pa.Table) -> None:
        """Write the bundle of a segment's index rows (a cache: not fsynced; a failure
        leaves at most a file readers will not take)."""
        tmps: list[Path] = []
        try:
            self.index_dir.mkdir(exist_ok=True)
            for path, table in zip(
                _bundle_paths(self.index_dir, name), eventindex.bundle_tables(index), strict=True
            ):
                tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
                tmps.append(tmp)
                with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
                    w.write_table(table)
                os.replace(tmp, path)
        except (OSError, pa.ArrowException):
            for tmp in tmps:
                with contextlib.suppress(OSError):
                    tmp.unlink()

    # --- the event index (ledger/eventindex.py) ----------------------------------------
    def read_index(self, seg: Segment) -> bundles.SortedBundle | None:
        """The index bundle beside ``seg`` (memory-mapped), or None if it is missing or
        does not fit it."""
        tables = self.index_tables(seg)
        if tables is None:
            return None
        try:
            return bundles.SortedBundle(*tables)
        except (pa.ArrowException, ValueError, KeyError):
            return None

    def index_tables(self, seg: Segment) -> tuple[pa.Table, pa.Table] | None:
        """The two tables of the bundle beside ``seg`` (memory-mapped) if readers would
        take them (present, readable, for exactly its seqs), else None."""
        if seg.count < INDEX_MIN_ROWS:
            return None
        try:
            events, edges = (
                pa.ipc.open_file(pa.memory_map(str(p))).read_all()
                for p in _bundle_paths(self.index_dir, seg.name)
            )
            if not bundles.SortedBundle.fits(events, edges, seg.first, seg.last):
                return None
            return events, edges
        except (OSError, pa.ArrowException, ValueError, KeyError):
            return None

    def index_files(self, seg: Segment) -> tuple[Path, Path]:
        """Where the bundle of ``seg`` lives (events table, edges table)."""
        return _bundle_paths(self.index_dir, seg.name)

    def bundles(self, since: int = 0) -> list[Bundle]:
        """The index of every live segment (holding events from ``since`` on), in seq
        order: the bundle beside it, or one derived from the segment where that is
        missing or does not fit. Hold :meth:`reading` while using them."""
        for attempt in range(5):
            try:
                with self.reading():
                    return [self._bundle(s) for s in self.segments() if s.last >= since]
            except FileNotFoundError:
                if attempt == 4:
                    raise CorruptLedgerError("segments kept disappearing while reading") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _bundle(self, seg: Segment) -> Bundle:
        bundle = self.read_index(seg)
        if bundle is None:
            kept = self._kept(seg)
            index = kept[1] if kept is not None else None
            if index is None:
                index = eventindex.derive(self.read_segment(seg, eventindex.SOURCE_COLUMNS))
            return bundles.RowBundle(index)
        return bundle

    def _index_of(self, seg: Segment, rows: pa.Table) -> pa.Table:
        """``seg``'s index rows (SCHEMA, seq order) for a merge: kept from writing the
        segment, or derived from its rows."""
        kept = self._written.get(seg.name)
        if kept is not None and kept[2] is not None and kept[1] is rows:
            return kept[2]
        return eventindex.derive(rows)

    def append(self, table: pa.Table) -> list[Segment]:
        """Durably add events, one segment per SEGMENT_EVENTS-aligned block they touch,
        so that compaction can later make every full block a single segment."""
        out = []
        first = table.column("seq")[0].as_py()
        index = eventindex.derive(table)
        offset = 0
        while offset < table.num_rows:
            room = SEGMENT_EVENTS - (first + offset) % SEGMENT_EVENTS
            part = table.slice(offset, room)
            out.append(self.write_segment(part, index.slice(offset, part.num_rows)))
            offset += room
        return out

    def compact(self) -> tuple[int, int]:
        """Merge small segments into aligned segments of SEGMENT_EVENTS events (the last,
        incomplete block too). Returns (segments before, segments after). Event rows
        are copied unchanged; the replaced segments are deleted when no reader reads."""
        self._require_lock()
        segs = self.segments()
        groups: list[tuple[int, int]] = []
        i = 0
        while i < len(segs):
            j = i + 1
            while (
                j < len(segs) and segs[j].first // SEGMENT_EVENTS == segs[i].first // SEGMENT_EVENTS
            ):
                j += 1
            if j - i > 1:
                groups.append((i, j))
            i = j
        self._merge(segs, groups)
        return len(segs), len(segs) - sum(j - i - 1 for i, j in groups)

    def maintain(self, fanout: int | None = None) -> int:
        """Run the merges :func:`ledger.compaction.plan` calls for (after an append);
        returns how many segments were merged away. Caller holds the writer lock.
        ``$LEDGER_AUTOCOMPACT=0`` turns automatic merges off; ``$LEDGER_COMPACT_FANOUT``
        sets the fanout (see docs/FORMAT.md §5.2)."""
        self._require_lock()
        fanout = merge_fanout() if fanout is None else fanout
        if fanout == 0:
            return 0
        segs = self.segments()
        groups = compaction.plan([(s.first, s.last) for s in segs], fanout, SEGMENT_EVENTS)
        self._merge(segs, groups)
        self._repair_one_index()
        return sum(j - i - 1 for i, j in groups)

    def _repair_one_index(self) -> None:
        """Write the index of one live segment that lacks it (a ledger written before
        the index existed, or a crash between a segment and its index): an old ledger
        is indexed over its next appends, one segment each, never all in one."""
        try:
            have = {e.name for e in os.scandir(self.index_dir)}
        except OSError:
            have = set()
        for seg in self.segments():
            # (one that does not fit is rebuilt by its next merge)
            if seg.count >= INDEX_MIN_ROWS and not all(
                p.name in have for p in _bundle_paths(self.index_dir, seg.name)
            ):
                rows = self.read_segment(seg, eventindex.SOURCE_COLUMNS)
                self._write_index(seg.name, eventindex.derive(rows))
                return

    def _merge(self, segs: list[Segment], groups: list[tuple[int, int]]) -> None:
        """Merge ``segs[i:j]`` for each group, then delete the parts if no reader reads."""
        merged: list[Segment] = []
        for i, j in groups:
            parts = segs[i:j]
            rows = [self._rows_of(s) for s in parts]
            index = pa.concat_tables(
                [self._index_of(s, r) for s, r in zip(parts, rows, strict=True)]
            )
            self.write_segment(pa.concat_tables(rows), index)
            merged.extend(parts)
        for s in merged:
            self._written.pop(s.name, None)
        if merged:
            self.delete_superseded(merged)

    def _kept(self, seg: Segment) -> tuple[pa.Table, pa.Table | None] | None:
        """(rows, index rows) of a segment this Store wrote, if the file is still the one
        written (same inode, size and mtime: segments are never modified in place)."""
        kept = self._written.get(seg.name)
        if kept is None:
            return None
        try:
            st = os.stat(seg.path)
        except OSError:
            st = None
        if st is not None and kept[0] == (st.st_ino, st.st_size, st.st_mtime_ns):
            return kept[1], kept[2]
        del self._written[seg.name]
        return None

    def _rows_of(self, seg: Segment) -> pa.Table:
        """A segment's rows: kept from writing it, else read."""
        kept = self._kept(seg)
        return kept[0] if kept is not None else self.read_segment(seg)


def _bundle_paths(folder: Path, segment: str) -> tuple[Path, Path]:
    """The two files of a segment's index bundle (events, edges)."""
    stem = segment.removesuffix(".parquet")
    return folder / f"{stem}.events.arrow", folder / f"{stem}.edges.arrow"


def merge_fanout() -> int:
    """The merge fanout from the environment: 0 when automatic merges are off."""
    if os.environ.get("LEDGER_AUTOCOMPACT", "1").strip().lower() in ("0", "off", "no", "false"):
        return 0
    text = os.environ.get("LEDGER_COMPACT_FANOUT")
    if text is None:
        return compaction.FANOUT
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 2 <= value <= 64:
        raise InputError(
            f"LEDGER_COMPACT_FANOUT must be a whole number from 2 to 64, got {text[:40]!r}"
        )
    return value


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


#: Segments of fewer events have no index file: deriving their index on the fly costs
#: a reader less than opening one more file, and their writer a Parquet file per append.
INDEX_MIN_ROWS = 1024
#: Segments of at most this many rows are kept in memory by the Store that wrote them,
#: for the merges that follow (a 4,096-row segment is about 4 MB).
_KEEP_ROWS = 4096
_KEEP_SEGMENTS = 64
#: String columns that repeat a few thousand values over a million rows.
_NAMES = frozenset({"action", "model", "actor", "key_id"})
#: Above this many runs of wanted rows in a segment, one ``take`` beats many slices.
_MAX_SLICES = 32
#: Above this many rows, a selection imports ``pyarrow.compute`` and uses threads.
_BIG_READ = 300_000


def _runs_of(rows: list[int]) -> list[tuple[int, int]]:
    """Sorted row numbers as half-open runs of consecutive rows."""
    runs: list[tuple[int, int]] = []
    for r in rows:
        if runs and runs[-1][1] == r:
            runs[-1] = (runs[-1][0], r + 1)
        else:
            runs.append((r, r + 1))
    return runs


def _members(column: pa.ChunkedArray, wanted: AbstractSet[str]) -> set[int]:
    """The positions of the rows whose value is in ``wanted`` (never a null). For a
    dictionary column the test runs once per distinct value, then per row only as an
    integer lookup: no ``pyarrow.compute`` and no numpy (neither is a dependency)."""
    rows: set[int] = set()
    offset = 0
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            hit = {i for i, v in enumerate(chunk.dictionary.to_pylist()) if v in wanted}
            if hit:
                codes = chunk.indices.to_pylist()  # a null is None, never in ``hit``
                rows.update(offset + i for i, code in enumerate(codes) if code in hit)
        else:
            values = chunk.to_pylist()
            rows.update(offset + i for i, v in enumerate(values) if v in wanted)
        offset += len(chunk)
    return rows


def pylist(column: pa.ChunkedArray) -> list[Any]:
    """``column.to_pylist()``, faster for dictionary chunks: each distinct value becomes
    one Python object, shared by its rows, instead of one object per row."""
    out: list[Any] = []
    for chunk in column.chunks:
        if pa.types.is_dictionary(chunk.type):
            values = [*chunk.dictionary.to_pylist(), None]  # a null index picks the None
            nulls = len(values) - 1
            out.extend(values[nulls if i is None else i] for i in chunk.indices.to_pylist())
        else:
            out.extend(chunk.to_pylist())
    return out


def micros(column: pa.ChunkedArray) -> list[int]:
    """A ``ts`` column as µs since the epoch. A µs column is reinterpreted as it is
    (``cast`` would import ``pyarrow.compute``, slow to import); other units are cast."""
    if pa.types.is_timestamp(column.type) and column.type.unit == "us":
        return [v for c in column.chunks for v in c.view(pa.int64()).to_pylist()]
    return column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()


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
