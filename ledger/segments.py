"""What a ledger folder and its segments are, apart from any I/O (docs/FORMAT.md §1, §2, §5).

Layout::

    LEDGER/ledger.json                     identity: format, origin, genesis hash
    LEDGER/events/<first>-<last>.parquet   immutable segments, 12-digit seq bounds
    LEDGER/events/journal.arrows           the newest events, before a segment holds them
    LEDGER/.lock                           flock(2) target serialising writers
    LEDGER/.readers                        flock(2) target: readers share it
    LEDGER/index/<first>-<last>.{events,edges}.arrow
                                           the event index of a segment (a cache)
    LEDGER/checkpoints/, LEDGER/tree/      signed checkpoints; caches derived from events

Here are the names, the segments' schema and encoding, how the segments found in
``events/`` make the live tiling (:meth:`Layout.of`), what an identity file holds, and
the decoding of a segment's typed columns into Python values. Reading and writing them
is :class:`ledger.store.Store`'s job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from . import compaction
from .errors import CorruptLedgerError
from .events import FORMAT

IDENTITY = "ledger.json"
EVENTS = "events"
LOCK = ".lock"
READERS = ".readers"
INDEX = "index"
#: The folder of caches derived from the events (tree block roots, story maps).
CACHE_DIR = "tree"
CHECKPOINTS_DIR = "checkpoints"
SEGMENT_RE = re.compile(r"(\d{12})-(\d{12})\.parquet")
#: The journal (FORMAT.md §5.4): an Arrow IPC stream of the newest events, appended to
#: and fsynced once per commit by a journaling writer; readers take its complete records
#: as one more segment.
JOURNAL = "journal.arrows"
#: A journaling writer moves the journal's events into a segment once it holds this
#: many (and writes a batch of this many or more as segments straight away).
JOURNAL_EVENTS = 256
#: Compaction builds segments of this many events aligned on multiples of it, so each
#: full segment is a complete Merkle subtree.
SEGMENT_EVENTS = 1 << 16
ROW_GROUP = 1 << 14
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
#: How a segment is written: the dictionary-encoded and the statistics columns.
DICT_COLUMNS = ["action", "model", "actor", "key_id"]
STATS_COLUMNS = ["seq", "ts", "action", "model", "version", "actor", "key_id"]
#: Segments of fewer events are written uncompressed: zstd's per-column set-up was a
#: third of the cost of one single-event append (measured), and automatic merges soon
#: replace such segments.
COMPRESS_MIN_ROWS = 1024
#: String columns that repeat a few thousand values over a million rows (read
#: dictionary-encoded when asked).
NAME_COLUMNS = frozenset({"action", "model", "actor", "key_id"})
#: Segments of fewer events have no index file: deriving their index on the fly costs
#: a reader less than opening one more file, and their writer a Parquet file per append.
INDEX_MIN_ROWS = 1024


@dataclass(frozen=True, order=True)
class Segment:
    """Events ``first..last`` in the Parquet file at ``path``. For the journal, ``path``
    is a reader's Parquet copy of its complete records, made outside the ledger folder,
    and ``source`` the journal itself: the file that verdicts name and whose identity
    tells a changed journal."""

    first: int
    last: int
    path: Path
    source: Path | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return (self.source or self.path).name

    @property
    def file(self) -> Path:
        """The ledger's own file holding these events."""
        return self.source or self.path

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
    #: ``events/journal.arrows`` if it is there (a regular file); its events are among
    #: the segments above only in a reader's layout (:meth:`ledger.store.Store.layout`).
    journal: Path | None = None

    @classmethod
    def of(
        cls, segs: Iterable[Segment], strays: Iterable[Path], journal: Path | None = None
    ) -> Layout:
        """The layout of the segments and strays found in ``events/``."""
        # Longest first among equal starts, so a compacted segment wins over its parts.
        ordered = sorted(segs, key=lambda s: (s.first, -s.last))
        live: list[Segment] = []
        superseded: list[tuple[Segment, Segment]] = []
        overlapping: list[tuple[Segment, Segment]] = []
        for s in ordered:
            if live and s.first <= live[-1].last:
                if s.last <= live[-1].last:
                    superseded.append((s, live[-1]))
                else:
                    overlapping.append((live[-1], s))
                continue
            live.append(s)
        return cls(live, superseded, overlapping, sorted(strays), journal)

    def tiling(self) -> list[Segment]:
        """The live segments, checked to tile 0..n-1 with no gap or overlap."""
        if self.overlapping:
            a, b = self.overlapping[0]
            raise CorruptLedgerError(f"segments {a.name} and {b.name} overlap; run ledger verify")
        expected = 0
        for s in self.live:
            if s.first != expected:
                raise CorruptLedgerError(
                    f"events {expected}..{s.first - 1} are missing before {s.name}; run ledger verify"
                )
            expected = s.last + 1
        return self.live


def segment_name(first: int, last: int) -> str:
    return f"{first:012d}-{last:012d}.parquet"


def segment_at(path: Path) -> Segment | None:
    """The segment a file of ``events/`` is by its name, or None if the name is not a
    segment's (a regular file, not a symbolic link, is the caller's to check)."""
    m = SEGMENT_RE.fullmatch(path.name)
    if m:
        first, last = int(m[1]), int(m[2])
        if last >= first:
            return Segment(first, last, path)
    return None


def bundle_paths(folder: Path, segment: str) -> tuple[Path, Path]:
    """The two files of a segment's index bundle (events, edges)."""
    stem = segment.removesuffix(".parquet")
    return folder / f"{stem}.events.arrow", folder / f"{stem}.edges.arrow"


def identity_bytes(identity: dict[str, Any]) -> bytes:
    """``ledger.json`` as writers emit it: sorted keys, 2-space indentation."""
    return (json.dumps(identity, indent=2, sort_keys=True) + "\n").encode()


def parse_identity(data: bytes, p: Path) -> dict[str, Any]:
    """The identity in ``data``, the bytes of ``ledger.json`` at ``p``, checked to hold
    what every reader needs (docs/FORMAT.md §2)."""
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
