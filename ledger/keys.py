"""Ed25519 keys: key files, key ids, DSSE signing and verification.

Signing and verification use libsodium (PyNaCl), measured here at about 1.6x the
throughput of OpenSSL through ``cryptography`` for both operations. Key files are
standard PKCS#8 / SubjectPublicKeyInfo PEM so other tools can read them; unencrypted
files are parsed directly (their DER is a fixed prefix plus the key) so a CLI command
does not pay for importing ``cryptography``, which is needed only for encrypted keys.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings as sodium
import nacl.exceptions

from . import note
from .compat import sodium as _sodium_cffi
from .errors import InputError, KeyProblem, StorageError

_ffi, _lib = _sodium_cffi()

#: DSSE payloadType of every ledger event.
PAYLOAD_TYPE = "application/vnd.ledger.event+json"

_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def key_id(public_key: bytes) -> str:
    """Key id: the first 16 hex digits of SHA-256 over the raw 32-byte public key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def pae_prefix(payload_type: str = PAYLOAD_TYPE) -> bytes:
    """The part of the DSSE v1 pre-authentication encoding before the body's length:
    ``b"DSSEv1 <len(type)> <type> "`` (verify's workers prepend it themselves)."""
    t = payload_type.encode()
    return b"DSSEv1 %d %b " % (len(t), t)


def pae(body: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE v1 pre-authentication encoding of ``body``."""
    return b"%b%d %b" % (pae_prefix(payload_type), len(body), body)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message``."""
    if len(signature) != 64 or len(public_key) != 32:
        return False
    try:
        sodium.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


class SigningKey:
    """An Ed25519 private key. Its repr never shows secret material."""

    __slots__ = ("_secret", "public_key", "seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise InputError("an Ed25519 private key seed is 32 bytes")
        self.seed = seed
        self.public_key, self._secret = sodium.crypto_sign_seed_keypair(seed)

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(32))

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Raw Ed25519 signature (64 bytes) of ``message``."""
        # libsodium's crypto_sign called directly: PyNaCl's wrapper also allocates a
        # length out-parameter and copies the whole signed message back (~7% of a sign).
        buf = _ffi.new("unsigned char[]", len(message) + 64)
        if _lib.crypto_sign(buf, _ffi.NULL, message, len(message), self._secret) != 0:
            raise RuntimeError("libsodium crypto_sign failed")  # pragma: no cover
        return _ffi.buffer(buf, 64)[:]

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.key_id})"


# --- PEM files -------------------------------------------------------------------------


def _pem(label: str, der: bytes) -> bytes:
    b64 = base64.encodebytes(der).replace(b"\n", b"")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return b"-----BEGIN %b-----\n%b\n-----END %b-----\n" % (
        label.encode(),
        b"\n".join(lines),
        label.encode(),
    )


def _unpem(data: bytes, where: str) -> tuple[str, bytes]:
    text = data.decode("ascii", "replace").strip()
    lines = text.splitlines()
    if (
        len(lines) < 3
        or not lines[0].startswith("-----BEGIN ")
        or not lines[-1].startswith("-----END ")
    ):
        raise KeyProblem(f"{where} is not a PEM key file")
    label = lines[0][len("-----BEGIN ") :].rstrip("-")
    try:
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
    except ValueError:
        raise KeyProblem(f"{where} is not a PEM key file (bad base64)") from None
    return label, der


def private_key_pem(key: SigningKey, passphrase: str | None = None) -> bytes:
    """PKCS#8 PEM of ``key``, encrypted with ``passphrase`` when one is given."""
    if not passphrase:
        return _pem("PRIVATE KEY", _PKCS8_PREFIX + key.seed)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.from_private_bytes(key.seed).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )


def public_key_pem(public_key: bytes) -> bytes:
    """SubjectPublicKeyInfo PEM of a raw Ed25519 public key."""
    return _pem("PUBLIC KEY", _SPKI_PREFIX + public_key)


def write_key_files(
    path: str | os.PathLike[str], key: SigningKey, passphrase: str | None = None
) -> Path:
    """Write ``path`` (private, mode 0600, never overwritten) and ``path`` with .pub."""
    path = Path(path)
    pub_path = path.with_suffix(".pub")
    if pub_path == path:  # (the private key would be written under the public key's name)
        raise InputError(
            f"{path} ends in .pub, the public key's name; give the private key file another"
            f" name, e.g. {path.with_suffix('.pem')}"
        )
    ledger = _enclosing_ledger(path)
    if ledger is not None:
        raise InputError(
            f"{path} is inside the ledger folder {ledger}; keep private keys outside the ledger"
        )
    for p in (path, pub_path):
        if p.exists():
            raise InputError(f"{p} already exists; refusing to overwrite a key file")
    _write_new(path, private_key_pem(key, passphrase), 0o600)
    try:
        _write_new(pub_path, public_key_pem(key.public_key), 0o644)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()  # (both files or neither)
        raise
    return pub_path


def discard_key_files(path: str | os.PathLike[str]) -> None:
    """Remove the two files :func:`write_key_files` wrote (after a command that generated
    them failed: a failed command leaves nothing behind)."""
    for p in (Path(path), Path(path).with_suffix(".pub")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is (or would be) ``folder`` or inside it, symbolic links resolved."""
    p, f = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return p == f or f in p.parents


def _enclosing_ledger(path: Path) -> Path | None:
    """The ledger folder (holding ledger.json and events/) that ``path`` would be in."""
    for parent in Path(os.path.abspath(path)).parents:
        if (parent / "ledger.json").is_file() and (parent / "events").is_dir():
            return parent
    return None


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise InputError(f"{path} already exists; refusing to overwrite a key file") from None
    except OSError as exc:
        raise StorageError(f"cannot create {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what we promise
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_signing_key(path: str | os.PathLike[str], passphrase: str | None = None) -> SigningKey:
    """Read a private key file, refusing files that group or others can read."""
    p = Path(path)
    try:
        st = p.stat()
        data = p.read_bytes()
    except FileNotFoundError:
        raise KeyProblem(f"key file {p} does not exist") from None
    except IsADirectoryError:
        raise KeyProblem(f"key file {p} is a directory, not a key file") from None
    except OSError as exc:
        raise KeyProblem(f"cannot read key file {p}: {exc.strerror}") from None
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
        raise KeyProblem(
            f"key file {p} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o});"
            f" run: chmod 600 {p}"
        )
    label, der = _unpem(data, f"key file {p}")
    if label == "PRIVATE KEY" and len(der) == 48 and der.startswith(_PKCS8_PREFIX):
        return SigningKey(der[len(_PKCS8_PREFIX) :])
    if label == "PUBLIC KEY":
        raise KeyProblem(f"key file {p} holds a public key; signing needs the private key file")
    if label != "ENCRYPTED PRIVATE KEY" and label != "PRIVATE KEY":
        raise KeyProblem(f"key file {p} holds a {label}, not an Ed25519 private key")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    if label == "ENCRYPTED PRIVATE KEY" and not passphrase:
        raise KeyProblem(
            f"key file {p} is encrypted; set LEDGER_PASSPHRASE or enter the passphrase"
        )
    try:
        k = serialization.load_pem_private_key(
            data,
            password=passphrase.encode() if label.startswith("ENCRYPTED") and passphrase else None,
        )
    except (ValueError, TypeError):
        if label == "ENCRYPTED PRIVATE KEY":
            raise KeyProblem(f"wrong passphrase for key file {p}") from None
        raise KeyProblem(f"key file {p} is not a readable private key") from None
    if not isinstance(k, Ed25519PrivateKey):
        raise KeyProblem(f"key file {p} is not an Ed25519 key")
    return SigningKey(
        k.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )


def is_encrypted_key_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` looks like an encrypted PKCS#8 PEM file."""
    try:
        with open(path, "rb") as f:
            return f.read(40).startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    except OSError:
        return False


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """Read an Ed25519 public key: SPKI PEM, a private key file, or base64 of 32 bytes."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise KeyProblem(f"public key file {p} does not exist") from None
    except OSError as exc:
        raise KeyProblem(f"cannot read public key file {p}: {exc.strerror}") from None
    return _public_key_bytes(data, p)


def _public_key_bytes(data: bytes, p: Path) -> bytes:
    if data.lstrip().startswith(b"-----BEGIN"):
        label, der = _unpem(data, f"public key file {p}")
        if label == "PUBLIC KEY" and len(der) == 44 and der.startswith(_SPKI_PREFIX):
            return der[len(_SPKI_PREFIX) :]
        if "PRIVATE KEY" in label:
            raise KeyProblem(f"{p} is a private key; pass the .pub file instead")
        raise KeyProblem(f"public key file {p} does not hold an Ed25519 public key")
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise KeyProblem(f"public key file {p} does not hold an Ed25519 public key")
    return raw


# --- keys trusted to sign checkpoints ---------------------------------------------------


@dataclass(frozen=True)
class VerifierKey:
    """A public key trusted to sign checkpoints (C2SP signed notes).

    A C2SP verifier key (``name+keyid+base64``) signs under its own ``name`` only; a
    PEM (or base64) public key has no name and signs under the checkpoint's origin, as
    a ledger's checkpointer keys do. A note key ID covers the name, so a key named
    otherwise than a note's signature lines simply does not match them.
    """

    public_key: bytes
    name: str | None = None

    def note_name(self, origin: str) -> str:
        """The signer name this key signs a checkpoint of ``origin`` under."""
        return origin if self.name is None else self.name

    def label(self, origin: str) -> str:
        """``name+<note key id hex>``, as verifier keys and ``open_note`` name signers."""
        name = self.note_name(origin)
        try:
            return f"{name}+{note.key_id(name, self.public_key).hex()}"
        except note.NoteError:  # an origin that cannot be a key name: no such signer
            return f"{name}+{key_id(self.public_key)}"


def as_verifier_key(key: bytes | VerifierKey) -> VerifierKey:
    """A raw 32-byte public key as a :class:`VerifierKey` without a name."""
    return key if isinstance(key, VerifierKey) else VerifierKey(bytes(key))


def _looks_like_vkey(text: str) -> bool:
    return "\n" not in text and text.count("+") >= 2 and not text.startswith("-----BEGIN")


def load_verifier_key(spec: str | os.PathLike[str]) -> VerifierKey:
    """A checkpoint signer's key: a public key file (SPKI PEM or base64, as
    :func:`load_public_key`), a C2SP verifier key ``name+keyid+base64``, or a file
    holding one on a line. A malformed verifier key is an InputError; a missing or
    unreadable key file a KeyProblem."""
    p = Path(spec)
    try:
        data = p.read_bytes() if p.is_file() else None
    except OSError as exc:
        raise KeyProblem(f"cannot read public key file {p}: {exc.strerror}") from None
    if data is None:
        s = os.fspath(spec)
        if not _looks_like_vkey(s):
            return VerifierKey(load_public_key(p))  # raises: no such file
        return _vkey(s, f"{s} is neither a key file nor a valid verifier key")
    text = data.decode("utf-8", "replace").strip()
    if _looks_like_vkey(text):
        try:
            return VerifierKey(_public_key_bytes(data, p))  # base64 of 32 bytes may hold '+'
        except KeyProblem:
            return _vkey(text, f"{p} does not hold a valid verifier key")
    return VerifierKey(_public_key_bytes(data, p))


def _vkey(s: str, what: str) -> VerifierKey:
    try:
        name, _, public_key = note.parse_vkey(s)
    except note.NoteError as exc:
        raise InputError(f"{what}: {exc}") from None
    return VerifierKey(public_key, name)
