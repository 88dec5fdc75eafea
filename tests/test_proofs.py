"""Inclusion and consistency proofs from the CLI and the API, and the block-root cache."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import Ledger, SigningKey, merkle, tree
from ledger import events as E
from ledger.keys import write_key_files


@pytest.fixture
def ck(history, tmp_path):
    t = history
    t.keys["cp"] = SigningKey(b"k" * 32)
    t.key_files["cp"] = tmp_path / "keys" / "cp.pem"
    write_key_files(t.key_files["cp"], t.keys["cp"])
    t.ledger.add_key(t.keys["cp"].public_key, "cp", "checkpointer", key=t.keys["admin"])
    return t


def leaves_of(led: Ledger) -> list[bytes]:
    return [merkle.leaf_hash(c) for c in led.events().column("canonical").to_pylist()]


def test_prove_seq_verifies_independently(ck, invoke):
    invoke(["checkpoint"], env=ck.env("cp"))
    r = invoke(["prove", "7"], env=ck.env())
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert (doc["type"], doc["seq"], doc["tree_size"]) == ("inclusion", 7, 12)
    leaf = merkle.leaf_hash(doc["event"].encode())
    assert leaf.hex() == doc["leaf_hash"]
    import base64

    root = base64.b64decode(doc["root"])
    merkle.verify_inclusion(7, 12, leaf, [bytes.fromhex(h) for h in doc["hashes"]], root)
    assert json.loads(doc["event"])["seq"] == 7
    assert doc["checkpoint"].startswith(f"{ck.ledger.origin}\n12\n{doc['root']}\nledger-story/2 ")


def test_prove_against_an_older_checkpoint_and_consistency(ck, invoke, tmp_path):
    invoke(["checkpoint", "--out", str(tmp_path / "old.cp")], env=ck.env("cp"))
    for _ in range(5):
        ck.ledger.register("fraud.detector.xgb", key=ck.keys["alice"])
    invoke(["checkpoint", "--out", str(tmp_path / "new.cp")], env=ck.env("cp"))
    r = invoke(["prove", "3", "--checkpoint", str(tmp_path / "old.cp")], env=ck.env())
    assert json.loads(r.stdout)["tree_size"] == 12
    r = invoke(["prove", "14", "--checkpoint", str(tmp_path / "old.cp")], env=ck.env())
    signer = f"cp (key {ck.keys['cp'].key_id})"
    assert (r.exit_code, r.stderr) == (
        2,
        f"Error: event seq 14 is not covered by the checkpoint of size 12 signed by {signer}\n",
    )
    r = invoke(
        ["prove", "--consistency", str(tmp_path / "old.cp"), str(tmp_path / "new.cp")],
        env=ck.env(),
    )
    doc = json.loads(r.stdout)
    assert (doc["type"], doc["old_size"], doc["new_size"]) == ("consistency", 12, 17)
    import base64

    merkle.verify_consistency(
        12,
        17,
        [bytes.fromhex(h) for h in doc["hashes"]],
        base64.b64decode(doc["old_root"]),
        base64.b64decode(doc["new_root"]),
    )
    r = invoke(
        ["prove", "--consistency", str(tmp_path / "new.cp"), str(tmp_path / "old.cp")],
        env=ck.env(),
    )
    assert (r.exit_code, r.stderr) == (
        2,
        "Error: the old checkpoint (size 17) is larger than the new one (size 12); pass them"
        " as OLD NEW\n",
    )


def test_prove_without_any_checkpoint(ck, invoke):
    r = invoke(["prove", "3"], env=ck.env())
    assert (r.exit_code, r.stderr) == (
        3,
        "Error: no checkpoint has been issued for this ledger; run ledger checkpoint"
        " (or pass --checkpoint FILE)\n",
    )
    r = invoke(["prove"], env=ck.env())
    assert (r.exit_code, r.stderr) == (
        2,
        "Error: give the SEQ of an event, or --consistency OLD NEW\n",
    )


def test_altered_cache_never_yields_a_wrong_proof(ck, monkeypatch):
    monkeypatch.setattr(tree, "BLOCK", 4)
    cp = ck.ledger.checkpoint(ck.keys["cp"])
    cache = tree.read_cache(ck.ledger.store)
    leaves = leaves_of(ck.ledger)
    assert cache == [merkle.root(leaves[i : i + 4]) for i in (0, 4, 8)]
    with ck.ledger.store.lock():
        tree.write_cache(ck.ledger.store, [b"\x00" * 32] * 3)
    doc = ck.ledger.prove(1)
    merkle.verify_inclusion(1, 12, leaves[1], [bytes.fromhex(h) for h in doc["hashes"]], cp.root)
    r = ck.ledger.verify()
    assert (r.problems[0].kind, r.problems[0].seq) == ("tree_cache", 0)


# --- the on-disk tree against the reference, with tiny blocks so the cache path is used --------


@pytest.fixture(scope="module")
def forty(tmp_path_factory):
    path = tmp_path_factory.mktemp("forty") / "reg"
    admin = SigningKey(b"a" * 32)
    led = Ledger.init(path, admin, "admin", roles="admin,registrar")
    led.append_many([E.Draft(E.REGISTER, E.register_payload(), "m") for _ in range(39)], admin)
    leaves = leaves_of(led)
    return led, leaves


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_tree_matches_reference(forty, data):
    led, leaves = forty
    n = data.draw(st.integers(1, len(leaves)), label="n")
    m = data.draw(st.integers(1, n), label="m")
    i = data.draw(st.integers(0, n - 1), label="i")
    old = tree.BLOCK
    tree.BLOCK = 4
    try:
        cached = [merkle.root(leaves[b : b + 4]) for b in range(0, len(leaves) - 3, 4)]
        with led.store.lock():
            tree.write_cache(led.store, cached)
        for t in (
            tree.Tree(led.store, n),
            tree.Tree(led.store, n, use_cache=False),
            tree.Tree(led.store, n, fresh_from=m),
        ):
            assert t.root() == merkle.root(leaves[:n])
            assert t.inclusion(i) == merkle.inclusion_proof(i, leaves[:n])
            assert t.consistency(m) == merkle.consistency_proof(m, leaves[:n])
        lt = tree.LeafTree(leaves)
        assert lt.root(n) == merkle.root(leaves[:n])
    finally:
        tree.BLOCK = old
        with led.store.lock():
            led.store.drop_cached(tree.CACHE_FILE)
