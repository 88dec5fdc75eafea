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
to the story map (:mod:`ledger.storymap`). A checkpoint from anywhere is checked on its
own by :mod:`ledger.checkpointcheck` (``ledger verify-checkpoint``).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import events as E
from . import merkle, note, storymap, storyread
from .errors import (
    CorruptLedgerError,
    InputError,
    KeyProblem,
    LedgerError,
    NotFoundError,
    StorageError,
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
        line = self._story_line()
        return line[1] if line else None

    @property
    def story_format(self) -> int | None:
        """2 for a map with deployment histories, 1 for one of versions only, or None."""
        line = self._story_line()
        return line[0] if line else None

    def _story_line(self) -> tuple[int, bytes] | None:
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


def read_note(path: str | os.PathLike[str]) -> str:
    """Read a checkpoint file given by the user (InputError if it is not one)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise InputError(f"checkpoint file {p} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read checkpoint file {p}: {exc.strerror}") from None
    if len(data) > MAX_FILE:
        raise InputError(f"{p} is not a checkpoint: larger than {MAX_FILE} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{p} is not a checkpoint: not UTF-8 text") from None


def open_checkpoint(
    text: str,
    origin: str,
    keys: Iterable[KeyRecord] = (),
    trusted: Iterable[bytes | VerifierKey] = (),
    where: str = "checkpoint",
) -> SignedCheckpoint:
    """Parse and verify a checkpoint note of ledger ``origin``.

    ``keys`` are the ledger's key records (those holding ``checkpointer`` may sign);
    ``trusted`` are keys the caller trusts outright (``--trusted-key``): raw public keys,
    which sign under the origin, or :class:`~ledger.keys.VerifierKey` (a C2SP verifier
    key signs under its own name). Signature lines of other keys (cosignatures) are
    ignored, and extension lines after the root are accepted. Raises InputError for a
    malformed note or a foreign origin, KeyProblem when no acceptable key signed it.
    """
    trusted = [as_verifier_key(k) for k in trusted]
    records = [k for k in keys if E.CHECKPOINTER in k.roles]
    cp = parse_body(text, where)
    if cp.origin != origin:
        raise InputError(
            f"{where} is a checkpoint of ledger {cp.origin!r}, not of this one ({origin!r})"
        )
    pairs = [(k.note_name(origin), k.public_key) for k in trusted]
    pairs += [(origin, rec.public_key) for rec in records]
    try:
        found = note.verify_note(text, pairs)
    except note.NoteError as exc:
        raise InputError(f"{where} is not a signed checkpoint: {exc}") from None
    if found.invalid:
        name, kid = found.invalid[0]
        raise KeyProblem(f"{where} has an invalid signature by {name} (key ID {kid})")
    if not found.verified:
        who = "a trusted key" if trusted else "a checkpointer key of this ledger"
        raise KeyProblem(f"{where} is not signed by {who}")
    for i in sorted(found.verified):
        if i < len(trusted):
            k = trusted[i]
            who = k.label(origin) if k.name is not None else ledger_key_id(k.public_key)
            return SignedCheckpoint(text, cp.origin, cp.size, cp.root, None, f"trusted key {who}")
    signed = [records[i - len(trusted)] for i in sorted(found.verified)]
    for rec in signed:
        if rec.revoked_seq is None or rec.revoked_seq >= cp.size:
            return SignedCheckpoint(
                text, cp.origin, cp.size, cp.root, rec.key_id, f"{rec.actor} (key {rec.key_id})"
            )
    rec = signed[0]
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


def stored_paths(root: Path) -> list[Path]:
    """Stored checkpoint files of the ledger at ``root``, smallest tree first."""
    d = root / CHECKPOINT_DIR
    try:
        names = [p for p in d.iterdir() if _NAME_RE.fullmatch(p.name)]
    except FileNotFoundError:
        return []
    return sorted(names, key=lambda p: p.name)


# --- issuing, storing and proving (I/O through the Ledger and its Store) -------------------


def stored(led: Any) -> list[SignedCheckpoint]:
    """Every stored checkpoint that verifies, smallest tree first (bad ones are skipped
    here; ``verify`` reports them)."""
    keys = registry(led)
    out = []
    for p in stored_paths(led.path):
        try:
            cp = open_checkpoint(read_note(p), led.origin, keys, where=f"checkpoints/{p.name}")
        except (InputError, KeyProblem):
            continue
        out.append(SignedCheckpoint(**{**cp.__dict__, "path": p}))
    return out


def registry(led: Any) -> list[KeyRecord]:
    """Every key the ledger ever registered (read without replaying model events)."""
    from .scan import partial_state

    return list(partial_state(led).keys.values())


def latest(led: Any) -> SignedCheckpoint:
    cps = stored(led)
    if not cps:
        raise NotFoundError(
            "no checkpoint has been issued for this ledger; run ledger checkpoint"
            " (or pass --checkpoint FILE)"
        )
    return max(cps, key=lambda c: c.size)


def issue(led: Any, key: SigningKey) -> SignedCheckpoint:
    """Verify what is new since the last checkpoint, then sign and store a checkpoint."""
    from .scan import verify_full, verify_since
    from .tree import Tree, read_cache, write_cache

    with led.store.lock():
        rec = {k.key_id: k for k in registry(led)}.get(key.key_id)
        if rec is None:
            raise KeyProblem(
                f"key {key.key_id} is not registered in this ledger", kind="unknown_key"
            )
        if not rec.active:
            raise KeyProblem(
                f"key {rec.key_id} ({rec.actor}) was revoked at seq {rec.revoked_seq}",
                kind="revoked_key",
            )
        if E.CHECKPOINTER not in rec.roles:
            raise KeyProblem(
                f"key {rec.key_id} ({rec.actor}) lacks the 'checkpointer' role needed to sign"
                " checkpoints",
                kind="missing_role",
            )
        cps = stored(led)
        prev = max(cps, key=lambda c: c.size) if cps else None
        report = verify_since(led, prev) if prev else verify_full(led)
        if not report.ok:
            raise CorruptLedgerError(
                f"the ledger does not verify ({report.summary()}); no checkpoint issued"
            )
        n, root = report.events, bytes.fromhex(report.root or "") if report.events else EMPTY
        # (caches hold ledger-story/2 maps: only those checkpoints can vouch for one)
        trusted = [(c.size, r) for c in cps if c.story_format == 2 and (r := c.story_root)]
        story = storyread.map_of(led.store, n, trusted)
        text = sign(led.origin, n, root, key, story.root())
        d = led.path / CHECKPOINT_DIR
        with contextlib.suppress(FileExistsError):
            d.mkdir()
        path = d / file_name(n, root, text)
        if not path.exists():
            led.store._write_atomic(path, text.encode())
        roots = Tree(led.store, n, fresh_from=prev.size if prev else 0).full_block_roots()
        if roots != read_cache(led.store):
            write_cache(led.store, roots)
        storyread.keep_cache(led.store, story)
        return SignedCheckpoint(
            text, led.origin, n, root, rec.key_id, f"{rec.actor} (key {rec.key_id})", path
        )


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def inclusion(led: Any, seq: int, cp: SignedCheckpoint) -> dict[str, Any]:
    """Inclusion proof of event ``seq`` in the tree of checkpoint ``cp``, self-checked."""
    from .tree import Tree

    if type(seq) is not int or seq < 0:
        raise InputError(f"seq must be a non-negative integer, got {seq!r}")
    if seq >= cp.size:
        raise InputError(f"event seq {seq} is not covered by the {cp.describe()}")
    for use_cache in (True, False):
        tree = Tree(led.store, cp.size, use_cache=use_cache)
        proof = tree.inclusion(seq)
        leaf = tree.leaf(seq)
        try:
            merkle.verify_inclusion(seq, cp.size, leaf, proof, cp.root)
            break
        except merkle.MerkleProofError:
            continue
    else:
        raise CorruptLedgerError(
            f"event seq {seq} does not prove into the {cp.describe()}: the ledger differs from"
            " the checkpoint (run ledger verify --trusted FILE)"
        )
    canon = _canonical_at(led, seq)
    return {
        "type": "inclusion",
        "origin": led.origin,
        "seq": seq,
        "tree_size": cp.size,
        "root": _b64(cp.root),
        "leaf_hash": leaf.hex(),
        "event": canon.decode("utf-8"),
        "hashes": [h.hex() for h in proof],
        "checkpoint": cp.note,
    }


def _canonical_at(led: Any, seq: int) -> bytes:
    from .tree import read_rows

    return read_rows(led.store.segments(), seq, seq + 1, "canonical")[0]


def consistency(led: Any, old: SignedCheckpoint, new: SignedCheckpoint) -> dict[str, Any]:
    """Consistency proof from checkpoint ``old`` to ``new``, built from this ledger."""
    from .tree import Tree

    if old.size > new.size:
        raise InputError(
            f"the old checkpoint (size {old.size}) is larger than the new one (size {new.size});"
            " pass them as OLD NEW"
        )
    if old.size == 0:
        raise InputError("a checkpoint of the empty tree is consistent with every tree")
    for use_cache in (True, False):
        tree = Tree(led.store, new.size, use_cache=use_cache)
        if tree.root() != new.root:
            continue
        proof = tree.consistency(old.size)
        try:
            merkle.verify_consistency(old.size, new.size, proof, old.root, new.root)
            break
        except merkle.MerkleProofError:
            continue
    else:
        raise CorruptLedgerError(
            f"the ledger does not extend both checkpoints (sizes {old.size} and {new.size}):"
            " they describe different histories (run ledger verify --trusted FILE)"
        )
    return {
        "type": "consistency",
        "origin": led.origin,
        "old_size": old.size,
        "old_root": _b64(old.root),
        "new_size": new.size,
        "new_root": _b64(new.root),
        "hashes": [h.hex() for h in proof],
        "old_checkpoint": old.note,
        "new_checkpoint": new.note,
    }


def conflict_evidence(
    led: Any,
    report: Any,
    trusted_path: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
) -> list[Path]:
    """After ``verify --trusted/--since`` found a rollback or fork, write the trusted
    checkpoint and the ledger's own (its latest stored signed checkpoint, else the
    unsigned checkpoint text of its current tree) into ``out_dir``; return the paths."""
    from .tree import Tree

    if trusted_path is None or report.ok:
        return []
    problem = report.problems[0]
    if problem.kind not in ("truncated", "forked") or problem.segment != Path(trusted_path).name:
        return []
    trusted_text = read_note(trusted_path)
    size = note.parse_checkpoint(trusted_text[: trusted_text.rfind("\n\n") + 1]).size
    try:
        cps = stored(led)
    except LedgerError:
        cps = []
    if cps:
        mine = max(cps, key=lambda c: c.size)
        name, text = f"ledger-{mine.size}.checkpoint", mine.note
    else:
        tree = Tree(led.store, use_cache=False)
        body = note.format_checkpoint(led.origin, tree.size, tree.root())
        name, text = f"ledger-{tree.size}.unsigned-checkpoint", body
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / f"trusted-{size}.checkpoint", out / name]
        paths[0].write_text(trusted_text, encoding="utf-8")
        paths[1].write_text(text, encoding="utf-8")
    except OSError as exc:
        raise StorageError(f"cannot write evidence to {out}: {exc.strerror}") from None
    return paths
