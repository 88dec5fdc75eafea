"""The private third-party APIs of ledger/compat.py still have the shape the fast paths
rely on, at versions no newer than those checked; and the fast paths that inline public
definitions (verify's workers: the DSSE PAE and the RFC 6962 leaf hash) agree with them."""

from __future__ import annotations

import hashlib
from importlib.metadata import version

import pytest

from ledger import compat, keys, merkle, scanworkers
from ledger.keys import SigningKey


def _major_minor(v: str) -> tuple[int, int]:
    a, b = v.split(".")[:2]
    return int(a), int(b)


@pytest.mark.parametrize("package", sorted(compat.CHECKED))
def test_installed_versions_are_ones_the_private_apis_were_checked_against(package):
    installed, checked = version(package), compat.CHECKED[package]
    assert _major_minor(installed) <= _major_minor(checked), (
        f"{package} {installed} is newer than {checked}, the last release whose private API"
        f" ledger/compat.py was checked against: check it, then raise CHECKED and the bound"
        " in pyproject.toml"
    )


def test_pyproject_bounds_match_the_checked_versions():
    import tomllib
    from pathlib import Path

    deps = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    pinned = {d.split(">")[0].split("<")[0].lower(): d for d in deps["project"]["dependencies"]}
    for package, checked in compat.CHECKED.items():
        major, minor = _major_minor(checked)
        assert f"<{major}.{minor + 1}" in pinned[package], (package, pinned[package])


def test_libsodium_through_cffi_signs_and_opens():
    ffi, lib = compat.sodium()
    key = SigningKey(b"k" * 32)
    message = b"message"
    signed = key.sign(message) + message
    buf = ffi.new("unsigned char[]", len(signed))
    outlen = ffi.new("unsigned long long *")
    assert lib.crypto_sign_open(buf, outlen, signed, len(signed), key.public_key) == 0
    assert ffi.buffer(buf, outlen[0])[:] == message
    forged = bytes([signed[0] ^ 1]) + signed[1:]
    assert lib.crypto_sign_open(buf, outlen, forged, len(forged), key.public_key) != 0


def test_networkx_adjacency_filled_directly_is_a_graph():
    import networkx as nx

    g = nx.MultiDiGraph()
    node, succ, pred = compat.graph_dicts(g)
    assert node is compat.nodes(g) and succ is compat.succ(g) and pred is compat.pred(g)
    assert succ is g._adj  # (networkx keeps one dict for both names)
    attrs = {"kind": "uses"}
    node.update({"a": {"x": 1}, "b": {}})
    succ.update({"a": {"b": {0: attrs}}, "b": {}})
    pred.update({"a": {}, "b": {"a": {0: attrs}}})
    assert list(g.edges(keys=True, data=True)) == [("a", "b", 0, attrs)]
    assert list(g.predecessors("b")) == ["a"] and g.nodes["a"] == {"x": 1}


def test_json_scanner_reads_one_value_without_whitespace():
    scan_once = compat.json_scanner()
    assert scan_once('{"a":[1,2.5,"x"]}', 0) == ({"a": [1, 2.5, "x"]}, 17)
    with pytest.raises(StopIteration):
        scan_once(' {"a":1}', 0)


def test_the_workers_inline_pae_and_leaf_hash_are_the_definitions():
    key = SigningKey(b"w" * 32)
    canons = [b'{"seq":0}', b'{"seq":1,"x":"\xc3\xa9"}']
    sigs = [key.sign(keys.pae(c)) for c in canons]
    hashes = [hashlib.sha256(c).digest() for c in canons]
    kids, known = [key.key_id] * 2, {key.key_id: key.public_key}
    clean = scanworkers._check_rows(0, "", canons, hashes, sigs, kids, known)
    assert clean.rows == 2
    assert clean.leaves == b"".join(merkle.leaf_hash(c) for c in canons)
    assert keys.pae(b"body") == keys.pae_prefix() + b"4 body"


def test_indices_nonzero_of_a_chunked_array_without_chunks() -> None:
    """What a compute function gives for an empty slice; pyarrow's own crashes on it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    empty = pc.is_in(pa.table({"a": ["x"]}).slice(0, 0)["a"], pa.array(["x"]))
    assert empty.num_chunks == 0
    assert compat.indices_nonzero(empty).to_pylist() == []
    assert compat.indices_nonzero(pa.chunked_array([[True, False, True]])).to_pylist() == [0, 2]
