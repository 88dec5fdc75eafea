"""Checkpoints from anywhere: keys given as PEM or C2SP verifier keys, cosigned
checkpoints, consistency proofs between external checkpoints, and verify-checkpoint."""

from __future__ import annotations

import base64
import json

import pytest

from ledger import Ledger, SigningKey, checkpointcheck, merkle, note
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
        f"Error: {tmp_path / 'w12'} (size 12) is not signed by a checkpointer key this ledger"
        " registers (if a rollback removed its signer's key_add, check it with --trusted-key"
        " KEY)\n",
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


# --- verify-checkpoint -------------------------------------------------------------------------


@pytest.fixture
def tessera(tmp_path):
    """The Tessera vectors, each checkpoint in a file ``cp.<size>``, and the vkey in a file."""
    from tests.conftest import vectors

    v = vectors("tlog_checkpoint_vectors.json")
    for item in v["checkpoints"]:
        (tmp_path / f"cp.{item['tree_size']}").write_text(item["checkpoint_note"])
    (tmp_path / "log.vkey").write_text(v["vkey"] + "\n")
    return v


def _b64_root(text: str) -> str:
    return text.split("\n")[2]


def test_every_tessera_checkpoint_verifies_with_its_vkey(tessera, invoke, tmp_path):
    v = tessera
    leaves = [merkle.leaf_hash(w.encode()) for w in v["leaf_inputs_ascii"]]
    assert [c["tree_size"] for c in v["checkpoints"]] == list(range(16))
    for item in v["checkpoints"]:
        n, text = item["tree_size"], item["checkpoint_note"]
        assert (
            _b64_root(text) == base64.b64encode(merkle.root(leaves[:n])).decode()
        )  # RFC 6962 root of the leaves
        for key in (v["vkey"], str(tmp_path / "log.vkey")):
            r = invoke(["verify-checkpoint", str(tmp_path / f"cp.{n}"), "--key", key])
            assert (r.exit_code, r.stdout, r.stderr) == (
                0,
                f"OK: checkpoint of example.com/log/testdata, {n} entries, root"
                f" {_b64_root(text)}, signed by example.com/log/testdata+33d7b496 (1 of 1 key,"
                " 1 required)\n",
                "",
            )
    r = invoke(
        ["verify-checkpoint", str(tmp_path / "cp.7"), "--key", v["vkey"], "--origin", v["origin"]]
    )
    assert r.exit_code == 0


def test_flipped_signature_byte_wrong_key_wrong_origin(tessera, invoke, tmp_path):
    import base64

    v, f = tessera, str(tmp_path / "cp.5")
    text = (tmp_path / "cp.5").read_text()
    head, _, b64 = text.rstrip("\n").rpartition(" ")
    blob = bytearray(base64.b64decode(b64))
    blob[20] ^= 0x01
    (tmp_path / "flipped").write_text(f"{head} {base64.b64encode(blob).decode()}\n")
    r = invoke(["verify-checkpoint", str(tmp_path / "flipped"), "--key", v["vkey"]])
    assert (r.exit_code, r.stdout) == (
        1,
        f"FAIL: {tmp_path / 'flipped'}: invalid signature by example.com/log/testdata+33d7b496\n",
    )
    wrong = note.vkey(v["origin"], WITNESS.public_key)
    r = invoke(["verify-checkpoint", f, "--key", wrong])
    assert (r.exit_code, r.stdout) == (
        1,
        f"FAIL: {f}: not signed by the 1 key given (signed by:"
        " example.com/log/testdata+33d7b496)\n",
    )
    r = invoke(["verify-checkpoint", f, "--key", v["vkey"], "--origin", "example.com/log/other"])
    assert (r.exit_code, r.stdout) == (
        1,
        f"FAIL: {f}: the checkpoint's origin is 'example.com/log/testdata', not"
        " 'example.com/log/other'\n",
    )
    other = note.vkey("example.com/log/other", WITNESS.public_key)
    r = invoke(["verify-checkpoint", f, "--key", other])
    assert (r.exit_code, r.stdout) == (
        1,
        f"FAIL: {f}: the checkpoint's origin 'example.com/log/testdata' is not the name of"
        f" verifier key {other[:30]} (a C2SP key verifies checkpoints of the log it names)\n",
    )


@pytest.mark.parametrize(
    ("cut", "why"),
    [
        (lambda t: t[:-10], "is not a signed note: note signatures must end with a newline"),
        (lambda t: t[: t.index("\n\n") + 1], "is not a signed note: note has no blank line"),
        (lambda t: t[:30], "is not a checkpoint: checkpoint must end with a newline"),
        (lambda t: t[: t.index("\n") + 1], "is not a checkpoint: checkpoint has 1 lines"),
    ],
)
def test_truncated_note_is_a_one_line_error(tessera, invoke, tmp_path, cut, why):
    (tmp_path / "cut").write_text(cut((tmp_path / "cp.9").read_text()))
    r = invoke(["verify-checkpoint", str(tmp_path / "cut"), "--key", tessera["vkey"]])
    assert r.exit_code == 2 and r.stdout == ""
    assert r.stderr.startswith(f"Error: {tmp_path / 'cut'} {why}")
    assert r.stderr.count("\n") == 1


def test_malformed_or_missing_keys(tessera, invoke, tmp_path):
    f = str(tmp_path / "cp.3")
    bad = tessera["vkey"].replace("+33d7b496+", "+33d7b497+")
    r = invoke(["verify-checkpoint", f, "--key", bad])
    assert (r.exit_code, r.stderr) == (
        2,
        f"Error: {bad} is neither a key file nor a valid verifier key: verifier key ID 33d7b497"
        " does not match name and key\n",
    )
    (tmp_path / "bad.vkey").write_text("example.com/log/testdata+33d7b496+AAAA\n")
    r = invoke(["verify-checkpoint", f, "--key", str(tmp_path / "bad.vkey")])
    assert (r.exit_code, r.stderr) == (
        2,
        f"Error: {tmp_path / 'bad.vkey'} does not hold a valid verifier key: verifier key is"
        " not an Ed25519 key (0x01 || 32 bytes)\n",
    )
    r = invoke(["verify-checkpoint", f, "--key", str(tmp_path / "nope.pub")])
    assert (r.exit_code, r.stderr) == (
        5,
        f"Error: public key file {tmp_path / 'nope.pub'} does not exist\n",
    )
    r = invoke(["verify-checkpoint", str(tmp_path / "nope"), "--key", tessera["vkey"]])
    assert (r.exit_code, r.stderr) == (
        2,
        f"Error: checkpoint file {tmp_path / 'nope'} does not exist\n",
    )
    twice = ["--key", tessera["vkey"], "--key", str(tmp_path / "log.vkey")]
    r = invoke(["verify-checkpoint", f, *twice, "--min-signatures", "2"])
    assert (r.exit_code, r.stderr) == (
        2,
        "Error: --min-signatures 2 cannot be met: only 1 key given (a key given twice counts"
        " once)\n",
    )


def test_cosigned_checkpoint_k_of_n(ck, invoke, tmp_path):
    led = ck.ledger
    invoke(["checkpoint", "--out", str(tmp_path / "mine.cp")], env=ck.env("cp"))
    mine = (tmp_path / "mine.cp").read_text()
    (tmp_path / "cosigned.cp").write_text(cosign(mine, WITNESS, led.origin))
    (tmp_path / "cp.pub").write_bytes(public_key_pem(ck.keys["cp"].public_key))
    f, cp_pub, w_pub = (
        str(tmp_path / "cosigned.cp"),
        str(tmp_path / "cp.pub"),
        str(tmp_path / "w.pub"),
    )
    cp_label = f"{led.origin}+{note.key_id(led.origin, ck.keys['cp'].public_key).hex()}"
    w_label = f"{led.origin}+{note.key_id(led.origin, WITNESS.public_key).hex()}"
    head = f"OK: checkpoint of {led.origin}, 12 entries, root {_b64_root(mine)}, signed by"
    for key, label in ((cp_pub, cp_label), (w_pub, w_label)):
        r = invoke(["verify-checkpoint", f, "--key", key])
        assert (r.exit_code, r.stdout) == (0, f"{head} {label} (1 of 1 key, 1 required)\n")
    r = invoke(["verify-checkpoint", f, "--key", w_pub, "--key", cp_pub, "--min-signatures", "2"])
    assert (r.exit_code, r.stdout) == (
        0,
        f"{head} {w_label}, {cp_label} (2 of 2 keys, 2 required)\n",
    )
    vkey = note.vkey(led.origin, WITNESS.public_key)  # the same witness as a C2SP key
    r = invoke(["verify-checkpoint", f, "--key", cp_pub, "--key", vkey, "--min-signatures", "2"])
    assert (r.exit_code, r.stdout) == (
        0,
        f"{head} {cp_label}, {w_label} (2 of 2 keys, 2 required)\n",
    )
    # Only the ledger's signature: one of the two required.
    two = ["--key", cp_pub, "--key", w_pub, "--min-signatures", "2"]
    r = invoke(["verify-checkpoint", str(tmp_path / "mine.cp"), *two])
    assert (r.exit_code, r.stdout) == (
        1,
        f"FAIL: {tmp_path / 'mine.cp'}: signed by 1 key ({cp_label}), 2 required; not by"
        f" {w_label}\n",
    )
    # One key given twice, as a PEM file and as its vkey, is one key.
    same = ["--key", w_pub, "--key", vkey, "--min-signatures", "2"]
    r = invoke(["verify-checkpoint", f, *same])
    assert (r.exit_code, r.stderr) == (
        2,
        "Error: --min-signatures 2 cannot be met: only 1 key given (a key given twice counts"
        " once)\n",
    )
    # Two keys given, one signed, one required: OK, and it says which.
    r = invoke(["verify-checkpoint", str(tmp_path / "mine.cp"), "--key", w_pub, "--key", cp_pub])
    assert (r.exit_code, r.stdout) == (0, f"{head} {cp_label} (1 of 2 keys, 1 required)\n")


def test_extension_lines_and_foreign_signature_lines(invoke, tmp_path):
    body = note.format_checkpoint("example.org/log", 3, b"\x05" * 32, ["ext: one", "two"])
    text = note.sign_note(body, "example.org/log", WITNESS.sign, WITNESS.public_key)
    text += "\u2014 witness.example/w AAAAAAAAAAAAAAAAAAAA\n"  # someone else's line: ignored
    (tmp_path / "ext.cp").write_text(text)
    vkey = note.vkey("example.org/log", WITNESS.public_key)
    root = base64.b64encode(b"\x05" * 32).decode()
    r = invoke(["verify-checkpoint", str(tmp_path / "ext.cp"), "--key", vkey])
    assert (r.exit_code, r.stdout) == (
        0,
        f"OK: checkpoint of example.org/log, 3 entries, root {root}, signed by"
        f" {vkey[:24]} (1 of 1 key, 1 required)\n",
    )
    res = checkpointcheck.verify_file(tmp_path / "ext.cp", [note.parse_vkey(vkey)[2]])
    assert res.ok and res.extensions == ("ext: one", "two") and bool(res)


# --- verify-checkpoint --ledger: does the ledger extend it? ------------------------------------


def test_ledger_extends_the_checkpoint(ck, invoke, tmp_path):
    led = ck.ledger
    invoke(["checkpoint", "--out", str(tmp_path / "mine.cp")], env=ck.env("cp"))
    led.register(XGB, key=ck.keys["alice"])
    (tmp_path / "cp.pub").write_bytes(public_key_pem(ck.keys["cp"].public_key))
    args = ["verify-checkpoint", str(tmp_path / "mine.cp"), "--key", str(tmp_path / "cp.pub")]
    r = invoke([*args, "--ledger", str(ck.path)])
    label = f"{led.origin}+{note.key_id(led.origin, ck.keys['cp'].public_key).hex()}"
    assert (r.exit_code, r.stdout) == (
        0,
        f"OK: checkpoint of {led.origin}, 12 entries, root {base64.b64encode(roots(led)[12]).decode()}, signed by"
        f" {label} (1 of 1 key, 1 required); ledger {ck.path} extends it (13 events)\n",
    )
    # $LEDGER_PATH is not used: without --ledger the checkpoint is checked on its own.
    r = invoke(args, env=ck.env())
    assert r.exit_code == 0 and "extends" not in r.stdout


def test_truncated_ledger(ck, invoke, tmp_path):
    import shutil

    led = ck.ledger
    shutil.copytree(ck.path, tmp_path / "before")  # the ledger as it was at 12 events
    for _ in range(3):
        led.register(XGB, key=ck.keys["alice"])
    invoke(["checkpoint", "--out", str(tmp_path / "big.cp")], env=ck.env("cp"))
    (tmp_path / "cp.pub").write_bytes(public_key_pem(ck.keys["cp"].public_key))
    r = invoke(
        [
            "verify-checkpoint",
            str(tmp_path / "big.cp"),
            "--key",
            str(tmp_path / "cp.pub"),
            "--ledger",
            str(tmp_path / "before"),
        ]
    )
    assert (r.exit_code, r.stdout) == (
        1,
        f"FAIL: {tmp_path / 'big.cp'}: the checkpoint vouches for 15 events but ledger"
        f" {tmp_path / 'before'} holds 12: events 12..14 were removed (truncated tail /"
        " rollback)\n",
    )


def test_forked_ledger(ck, invoke, tmp_path):
    from ledger import events as E

    led = ck.ledger
    invoke(["checkpoint", "--out", str(tmp_path / "mine.cp")], env=ck.env("cp"))
    admin = SigningKey(b"x" * 32)
    twin = Ledger.init(
        tmp_path / "twin", admin, "admin", roles="admin,registrar", origin=led.origin
    )
    twin.append_many([E.Draft(E.REGISTER, E.register_payload(), "m") for _ in range(14)], admin)
    (tmp_path / "cp.pub").write_bytes(public_key_pem(ck.keys["cp"].public_key))
    args = ["verify-checkpoint", str(tmp_path / "mine.cp"), "--key", str(tmp_path / "cp.pub")]
    r = invoke([*args, "--ledger", str(tmp_path / "twin")])
    assert (r.exit_code, r.stdout) == (
        1,
        f"FAIL: {tmp_path / 'mine.cp'}: the first 12 events of ledger {tmp_path / 'twin'} do not"
        " hash to the checkpoint's root (history rewritten: forked)\n",
    )
    res = checkpointcheck.verify_file(
        tmp_path / "mine.cp", [ck.keys["cp"].public_key], ledger=tmp_path / "twin"
    )
    assert (res.ok, res.kind, res.ledger_size) == (False, "forked", 15)


def test_checkpoint_of_another_log_against_a_ledger(ck, tessera, invoke, tmp_path):
    args = ["verify-checkpoint", str(tmp_path / "cp.4"), "--key", tessera["vkey"]]
    r = invoke([*args, "--ledger", str(ck.path)])
    assert (r.exit_code, r.stdout) == (
        1,
        f"FAIL: {tmp_path / 'cp.4'}: the checkpoint's origin is 'example.com/log/testdata',"
        f" ledger {ck.path}'s 'test.example/reg'\n",
    )
    r = invoke([*args, "--ledger", str(tmp_path / "nowhere")])
    assert (r.exit_code, r.stderr) == (
        3,
        f"Error: {tmp_path / 'nowhere'} is not a ledger: no such folder\n",
    )
