"""Evidence bundles: built from a real ledger, verified offline, broken by any byte."""

from __future__ import annotations

import json

import pytest

from ledger import SigningKey, evidence
from ledger.keys import public_key_pem, write_key_files

XGB = "fraud.detector.xgb"


@pytest.fixture
def bundle(history, tmp_path, invoke):
    t = history
    t.keys["cp"] = SigningKey(b"k" * 32)
    t.key_files["cp"] = tmp_path / "keys" / "cp.pem"
    write_key_files(t.key_files["cp"], t.keys["cp"])
    t.ledger.add_key(t.keys["cp"].public_key, "cp", "checkpointer", key=t.keys["admin"])
    t.ledger.register(XGB, key=t.keys["alice"])  # another version: not in xgb:1's bundle
    r = invoke(["checkpoint"], env=t.env("cp"))
    assert r.exit_code == 0, r.stderr
    t.bundle = tmp_path / "xgb1.json"
    (tmp_path / "cp.pub").write_bytes(public_key_pem(t.keys["cp"].public_key))
    t.cp_pub = tmp_path / "cp.pub"
    return t


def _ts(led, seq: int) -> str:
    from ledger import events as E

    return E.format_ts(led.events().column("ts").cast("int64")[seq].as_py())


def test_evidence_round_trip(bundle, invoke):
    t = bundle
    r = invoke(["evidence", f"{XGB}:1", "--out", str(t.bundle)], env=t.env())
    assert (r.exit_code, r.stdout) == (
        0,
        f"wrote {t.bundle}: the complete story of {XGB}:1, 5 events and the 4 key-registry"
        " events its signatures need, proved against the checkpoint of size 13\n",
    )
    doc = json.loads(t.bundle.read_bytes())
    assert len(doc["events"]) == 5 + 4  # genesis, the key_adds of alice, bob and carol
    assert len(doc["signer_keys"]) == 1  # cp's key_add: the checkpoint's signer
    led = t.ledger
    cp = f"cp (key {t.keys['cp'].key_id})"
    story = (
        f"{XGB}:1 registered by alice at {_ts(led, 6)}, approved for staging by bob at"
        f" {_ts(led, 7)}, deployed to staging by carol at {_ts(led, 8)}, approved for production"
        f" by bob at {_ts(led, 9)}, deployed to production by carol at {_ts(led, 10)}; the"
        " complete story (5 events, no policy in force), all signatures valid, included in"
        f" checkpoint of size 13 of {led.origin} signed by {cp}"
    )
    r = invoke(["verify-evidence", str(t.bundle)])
    assert (r.exit_code, r.stdout) == (
        0,
        f"OK: {story}, a checkpointer key registered by the bundle's own key events (pass"
        " --trusted-key to anchor trust)\n",
    )
    r = invoke(["verify-evidence", str(t.bundle), "--trusted-key", str(t.cp_pub)])
    assert (r.exit_code, r.stdout) == (
        0,
        f"OK: {story.replace(cp, 'trusted key ' + t.keys['cp'].key_id)}\n",
    )


def test_wrong_trusted_key_fails(bundle, invoke, tmp_path):
    t = bundle
    invoke(["evidence", f"{XGB}:1", "--out", str(t.bundle)], env=t.env())
    (tmp_path / "other.pub").write_bytes(public_key_pem(t.keys["alice"].public_key))
    r = invoke(["verify-evidence", str(t.bundle), "--trusted-key", str(tmp_path / "other.pub")])
    assert (r.exit_code, r.stdout) == (
        1,
        "FAIL: the bundle's checkpoint is not signed by a trusted key\n",
    )


def test_evidence_for_unknown_version(bundle, invoke):
    r = invoke(["evidence", f"{XGB}:9", "--out", str(bundle.bundle)], env=bundle.env())
    assert r.exit_code == 3
    assert r.stderr.startswith(f"Error: {XGB}:9 is not registered in the checkpoint of size 13")
    assert not bundle.bundle.exists()


def test_any_changed_byte_fails(bundle):
    t = bundle
    data = evidence.dumps(t.ledger.evidence(XGB, 1))
    assert evidence.check(data).events == 5
    positions = sorted(
        set(range(0, len(data), 7)) | set(range(200)) | set(range(len(data) - 200, len(data)))
    )
    for pos in positions:
        for flip in (0x01, 0x20):
            bad = bytearray(data)
            bad[pos] ^= flip
            try:
                evidence.check(bytes(bad))
            except Exception as exc:
                assert type(exc).__name__ in ("InputError", "Incomplete", "KeyProblem"), (pos, exc)
                continue
            raise AssertionError(
                f"byte {pos} changed (xor {flip:#x}) and the bundle still verified"
            )


def test_missing_bundle_file(invoke, tmp_path):
    r = invoke(["verify-evidence", str(tmp_path / "nope.json")])
    assert (r.exit_code, r.stderr) == (
        2,
        f"Error: evidence bundle {tmp_path / 'nope.json'} does not exist\n",
    )


def test_trusted_key_as_a_c2sp_verifier_key(bundle, invoke):
    from ledger import note

    t = bundle
    invoke(["evidence", f"{XGB}:1", "--out", str(t.bundle)], env=t.env())
    vkey = note.vkey(t.ledger.origin, t.keys["cp"].public_key)
    r = invoke(["verify-evidence", str(t.bundle), "--trusted-key", vkey])
    assert r.exit_code == 0, r.stdout
    label = "+".join(vkey.split("+")[:2])  # name+keyid
    assert r.stdout.endswith(f" signed by trusted key {label}\n")
    other = note.vkey("other.example/log", t.keys["cp"].public_key)  # same key, other name
    r = invoke(["verify-evidence", str(t.bundle), "--trusted-key", other])
    assert (r.exit_code, r.stdout) == (
        1,
        "FAIL: the bundle's checkpoint is not signed by a trusted key\n",
    )
