"""The ledger's Merkle tree on disk: leaf hashes from segments, and the block-root cache.

Leaf ``i`` of the tree is ``merkle.leaf_hash(canonical bytes of event i)`` (RFC 6962).
Proofs and roots are built by :mod:`ledger.merkle` from full aligned subtrees; this
module supplies them:

* a subtree inside one block of ``BLOCK`` (= ``store.ROW_GROUP``, 16,384) events is
  hashed from that block's leaves, read from the one row group that holds them;
* a larger subtree is the tree over the roots of the blocks it covers, and the root of a
  full block comes from the cache ``LEDGER/tree/blocks`` (32 bytes per full block, block
  0 first) when present.

The cache is **untrusted**: nothing is accepted because the cache says so. Proofs built
from it are checked against a signed checkpoint by whoever receives them; ``verify``
recomputes every block root and reports a stale or altered entry (``tree_cache``); and
callers that must not depend on it (``verify --since``, ``checkpoint``) ask for
``fresh_from``, so every block that reaches past a trusted size is rehashed from events.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import merkle
from .errors import CorruptLedgerError
from .store import ROW_GROUP, SEGMENT_EVENTS, Segment, Store, open_parquet

#: Events per cached subtree root: one Parquet row group of an aligned segment, so a
#: proof reads and hashes at most one row group of events besides the tail.
BLOCK = ROW_GROUP
assert SEGMENT_EVENTS % BLOCK == 0
CACHE_FILE = "blocks"


def cache_size(store: Store) -> int:
    """The cache file's length in bytes (0 if there is none): ``verify`` refuses a length
    that is not a whole number of roots."""
    return len(store.read_cached(CACHE_FILE) or b"")


def read_cache(store: Store) -> list[bytes]:
    """Block roots from the cache (possibly empty, possibly wrong: see module docstring)."""
    data = store.read_cached(CACHE_FILE) or b""
    n = len(data) // merkle.HASH_SIZE
    return [data[i * 32 : i * 32 + 32] for i in range(n)]


def write_cache(store: Store, roots: Sequence[bytes]) -> None:
    """Replace the cache with ``roots`` (caller holds the ledger lock)."""
    store.write_cached(CACHE_FILE, b"".join(roots))


def read_rows(segments: Sequence[Segment], lo: int, hi: int, column: str) -> list:
    """Values of ``column`` for events ``lo .. hi-1`` (see :func:`read_columns`)."""
    return read_columns(segments, lo, hi, [column])[column]


def read_columns(
    segments: Sequence[Segment], lo: int, hi: int, columns: Sequence[str]
) -> dict[str, list]:
    """Values of ``columns`` for events ``lo .. hi-1``, reading only the row groups that
    hold them (segments are named by their seq range; row groups are in order)."""
    import pyarrow as pa

    out: dict[str, list] = {c: [] for c in columns}
    for seg in segments:
        if seg.last < lo or seg.first >= hi:
            continue
        try:
            pf = open_parquet(seg.path)
            md = pf.metadata
            start = seg.first
            for rg in range(md.num_row_groups):
                n = md.row_group(rg).num_rows
                a, z = max(lo, start), min(hi, start + n)
                if a < z:
                    t = pf.read_row_group(rg, columns=list(columns)).slice(a - start, z - a)
                    for c in columns:
                        out[c].extend(t.column(c).to_pylist())
                start += n
        except (OSError, pa.ArrowException) as exc:
            raise CorruptLedgerError(
                f"segment {seg.name} is unreadable ({exc}); run ledger verify"
            ) from None
    if len(out[columns[0]]) != hi - lo:
        raise CorruptLedgerError(f"events {lo}..{hi - 1} are not all present; run ledger verify")
    return out


def leaf_hashes(canonicals: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 leaf hashes of a run of events' canonical bytes."""
    return [merkle.leaf_hash(c) for c in canonicals]


class Tree:
    """The Merkle tree over the first ``size`` events of a ledger folder.

    ``use_cache=False`` ignores the block-root cache; ``fresh_from=m`` uses it only for
    blocks that end at or before event ``m`` (the part a trusted checkpoint covers).
    """

    def __init__(
        self,
        store: Store,
        size: int | None = None,
        *,
        segments: list[Segment] | None = None,
        use_cache: bool = True,
        fresh_from: int | None = None,
    ) -> None:
        self.store = store
        self.segments = segments if segments is not None else store.segments()
        total = self.segments[-1].last + 1 if self.segments else 0
        self.size = total if size is None else size
        if self.size > total:
            raise CorruptLedgerError(f"the ledger holds {total} events, not {self.size}")
        self.cache = read_cache(store) if use_cache else []
        self.fresh_from = fresh_from
        self._leaves: dict[int, list[bytes]] = {}
        self._blocks: dict[int, bytes] = {}
        self._memo: dict[tuple[int, int], bytes] = {}

    # --- leaves -------------------------------------------------------------------------
    def block_leaves(self, b: int) -> list[bytes]:
        """Leaf hashes of block ``b`` (only the part below ``size``)."""
        if b not in self._leaves:
            lo, hi = b * BLOCK, min((b + 1) * BLOCK, self.size)
            leaves = leaf_hashes(read_rows(self.segments, lo, hi, "canonical"))
            if len(leaves) != hi - lo:
                raise CorruptLedgerError(
                    f"events {lo}..{hi - 1} are not all present; run ledger verify"
                )
            self._leaves[b] = leaves
        return self._leaves[b]

    def leaf(self, index: int) -> bytes:
        return self.block_leaves(index // BLOCK)[index % BLOCK]

    # --- subtree roots ------------------------------------------------------------------
    def block_root(self, b: int) -> bytes:
        """Root of the full block ``b``: from the cache when allowed, else rehashed."""
        if b not in self._blocks:
            end = (b + 1) * BLOCK
            if b < len(self.cache) and (self.fresh_from is None or end <= self.fresh_from):
                self._blocks[b] = self.cache[b]
            else:
                self._blocks[b] = merkle.root(self.block_leaves(b))
        return self._blocks[b]

    def subtree_root(self, start: int, end: int) -> bytes:
        """``merkle.SubtreeRoot``: MTH of the full aligned subtree ``[start, end)``."""
        size = end - start
        if size == 1:
            return self.leaf(start)
        if size >= BLOCK:
            if size == BLOCK:
                return self.block_root(start // BLOCK)
            key = (start, end)
            if key not in self._memo:
                roots = [self.block_root(b) for b in range(start // BLOCK, end // BLOCK)]
                self._memo[key] = merkle.root(roots)
            return self._memo[key]
        key = (start, end)
        if key not in self._memo:
            b = start // BLOCK
            leaves = self.block_leaves(b)
            self._memo[key] = merkle.root(leaves[start - b * BLOCK : end - b * BLOCK])
        return self._memo[key]

    # --- what callers want ----------------------------------------------------------------
    def root(self, n: int | None = None) -> bytes:
        return merkle.root_from(self.size if n is None else n, self.subtree_root)

    def inclusion(self, index: int, n: int | None = None) -> list[bytes]:
        return merkle.inclusion_proof_from(index, self.size if n is None else n, self.subtree_root)

    def consistency(self, m: int, n: int | None = None) -> list[bytes]:
        return merkle.consistency_proof_from(m, self.size if n is None else n, self.subtree_root)

    def full_block_roots(self) -> list[bytes]:
        return [self.block_root(b) for b in range(self.size // BLOCK)]


class LeafTree:
    """``subtree_root`` over leaf hashes held in memory (as full verify has them)."""

    def __init__(self, leaves: Sequence[bytes], block_roots: dict[int, bytes] | None = None):
        self.leaves = leaves
        self.blocks = dict(block_roots or {})
        self._memo: dict[tuple[int, int], bytes] = {}

    def block_root(self, b: int) -> bytes:
        if b not in self.blocks:
            self.blocks[b] = merkle.root(self.leaves[b * BLOCK : (b + 1) * BLOCK])
        return self.blocks[b]

    def subtree_root(self, start: int, end: int) -> bytes:
        size = end - start
        if size == 1:
            return self.leaves[start]
        if size == BLOCK:
            return self.block_root(start // BLOCK)
        key = (start, end)
        if key not in self._memo:
            if size > BLOCK:
                roots = [self.block_root(b) for b in range(start // BLOCK, end // BLOCK)]
                self._memo[key] = merkle.root(roots)
            else:
                self._memo[key] = merkle.root(self.leaves[start:end])
        return self._memo[key]

    def root(self, n: int) -> bytes:
        return merkle.root_from(n, self.subtree_root)
