"""The one interface to a ledger folder's files: :class:`Store`.

Every read and write of the folder goes through a Store: segments, identity, checkpoints,
the ``tree/`` caches, the index, locks and temporaries (a second backend is a second
class with this interface). What the folder and a segment are is :mod:`ledger.segments`;
the locks are :mod:`ledger.locks`; what is done to one segment file or index bundle is
:mod:`ledger.segmentio`; turning rows into events and State is :mod:`ledger.replay`.

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

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

# (``from M import X as X``: re-exported, for the callers that import X from here)
from . import compaction, eventindex, merges, outfile, segmentio
from . import journal as J
from . import segments as S
from .errors import CorruptLedgerError, InputError, NotFoundError, storage_error
from .locks import ReadersGate, WriterLock
from .merges import merge_fanout
from .replay import replay as replay
from .replay import typed_events as typed_events
from .segments import COLUMNS as COLUMNS
from .segments import INDEX_MIN_ROWS, SEGMENT_EVENTS, Layout, Segment, segment_name
from .segments import ROW_GROUP as ROW_GROUP
from .segments import SCHEMA as SCHEMA
from .segments import SEGMENT_RE as SEGMENT_RE
from .segments import STATE_COLUMNS as STATE_COLUMNS
from .segments import micros as micros
from .segments import pylist as pylist
from .storecaches import SideFiles
from .storejournal import JournalMethods
from .storereads import EventReads

#: (the names benchmarks/ write segments with)
_DICT_COLUMNS, _STATS_COLUMNS = S.DICT_COLUMNS, S.STATS_COLUMNS
_T = TypeVar("_T")


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


def _all_segments(layout: Layout) -> list[Segment]:
    return [*layout.live, *(s for s, _ in layout.superseded), *(b for _, b in layout.overlapping)]


def _copy(layout: Layout) -> Layout:
    return Layout(
        list(layout.live),
        list(layout.superseded),
        list(layout.overlapping),
        list(layout.strays),
        layout.journal,
    )


class Store(EventReads, JournalMethods, SideFiles):
    """A ledger folder on disk: the one storage interface. Its public methods, by
    section below, are what a second backend implements; everything else is how this
    one keeps the folder's on-disk protocol (module docstring)."""

    def __init__(self, root: str | os.PathLike[str], journal: bool = False) -> None:
        """``journal``: acknowledge small appends from the journal (FORMAT.md §5.4), for a
        writer that appends a few events at a time for long (the MLflow store)."""
        self.root = Path(root)
        outfile.protect(self.root)  # (no --out of this process may land in it)
        self.events_dir = self.root / S.EVENTS
        self.journal_path = self.events_dir / S.JOURNAL
        self._journaling = journal
        self._journal = J.Journal(self.journal_path)
        self._writer = WriterLock(self.root)
        self._readers = ReadersGate(self.root)
        # Small segments this Store wrote, so that the merges after an append need not
        # read back what was just written.
        self._written = merges.Kept()
        self.index_dir = self.root / S.INDEX
        # The listing of events/ while this Store holds the writer lock: only the holder
        # changes events/ then, so it is listed once per lock and kept up to date by
        # this Store's own writes and deletions (a single append listed it six times).
        self._listing: Layout | None = None

    # --- identity (``ledger.json``) ---------------------------------------------------
    def read_identity(self) -> dict[str, Any]:
        p = self.root / S.IDENTITY
        if not self.root.is_dir():
            raise NotFoundError(f"{self.root} is not a ledger: no such folder")
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{self.root} is not a ledger: {S.IDENTITY} is missing") from None
        except OSError as exc:
            raise CorruptLedgerError(f"cannot read {p}: {exc.strerror}") from None
        return S.parse_identity(data, p)

    def check_new(self) -> None:
        """InputError unless :meth:`create` may make a ledger here; writes nothing."""
        if (self.root / S.IDENTITY).exists():
            raise InputError(f"{self.root} is already a ledger")
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            what = "is not empty" if self.root.is_dir() else "is a file"
            raise InputError(f"{self.root} exists and {what}; choose a new folder")

    def create(self, identity: dict[str, Any], genesis: pa.Table) -> None:
        """Create a ledger folder (identity file, genesis segment); a failure leaves none."""
        self.check_new()
        existed, owned = self.root.exists(), False
        try:
            self.events_dir.mkdir(parents=True, exist_ok=True)
            with self.lock():
                if (self.root / S.IDENTITY).exists() or self._names(S.EVENTS):
                    raise InputError(f"{self.root} is already a ledger")  # (a racing init)
                owned = True
                self._readers.ensure()
                self.write_segment(genesis, eventindex.derive(genesis))
                self._write_atomic(self.root / S.IDENTITY, S.identity_bytes(identity))
        except BaseException as exc:
            self._uncreate(existed, owned)
            if isinstance(exc, OSError):
                raise storage_error(exc, f"create the ledger in {self.root}") from None
            raise

    def _uncreate(self, existed: bool, owned: bool) -> None:
        """Remove what a failed create wrote: all of it once it held the lock on a folder no
        other init had taken; before that, only the folders it made, if they are empty."""
        made = [self.events_dir] + ([] if existed else [self.root])
        for p in (list(self.root.iterdir()) if existed else [self.root]) if owned else made:
            with contextlib.suppress(OSError):
                if not owned:
                    p.rmdir()
                elif p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:
                    p.unlink()

    # --- locks: one writer at a time; no segment deleted under a reader ---------------
    @contextlib.contextmanager
    def lock(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the writer lock. flock is released by the kernel if the holder dies,
        so a crashed writer can never leave a stale lock behind."""
        with self._writer.hold(timeout) as first:  # (re-entrant within one Store)
            if not first:
                yield
                return
            self._listing = None
            try:
                self._clean()
                yield
            finally:
                self._listing = None

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Hold ``.readers`` shared while reading, so that no segment this reader may
        have listed is deleted meanwhile (merged segments stay until every reader is
        done). Re-entrant, shared by the threads of this Store, and never a write: a
        ledger without ``.readers`` (written by an older version, or a read-only copy)
        is read unprotected."""
        return self._readers.shared(self._shared_readers)

    def delete_superseded(self, known: Sequence[Segment] = ()) -> int:
        """Delete merge leftovers if no reader holds ``.readers``; returns how many.

        ``known`` are segments this writer has just merged into a live segment (their
        rows are the live rows by construction); any other leftover is deleted only if
        its rows are exactly the live segment's rows for its range, so that whatever
        else lies there stays as evidence for ``verify``. Caller holds the writer lock.
        """
        self._require_lock()
        layout = self._files()
        if not layout.superseded:
            return 0
        gate = self._readers.exclusive()
        if gate is None:
            return 0  # a reader is reading: a later writer deletes them
        try:
            merged = {s.path for s in known}
            cache: dict[Path, pa.Table | None] = {}
            doomed = [
                leftover
                for leftover, live in layout.superseded
                if leftover.path in merged or segmentio.same_rows(leftover, live, cache)
            ]
            # (No fsync of the folder after: a deletion a power cut undoes brings back a
            # leftover, which readers ignore and the next writer deletes again.)
            for seg in doomed:
                seg.path.unlink(missing_ok=True)
                self._relisted(gone=seg.path)
                if seg.count >= INDEX_MIN_ROWS:  # (smaller ones have no bundle)
                    for q in S.bundle_paths(self.index_dir, seg.name):
                        with contextlib.suppress(OSError):
                            q.unlink()
            return len(doomed)
        except OSError as exc:
            raise storage_error(exc, "remove merged segments") from None
        finally:
            os.close(gate)  # (closing the descriptor releases the flock)

    def _require_lock(self) -> None:
        if not self._writer.held:
            raise RuntimeError("write attempted without holding the ledger lock")

    def _shared_readers(self) -> int | None:
        return self._readers.take_shared()

    def _clean(self) -> None:
        """Remove what an interrupted writer left (temporaries) and the leftovers of
        merges, when no reader holds ``.readers``."""
        if not self.events_dir.is_dir():
            return
        self._readers.ensure()
        removed = False
        with os.scandir(self.events_dir) as it:
            tmps = [e.path for e in it if e.name.startswith(".tmp-")]
        for p in tmps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
            removed = True
        # Checkpoints, the tree cache and the index are written the same way.
        for folder in (self.root / S.CHECKPOINTS_DIR, self.root / S.CACHE_DIR, self.index_dir):
            if folder.is_dir() and not folder.is_symlink():
                for f in folder.iterdir():
                    if f.name.startswith(".tmp-") and f.is_file():
                        f.unlink(missing_ok=True)
        if removed:
            _fsync_dir(self.events_dir)
        self.delete_superseded()
        if self._files().journal is not None:
            # An empty journal (a crash while creating it), or one whose events a segment
            # holds too (a crash while moving them there), goes.
            segs = self._parquet_segments() if self._files().live else []
            with contextlib.suppress(CorruptLedgerError):
                if self._live_journal(segs[-1].last + 1 if segs else 0) is None:
                    self._drop_journal()

    def head_file(self) -> Path | None:
        """The file the ledger's last event is in, as the holder's listing has it (the
        journal, if it is there): what a writer's memo of the tail is checked against."""
        files = self._files()
        if files.journal is not None:
            return files.journal
        return files.live[-1].path if files.live else None

    # --- listing ``events/`` ----------------------------------------------------------
    def layout(self) -> Layout:
        """What ``events/`` holds, as readers see it: live segments (the journal's
        complete records among them, as a Segment whose ``source`` is the journal),
        leftovers, overlaps and strays."""
        for _attempt in range(5):
            files = self._files()
            if files.journal is None:
                return files
            try:
                contents = self._journal.contents()
            except FileNotFoundError:  # (moved into a segment since the listing)
                self._listing = None
                continue
            except OSError as exc:
                raise CorruptLedgerError(
                    f"cannot read events/{S.JOURNAL}: {exc.strerror}"
                ) from None
            if contents is None or not contents.table.num_rows:
                return files
            return Layout.of(
                [*_all_segments(files), self._journal_segment(contents)],
                files.strays,
                files.journal,
            )
        raise CorruptLedgerError(f"events/{S.JOURNAL} kept disappearing while reading")

    def _files(self) -> Layout:
        """The Parquet segments and strays of ``events/``, and whether the journal is
        there; listed once per lock by the holder, and kept up to date by its writes."""
        held = self._writer.held
        if held and self._listing is not None:
            return _copy(self._listing)
        layout = self._list()
        if held:
            self._listing = _copy(layout)
        return layout

    def _relisted(
        self, new: Segment | None = None, gone: Path | None = None, journal: bool | None = None
    ) -> None:
        """Keep the lock holder's listing in step with a segment it added or deleted, or
        the journal it made or removed."""
        if self._listing is None:
            return
        segs = [s for s in _all_segments(self._listing) if s.path != gone]
        have = self._listing.journal
        if journal is not None:
            have = self.journal_path if journal else None
        self._listing = Layout.of(
            segs + ([new] if new is not None else []), self._listing.strays, have
        )

    def _list(self) -> Layout:
        segs: list[Segment] = []
        strays: list[Path] = []
        journal = None
        try:
            # scandir's file types come from the listing itself: no stat per entry.
            with os.scandir(self.events_dir) as it:
                entries = [(self.events_dir / e.name, e.is_file(follow_symlinks=False)) for e in it]
        except FileNotFoundError:
            raise CorruptLedgerError(f"{self.events_dir} is missing") from None
        except OSError as exc:  # not a folder, unreadable
            raise CorruptLedgerError(f"cannot list {self.events_dir}: {exc.strerror}") from None
        for p, regular in entries:
            seg = S.segment_at(p) if regular else None
            if seg is not None:
                segs.append(seg)
            elif regular and p.name == S.JOURNAL:
                journal = p
            # A segment a compaction deleted since the listing is gone, not a stray.
            elif not p.name.startswith(".tmp-") and (p.is_symlink() or p.exists()):
                strays.append(p)
        return Layout.of(segs, strays, journal)

    def _parquet_segments(self) -> list[Segment]:
        """The live Parquet segments, checked to tile 0..n-1 (the writer's merges)."""
        return self._files().tiling()

    def segments(self) -> list[Segment]:
        """Live segments, checked to tile 0..n-1 with no gap or overlap."""
        return self.layout().tiling()

    # --- reading segments -------------------------------------------------------------
    def read_segment(
        self, seg: Segment, columns: Sequence[str] | None = None, dictionary: bool = False
    ) -> pa.Table:
        """One segment's columns; with ``dictionary``, the name columns (action, model,
        actor, key_id: a few thousand distinct values) dictionary-encoded, for
        :func:`pylist`."""
        return segmentio.read(seg, columns, dictionary)

    def segment_columns(self, seg: Segment) -> list[tuple[str, str, str, int]]:
        """One segment's columns as its file declares them (for ``verify``'s schema check)."""
        return segmentio.parquet_columns(seg)

    def tail(self) -> tuple[int, bytes, int]:
        """(number of events, hash of the last event, its ts in µs), from the journal's
        last record or else the last segment."""
        with self.reading():
            segs = self._parquet_segments()
            if not segs:
                raise CorruptLedgerError(f"{self.events_dir} holds no segments")
            live = self._live_journal(segs[-1].last + 1)
            if live is not None:
                t = live.table
                n = t.num_rows
                return live.last + 1, t.column("hash")[n - 1].as_py(), micros(t["ts"])[n - 1]  # type: ignore[operator]
            return segmentio.tail(segs[-1])

    def last_seq_at(self, ts: int) -> int:
        """The seq of the last event with ``ts`` (µs) at or before ``ts``, or -1 (the
        chain's timestamps never go backwards). Reads one segment's ``ts`` column."""
        with self.reading():
            for seg in reversed(self.segments()):
                seq = segmentio.last_at(seg, ts)
                if seq is not None:
                    return seq
        return -1

    def _again(self, read: Callable[[], _T]) -> _T:
        """``read()`` holding :meth:`reading`; again, from a fresh listing, if a segment
        vanished meanwhile (a compaction swapped files: possible only when ``.readers``
        could not be held)."""
        for attempt in range(5):
            try:
                with self.reading():
                    return read()
            except FileNotFoundError:
                if attempt == 4:
                    raise CorruptLedgerError("segments kept disappearing while reading") from None
        raise AssertionError("unreachable")  # pragma: no cover

    # --- writing segments, and the merges that keep them few --------------------------
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
                segmentio.write(table, f)
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, final)
            renamed = True
            _fsync_dir(self.events_dir)
            self._written.add(final, table, index)
        except OSError as exc:
            # A write that reports failure leaves nothing behind, even when the failure
            # came after the rename (the folder's fsync): the caller was told it failed.
            with contextlib.suppress(OSError):
                (final if renamed else tmp).unlink()
            self._listing = None
            raise storage_error(exc, f"write segment {final.name}") from None
        seg = Segment(first, last, final)
        self._relisted(new=seg)
        if index is not None and table.num_rows >= INDEX_MIN_ROWS:
            self._write_index(final.name, index)
        return seg

    def append(self, table: pa.Table) -> list[Segment]:
        """Durably add events: to the journal, if this Store journals and the batch is
        small (a segment is written from it later, by :meth:`maintain`); else as one
        segment per SEGMENT_EVENTS-aligned block they touch, so that compaction can
        later make every full block a single segment (the journal's events first).
        Returns where they went (the journal as a Segment with it as its ``source``)."""
        self._require_lock()
        if self._journaling and table.num_rows < S.JOURNAL_EVENTS:
            return [self._journal_append(table)]
        self.flush_journal()
        return self._write_blocks(table)

    def _write_blocks(self, table: pa.Table) -> list[Segment]:
        out = []
        first = table.column("seq")[0].as_py()
        # (A small append's index is derived only if a reader or a merge needs it: it
        # was a tenth of a single-event append.)
        index = eventindex.derive(table) if table.num_rows >= INDEX_MIN_ROWS else None
        offset = 0
        while offset < table.num_rows:
            room = SEGMENT_EVENTS - (first + offset) % SEGMENT_EVENTS
            part = table.slice(offset, room)
            part_index = None if index is None else index.slice(offset, part.num_rows)
            out.append(self.write_segment(part, part_index))
            offset += room
        return out

    def compact(self) -> tuple[int, int]:
        """Merge small segments into aligned segments of SEGMENT_EVENTS events (the last,
        incomplete block too), the journal's events first written as segments. Returns
        (segments before, segments after). Event rows are copied unchanged; the replaced
        segments are deleted when no reader reads."""
        self._require_lock()
        self.flush_journal()
        segs = self._parquet_segments()
        groups = compaction.full([(s.first, s.last) for s in segs], SEGMENT_EVENTS)
        self._merge(segs, groups)
        return len(segs), len(segs) - sum(j - i - 1 for i, j in groups)

    def maintain(self, fanout: int | None = None) -> int:
        """Run the merges :func:`ledger.compaction.plan` calls for (after an append);
        returns how many segments were merged away. Caller holds the writer lock.
        ``$LEDGER_AUTOCOMPACT=0`` turns automatic merges off; ``$LEDGER_COMPACT_FANOUT``
        sets the fanout (see docs/FORMAT.md §5.2)."""
        self._require_lock()
        if self._journaling:
            end = self._parquet_segments()[-1].last + 1
            live = self._live_journal(end)
            if live is not None and live.table.num_rows >= S.JOURNAL_EVENTS:
                self.flush_journal()
        fanout = merge_fanout() if fanout is None else fanout
        if fanout == 0:
            return 0
        segs = self._parquet_segments()
        groups = compaction.plan([(s.first, s.last) for s in segs], fanout, SEGMENT_EVENTS)
        self._merge(segs, groups)
        self._repair_one_index()
        return sum(j - i - 1 for i, j in groups)

    def _merge(self, segs: list[Segment], groups: list[tuple[int, int]]) -> None:
        """Merge ``segs[i:j]`` for each group, then delete the parts if no reader reads."""
        done: list[Segment] = []
        for i, j in groups:
            self.write_segment(
                *merges.merged(segs[i:j], self._written, self.read_segment, INDEX_MIN_ROWS)
            )
            done.extend(segs[i:j])
        self._written.drop(done)
        if done:
            self.delete_superseded(done)

    def _repair_one_index(self) -> None:
        """Write the index of one live segment that lacks it (a ledger written before
        the index existed, or a crash between a segment and its index): an old ledger
        is indexed over its next appends, one segment each, never all in one."""
        try:
            have = {e.name for e in os.scandir(self.index_dir)}
        except OSError:
            have = set()
        for seg in self._parquet_segments():
            # (one that does not fit is rebuilt by its next merge)
            if seg.count >= INDEX_MIN_ROWS and not all(
                p.name in have for p in S.bundle_paths(self.index_dir, seg.name)
            ):
                rows = self.read_segment(seg, eventindex.SOURCE_COLUMNS)
                self._write_index(seg.name, eventindex.derive(rows))
                return

    # --- the event index (``index/``; the rest is ledger/storecaches.py) --------------
    def index_tables(self, seg: Segment) -> tuple[pa.Table, pa.Table] | None:
        """The two tables of the bundle beside ``seg`` (memory-mapped) if readers would
        take them (present, readable, for exactly its seqs), else None."""
        if seg.count < INDEX_MIN_ROWS:
            return None
        return segmentio.read_bundle(S.bundle_paths(self.index_dir, seg.name), seg)

    # --- small files, written whole ---------------------------------------------------
    def _write_atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(path.parent)

    def _fsync_folder(self, path: Path) -> None:
        _fsync_dir(path)

    def _names(self, folder: str, prefix: str = "") -> list[str]:
        """The files in ``folder`` whose names start with ``prefix`` (temporaries left
        out), sorted; none if it cannot be listed."""
        try:
            names = os.listdir(self.root / folder)
        except OSError:
            return []
        return sorted(n for n in names if n.startswith(prefix) and not n.startswith(".tmp-"))
