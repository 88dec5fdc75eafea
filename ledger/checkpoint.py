"""Signed checkpoints: C2SP tlog-checkpoints of the ledger's Merkle tree, kept forever.

A checkpoint is a C2SP ``signed-note`` whose text is a C2SP ``tlog-checkpoint``::

    <origin>\\n<tree size>\\n<base64 root>\\n\\n— <origin> <base64(key id ‖ signature)>\\n

signed with Ed25519 by a ledger key holding the ``checkpointer`` role; the note key name
is the ledger's origin, so transparency-log tooling and witnesses read it as is. Every
checkpoint issued is kept in ``LEDGER/checkpoints/`` as
``<size, 12 digits>-<first 16 hex digits of the root>-<note key id>.checkpoint``.

A checkpoint is accepted (:func:`open_checkpoint`) when its origin is the ledger's and it
is signed by a key that holds ``checkpointer`` and was not revoked before the tree size
it signs (a key revoked at seq r cannot vouch for a tree of more than r events), or by
an explicitly trusted public key (a PEM key, which signs under the origin, or a C2SP
verifier key, which signs under its own name). Other signature lines (cosignatures)
and extension lines after the root are accepted and ignored.

Checkpoints issued here carry one extension line, ``ledger-story/2 <root>``, committing
to the story map (:mod:`ledger.storymap`). This module is the pure part: the format,
signing and opening a note (no I/O). Issuing, storing and proving against a ledger's
checkpoints is :mod:`ledger.checkpoints`; a checkpoint from anywhere is checked on its
own by :mod:`ledger.checkpointcheck` (``ledger verify-checkpoint``).
"""

from __future__ import annotations

import base64
import contextlib
import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import events as E
from . import merkle, note, storymap
from .errors import (
    InputError,
    KeyProblem,
)
from .keys import SigningKey, VerifierKey, as_verifier_key
from .keys import key_id as ledger_key_id
from .state import KeyRecord

CHECKPOINT_DIR = "checkpoints"
SUFFIX = ".checkpoint"
_NAME_RE = re.compile(r"(\d{12})-([0-9a-f]{16})-([0-9a-f]{8})\.checkpoint")
MAX_FILE = 64 * 1024
EMPTY = merkle.EMPTY_ROOT


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint note that verified, and who signed it."""

    note: str
    origin: str
    size: int
    root: bytes
    #: ledger key id (16 hex digits) of the signer, or None for a trusted outside key
    signer_key_id: str | None
    signer: str  # actor name, or the trusted key's id
    path: Path | None = None

    @property
    def root_hex(self) -> str:
        return self.root.hex()

    @property
    def story_root(self) -> bytes | None:
        """The story-map root the checkpoint commits to (``ledger.storymap``), or None
        for a checkpoint without one (issued before story maps, or by another log)."""
        line = self._story_line
        return line[1] if line else None

    @property
    def story_format(self) -> int | None:
        """2 for a map with deployment histories, 1 for one of versions only, or None."""
        line = self._story_line
        return line[0] if line else None

    @functools.cached_property
    def _story_line(self) -> tuple[int, bytes] | None:
        # (parsed once: callers ask for the root and the format of many checkpoints)
        body = self.note[: self.note.rfind("\n\n") + 1]
        try:
            return storymap.story_line(note.parse_checkpoint(body).extensions)
        except (note.NoteError, storymap.StoryMapError):
            return None

    @property
    def root_b64(self) -> str:
        return base64.b64encode(self.root).decode()

    def describe(self) -> str:
        return f"checkpoint of size {self.size} signed by {self.signer}"


def sign(
    origin: str, size: int, root: bytes, key: SigningKey, story_root: bytes | None = None
) -> str:
    """The signed note of a checkpoint of ``size`` events with Merkle ``root`` (and the
    extension line committing to the story map's root, when given)."""
    ext = [storymap.extension(story_root)] if story_root is not None else []
    return note.sign_note(
        note.format_checkpoint(origin, size, root, ext), origin, key.sign, key.public_key
    )


def vkey(origin: str, public_key: bytes) -> str:
    """The C2SP verifier key string for a checkpointer key of ledger ``origin``."""
    return note.vkey(origin, public_key)


def _note_key_ids(text: str) -> list[bytes]:
    """The 4-byte key ids on a note's signature lines (already checked by open_note)."""
    out = []
    block = text[text.rfind("\n\n") + 2 :]
    for line in block.splitlines():
        _, _, b64 = line.partition(" ")[2].partition(" ")
        with contextlib.suppress(ValueError):
            out.append(base64.b64decode(b64)[:4])
    return out


def open_checkpoint(
    text: str,
    origin: str,
    keys: Iterable[KeyRecord] = (),
    trusted: Iterable[bytes | VerifierKey] = (),
    where: str = "checkpoint",
    registry: str = "this ledger",
) -> SignedCheckpoint:
    """Parse and verify a checkpoint note of ledger ``origin``.

    ``keys`` are the ledger's key records (those holding ``checkpointer`` may sign);
    ``trusted`` are keys the caller trusts outright (``--trusted-key``): raw public keys,
    which sign under the origin, or :class:`~ledger.keys.VerifierKey` (a C2SP verifier
    key signs under its own name). Signature lines of other keys (cosignatures) are
    ignored, and extension lines after the root are accepted. Raises InputError for a
    malformed note or a foreign origin, KeyProblem when no acceptable key signed it.
    ``registry`` names whose key registry ``keys`` are, for that message.
    """
    vkeys = [as_verifier_key(k) for k in trusted]
    records = [k for k in keys if E.CHECKPOINTER in k.roles]
    cp = parse_body(text, where)
    try:  # (a malformed or second ledger-story line must not pass as "no story map")
        storymap.story_line(cp.extensions)
    except storymap.StoryMapError as exc:
        raise InputError(f"{where} is not a checkpoint: {exc}") from None
    if cp.origin != origin:
        raise InputError(
            f"{where} is a checkpoint of ledger {cp.origin!r}, not of this one ({origin!r})"
        )
    pairs = [(k.note_name(origin), k.public_key) for k in vkeys]
    pairs += [(origin, rec.public_key) for rec in records]
    try:
        found = note.verify_note(text, pairs)
    except note.NoteError as exc:
        raise InputError(f"{where} is not a signed checkpoint: {exc}") from None
    if found.invalid:
        name, kid = found.invalid[0]
        raise KeyProblem(f"{where} has an invalid signature by {name} (key ID {kid})")
    if not found.verified:
        if vkeys:
            raise KeyProblem(f"{where} is not signed by a trusted key")
        # The registry is the one the ledger's events hold now: a rollback that removed
        # the signer's key_add also removed what would authenticate the checkpoint.
        hint = (
            " (if a rollback removed its signer's key_add, check it with --trusted-key KEY)"
            if registry == "this ledger"
            else ""
        )
        raise KeyProblem(
            f"{where} (size {cp.size}) is not signed by a checkpointer key {registry}"
            f" registers{hint}"
        )
    for i in sorted(found.verified):
        if i < len(vkeys):
            k = vkeys[i]
            who = k.label(origin) if k.name is not None else ledger_key_id(k.public_key)
            return SignedCheckpoint(text, cp.origin, cp.size, cp.root, None, f"trusted key {who}")
    signed = [records[i - len(vkeys)] for i in sorted(found.verified)]
    for rec in signed:
        # (a key vouches only for trees that hold its registration and not its revocation)
        if rec.added_seq < cp.size and (rec.revoked_seq is None or rec.revoked_seq >= cp.size):
            return SignedCheckpoint(
                text, cp.origin, cp.size, cp.root, rec.key_id, f"{rec.actor} (key {rec.key_id})"
            )
    rec = signed[0]
    if rec.added_seq >= cp.size:
        raise KeyProblem(
            f"{where} is signed by key {rec.key_id} ({rec.actor}), registered at seq"
            f" {rec.added_seq}, after the {cp.size} events it vouches for"
        )
    raise KeyProblem(
        f"{where} is signed by key {rec.key_id} ({rec.actor}), revoked at seq"
        f" {rec.revoked_seq}, before the {cp.size} events it vouches for"
    )


def parse_body(text: str, where: str) -> note.Checkpoint:
    """The checkpoint body of a signed note (InputError naming ``where`` if malformed)."""
    try:
        body_text = text[: text.rfind("\n\n") + 1] if "\n\n" in text else text
        return note.parse_checkpoint(body_text)
    except note.NoteError as exc:
        raise InputError(f"{where} is not a checkpoint: {exc}") from None


def file_name(size: int, root: bytes, text: str) -> str:
    kid = _note_key_ids(text)[0].hex()
    return f"{size:012d}-{root.hex()[:16]}-{kid}{SUFFIX}"
