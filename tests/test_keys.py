"""Key files, key ids, DSSE pre-authentication encoding and signatures."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.errors import InputError, KeyProblem
from ledger.keys import (
    PAYLOAD_TYPE,
    SigningKey,
    VerifierKey,
    key_id,
    load_public_key,
    load_signing_key,
    load_verifier_key,
    pae,
    private_key_pem,
    public_key_pem,
    verify_signature,
    write_key_files,
)


def test_pae_matches_dsse_spec_example():
    # From the DSSE protocol specification.
    assert pae(b"hello world", "http://example.com/HelloWorld") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_key_id_is_sha256_prefix_of_raw_public_key():
    raw = bytes(range(32))
    assert key_id(raw) == "630dcd2966c43366"


def test_sign_verify_and_independent_check():
    k = SigningKey.generate()
    msg = pae(b'{"a":1}')
    sig = k.sign(msg)
    assert verify_signature(k.public_key, msg, sig)
    assert not verify_signature(k.public_key, msg + b" ", sig)
    assert not verify_signature(k.public_key, msg, sig[:-1] + bytes([sig[-1] ^ 1]))
    # OpenSSL (through cryptography) agrees: any Ed25519 implementation can check events.
    Ed25519PublicKey.from_public_bytes(k.public_key).verify(sig, msg)


def test_pem_files_are_standard(tmp_path):
    k = SigningKey.generate()
    pub = write_key_files(tmp_path / "a.pem", k)
    loaded = serialization.load_pem_private_key((tmp_path / "a.pem").read_bytes(), None)
    assert (
        loaded.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        == k.public_key
    )
    assert load_public_key(pub) == k.public_key
    assert load_signing_key(tmp_path / "a.pem").public_key == k.public_key
    assert stat.S_IMODE(os.stat(tmp_path / "a.pem").st_mode) == 0o600
    assert public_key_pem(k.public_key) == pub.read_bytes()


def test_key_files_written_from_a_str_path(tmp_path):
    k = SigningKey.generate()
    pub = write_key_files(str(tmp_path / "s.pem"), k)
    assert pub == tmp_path / "s.pub"
    assert load_signing_key(str(tmp_path / "s.pem")).public_key == k.public_key
    assert stat.S_IMODE(os.stat(tmp_path / "s.pem").st_mode) == 0o600


def test_repr_hides_secret():
    k = SigningKey.generate()
    assert repr(k) == f"SigningKey(key_id={k.key_id})"
    assert k.seed.hex() not in repr(k)


def test_encrypted_key(tmp_path):
    k = SigningKey.generate()
    write_key_files(tmp_path / "e.pem", k, passphrase="correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "e.pem").read_bytes()
    assert load_signing_key(tmp_path / "e.pem", "correct horse").seed == k.seed
    with pytest.raises(KeyProblem, match=r"wrong passphrase for key file .*e\.pem$"):
        load_signing_key(tmp_path / "e.pem", "wrong")
    with pytest.raises(KeyProblem, match="is encrypted; set LEDGER_PASSPHRASE"):
        load_signing_key(tmp_path / "e.pem")


def test_refuses_group_readable_key(tmp_path):
    k = SigningKey.generate()
    write_key_files(tmp_path / "k.pem", k)
    os.chmod(tmp_path / "k.pem", 0o644)
    with pytest.raises(
        KeyProblem, match=r"readable by group or others \(mode 0644\); run: chmod 600"
    ):
        load_signing_key(tmp_path / "k.pem")


def test_refuses_to_overwrite(tmp_path):
    k = SigningKey.generate()
    write_key_files(tmp_path / "k.pem", k)
    before = (tmp_path / "k.pem").read_bytes()
    with pytest.raises(InputError, match="already exists; refusing to overwrite"):
        write_key_files(tmp_path / "k.pem", SigningKey.generate())
    assert (tmp_path / "k.pem").read_bytes() == before


def test_a_private_key_named_like_its_public_key_is_refused(tmp_path, invoke):
    """``keys generate x.pub`` wrote the private key to x.pub, then failed on the public
    key's name, leaving a private key under a public key's name."""
    r = invoke(["keys", "generate", str(tmp_path / "x.pub")])
    assert (r.exit_code, r.stderr) == (
        2,
        f"Error: {tmp_path / 'x.pub'} ends in .pub, the public key's name; give the private"
        f" key file another name, e.g. {tmp_path / 'x.pem'}\n",
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not a PEM key file"),
        (b"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n", "bad base64"),
        (None, "holds a public key; signing needs the private key file"),
    ],
)
def test_bad_key_files(tmp_path, content, message):
    p = tmp_path / "bad.pem"
    if content is None:
        content = public_key_pem(SigningKey.generate().public_key)
    p.write_bytes(content)
    os.chmod(p, 0o600)
    with pytest.raises(KeyProblem, match=message):
        load_signing_key(p)


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyProblem, match=r"key file .*nope\.pem does not exist"):
        load_signing_key(tmp_path / "nope.pem")


def test_public_key_forms(tmp_path):
    k = SigningKey.generate()
    (tmp_path / "raw.pub").write_text(base64.b64encode(k.public_key).decode() + "\n")
    assert load_public_key(tmp_path / "raw.pub") == k.public_key
    (tmp_path / "priv.pem").write_bytes(private_key_pem(k))
    with pytest.raises(KeyProblem, match=r"is a private key; pass the \.pub file"):
        load_public_key(tmp_path / "priv.pem")


TESSERA_VKEY = "example.com/log/testdata+33d7b496+AeHTu4Q3hEIMHNqc6fASMsq3rKNx280NI+oO5xCFkkSx"
TESSERA_PUB = base64.b64decode("4dO7hDeEQgwc2pzp8BIyyreso3HbzQ0j6g7nEIWSRLE=")


def test_verifier_key_forms(tmp_path):
    k = SigningKey.generate()
    (tmp_path / "k.pub").write_bytes(public_key_pem(k.public_key))
    assert load_verifier_key(tmp_path / "k.pub") == VerifierKey(k.public_key)
    named = VerifierKey(TESSERA_PUB, "example.com/log/testdata")
    assert load_verifier_key(TESSERA_VKEY) == named  # the string itself
    (tmp_path / "log.vkey").write_text(TESSERA_VKEY + "\n")
    assert load_verifier_key(str(tmp_path / "log.vkey")) == named  # a file holding it
    assert named.label("anything") == "example.com/log/testdata+33d7b496"
    assert VerifierKey(TESSERA_PUB).label("example.com/log/testdata") == named.label("")
    # base64 of 32 bytes that happens to hold two '+' is still a raw key, not a vkey
    raw = next(
        pub
        for pub in (SigningKey(bytes([i]) * 32).public_key for i in range(256))
        if base64.b64encode(pub).count(b"+") >= 2
    )
    (tmp_path / "raw.pub").write_text(base64.b64encode(raw).decode())
    assert load_verifier_key(tmp_path / "raw.pub") == VerifierKey(raw)


def test_verifier_key_errors(tmp_path):
    with pytest.raises(InputError) as e:
        load_verifier_key("example.com/log+33d7b496+AAAA")
    assert str(e.value) == (
        "example.com/log+33d7b496+AAAA is neither a key file nor a valid verifier key:"
        " verifier key is not an Ed25519 key (0x01 || 32 bytes)"
    )
    (tmp_path / "bad.vkey").write_text(TESSERA_VKEY.replace("+33d7b496+", "+33d7b497+"))
    with pytest.raises(InputError) as e:
        load_verifier_key(tmp_path / "bad.vkey")
    assert str(e.value) == (
        f"{tmp_path / 'bad.vkey'} does not hold a valid verifier key: verifier key ID 33d7b497"
        " does not match name and key"
    )
    with pytest.raises(KeyProblem, match=r"public key file .*nope\.pub does not exist"):
        load_verifier_key(tmp_path / "nope.pub")
    (tmp_path / "priv.pem").write_bytes(private_key_pem(SigningKey.generate()))
    with pytest.raises(KeyProblem, match=r"is a private key; pass the \.pub file"):
        load_verifier_key(tmp_path / "priv.pem")


def test_event_is_a_valid_dsse_envelope(history):
    """Each stored event, wrapped as a DSSE envelope, verifies with plain cryptography."""
    table = history.ledger.events()
    pubs = {k.key_id: k.public_key for k in history.ledger.keys()}
    for row in table.to_pylist():
        envelope = {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(row["canonical"]).decode(),
            "signatures": [{"keyid": row["key_id"], "sig": base64.b64encode(row["sig"]).decode()}],
        }
        env = json.loads(json.dumps(envelope))
        body = base64.b64decode(env["payload"])
        Ed25519PublicKey.from_public_bytes(pubs[env["signatures"][0]["keyid"]]).verify(
            base64.b64decode(env["signatures"][0]["sig"]), pae(body, env["payloadType"])
        )
