"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs and proof verification (SHA-256).

Pure functions: no I/O. Proof *generation* is written against a callable
``subtree_root(start, end)`` that returns the hash of the leaves ``[start, end)`` for a
*full, aligned* subtree (``end - start`` a power of two and ``start`` a multiple of it).
Every range the RFC algorithms touch is decomposed into such subtrees, so a storage layer
that keeps the root of each full segment of ``2**k`` events can produce roots and proofs
without rehashing the whole ledger. :class:`SubtreeCache` is the in-memory version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

#: ``subtree_root(start, end)`` -> MTH of leaves ``[start, end)``; only ever called for
#: full, aligned subtrees (see module docstring).
SubtreeRoot = Callable[[int, int], bytes]


class MerkleProofError(ValueError):
    """A Merkle proof failed verification or its parameters are out of range."""


#: RFC 6962's domain separation: a leaf's hash input starts with 0x00, a node's with 0x01.
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 leaf hash: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash (MTH) of a list of leaf hashes.

    Level-by-level reduction: pair neighbours left to right and carry an odd last node
    up unchanged. This builds exactly the RFC 6962 tree (split at the largest power of
    two < n) with one list comprehension per level instead of a Python call per node.
    """
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    sha256 = hashlib.sha256
    while len(level) > 1:
        # strict=False: an odd last node has no partner and is carried up below.
        pairs = zip(level[0::2], level[1::2], strict=False)
        paired = [sha256(b"\x01" + a + b).digest() for a, b in pairs]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


class SubtreeCache:
    """In-memory, memoising ``subtree_root`` over a list of leaf hashes.

    Refuses ranges that are not full aligned subtrees, so tests can rely on the proof
    code only asking for what a segment store could precompute.
    """

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        self._leaves = leaf_hashes
        self._memo: dict[tuple[int, int], bytes] = {}

    def __call__(self, start: int, end: int) -> bytes:
        size = end - start
        if size <= 0 or size & (size - 1) or start % size or end > len(self._leaves):
            raise ValueError(f"[{start}, {end}) is not a full aligned subtree")
        if size == 1:
            return self._leaves[start]
        key = (start, end)
        if key not in self._memo:
            self._memo[key] = root(self._leaves[start:end])
        return self._memo[key]


def _split(n: int) -> int:
    """Largest power of two strictly less than ``n`` (n >= 2): RFC 6962's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_root(start: int, end: int, subtree_root: SubtreeRoot) -> bytes:
    """MTH of leaves ``[start, end)`` for a node of the RFC tree, built from full subtrees.

    Every node of the RFC tree starts at a multiple of the smallest power of two >= its
    size, so peeling off the binary digits of its size (largest first) yields aligned
    full subtrees; the node hash is the right fold of their roots.
    """
    pieces = []
    pos, size = start, end - start
    while size:
        step = 1 << (size.bit_length() - 1)
        pieces.append(subtree_root(pos, pos + step))
        pos, size = pos + step, size - step
    acc = pieces.pop()
    while pieces:
        acc = node_hash(pieces.pop(), acc)
    return acc


def root_from(n: int, subtree_root: SubtreeRoot) -> bytes:
    """MTH of the first ``n`` leaves, using only full aligned subtree roots."""
    if n < 0:
        raise ValueError(f"tree size must be >= 0, got {n}")
    return EMPTY_ROOT if n == 0 else _range_root(0, n, subtree_root)


def inclusion_proof_from(index: int, n: int, subtree_root: SubtreeRoot) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(index, D[0:n]), ordered leaf to root."""
    if not 0 <= index < n:
        raise ValueError(f"leaf index {index} out of range for tree size {n}")
    proof = []
    start, end = 0, n
    while end - start > 1:  # descend from the root; each step records one sibling
        k = _split(end - start)
        if index < start + k:
            proof.append(_range_root(start + k, end, subtree_root))
            end = start + k
        else:
            proof.append(subtree_root(start, start + k))
            start += k
    proof.reverse()
    return proof


def consistency_proof_from(m: int, n: int, subtree_root: SubtreeRoot) -> list[bytes]:
    """RFC 9162 2.1.4.1 PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true), for 1 <= m <= n.

    Returns ``[]`` for ``m == n``. ``m == 0`` is refused, matching :func:`verify_consistency`.
    """
    if not 0 < m <= n:
        raise ValueError(f"consistency proof needs 0 < m <= n, got m={m}, n={n}")
    proof = []
    start, end, whole = 0, n, True  # `whole`: SUBPROOF's b flag (still on the left edge)
    while end != m:
        k = _split(end - start)
        if m - start <= k:
            proof.append(_range_root(start + k, end, subtree_root))
            end = start + k
        else:
            proof.append(subtree_root(start, start + k))
            start += k
            whole = False
    if not whole:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}: the old tree's last node
        proof.append(_range_root(start, end, subtree_root))
    proof.reverse()
    return proof


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Inclusion proof for leaf ``index`` in the tree over all of ``leaf_hashes``."""
    return inclusion_proof_from(index, len(leaf_hashes), SubtreeCache(leaf_hashes))


def consistency_proof(m: int, leaf_hashes_of_n: Sequence[bytes]) -> list[bytes]:
    """Consistency proof from the first ``m`` leaves to all of ``leaf_hashes_of_n``."""
    return consistency_proof_from(m, len(leaf_hashes_of_n), SubtreeCache(leaf_hashes_of_n))


def _check_hashes(what: str, hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(hashes):
        if len(h) != HASH_SIZE:
            raise MerkleProofError(f"{what}[{i}] is {len(h)} bytes, expected {HASH_SIZE}")


def _mismatch(what: str, expected: bytes, computed: bytes) -> MerkleProofError:
    return MerkleProofError(
        f"{what} mismatch: expected {expected.hex()}, computed {computed.hex()}"
    )


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof (RFC 9162 2.1.3.2); raise :class:`MerkleProofError` if bad.

    Same accept/reject behaviour as transparency-dev/merkle ``proof.VerifyInclusion``.
    The proof length is checked up front (as that library does) for a precise message.
    A root hash does not commit to its tree size (a size-3 proof also "verifies" as a
    size-4 one), so ``size`` must come from a signed checkpoint, never from the prover.
    """
    if not 0 <= index < size:
        raise MerkleProofError(f"leaf index {index} out of range for tree size {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise MerkleProofError(f"leaf hash is {len(leaf_hash)} bytes, expected {HASH_SIZE}")
    _check_hashes("proof", proof)
    inner = (index ^ (size - 1)).bit_length()  # levels where the path has a sibling below
    want = inner + (index >> inner).bit_count()  # ... plus left siblings on the right border
    if len(proof) != want:
        raise MerkleProofError(f"inclusion proof has {len(proof)} hashes, expected {want}")
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise MerkleProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:  # right border: skip levels without a sibling
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise MerkleProofError("inclusion proof is too short")
    if r != root:
        raise _mismatch("root", root, r)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check a consistency proof (RFC 9162 2.1.4.2); raise :class:`MerkleProofError` if bad.

    Same accept/reject behaviour as transparency-dev/merkle ``proof.VerifyConsistency`` at
    the commit the shared probe vectors come from:

    * ``size1 == size2``: the proof must be empty and the roots byte-equal (roots are not
      length-checked here, as in that library);
    * ``size1 == 0`` is always an error, even ``0 -> 0`` with equal roots ("consistency
      proof from empty tree is meaningless"). RFC 9162 only defines ``0 < size1 < size2``,
      and newer transparency-dev/merkle releases instead accept ``size1 == 0`` with an
      empty proof. Every tree is trivially consistent with the empty tree, so callers
      that need that case must special-case it rather than ask for a proof.
    """
    if size1 > size2:
        raise MerkleProofError(f"size1 ({size1}) > size2 ({size2})")
    if size1 <= 0:
        raise MerkleProofError("consistency proof from an empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise MerkleProofError(f"size1 == size2 but proof has {len(proof)} hashes")
        if root1 != root2:
            raise _mismatch("root", root1, root2)
        return
    _check_hashes("proof", proof)
    # Expected length: the inclusion path of leaf size1-1 in the size2 tree, minus the
    # levels inside the largest full subtree ending at size1, plus that subtree's root
    # unless it is the whole old tree (size1 a power of two: the verifier has root1).
    shift = (size1 & -size1).bit_length() - 1
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    want = inner - shift + ((size1 - 1) >> inner).bit_count() + (size1 != 1 << shift)
    if len(proof) != want:
        raise MerkleProofError(f"consistency proof has {len(proof)} hashes, expected {want}")
    path = [root1, *proof] if size1 == 1 << shift else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MerkleProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise MerkleProofError("consistency proof is too short")
    if fr != root1:
        raise _mismatch("root1", root1, fr)
    if sr != root2:
        raise _mismatch("root2", root2, sr)
