"""The Store's files beside the events: index bundles (``index/``), signed checkpoints
(``checkpoints/``) and the caches derived from the events (``tree/``):
:class:`SideFiles`, mixed into :class:`ledger.store.Store`."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pyarrow as pa

from . import bundles, eventindex, merges, segmentio
from . import segments as S
from .bundles import Bundle
from .segments import Segment

_T = TypeVar("_T")


class SideFiles:
    """Index bundles, checkpoints and ``tree/`` caches of one ledger folder."""

    # (provided by Store)
    root: Path
    index_dir: Path
    _written: merges.Kept

    def segments(self) -> list[Segment]:
        raise NotImplementedError

    def read_segment(
        self, seg: Segment, columns: Sequence[str] | None = None, dictionary: bool = False
    ) -> pa.Table:
        raise NotImplementedError

    def _again(self, read: Callable[[], _T]) -> _T:
        raise NotImplementedError

    def index_tables(self, seg: Segment) -> tuple[pa.Table, pa.Table] | None:
        raise NotImplementedError

    def _require_lock(self) -> None:
        raise NotImplementedError

    def _write_atomic(self, path: Path, data: bytes) -> None:
        raise NotImplementedError

    def _fsync_folder(self, path: Path) -> None:
        raise NotImplementedError

    def _names(self, folder: str, prefix: str = "") -> list[str]:
        raise NotImplementedError

    # --- the event index (``index/``, see ledger/eventindex.py): a cache --------------
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

    def index_files(self, seg: Segment) -> tuple[Path, Path]:
        """Where the bundle of ``seg`` lives (events table, edges table)."""
        return S.bundle_paths(self.index_dir, seg.name)

    def bundles(self, since: int = 0) -> list[Bundle]:
        """The index of every live segment (holding events from ``since`` on), in seq
        order: the bundle beside it, or one derived from the segment where that is
        missing or does not fit. Hold :meth:`reading` while using them."""
        return self._again(lambda: [self._bundle(s) for s in self.segments() if s.last >= since])

    def _write_index(self, name: str, index: pa.Table) -> None:
        """Write the bundle of a segment's index rows (a cache: not fsynced; a failure
        leaves at most a file readers will not take)."""
        segmentio.write_bundle(S.bundle_paths(self.index_dir, name), index)

    def _bundle(self, seg: Segment) -> Bundle:
        bundle = self.read_index(seg)
        if bundle is None:
            kept = self._written.get(seg)
            if kept is not None and kept[1] is not None:
                return bundles.RowBundle(kept[1])
            rows = kept[0] if kept is not None else None
            if rows is None:
                rows = self.read_segment(seg, eventindex.SOURCE_COLUMNS)
            return bundles.RowBundle(eventindex.derive(rows))
        return bundle

    # --- signed checkpoints (``checkpoints/``): kept forever, never rewritten ---------
    def checkpoint_names(self) -> list[str]:
        """The files in ``checkpoints/`` (temporaries left out), sorted by name."""
        return self._names(S.CHECKPOINTS_DIR)

    def checkpoint_path(self, name: str) -> Path:
        """Where ``checkpoints/NAME`` is (for messages and for ``SignedCheckpoint.path``)."""
        return self.root / S.CHECKPOINTS_DIR / name

    def read_checkpoint(self, name: str, limit: int) -> bytes:
        """At most ``limit + 1`` bytes of ``checkpoints/NAME`` (OSError if unreadable)."""
        with open(self.root / S.CHECKPOINTS_DIR / name, "rb") as f:
            return f.read(limit + 1)

    def write_checkpoint(self, name: str, data: bytes) -> None:
        """Durably add ``checkpoints/NAME`` unless it is already there (caller holds the
        lock): a checkpoint, once issued, is evidence and is never replaced."""
        self._require_lock()
        folder = self.root / S.CHECKPOINTS_DIR
        try:
            folder.mkdir()
            self._fsync_folder(self.root)
        except FileExistsError:
            pass
        if not os.path.lexists(folder / name):
            self._write_atomic(folder / name, data)

    # --- caches derived from the events (``tree/``): untrusted, checked on use --------
    def read_cached(self, name: str) -> bytes | None:
        """The bytes of cache file ``tree/NAME``, or None if it cannot be read."""
        try:
            return (self.root / S.CACHE_DIR / name).read_bytes()
        except OSError:
            return None

    def cached_names(self, prefix: str = "") -> list[str]:
        """The cache files in ``tree/`` whose names start with ``prefix``, sorted."""
        return self._names(S.CACHE_DIR, prefix)

    def write_cached(self, name: str, data: bytes) -> None:
        """Replace cache file ``tree/NAME`` atomically (caller holds the lock)."""
        self._require_lock()
        folder = self.root / S.CACHE_DIR
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
        self._write_atomic(folder / name, data)

    def drop_cached(self, name: str) -> None:
        """Delete cache file ``tree/NAME`` if it is there (caller holds the lock)."""
        self._require_lock()
        with contextlib.suppress(FileNotFoundError):
            (self.root / S.CACHE_DIR / name).unlink()
