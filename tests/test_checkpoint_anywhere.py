"""Checkpoints from anywhere: keys given as PEM or C2SP verifier keys, cosigned
checkpoints, consistency proofs between external checkpoints, and verify-checkpoint."""

from __future__ import annotations

import json

import pytest

from ledger import Ledger, SigningKey, merkle, note
from ledger import checkpoint as C
from ledger.keys import VerifierKey, public_key_pem, write_key_files

XGB = "fraud.detector.xgb"
WITNESS = SigningKey(b"w" * 32)


@pytest.fixture
def ck(history, tmp_path):
    """``history`` plus ``cp``, a key holding the checkpointer role (seq 11), and the
    public key file of ``WITNESS``, a key the ledger does not list."""
    t = history
    t.keys["cp"] = SigningKey(b"k" * 32)
    t.key_files["cp"] = tmp_path / "keys" / "cp.pem"
    write_key_files(t.key_files["cp"], t.keys["cp"])
    t.ledger.add_key(t.keys["cp"].public_key, "cp", "checkpointer", key=t.keys["admin"])
    (tmp_path / "w.pub").write_bytes(public_key_pem(WITNESS.public_key))
    return t


def roots(led: Ledger) -> list[bytes]:
    """The ledger's Merkle root at every size 0..n."""
    leaves = [merkle.leaf_hash(c) for c in led.events().column("canonical").to_pylist()]
    return [merkle.root(leaves[:n]) for n in range(len(leaves) + 1)]


def cosign(signed: str, key: SigningKey, name: str) -> str:
    """``signed`` with one more signature line, by ``key`` under ``name``."""
    body = signed[: signed.rfind("\n\n") + 1]
    return signed + note.sign_note(body, name, key.sign, key.public_key)[len(body) + 1 :]


# --- prove --consistency with --trusted-key, and keys in the C2SP form ----------------------


def test_consistency_between_checkpoints_of_an_outside_signer(ck, invoke, tmp_path):
    led = ck.ledger
    for _ in range(5):
        led.register(XGB, key=ck.keys["alice"])
    r = roots(led)
    (tmp_path / "w12").write_text(C.sign(led.origin, 12, r[12], WITNESS))
    (tmp_path / "w17").write_text(C.sign(led.origin, 17, r[17], WITNESS))
    args = ["prove", "--consistency", str(tmp_path / "w12"), str(tmp_path / "w17")]
    res = invoke(args, env=ck.env())
    assert (res.exit_code, res.stderr) == (
        5,
        f"Error: {tmp_path / 'w12'} is not signed by a checkpointer key of this ledger\n",
    )
    vkey = note.vkey(led.origin, WITNESS.public_key)
    (tmp_path / "w.vkey").write_text(vkey + "\n")
    for key in (str(tmp_path / "w.pub"), vkey, str(tmp_path / "w.vkey")):
        res = invoke([*args, "--trusted-key", key], env=ck.env())
        assert res.exit_code == 0, res.stderr
        doc = json.loads(res.stdout)
        assert (doc["old_size"], doc["new_size"]) == (12, 17)
        merkle.verify_consistency(12, 17, [bytes.fromhex(h) for h in doc["hashes"]], r[12], r[17])
    # A verifier key names its signer: under another name it matches no signature line.
    other = note.vkey("witness.example/w", WITNESS.public_key)
    res = invoke([*args, "--trusted-key", other], env=ck.env())
    assert (res.exit_code, res.stderr) == (
        5,
        f"Error: {tmp_path / 'w12'} is not signed by a trusted key\n",
    )


def test_exported_and_cosigned_checkpoints(ck, invoke, tmp_path):
    """Checkpoints exported with ``checkpoint --out``, then cosigned by a witness: each
    verifies with the ledger's key or the witness's; the extra line is ignored."""
    led = ck.ledger
    invoke(["checkpoint", "--out", str(tmp_path / "old.cp")], env=ck.env("cp"))
    for _ in range(3):
        led.register(XGB, key=ck.keys["alice"])
    invoke(["checkpoint", "--out", str(tmp_path / "new.cp")], env=ck.env("cp"))
    new = (tmp_path / "new.cp").read_text()
    (tmp_path / "new.cp").write_text(cosign(new, WITNESS, led.origin))
    w = ["--trusted-key", str(tmp_path / "w.pub")]
    old, cosigned = str(tmp_path / "old.cp"), str(tmp_path / "new.cp")
    for extra in ([], w):  # old: the ledger's checkpointer only; new: both lines
        res = invoke(["prove", "--consistency", old, cosigned, *extra], env=ck.env())
        assert res.exit_code == 0, res.stderr
        assert json.loads(res.stdout)["new_checkpoint"].count("\n\u2014 ") == 2
    res = invoke(["prove", "14", "--checkpoint", cosigned, *w], env=ck.env())
    assert (res.exit_code, json.loads(res.stdout)["tree_size"]) == (0, 15)
    res = invoke(["verify", "--trusted", cosigned, *w], env=ck.env())
    assert (res.exit_code, res.stdout) == (0, f"OK: 15 events, head {led.store.tail()[1].hex()}\n")
    # The witness's line made the file differ from the stored one, not the checkpoint.
    assert led.open_checkpoint(cosigned).signer == f"cp (key {ck.keys['cp'].key_id})"
    assert led.open_checkpoint(cosigned, [WITNESS.public_key]).signer == (
        f"trusted key {WITNESS.key_id}"
    )


def test_extension_lines_are_accepted_where_checkpoints_are_opened(ck, invoke, tmp_path):
    led = ck.ledger
    body = note.format_checkpoint(led.origin, 12, roots(led)[12], ["ext one", "ext: two"])
    text = note.sign_note(body, led.origin, ck.keys["cp"].sign, ck.keys["cp"].public_key)
    (tmp_path / "ext.cp").write_text(text)
    res = invoke(["verify", "--trusted", str(tmp_path / "ext.cp")], env=ck.env())
    assert res.exit_code == 0, res.stdout
    res = invoke(["prove", "3", "--checkpoint", str(tmp_path / "ext.cp")], env=ck.env())
    assert json.loads(res.stdout)["checkpoint"] == text


def test_open_checkpoint_with_verifier_keys():
    from tests.conftest import vectors

    v = vectors("tlog_checkpoint_vectors.json")
    name, _, pub = note.parse_vkey(v["vkey"])
    for item in v["checkpoints"]:
        cp = C.open_checkpoint(
            item["checkpoint_note"], v["origin"], trusted=[VerifierKey(pub, name)]
        )
        assert (cp.size, cp.signer) == (item["tree_size"], "trusted key " + v["vkey"][:33])
