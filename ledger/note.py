"""C2SP signed notes (c2sp.org/signed-note, Ed25519 only) and tlog checkpoints.

Pure functions, no I/O. Signing takes a ``sign(message) -> 64-byte signature`` callable
so the caller keeps the private key; verification uses PyNaCl.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import nacl.bindings
import nacl.exceptions

ALG_ED25519 = 0x01
MAX_SIGNATURES = 100  # the spec requires accepting >= 16; golang.org/x/mod/sumdb/note uses 100
MAX_NOTE_BYTES = 1 << 20  # bound the work an untrusted note can cause
_SIG_PREFIX = "\u2014 "  # em dash + space
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_SIZE = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")  # ASCII controls other than newline


class NoteError(ValueError):
    """A note, key or checkpoint is malformed, or a signature does not verify."""


def _check_name(name: str) -> None:
    # Spec: non-empty, no Unicode spaces, no '+'. Controls would break the line format.
    if not name or "+" in name or any(c.isspace() for c in name) or _CONTROL.search(name):
        raise NoteError(f"invalid key name {name!r}")


def _check_public_key(public_key: bytes) -> None:
    if len(public_key) != 32:
        raise NoteError(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")


def _b64decode(s: str, what: str) -> bytes:
    """Strict standard base64: rejects junk and non-canonical encodings (malleability)."""
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise NoteError(f"{what} is not valid base64") from e
    if base64.b64encode(raw).decode() != s:
        raise NoteError(f"{what} is not canonical base64")
    return raw


def key_id(name: str, public_key: bytes) -> bytes:
    """4-byte key ID: ``SHA-256(name || 0x0A || 0x01 || public_key)[:4]``."""
    _check_name(name)
    _check_public_key(public_key)
    return hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]


def vkey(name: str, public_key: bytes) -> str:
    """Verifier key string ``name+<key id hex>+base64(0x01 || public_key)``."""
    kid = key_id(name, public_key)
    return f"{name}+{kid.hex()}+{base64.b64encode(bytes([ALG_ED25519]) + public_key).decode()}"


def parse_vkey(s: str) -> tuple[str, bytes, bytes]:
    """Parse a verifier key; return ``(name, key_id, public_key)``.

    Checks the name, that the key is Ed25519, and that the embedded key ID matches.
    """
    parts = s.split("+", 2)  # only the first two '+' separate: base64 may contain '+'
    if len(parts) != 3:
        raise NoteError("verifier key must have the form name+keyid+key")
    name, kid_hex, key_b64 = parts
    _check_name(name)
    if not _HEX8.fullmatch(kid_hex):
        raise NoteError(f"verifier key ID {kid_hex!r} is not 8 hex digits")
    raw = _b64decode(key_b64, "verifier key")
    if len(raw) != 33 or raw[0] != ALG_ED25519:
        raise NoteError("verifier key is not an Ed25519 key (0x01 || 32 bytes)")
    public_key = raw[1:]
    kid = bytes.fromhex(kid_hex)
    if kid != key_id(name, public_key):
        raise NoteError(f"verifier key ID {kid_hex} does not match name and key")
    return name, kid, public_key


def _check_text(text: str) -> bytes:
    if not text or not text.endswith("\n"):
        raise NoteError("note text must be non-empty and end with a newline")
    if _CONTROL.search(text):
        raise NoteError("note text contains an ASCII control character")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise NoteError("note text is not valid UTF-8") from e


def sign_note(text: str, name: str, sign: Callable[[bytes], bytes], public_key: bytes) -> str:
    """Return ``text`` signed as a C2SP note with one Ed25519 signature line.

    ``sign`` receives the UTF-8 text (including its final newline) and must return the
    64-byte Ed25519 signature. The signature is checked against ``public_key`` so a
    mismatched key pair fails here rather than at every verifier.
    """
    msg = _check_text(text)
    kid = key_id(name, public_key)
    sig = sign(msg)
    if len(sig) != 64:
        raise NoteError(f"signer returned {len(sig)} bytes, expected a 64-byte signature")
    try:
        nacl.bindings.crypto_sign_open(sig + msg, public_key)
    except nacl.exceptions.BadSignatureError as e:
        raise NoteError(f"signer's signature does not verify under the key for {name}") from e
    return f"{text}\n{_SIG_PREFIX}{name} {base64.b64encode(kid + sig).decode()}\n"


Verifiers = Mapping[str, bytes] | Iterable[tuple[str, bytes]]


@dataclass(frozen=True)
class NoteSignatures:
    """What :func:`verify_note` found in a well-formed note."""

    text: str
    #: indices (into the verifiers given) of the keys whose signature verified, in line order
    verified: tuple[int, ...]
    #: ``(name, key ID hex)`` of each known key's signature line that did not verify
    invalid: tuple[tuple[str, str], ...]
    #: ``name+<key id hex>`` of every signature line, known or not, in order
    signers: tuple[str, ...]


def verify_note(note: str | bytes, verifiers: Verifiers) -> NoteSignatures:
    """Parse a signed note and check the signature line of every known key.

    ``verifiers`` maps key name to Ed25519 public key, or lists ``(name, key)`` pairs
    (several keys may share a name, e.g. during rotation). Lines of unknown (name, key
    ID) pairs are ignored, as the spec requires. Raises :class:`NoteError` only if the
    note is malformed; which keys signed, and which known keys' lines failed, is for the
    caller to judge (:func:`open_note` is the strict form).
    """
    known: dict[tuple[str, bytes], list[tuple[int, bytes]]] = {}
    pairs = verifiers.items() if isinstance(verifiers, Mapping) else verifiers
    for i, (vname, vpub) in enumerate(pairs):
        known.setdefault((vname, key_id(vname, vpub)), []).append((i, vpub))

    try:
        raw = note if isinstance(note, bytes) else note.encode("utf-8")
        note = raw.decode("utf-8")
    except UnicodeError as e:
        raise NoteError("note is not valid UTF-8") from e
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteError(f"note is larger than {MAX_NOTE_BYTES} bytes")
    if _CONTROL.search(note):
        raise NoteError("note contains an ASCII control character")
    split = note.rfind("\n\n")  # the text ends at the last blank line
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    text, sig_block = note[: split + 1], note[split + 2 :]
    msg = _check_text(text)
    if not sig_block.endswith("\n"):
        raise NoteError("note signatures must end with a newline")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signatures, more than {MAX_SIGNATURES}")

    verified: list[int] = []
    invalid: list[tuple[str, str]] = []
    signers: list[str] = []
    for n, line in enumerate(lines, 1):
        if not line.startswith(_SIG_PREFIX):
            raise NoteError(f"signature line {n} does not start with an em dash and space")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not b64:
            raise NoteError(f"signature line {n} is not '\u2014 <name> <base64>'")
        _check_name(name)
        blob = _b64decode(b64, f"signature line {n}")
        if len(blob) < 5:
            raise NoteError(f"signature line {n} is too short")
        kid, sig = blob[:4], blob[4:]
        signers.append(f"{name}+{kid.hex()}")
        candidates = known.get((name, kid))
        if candidates is None:
            continue  # unknown key: ignore, even if it shares the name or ID of a known one
        good = [i for i, pub in candidates if _verifies(pub, msg, sig)]
        if not good:
            invalid.append((name, kid.hex()))
        verified += [i for i in good if i not in verified]
    return NoteSignatures(text, tuple(verified), tuple(invalid), tuple(signers))


def _verifies(public_key: bytes, msg: bytes, sig: bytes) -> bool:
    if len(sig) != 64:
        return False
    try:
        nacl.bindings.crypto_sign_open(sig + msg, public_key)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def open_note(note: str | bytes, verifiers: Verifiers) -> tuple[str, list[str]]:
    """Parse and verify a signed note; return ``(text, names of keys that verified)``.

    ``verifiers`` maps key name to Ed25519 public key, or lists ``(name, key)`` pairs
    (several keys may share a name, e.g. during rotation). Signatures from unknown
    (name, key ID) pairs are ignored, as the spec requires. Raises :class:`NoteError` if
    the note is malformed, if any signature from a known key fails (the spec's SHOULD),
    or if no known key signed it.
    """
    pairs = list(verifiers.items() if isinstance(verifiers, Mapping) else verifiers)
    found = verify_note(note, pairs)
    if found.invalid:
        name, kid = found.invalid[0]
        raise NoteError(f"invalid signature by {name} (key ID {kid})")
    if not found.verified:
        raise NoteError(
            f"note is not signed by any known key (signed by: {', '.join(found.signers)})"
        )
    names: list[str] = []
    for i in found.verified:
        if pairs[i][0] not in names:
            names.append(pairs[i][0])
    return found.text, names


@dataclass(frozen=True)
class Checkpoint:
    """The body of a C2SP tlog-checkpoint."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def format(self) -> str:
        """The checkpoint note text (see :func:`format_checkpoint`)."""
        return format_checkpoint(self.origin, self.size, self.root, self.extensions)


def _check_line(line: str, what: str) -> None:
    if not line or "\n" in line or _CONTROL.search(line):
        raise NoteError(f"checkpoint {what} must be a non-empty line without control characters")


def format_checkpoint(origin: str, size: int, root: bytes, extensions: Sequence[str] = ()) -> str:
    """Checkpoint text: ``origin\\nsize\\nbase64(root)\\n`` plus one line per extension."""
    _check_line(origin, "origin")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 1 << 64:
        raise NoteError(f"checkpoint size must be an integer in [0, 2**64), got {size!r}")
    if len(root) != 32:
        raise NoteError(f"checkpoint root must be 32 bytes, got {len(root)}")
    for ext in extensions:
        _check_line(ext, "extension line")
    body = [origin, str(size), base64.b64encode(root).decode(), *extensions]
    return "".join(line + "\n" for line in body)


def parse_checkpoint(text: str) -> Checkpoint:
    """Strictly parse checkpoint text (the note text, e.g. from :func:`open_note`)."""
    if not text.endswith("\n"):
        raise NoteError("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError(f"checkpoint has {len(lines)} lines, expected at least 3")
    origin, size_s, root_s, *extensions = lines
    _check_line(origin, "origin")
    if not _SIZE.fullmatch(size_s):
        raise NoteError(f"checkpoint size {size_s!r} is not a decimal without leading zeros")
    size = int(size_s)
    if size >= 1 << 64:
        raise NoteError(f"checkpoint size {size_s} does not fit in 64 bits")
    root = _b64decode(root_s, "checkpoint root")
    if len(root) != 32:
        raise NoteError(f"checkpoint root is {len(root)} bytes, expected 32")
    for ext in extensions:
        _check_line(ext, "extension line")
    return Checkpoint(origin, size, root, tuple(extensions))
