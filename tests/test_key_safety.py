"""Key safety: private key files are created 0600 whatever the umask, refused when group
or others can read them, fail cleanly on a wrong passphrase, and the private key never
appears in the ledger folder, in any output or in any error message."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger import KeyProblem, SigningKey, load_signing_key
from ledger.cli import cli
from ledger.keys import private_key_pem, write_key_files


def _run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, args, env=env)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stdout, r.stderr


def _ledger(root: Path) -> str:
    from ledger import Ledger

    Ledger.init(root / "reg", SigningKey.generate(), "admin")
    return str(root / "reg")


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_generated_keys_are_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        code, _out, err = _run(["keys", "generate", str(tmp_path / "k.pem")])
    finally:
        os.umask(old)
    assert (code, err) == (0, "")
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k.pub").stat().st_mode) == 0o644


def test_init_generates_the_admin_key_0600(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        code, _, err = _run(
            ["init", str(tmp_path / "reg"), "--key", str(tmp_path / "a.pem"), "--actor", "ad"]
        )
    finally:
        os.umask(old)
    assert (code, err) == (0, "")
    assert stat.S_IMODE((tmp_path / "a.pem").stat().st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666, 0o610])
def test_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "k.pem"
    write_key_files(key, SigningKey.generate())
    key.chmod(mode)
    with pytest.raises(KeyProblem) as exc:
        load_signing_key(key)
    assert str(exc.value) == (
        f"key file {key} is readable by group or others (mode {mode:04o}); run: chmod 600 {key}"
    )
    code, out, err = _run(["register", "m", "--ledger", _ledger(tmp_path), "--key", str(key)])
    assert (code, out) == (5, "")
    assert err == f"Error: {exc.value}\n"


def test_owner_only_modes_are_accepted(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    k = SigningKey.generate()
    write_key_files(key, k)
    for mode in (0o600, 0o400):
        key.chmod(mode)
        assert load_signing_key(key).key_id == k.key_id


def test_wrong_or_missing_passphrase_fails_cleanly(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    k = SigningKey.generate()
    write_key_files(key, k, passphrase="right horse")
    assert load_signing_key(key, "right horse").key_id == k.key_id
    for wrong in ("wrong", "right hors", "right horse "):
        with pytest.raises(KeyProblem, match=f"^wrong passphrase for key file {key}$"):
            load_signing_key(key, wrong)
    with pytest.raises(KeyProblem, match="is encrypted; set LEDGER_PASSPHRASE"):
        load_signing_key(key)
    code, out, err = _run(
        ["register", "m", "--ledger", _ledger(tmp_path), "--key", str(key)],
        env={"LEDGER_PASSPHRASE": "wrong"},
    )
    assert (code, out, err) == (5, "", f"Error: wrong passphrase for key file {key}\n")


def test_damaged_key_files_fail_cleanly(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    cases = {
        b"": "is not a PEM key file",
        b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n": "(bad base64)",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n": "not a readable",
        os.urandom(300): "is not a PEM key file",
    }
    for data, message in cases.items():
        key.unlink(missing_ok=True)
        key.write_bytes(data)
        key.chmod(0o600)
        with pytest.raises(KeyProblem) as exc:
            load_signing_key(key)
        assert message in str(exc.value) and "\n" not in str(exc.value)


def _forms(secret: bytes) -> list[bytes]:
    """Every way the secret could leak: raw, hex, base64 at each alignment."""
    forms = [secret, secret.hex().encode(), secret.hex().upper().encode()]
    for shift in range(3):
        b64 = base64.b64encode(secret[shift:])
        forms.append(b64[4:-4])  # the middle is the same whatever precedes it
        forms.append(base64.urlsafe_b64encode(secret[shift:])[4:-4])
    return forms


def test_private_key_never_leaks(tmp_path: Path) -> None:
    """Drive every command that touches a key, succeed and fail, and grep everything."""
    reg, keys = tmp_path / "reg", tmp_path / "keys"
    keys.mkdir()
    admin, alice = keys / "admin.pem", keys / "alice.pem"
    transcript: list[str] = []

    def run(*args: str, env: dict[str, str] | None = None) -> None:
        _code, out, err = _run(list(args), env)
        transcript.extend([out, err])

    run("init", str(reg), "--key", str(admin), "--actor", "admin")
    env = {"LEDGER_PASSPHRASE": "pw"}
    run("keys", "generate", str(alice), "--encrypt", env=env)
    run("keys", "add", str(alice.with_suffix(".pub")), "--actor", "alice", "--roles",
        "registrar", "--ledger", str(reg), "--key", str(admin))  # fmt: skip
    run("register", "m", "--ledger", str(reg), "--key", str(alice), env=env)
    run("register", "m", "--ledger", str(reg), "--key", str(alice), env={"LEDGER_PASSPHRASE": "x"})
    run("approve", "m:1", "--env", "prod", "--ledger", str(reg), "--key", str(alice), env=env)
    run("keys", "add", str(admin), "--actor", "x", "--roles", "admin", "--ledger", str(reg),
        "--key", str(admin))  # fmt: skip  # a private key where a public one belongs
    admin.chmod(0o644)
    run("register", "m", "--ledger", str(reg), "--key", str(admin))
    admin.chmod(0o600)
    for args in (["log", "--format", "json"], ["keys", "list", "--format", "json"], ["verify"]):
        run(*args, "--ledger", str(reg))
    transcript.append(repr(load_signing_key(admin)))

    secrets = []
    for path, pw in ((admin, None), (alice, "pw")):
        k = load_signing_key(path, pw)
        secrets.append(k.seed)
        secrets.append(k.seed + k.public_key)  # libsodium's 64-byte secret key
        pem = private_key_pem(k)
        secrets.append(b"".join(pem.splitlines()[1:-1]))  # the PEM body
        secrets.append(path.read_bytes().splitlines()[1])  # first line of the file's body
    haystacks = {f"output {i}": t.encode() for i, t in enumerate(transcript)}
    for p in reg.rglob("*"):
        if p.is_file():
            haystacks[str(p)] = p.read_bytes()
    # Parquet may compress a column: decode every stored value too.
    from ledger import Ledger

    t = Ledger.open(reg).events()
    haystacks["decoded events"] = repr(t.to_pylist()).encode()
    assert len(t) == 3  # the scenario did run: genesis, key_add, register
    # The search reaches stored content: the public keys, which are meant to be there, are.
    for path in (admin, alice):
        public = load_signing_key(path, "pw" if path == alice else None).public_key
        assert base64.b64encode(public) in haystacks["decoded events"]
    for s in secrets:
        for form in _forms(s) if len(s) in (32, 64) else [s]:
            for where, data in haystacks.items():
                assert form not in data, f"private key material found in {where}"


@pytest.mark.parametrize("where", ["reg", "reg/events", "reg/sub/dir"])
def test_key_files_are_never_written_inside_a_ledger(tmp_path: Path, where: str) -> None:
    reg = _ledger(tmp_path)
    folder = tmp_path / where
    folder.mkdir(parents=True, exist_ok=True)
    before = sorted(p.name for p in (tmp_path / "reg").rglob("*"))
    code, out, err = _run(["keys", "generate", str(folder / "k.pem")])
    assert (code, out) == (2, "")
    assert err == (
        f"Error: {folder / 'k.pem'} is inside the ledger folder {reg};"
        " keep private keys outside the ledger\n"
    )
    assert sorted(p.name for p in (tmp_path / "reg").rglob("*")) == before
