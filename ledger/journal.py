"""The journal file, ``events/journal.arrows`` (docs/FORMAT.md §5.4): its encoding, read
and appended at a path the Store chose.

A journaling writer acknowledges an event once its record is in the journal and the
journal is fsynced, which costs one small write and one fsync: no Parquet file, no
rename, no folder fsync, no merge. The file is an Arrow IPC stream (a schema message,
then one record batch message per commit, never an end-of-stream marker) holding
segment rows (:data:`ledger.segments.SCHEMA`). A crash during an append leaves at most
an incomplete last message, which is not a record: readers stop at the first message
that is incomplete or unreadable, and a writer cuts it off before appending.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from .segments import SCHEMA


@dataclass(frozen=True)
class Contents:
    """The complete records of a journal: their rows and how many bytes they take."""

    table: pa.Table
    #: Bytes from the start of the file to the end of its last complete record.
    valid: int
    #: The file's size when read (more than ``valid`` after an interrupted append).
    size: int

    @property
    def first(self) -> int | None:
        """The seq of the first event, or None if there is none."""
        return self.table.column("seq")[0].as_py() if self.table.num_rows else None

    @property
    def last(self) -> int | None:
        return self.table.column("seq")[-1].as_py() if self.table.num_rows else None


def read(path: Path) -> Contents:
    """The journal's complete records (OSError if it cannot be read). A file that does
    not start with a whole schema message (a crash while creating it) holds none."""
    return parse(path.read_bytes())


def parse(data: bytes) -> Contents:
    """The complete records of journal bytes ``data``."""
    src = pa.BufferReader(data)
    try:
        schema = pa.ipc.read_schema(pa.ipc.read_message(src))
    except (pa.ArrowException, EOFError, OSError, ValueError):
        return Contents(SCHEMA.empty_table(), 0, len(data))
    valid = src.tell()
    batches: list[pa.RecordBatch] = []
    while True:
        try:
            message = pa.ipc.read_message(src)
            batch = pa.ipc.read_record_batch(message, schema)
        except (pa.ArrowException, EOFError, OSError, ValueError):
            break  # (the end, an interrupted append, or bytes that are no record)
        batches.append(batch)
        valid = src.tell()
    return Contents(pa.Table.from_batches(batches, schema=schema), valid, len(data))


def header() -> bytes:
    """The bytes a new journal starts with: the schema message."""
    return bytes(SCHEMA.serialize())


def record(table: pa.Table) -> bytes:
    """The record of one commit's rows (one record batch message)."""
    # (one batch per record, so that a record is all or nothing)
    (batch,) = table.combine_chunks().to_batches()
    return bytes(batch.serialize())


def append(path: Path, data: bytes, size: int) -> None:
    """Append ``data`` to the journal of ``size`` valid bytes and fsync it; cut off
    whatever lies beyond ``size`` first (an interrupted append's bytes). On failure the
    file is cut back to ``size``, and the OSError raised."""
    fd = os.open(path, os.O_WRONLY)
    try:
        try:
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
            written = os.pwrite(fd, data, size)
            if written != len(data):
                raise OSError(28, "short write to the journal")
            os.fdatasync(fd)
        except OSError:
            try:
                os.ftruncate(fd, size)
                os.fdatasync(fd)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


class Journal:
    """One Store's view of its journal file: the complete records, read again only when
    the file changed, and the Parquet copies readers take of them.

    A copy is made in a temporary folder of this process's own, outside the ledger
    folder (readers never write in it), and lets every reader of segments (the
    queries' DuckDB, verify's workers, the tree) read the journal as one more segment.
    Copies are removed when the Store is garbage-collected or the process exits.
    """

    #: Copies kept at once (a reader may still hold an older listing's).
    KEEP = 4

    def __init__(self, path: Path) -> None:
        self.path = path
        self._read: tuple[tuple[int, int, int, int], Contents] | None = None
        self._folder: Path | None = None
        self._copies: dict[tuple[int, int, int, int], Path] = {}

    def contents(self) -> Contents | None:
        """The complete records, or None if there is no journal (FileNotFoundError
        propagates only if the file vanished between looking and reading)."""
        ident = _ident(self.path)
        if ident is None:
            self._read = None
            return None
        if self._read is not None and self._read[0] == ident:
            return self._read[1]
        contents = read(self.path)
        self._read = (ident, contents)
        return contents

    def wrote(self, contents: Contents) -> None:
        """Record what this process has just written, so that it is not read back."""
        ident = _ident(self.path)
        self._read = None if ident is None else (ident, contents)

    def forget(self) -> None:
        self._read = None

    def copy(self, contents: Contents) -> Path:
        """A Parquet file holding the rows of ``contents`` (the journal as last read),
        made once per version of the journal. A copy that cannot be written is an empty
        file, which readers report as an unreadable segment."""
        assert self._read is not None and self._read[1] is contents
        ident = self._read[0]
        have = self._copies.get(ident)
        if have is not None and have.exists():
            return have
        if self._folder is None:
            import tempfile
            import weakref

            self._folder = Path(tempfile.mkdtemp(prefix="ledger-journal-"))
            weakref.finalize(self, _remove, self._folder)
        path = self._folder / f"journal-{ident[1]}-{ident[0]}-{ident[2]}.parquet"
        from . import segmentio

        try:
            with open(path, "wb") as f:
                segmentio.write(contents.table, f)
        except (pa.ArrowException, ValueError, KeyError):
            path.write_bytes(b"")
        self._copies[ident] = path
        while len(self._copies) > self.KEEP:
            old = self._copies.pop(next(iter(self._copies)))
            old.unlink(missing_ok=True)
        return path


def _ident(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
