"""The Store's reads of many events at once (the write path's selection, ``log``,
exports): :class:`EventReads`, mixed into :class:`ledger.store.Store`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from typing import TypeVar

import pyarrow as pa

from . import segmentio
from .errors import CorruptLedgerError
from .segments import COLUMNS, SCHEMA, Segment

#: Above this many runs of wanted rows in a segment, one ``take`` beats many slices.
_MAX_SLICES = 32
#: Above this many rows, a selection imports ``pyarrow.compute`` and uses threads.
_BIG_READ = 300_000
_T = TypeVar("_T")


class EventReads:
    """Events of every live segment (the journal's included), in seq order."""

    # (provided by Store)
    def segments(self) -> list[Segment]:
        raise NotImplementedError

    def read_segment(
        self, seg: Segment, columns: Sequence[str] | None = None, dictionary: bool = False
    ) -> pa.Table:
        raise NotImplementedError

    def _again(self, read: Callable[[], _T]) -> _T:
        raise NotImplementedError

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
        tables = self._again(lambda: self._read_back(columns, model, last))
        if not tables:
            return SCHEMA.empty_table().select(list(columns) if columns else COLUMNS)
        try:
            return pa.concat_tables(tables)
        except pa.ArrowInvalid as exc:
            raise CorruptLedgerError(
                f"segments have incompatible columns: {segmentio.short(exc)}"
            ) from None

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

        def select() -> list[pa.Table]:
            segs = [s for s in self.segments() if before is None or s.first < before]
            # A big selection is worth pyarrow.compute's import and the thread pool.
            big = sum(s.count for s in segs) > _BIG_READ
            return [
                t
                for s in segs
                for t in segmentio.read_where(s, names, actions, models, before, big, _MAX_SLICES)
            ]

        parts = self._again(select)
        if not parts:
            return SCHEMA.empty_table().select(list(columns))
        try:
            return pa.concat_tables(parts).select(list(columns))
        except pa.ArrowInvalid as exc:
            raise CorruptLedgerError(
                f"segments have incompatible columns: {segmentio.short(exc)}"
            ) from None

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
