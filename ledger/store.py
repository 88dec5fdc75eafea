"""Parquet segments on disk: the only module that reads or writes the ledger folder.

Layout::

    LEDGER/ledger.json                          identity: format, origin, genesis hash
    LEDGER/events/<first>-<last>.parquet        immutable segments, 12-digit seq bounds
    LEDGER/.lock                                flock(2) target serialising writers

A segment is written to a dot-named temporary file in ``events/``, fsynced, renamed
into place and the folder fsynced; only then is the append acknowledged. Readers look
only at names matching the segment pattern, so a half-written temporary file is never
mistaken for a segment. Compaction writes the merged segment before deleting the ones
it replaces; a segment whose range lies inside another's is a leftover of an
interrupted compaction and is ignored by readers (``verify`` checks that its events
are byte-identical to the live ones) and deleted by the next writer.
"""

from __future__ import annotations

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

from . import events as E
from .errors import CorruptLedgerError, InputError, NotFoundError, StorageError
from .events import FORMAT

IDENTITY = "ledger.json"
EVENTS = "events"
LOCK = ".lock"
SEGMENT_RE = re.compile(r"(\d{12})-(\d{12})\.parquet")
#: Compaction builds segments of this many events aligned on multiples of it, so each
#: full segment is a complete Merkle subtree.
SEGMENT_EVENTS = 1 << 16
ROW_GROUP = 1 << 14
#: Seconds a writer waits for the lock; $LEDGER_LOCK_TIMEOUT overrides it (read per lock).
LOCK_TIMEOUT = 60.0

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


class Store:
    """A ledger folder on disk."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.events_dir = self.root / EVENTS
        # Per thread: the lock is re-entrant for the thread holding it, and another thread
        # sharing this Store must take the flock itself (it then waits), or two threads
        # would write the same segment at once.
        self._local = threading.local()

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
                self.write_segment(genesis)
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
        """Remove what an interrupted writer left: temporaries and superseded segments."""
        if not self.events_dir.is_dir():
            return
        removed = False
        for p in self.events_dir.iterdir():
            if p.name.startswith(".tmp-"):
                p.unlink(missing_ok=True)
                removed = True
        # Checkpoints and the tree cache are written the same way, beside the events.
        for folder in (self.root / "checkpoints", self.root / "tree"):
            if folder.is_dir() and not folder.is_symlink():
                for p in folder.iterdir():
                    if p.name.startswith(".tmp-") and p.is_file():
                        p.unlink(missing_ok=True)
        layout = self.layout()
        for leftover, live in layout.superseded:
            # Only a true compaction leftover goes; anything else is evidence for verify.
            if self._same_events(leftover, live):
                leftover.path.unlink(missing_ok=True)
                removed = True
        if removed:
            _fsync_dir(self.events_dir)

    def _same_events(self, leftover: Segment, live: Segment) -> bool:
        """True when ``leftover`` holds exactly the events ``live`` holds for its range."""
        try:
            a = pq.read_table(leftover.path, columns=["seq", "hash"])
            b = pq.read_table(live.path, columns=["seq", "hash"])
        except (OSError, pa.ArrowException):
            return False
        return a.num_rows == leftover.count and a.equals(
            b.slice(leftover.first - live.first, a.num_rows)
        )

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
    def read_segment(self, seg: Segment, columns: Sequence[str] | None = None) -> pa.Table:
        try:
            table = pq.read_table(seg.path, columns=list(columns) if columns else None)
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException) as exc:
            raise CorruptLedgerError(f"segment {seg.name} is unreadable: {_short(exc)}") from None
        return table

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All live events, in seq order. Retries if a compaction swaps files meanwhile."""
        for attempt in range(5):
            try:
                segs = self.segments()
                tables = [self.read_segment(s, columns) for s in segs]
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

    def read_where(
        self, columns: Sequence[str], actions: AbstractSet[str], models: AbstractSet[str]
    ) -> pa.Table:
        """The live events whose action is in ``actions`` or whose model is in ``models``.

        A one-off writer needs only these rows. The narrow ``action`` and ``model``
        columns are read first, and the wide ones (the payload) only from the row groups
        that hold a wanted row. No ``pyarrow.compute``: importing it costs a fresh
        ``ledger register`` more than this whole selection.
        """
        names = list(dict.fromkeys([*columns, "action", "model"]))
        for attempt in range(5):
            try:
                parts = [t for s in self.segments() for t in self._where(s, names, actions, models)]
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
        self, seg: Segment, names: list[str], actions: AbstractSet[str], models: AbstractSet[str]
    ) -> list[pa.Table]:
        out = []
        try:
            pf = pq.ParquetFile(seg.path)
            narrow = pq.ParquetFile(seg.path, read_dictionary=["action", "model"])
            for rg in range(pf.num_row_groups):
                t = narrow.read_row_group(rg, columns=["action", "model"], use_threads=False)
                rows = sorted(_members(t["action"], actions) | _members(t["model"], models))
                if not rows:
                    continue
                full = pf.read_row_group(rg, columns=names, use_threads=False)
                start = prev = rows[0]
                for i in [*rows[1:], None]:  # runs of consecutive rows, sliced without copies
                    if i is not None and i == prev + 1:
                        prev = i
                        continue
                    out.append(full.slice(start, prev - start + 1))
                    if i is not None:
                        start = prev = i
        except FileNotFoundError:
            raise
        except (OSError, pa.ArrowException, KeyError) as exc:
            raise CorruptLedgerError(f"segment {seg.name} is unreadable: {_short(exc)}") from None
        return out

    def tail(self) -> tuple[int, bytes, int]:
        """(number of events, hash of the last event, its ts in µs) from the last segment."""
        segs = self.segments()
        if not segs:
            raise CorruptLedgerError(f"{self.events_dir} holds no segments")
        last = segs[-1]
        try:
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

    def write_segment(self, table: pa.Table) -> Segment:
        """Durably add a segment. Caller holds the lock and has checked the seq range."""
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
        except OSError as exc:
            # A write that reports failure leaves nothing behind, even when the failure
            # came after the rename (the folder's fsync): the caller was told it failed.
            with contextlib.suppress(OSError):
                (final if renamed else tmp).unlink()
            raise _oserror(exc, f"write segment {final.name}") from None
        return Segment(first, last, final)

    def append(self, table: pa.Table) -> list[Segment]:
        """Durably add events, one segment per SEGMENT_EVENTS-aligned block they touch,
        so that compaction can later make every full block a single segment."""
        out = []
        first = table.column("seq")[0].as_py()
        offset = 0
        while offset < table.num_rows:
            room = SEGMENT_EVENTS - (first + offset) % SEGMENT_EVENTS
            out.append(self.write_segment(table.slice(offset, room)))
            offset += room
        return out

    def compact(self) -> tuple[int, int]:
        """Merge small segments into aligned segments of SEGMENT_EVENTS events.

        Returns (segments before, segments after). Event rows are copied unchanged.
        """
        self._require_lock()
        segs = self.segments()
        before = len(segs)
        groups: list[list[Segment]] = []
        for s in segs:
            block = s.first // SEGMENT_EVENTS
            if (
                groups
                and groups[-1][0].first // SEGMENT_EVENTS == block == s.last // SEGMENT_EVENTS
            ):
                groups[-1].append(s)
            else:
                groups.append([s])
        after = 0
        for g in groups:
            after += 1
            if len(g) == 1:
                continue
            table = pa.concat_tables([self.read_segment(s) for s in g])
            self.write_segment(table)
            try:
                for s in g:
                    s.path.unlink()
                _fsync_dir(self.events_dir)
            except OSError as exc:
                raise _oserror(exc, "remove compacted segments") from None
        return before, after


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


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
    cols = [table[c].to_pylist() for c in STATE_COLUMNS if c != "ts"]
    for i, (seq, action, model, version, actor, kid, payload) in enumerate(zip(*cols, strict=True)):
        try:
            p = json.loads(payload)
        except (ValueError, TypeError):
            raise CorruptLedgerError(
                f"seq {seq}: payload column is not JSON; run ledger verify"
            ) from None
        yield E.Event(seq, ts[i], origin, action, actor, kid, p, "", model, version)
