"""One segment file and one index bundle, read and written at a path the Store chose.

The :class:`~ledger.store.Store` decides which files exist, where and when (listing,
locks, temporaries, renames, fsyncs, retries); this module is what it does to one file:
the Parquet encoding of a segment, the column and row-group reads, the selection of
rows by action or model, the last row, and the Arrow IPC files of an index bundle. An
unreadable file is a CorruptLedgerError naming the segment; FileNotFoundError passes
through, for the Store to retry from a fresh listing.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.parquet as pq

from . import bundles, eventindex
from .errors import CorruptLedgerError
from .segments import (
    COLUMNS,
    COMPRESS_MIN_ROWS,
    DICT_COLUMNS,
    NAME_COLUMNS,
    ROW_GROUP,
    STATS_COLUMNS,
    Segment,
    micros,
)


def short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def write(table: pa.Table, f: IO[bytes]) -> None:
    """Encode ``table`` as a segment into the open file ``f``."""
    pq.write_table(
        table,
        f,
        compression="zstd" if table.num_rows >= COMPRESS_MIN_ROWS else "none",
        row_group_size=ROW_GROUP,
        use_dictionary=DICT_COLUMNS,
        write_statistics=STATS_COLUMNS,
    )


def read(seg: Segment, columns: Sequence[str] | None, dictionary: bool) -> pa.Table:
    """``seg``'s columns, the name columns dictionary-encoded if asked."""
    try:
        # (ParquetFile, not read_table: that goes through pyarrow.dataset, whose
        # import alone costs a short command a tenth of a second)
        pf = pq.ParquetFile(seg.path)
        if dictionary:  # (only columns the file has: read_dictionary raises KeyError)
            have = set(pf.schema_arrow.names)
            names = [c for c in (columns or COLUMNS) if c in NAME_COLUMNS and c in have]
            pf = pq.ParquetFile(seg.path, metadata=pf.metadata, read_dictionary=names)
        table = pf.read(columns=list(columns) if columns else None)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise CorruptLedgerError(f"segment {seg.name} is unreadable: {short(exc)}") from None
    return table


def parquet_columns(seg: Segment) -> list[tuple[str, str, str, int]]:
    """``seg``'s leaf columns as Parquet describes them, in file order: (dotted path,
    physical type, logical type in Parquet's JSON spelling, fixed byte length or 0)."""
    try:
        schema = pq.ParquetFile(seg.path).schema
        return [
            (c.path, c.physical_type, c.logical_type.to_json(), c.length or 0)
            for c in (schema.column(i) for i in range(len(schema)))
        ]
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise CorruptLedgerError(f"segment {seg.name} is unreadable: {short(exc)}") from None


def read_where(
    seg: Segment,
    names: list[str],
    actions: AbstractSet[str],
    models: AbstractSet[str],
    before: int | None,
    big: bool,
    max_slices: int,
) -> list[pa.Table]:
    """``names`` of ``seg``'s rows whose action is in ``actions`` or model in ``models``
    (and seq below ``before``), in seq order, the name columns dictionary-encoded: with
    ``big``, filtered by ``pyarrow.compute`` on threads; else as slices of the table, or
    one ``take`` when there would be more than ``max_slices`` of them."""
    limit = None if before is None else before - seg.first
    try:
        pf = pq.ParquetFile(seg.path, read_dictionary=[c for c in names if c in NAME_COLUMNS])
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
        if len(runs) > max_slices:
            return [t.take(pa.array(rows, pa.int64()))]
        # (slices share the table's buffers: no copy, and no compute kernel to import)
        return [t.slice(a, b - a) for a, b in runs]
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowException, KeyError) as exc:
        raise CorruptLedgerError(f"segment {seg.name} is unreadable: {short(exc)}") from None


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


def tail(seg: Segment) -> tuple[int, bytes, int]:
    """(number of events, hash of the last event, its ts in µs) of the ledger whose
    last segment is ``seg``, checked to end at ``seg.last``."""
    try:
        pf = pq.ParquetFile(seg.path)
        # One small row group: pyarrow's thread pool only adds hand-off latency.
        rg = pf.read_row_group(
            pf.num_row_groups - 1, columns=["seq", "ts", "hash"], use_threads=False
        )
    except (OSError, pa.ArrowException, IndexError) as exc:
        raise CorruptLedgerError(f"segment {seg.name} is unreadable: {short(exc)}") from None
    n = rg.num_rows
    if n == 0 or rg.column("seq")[n - 1].as_py() != seg.last:
        raise CorruptLedgerError(f"segment {seg.name} does not end at seq {seg.last}")
    return seg.last + 1, rg.column("hash")[n - 1].as_py(), micros(rg.column("ts"))[n - 1]


def last_at(seg: Segment, ts: int) -> int | None:
    """The seq of ``seg``'s last event with ``ts`` (µs) at or before ``ts``; None if its
    first event is later (or it has none)."""
    try:
        pf = pq.ParquetFile(seg.path)
        first = pf.read_row_group(0, columns=["ts"], use_threads=False)["ts"]
        if not len(first) or micros(first)[0] > ts:
            return None
        values = micros(pf.read(columns=["ts"], use_threads=False)["ts"])
    except (OSError, pa.ArrowException) as exc:
        raise CorruptLedgerError(f"segment {seg.name} is unreadable: {short(exc)}") from None
    return seg.first + bisect.bisect_right(values, ts) - 1


def same_rows(leftover: Segment, live: Segment, cache: dict[Path, pa.Table | None]) -> bool:
    """True when ``leftover`` holds exactly the rows ``live`` holds for its range (False
    if either is unreadable); ``cache`` keeps each live segment's rows, read once."""
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


def same_rows_as(rows: pa.Table, live: Segment) -> bool:
    """True when ``live`` holds exactly ``rows`` (seq order, every column) for their seqs
    (False if it is unreadable or does not hold them all)."""
    try:
        first = rows.column("seq")[0].as_py()
        b = pq.read_table(live.path, columns=list(COLUMNS))
    except (OSError, pa.ArrowException, IndexError):
        return False
    if not isinstance(first, int) or first < live.first:
        return False
    at = first - live.first
    return at + rows.num_rows <= b.num_rows and rows.select(list(COLUMNS)).equals(
        b.slice(at, rows.num_rows)
    )


def write_bundle(paths: tuple[Path, Path], index: pa.Table) -> None:
    """Write the index bundle of ``index`` (a segment's index rows) to ``paths``, each
    by a temporary file renamed into place (a cache: not fsynced; a failure leaves at
    most a file readers will not take)."""
    tmps: list[Path] = []
    try:
        paths[0].parent.mkdir(exist_ok=True)
        for path, table in zip(paths, eventindex.bundle_tables(index), strict=True):
            tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
            tmps.append(tmp)
            with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
                w.write_table(table)
            os.replace(tmp, path)
    except (OSError, pa.ArrowException):
        for tmp in tmps:
            with contextlib.suppress(OSError):
                tmp.unlink()


def read_bundle(paths: tuple[Path, Path], seg: Segment) -> tuple[pa.Table, pa.Table] | None:
    """The two tables of the bundle at ``paths`` (memory-mapped) if they are readable
    and for exactly ``seg``'s seqs, else None."""
    try:
        events, edges = (pa.ipc.open_file(pa.memory_map(str(p))).read_all() for p in paths)
        if not bundles.SortedBundle.fits(events, edges, seg.first, seg.last):
            return None
        return events, edges
    except (OSError, pa.ArrowException, ValueError, KeyError):
        return None
