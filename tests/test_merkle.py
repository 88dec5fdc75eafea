"""Tests for ledger.merkle: published vectors, transparency-dev probes, and property tests
against a deliberately naive recursive RFC 6962 reference written below."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.merkle import MerkleProofError

#: Published test vectors, copied from ../shared/vectors with their sources (tests/vectors/README.md).
VECTORS = Path(__file__).resolve().parent / "vectors"
RFC_FILE = VECTORS / "rfc6962_vectors.json"
H = bytes.fromhex


_VEC = json.loads(RFC_FILE.read_text())  # (committed: a missing file fails, never skips)


@pytest.fixture
def vec() -> dict:
    return _VEC


def _probe_params(key: str) -> list:
    return [pytest.param(p, id=f"{p['file']}") for p in _VEC[key]]


# --- naive reference (RFC 6962 section 2.1, recursive, generic over the node function) ---


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list, node: Callable = merkle.node_hash):
    if len(d) == 1:
        return d[0]
    k = ref_k(len(d))
    return node(ref_mth(d[:k], node), ref_mth(d[k:], node))


def ref_path(m: int, d: list, node: Callable = merkle.node_hash) -> list:
    if len(d) == 1:
        return []
    k = ref_k(len(d))
    if m < k:
        return [*ref_path(m, d[:k], node), ref_mth(d[k:], node)]
    return [*ref_path(m - k, d[k:], node), ref_mth(d[:k], node)]


def ref_subproof(m: int, d: list, b: bool, node: Callable = merkle.node_hash) -> list:
    if m == len(d):
        return [] if b else [ref_mth(d, node)]
    k = ref_k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b, node), ref_mth(d[k:], node)]
    return [*ref_subproof(m - k, d[k:], False, node), ref_mth(d[:k], node)]


# Symbolic trees: leaves are ints, nodes are (left, right) tuples. Rewriting a root in terms
# of the proof elements gives the *shape* of a proof; two (index, size) or (size1, size2)
# parameter sets with the same shape make any correct verifier compute the same thing,
# so a proof checked against wrong parameters must fail exactly when the shapes differ.


def _sym(left, right):
    return (left, right)


def _express(t, names: dict):
    if t in names:
        return names[t]
    if isinstance(t, tuple):
        return (_express(t[0], names), _express(t[1], names))
    return t


def incl_shape(index: int, size: int):
    d = list(range(size))
    names = {p: ("P", i) for i, p in enumerate(ref_path(index, d, _sym))}
    names[index] = "LEAF"
    return _express(ref_mth(d, _sym), names)


def cons_shape(m: int, n: int):
    d = list(range(n))
    names = {p: ("P", i) for i, p in enumerate(ref_subproof(m, d, True, _sym))}
    r1 = ref_mth(d[:m], _sym)
    if m & (m - 1) == 0:  # power of two: the verifier seeds with root1 itself
        names[r1] = "R1"
    return _express(r1, names), _express(ref_mth(d, _sym), names)


MAX_N = 300
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_N)]


class Recorder:
    """subtree_root wrapper asserting every requested range is a full aligned subtree."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.inner = merkle.SubtreeCache(leaves)
        self.calls: list[tuple[int, int]] = []

    def __call__(self, start: int, end: int) -> bytes:
        size = end - start
        assert size > 0 and size & (size - 1) == 0, (start, end)
        assert start % size == 0, (start, end)
        self.calls.append((start, end))
        return self.inner(start, end)


def _flip(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    out = list(proof)
    b = bytearray(out[i])
    b[bit // 8] ^= 1 << (bit % 8)
    out[i] = bytes(b)
    return out


def _passes(fn: Callable, *args) -> bool:
    try:
        fn(*args)
    except MerkleProofError:
        return False
    return True


# --- published vectors ---


def test_hasher_vectors(vec: dict) -> None:
    hv = vec["hasher_vectors"]
    assert merkle.EMPTY_ROOT.hex() == hv[0]["expected_hex"]
    assert merkle.root([]).hex() == hv[0]["expected_hex"]
    assert merkle.leaf_hash(H(hv[1]["leaf_input_hex"])).hex() == hv[1]["expected_hex"]
    assert merkle.leaf_hash(H(hv[2]["leaf_input_hex"])).hex() == hv[2]["expected_hex"]
    got = merkle.node_hash(H(hv[3]["left_hex"]), H(hv[3]["right_hex"]))
    assert got.hex() == hv[3]["expected_hex"]


def test_roots_and_node_hashes(vec: dict) -> None:
    leaves = [merkle.leaf_hash(H(x)) for x in vec["leaf_inputs_hex"]]
    for n, want in vec["roots_by_tree_size"].items():
        assert merkle.root(leaves[: int(n)]).hex() == want
        assert merkle.root_from(int(n), Recorder(leaves)).hex() == want
    cache = merkle.SubtreeCache(leaves)
    for level, hashes in enumerate(vec["node_hashes_by_level"]["levels"]):
        for i, want in enumerate(hashes):
            assert cache(i << level, (i + 1) << level).hex() == want


def test_published_inclusion_proofs(vec: dict) -> None:
    leaves = [merkle.leaf_hash(H(x)) for x in vec["leaf_inputs_hex"]]
    for p in vec["inclusion_proofs"]:
        assert p["leaf_index"] == p["leaf_index_1based"] - 1
        got = merkle.inclusion_proof(p["leaf_index"], leaves[: p["tree_size"]])
        assert [h.hex() for h in got] == p["proof_hex"]
        lh = merkle.leaf_hash(H(p["leaf_input_hex"]))
        merkle.verify_inclusion(p["leaf_index"], p["tree_size"], lh, got, H(p["root_hex"]))


def test_published_consistency_proofs(vec: dict) -> None:
    leaves = [merkle.leaf_hash(H(x)) for x in vec["leaf_inputs_hex"]]
    for p in vec["consistency_proofs"]:
        got = merkle.consistency_proof(p["size1"], leaves[: p["size2"]])
        assert [h.hex() for h in got] == p["proof_hex"]
        merkle.verify_consistency(p["size1"], p["size2"], got, H(p["root1_hex"]), H(p["root2_hex"]))


@pytest.mark.parametrize("probe", _probe_params("inclusion_probes"))
def test_inclusion_probe(probe: dict) -> None:
    args = (
        probe["leafIdx"],
        probe["treeSize"],
        H(probe["leafHash_hex"]),
        [H(x) for x in probe["proof_hex"]],
        H(probe["root_hex"]),
    )
    assert _passes(merkle.verify_inclusion, *args) is not probe["wantErr"]


@pytest.mark.parametrize("probe", _probe_params("consistency_probes"))
def test_consistency_probe(probe: dict) -> None:
    args = (
        probe["size1"],
        probe["size2"],
        [H(x) for x in probe["proof_hex"]],
        H(probe["root1_hex"]),
        H(probe["root2_hex"]),
    )
    assert _passes(merkle.verify_consistency, *args) is not probe["wantErr"]


def test_probe_counts(vec: dict) -> None:
    probes = vec["inclusion_probes"] + vec["consistency_probes"]
    assert len(probes) == 196
    assert sum(not p["wantErr"] for p in probes) == 12


# --- property tests against the reference ---


@settings(max_examples=150, deadline=None)
@given(n=st.integers(0, MAX_N))
def test_root_matches_reference(n: int) -> None:
    want = merkle.EMPTY_ROOT if n == 0 else ref_mth(LEAVES[:n])
    assert merkle.root(LEAVES[:n]) == want
    rec = Recorder(LEAVES[:n])
    assert merkle.root_from(n, rec) == want
    assert len(rec.calls) == n.bit_count()  # one full subtree per binary digit of n


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, MAX_N))
def test_inclusion_matches_reference(data: st.DataObject, n: int) -> None:
    index = data.draw(st.integers(0, n - 1), label="index")
    leaves, rt = LEAVES[:n], ref_mth(LEAVES[:n])
    want = ref_path(index, leaves)
    assert merkle.inclusion_proof(index, leaves) == want
    assert merkle.inclusion_proof_from(index, n, Recorder(leaves)) == want
    merkle.verify_inclusion(index, n, leaves[index], want, rt)

    if want:  # any single flipped bit in any proof hash breaks it
        i = data.draw(st.integers(0, len(want) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        assert not _passes(
            merkle.verify_inclusion, index, n, leaves[index], _flip(want, i, bit), rt
        )
    bit = data.draw(st.integers(0, 255), label="root bit")
    assert not _passes(
        merkle.verify_inclusion, index, n, leaves[index], want, _flip([rt], 0, bit)[0]
    )
    assert not _passes(
        merkle.verify_inclusion, index, n, _flip([leaves[index]], 0, bit)[0], want, rt
    )

    # Wrong index or size: fails unless the proof has exactly the same shape.
    near = [index - 1, index + 1, index ^ 1, index ^ 2, n - 1 - index, 0, n - 1]
    idx2 = data.draw(st.sampled_from(near) | st.integers(-1, MAX_N), label="index2")
    n2 = data.draw(st.sampled_from([n, n - 1, n + 1, n * 2, n // 2]) | st.integers(0, MAX_N))
    if (idx2, n2) == (index, n):
        return
    ok = _passes(merkle.verify_inclusion, idx2, n2, leaves[index], want, rt)
    assert ok == (0 <= idx2 < n2 and incl_shape(idx2, n2) == incl_shape(index, n))
    if n2 == n:  # within one tree size the path always pins the index
        assert not ok


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, MAX_N))
def test_consistency_matches_reference(data: st.DataObject, n: int) -> None:
    m = data.draw(st.integers(1, n), label="m")
    leaves = LEAVES[:n]
    r1, r2 = ref_mth(leaves[:m]), ref_mth(leaves)
    want = ref_subproof(m, leaves, True)
    assert merkle.consistency_proof(m, leaves) == want
    assert merkle.consistency_proof_from(m, n, Recorder(leaves)) == want
    merkle.verify_consistency(m, n, want, r1, r2)

    if want:
        i = data.draw(st.integers(0, len(want) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        assert not _passes(merkle.verify_consistency, m, n, _flip(want, i, bit), r1, r2)
    bit = data.draw(st.integers(0, 255), label="root bit")
    assert not _passes(merkle.verify_consistency, m, n, want, _flip([r1], 0, bit)[0], r2)
    assert not _passes(merkle.verify_consistency, m, n, want, r1, _flip([r2], 0, bit)[0])

    m2 = data.draw(st.sampled_from([m - 1, m + 1, m ^ 2, 0, n]) | st.integers(0, MAX_N))
    n2 = data.draw(st.sampled_from([n, n - 1, n + 1, n * 2, n // 2]) | st.integers(0, MAX_N))
    if (m2, n2) == (m, n):
        return
    ok = _passes(merkle.verify_consistency, m2, n2, want, r1, r2)
    if not 0 < m2 <= n2:
        expected = False
    elif m2 == n2:  # an empty proof and equal roots say nothing about the size
        expected = not want and r1 == r2
    else:
        expected = m < n and cons_shape(m2, n2) == cons_shape(m, n)
    assert ok == expected


def test_wrong_size_with_same_shape_verifies() -> None:
    """The root hash does not commit to the tree size: a proof for size 3 also "verifies"
    as a size-4 proof against the size-3 root. Sizes must come from a signed checkpoint."""
    leaves = LEAVES[:3]
    rt = merkle.root(leaves)
    proof = merkle.inclusion_proof(0, leaves)
    merkle.verify_inclusion(0, 4, leaves[0], proof, rt)
    proof = merkle.consistency_proof(1, leaves)
    merkle.verify_consistency(1, 4, proof, leaves[0], rt)


def test_all_small_trees_exhaustively() -> None:
    for n in range(1, 40):
        leaves, rt = LEAVES[:n], merkle.root(LEAVES[:n])
        for i in range(n):
            proof = merkle.inclusion_proof(i, leaves)
            assert proof == ref_path(i, leaves)
            merkle.verify_inclusion(i, n, leaves[i], proof, rt)
        for m in range(1, n + 1):
            proof = merkle.consistency_proof(m, leaves)
            assert proof == ref_subproof(m, leaves, True)
            merkle.verify_consistency(m, n, proof, merkle.root(leaves[:m]), rt)


# --- subtree_root-callable API, edge cases and error messages ---


def test_segment_store_reads_few_leaves() -> None:
    """A storage layer with precomputed roots of full 64-leaf segments only hashes leaves
    inside one partial range per proof."""
    seg, n = 64, 10_000
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    seg_roots = [merkle.root(leaves[s : s + seg]) for s in range(0, n - seg + 1, seg)]
    reads: list[int] = []

    def subtree_root(start: int, end: int) -> bytes:
        if end - start >= seg:  # aligned, so exactly whole segments
            return merkle.root(seg_roots[start // seg : end // seg])
        reads.append(end - start)
        return merkle.root(leaves[start:end])

    rt = merkle.root(leaves)
    assert merkle.root_from(n, subtree_root) == rt
    for index in (0, 5_000, 9_983, n - 1):
        reads.clear()
        proof = merkle.inclusion_proof_from(index, n, subtree_root)
        merkle.verify_inclusion(index, n, leaves[index], proof, rt)
        assert sum(reads) <= 2 * seg
    for m in (1, 63, 64, 4_097, 9_999):
        reads.clear()
        proof = merkle.consistency_proof_from(m, n, subtree_root)
        assert proof == merkle.consistency_proof(m, leaves)
        merkle.verify_consistency(m, n, proof, merkle.root(leaves[:m]), rt)
        assert sum(reads) <= 2 * seg


def test_subtree_cache_rejects_unaligned_ranges() -> None:
    cache = merkle.SubtreeCache(LEAVES[:8])
    assert cache(4, 8) == ref_mth(LEAVES[4:8])
    for start, end in [(1, 3), (0, 3), (2, 6), (4, 4), (8, 16), (3, 2)]:
        with pytest.raises(ValueError):
            cache(start, end)


def test_generation_argument_errors() -> None:
    with pytest.raises(ValueError):
        merkle.inclusion_proof(3, LEAVES[:3])
    with pytest.raises(ValueError):
        merkle.inclusion_proof(-1, LEAVES[:3])
    with pytest.raises(ValueError):
        merkle.consistency_proof(0, LEAVES[:3])
    with pytest.raises(ValueError):
        merkle.consistency_proof(4, LEAVES[:3])
    with pytest.raises(ValueError):
        merkle.root_from(-1, merkle.SubtreeCache([]))
    assert merkle.root_from(0, merkle.SubtreeCache([])) == hashlib.sha256(b"").digest()
    assert merkle.consistency_proof(5, LEAVES[:5]) == []


def test_error_messages_name_roots() -> None:
    leaves = LEAVES[:5]
    rt, bad = merkle.root(leaves), b"\x11" * 32
    proof = merkle.inclusion_proof(2, leaves)
    with pytest.raises(MerkleProofError, match=f"expected {bad.hex()}, computed {rt.hex()}"):
        merkle.verify_inclusion(2, 5, leaves[2], proof, bad)
    proof = merkle.consistency_proof(3, leaves)
    with pytest.raises(MerkleProofError, match=f"root2 mismatch: expected {bad.hex()}"):
        merkle.verify_consistency(3, 5, proof, merkle.root(leaves[:3]), bad)
    with pytest.raises(MerkleProofError, match="expected 3"):
        merkle.verify_inclusion(2, 5, leaves[2], proof[:2], rt)
    with pytest.raises(MerkleProofError, match="empty tree"):
        merkle.verify_consistency(0, 0, [], merkle.EMPTY_ROOT, merkle.EMPTY_ROOT)
    with pytest.raises(MerkleProofError, match="bytes"):
        merkle.verify_inclusion(0, 2, leaves[0], [b"short"], rt)
    assert issubclass(MerkleProofError, ValueError)


def test_medium_tree_agrees_with_subtree_api() -> None:
    n = (1 << 16) + 3
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    rt = merkle.root(leaves)
    rec = Recorder(leaves)
    assert merkle.root_from(n, rec) == rt
    for index in (0, 1, 40_000, n - 1):
        proof = merkle.inclusion_proof_from(index, n, rec)
        merkle.verify_inclusion(index, n, leaves[index], proof, rt)
    proof = merkle.consistency_proof_from(50_001, n, rec)
    merkle.verify_consistency(50_001, n, proof, merkle.root(leaves[:50_001]), rt)


@pytest.mark.slow
def test_million_leaves() -> None:
    n = 1_000_000
    leaves = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    rt = merkle.root(leaves)
    cache = merkle.SubtreeCache(leaves)
    assert merkle.root_from(n, cache) == rt
    proof = merkle.inclusion_proof_from(123_457, n, cache)
    merkle.verify_inclusion(123_457, n, leaves[123_457], proof, rt)
    proof = merkle.consistency_proof_from(777_777, n, cache)
    merkle.verify_consistency(777_777, n, proof, merkle.root(leaves[:777_777]), rt)
