"""The Store's side of the journal (docs/FORMAT.md §5.4): appending a commit's record,
moving the records into segments, and the journal as readers' one more segment:
:class:`JournalMethods`, mixed into :class:`ledger.store.Store`. The file's encoding and
the readers' copies are :mod:`ledger.journal`."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pyarrow as pa

from . import journal as J
from . import segmentio
from . import segments as S
from .errors import CorruptLedgerError, storage_error
from .segments import SCHEMA, Layout, Segment


class JournalMethods:
    """Appends through the journal, and its move into segments. Caller holds the lock
    for every write here."""

    # (provided by Store)
    journal_path: Path
    _journal: J.Journal
    _listing: Layout | None

    def _files(self) -> Layout:
        raise NotImplementedError

    def _parquet_segments(self) -> list[Segment]:
        raise NotImplementedError

    def _relisted(
        self, new: Segment | None = None, gone: Path | None = None, journal: bool | None = None
    ) -> None:
        raise NotImplementedError

    def _require_lock(self) -> None:
        raise NotImplementedError

    def _write_atomic(self, path: Path, data: bytes) -> None:
        raise NotImplementedError

    def _write_blocks(self, table: pa.Table) -> list[Segment]:
        raise NotImplementedError

    def _journal_segment(self, contents: J.Contents) -> Segment:
        """The journal's records as a segment: the range its first seq and its number of
        rows imply (verify checks every row's seq against it)."""
        first = contents.first
        if not isinstance(first, int) or first < 0:
            first = 0  # (a damaged journal: verify names it)
        path = self._journal.copy(contents)
        return Segment(first, first + contents.table.num_rows - 1, path, source=self.journal_path)

    def _live_journal(self, end: int) -> J.Contents | None:
        """The journal's records if they are the events from ``end`` on (the Parquet
        segments end before ``end``); None if there is no journal or it holds no records
        or only events the segments hold too (a flush interrupted before the journal was
        removed); CorruptLedgerError if it does not follow the segments."""
        if self._files().journal is None:
            return None
        try:
            contents = self._journal.contents()
        except OSError:
            contents = None  # (gone since the listing: moved into a segment)
        if contents is None or not contents.table.num_rows:
            return None
        first, n = contents.first, contents.table.num_rows
        if first == end and contents.last == end + n - 1 and contents.table.schema.equals(SCHEMA):
            return contents
        if isinstance(first, int) and contents.last is not None and contents.last < end:
            return None
        raise CorruptLedgerError(
            f"events/{S.JOURNAL} does not continue the segments (they end at seq {end - 1});"
            " run ledger verify"
        )

    def _journal_append(self, table: pa.Table) -> Segment:
        """Append one record to the journal and fsync it (create it, if there is none
        with records, as a temporary file fsynced and renamed into place)."""
        segs = self._parquet_segments()
        end = segs[-1].last + 1 if segs else 0
        live = self._live_journal(end)
        if live is None and self._files().journal is not None:
            self._drop_journal()  # (empty, or a leftover _clean could not remove)
            if self.journal_path.exists():
                raise CorruptLedgerError(
                    f"events/{S.JOURNAL} holds events the segments hold too, but not the"
                    " same ones; run ledger verify"
                )
        record = J.record(table)
        try:
            if live is None:
                data = J.header() + record
                try:
                    self._write_atomic(self.journal_path, data)
                except OSError:
                    # (failed after the rename, at the folder's fsync: told it failed)
                    with contextlib.suppress(OSError):
                        self.journal_path.unlink()
                    raise
                contents = J.Contents(table, len(data), len(data))
                self._relisted(journal=True)
            else:
                J.append(self.journal_path, record, live.valid)
                size = live.valid + len(record)
                contents = J.Contents(pa.concat_tables([live.table, table]), size, size)
        except OSError as exc:
            self._journal.forget()
            self._listing = None
            raise storage_error(exc, f"append to events/{S.JOURNAL}") from None
        self._journal.wrote(contents)
        first = table.column("seq")[0].as_py()
        return Segment(first, first + table.num_rows - 1, self.journal_path, self.journal_path)

    def flush_journal(self) -> None:
        """Write the journal's records as segments (durably), then remove it. Caller
        holds the writer lock."""
        self._require_lock()
        if self._files().journal is None:
            return
        segs = self._parquet_segments()
        live = self._live_journal(segs[-1].last + 1 if segs else 0)
        if live is not None:
            self._write_blocks(live.table)
        self._drop_journal()

    def _drop_journal(self) -> None:
        """Remove the journal if it holds no record or only events a segment holds too,
        byte for byte (not fsynced: if a power cut undoes it, the journal is that same
        leftover again). Anything else stays for verify to report."""
        try:
            contents = self._journal.contents()
        except OSError:
            contents = None
        if contents is not None and contents.table.num_rows:
            first = contents.first
            covering = [
                s
                for s in self._parquet_segments()
                if isinstance(first, int) and s.first <= first and contents.last <= s.last  # type: ignore[operator]
            ]
            if not covering or not segmentio.same_rows_as(contents.table, covering[0]):
                return
        with contextlib.suppress(FileNotFoundError):
            self.journal_path.unlink()
        self._journal.forget()
        self._relisted(journal=False)
