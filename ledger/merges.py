"""What the Store's merges need beside the files: the fanout, the rows kept from writing
small segments, and the rows of a merged segment.

Which segments to merge is :mod:`ledger.compaction`; :meth:`ledger.store.Store.compact`
and :meth:`~ledger.store.Store.maintain` write the merged segments and delete the
parts. A ledger written one event at a time merges after nearly every append, and
reading back what the same Store has just written would cost more than the append
itself: so a Store keeps the rows of the small segments it wrote (:class:`Kept`), and a
merge takes them from there while the file is still the one written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow as pa

from . import compaction, eventindex
from .errors import InputError
from .segments import Segment

#: Segments of at most this many rows are kept in memory by the Store that wrote them,
#: for the merges that follow (a 4,096-row segment is about 4 MB).
KEEP_ROWS = 4096
KEEP_SEGMENTS = 64


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


class Kept:
    """Small segments a Store wrote, by name: (file identity, rows, index rows)."""

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[tuple[int, int, int], pa.Table, pa.Table | None]] = {}

    def add(self, path: Path, table: pa.Table, index: pa.Table | None) -> None:
        """Keep the segment just written at ``path`` if it is small (OSError if the file
        cannot be stat'ed)."""
        if table.num_rows <= KEEP_ROWS:
            st = os.stat(path)
            self._by_name[path.name] = ((st.st_ino, st.st_size, st.st_mtime_ns), table, index)
            while len(self._by_name) > KEEP_SEGMENTS:  # merges off, or another layout
                del self._by_name[next(iter(self._by_name))]

    def get(self, seg: Segment) -> tuple[pa.Table, pa.Table | None] | None:
        """(rows, index rows) of a segment this Store wrote, if the file is still the one
        written (same inode, size and mtime: segments are never modified in place)."""
        kept = self._by_name.get(seg.name)
        if kept is None:
            return None
        try:
            st = os.stat(seg.path)
        except OSError:
            st = None
        if st is not None and kept[0] == (st.st_ino, st.st_size, st.st_mtime_ns):
            return kept[1], kept[2]
        del self._by_name[seg.name]
        return None

    def rows(self, seg: Segment, read: Callable[[Segment], pa.Table]) -> pa.Table:
        """A segment's rows: kept from writing it, else ``read(seg)``."""
        kept = self.get(seg)
        return kept[0] if kept is not None else read(seg)

    def has_index(self, seg: Segment, rows: pa.Table) -> bool:
        """Whether ``seg``'s index rows were kept with ``rows``."""
        kept = self._by_name.get(seg.name)
        return kept is not None and kept[2] is not None and kept[1] is rows

    def index_of(self, seg: Segment, rows: pa.Table) -> pa.Table:
        """``seg``'s index rows (SCHEMA, seq order) for a merge: kept from writing the
        segment, or derived from its rows."""
        kept = self._by_name.get(seg.name)
        if kept is not None and kept[2] is not None and kept[1] is rows:
            return kept[2]
        return eventindex.derive(rows)

    def drop(self, segs: Iterable[Segment]) -> None:
        for s in segs:
            self._by_name.pop(s.name, None)


def merged(
    parts: list[Segment], kept: Kept, read: Callable[[Segment], pa.Table], index_min: int
) -> tuple[pa.Table, pa.Table | None]:
    """The rows of the segment that replaces ``parts`` and, if it has ``index_min`` rows
    or more (big enough for an index bundle), its index rows."""
    rows = [kept.rows(s, read) for s in parts]
    table = pa.concat_tables(rows)
    if table.num_rows < index_min:
        return table, None  # (no bundle: readers derive it, and the next merge too)
    if all(kept.has_index(s, r) for s, r in zip(parts, rows, strict=True)):
        index = pa.concat_tables([kept.index_of(s, r) for s, r in zip(parts, rows, strict=True)])
    else:  # (one pass over all the rows beats one per small part)
        index = eventindex.derive(table)
    return table, index
