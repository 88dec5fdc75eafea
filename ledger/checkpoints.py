"""A ledger's checkpoints: stored, issued and proved against (I/O through its Store).

Every checkpoint issued is kept in ``checkpoints/`` (:meth:`ledger.store.Store.write_checkpoint`);
:func:`ledger.issue.issue` verifies what is new since the last one and signs the next;
:func:`inclusion` and
:func:`consistency` build RFC 9162 proofs from the ledger and check them against the
signed roots before returning them. The format itself is :mod:`ledger.checkpoint`.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import merkle, note, outfile
from .checkpoint import (
    _NAME_RE,
    MAX_FILE,
    SignedCheckpoint,
    open_checkpoint,
)
from .errors import (
    CorruptLedgerError,
    InputError,
    KeyProblem,
    LedgerError,
    NotFoundError,
)
from .keys import VerifierKey
from .opened import Opened, partial_state
from .state import KeyRecord


def read_note(path: str | os.PathLike[str]) -> str:
    """Read a checkpoint file given by the user (InputError if it is not one)."""
    if not isinstance(path, str | os.PathLike):
        raise InputError(f"a checkpoint file is a path, got {type(path).__name__} {path!r:.40}")
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise InputError(f"checkpoint file {p} does not exist") from None
    except OSError as exc:
        raise InputError(f"cannot read checkpoint file {p}: {exc.strerror}") from None
    return _note_text(data, str(p))


def _note_text(data: bytes, where: str) -> str:
    """A checkpoint file's bytes as text: at most MAX_FILE bytes of UTF-8 (InputError)."""
    if len(data) > MAX_FILE:
        raise InputError(f"{where} is not a checkpoint: larger than {MAX_FILE} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{where} is not a checkpoint: not UTF-8 text") from None


def stored_names(led: Opened) -> list[str]:
    """The stored checkpoint files (``checkpoints/`` names), smallest tree first."""
    return [n for n in led.store.checkpoint_names() if _NAME_RE.fullmatch(n)]


def read_stored(led: Opened, name: str) -> str:
    """The text of stored checkpoint ``name`` (InputError if it is not one)."""
    where = f"checkpoints/{name}"
    try:
        data = led.store.read_checkpoint(name, MAX_FILE)
    except OSError as exc:
        raise InputError(f"cannot read checkpoint file {where}: {exc.strerror}") from None
    return _note_text(data, where)


def open_file(
    led: Opened, path: str | os.PathLike[str], trusted_keys: Sequence[bytes | VerifierKey] = ()
) -> SignedCheckpoint:
    """Read and verify a checkpoint file of this ledger (signed by one of its
    checkpointer keys, or by one of ``trusted_keys``)."""
    text = read_note(path)
    if trusted_keys:  # signed by a key the caller trusts: the registry is not needed
        try:
            cp = open_checkpoint(text, led.origin, (), trusted_keys, str(path))
            return dataclasses.replace(cp, path=Path(path))
        except KeyProblem:
            pass
    cp = open_checkpoint(text, led.origin, registry(led), trusted_keys, str(path))
    return dataclasses.replace(cp, path=Path(path))


def stored(led: Opened) -> list[SignedCheckpoint]:
    """Every stored checkpoint that verifies, smallest tree first (bad ones are skipped
    here; ``verify`` reports them)."""
    keys = registry(led)
    out = []
    for name in stored_names(led):
        try:
            text = read_stored(led, name)
            cp = open_checkpoint(text, led.origin, keys, where=f"checkpoints/{name}")
        except (InputError, KeyProblem):
            continue
        out.append(dataclasses.replace(cp, path=led.store.checkpoint_path(name)))
    return out


def registry(led: Opened) -> list[KeyRecord]:
    """Every key the ledger ever registered (read without replaying model events)."""
    return list(partial_state(led).keys.values())


def latest(led: Opened) -> SignedCheckpoint:
    cps = stored(led)
    if not cps:
        raise NotFoundError(
            "no checkpoint has been issued for this ledger; run ledger checkpoint"
            " (or pass --checkpoint FILE)"
        )
    return max(cps, key=lambda c: c.size)


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def inclusion(led: Opened, seq: int, cp: SignedCheckpoint) -> dict[str, Any]:
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


def _canonical_at(led: Opened, seq: int) -> bytes:
    from .tree import read_rows

    return read_rows(led.store.segments(), seq, seq + 1, "canonical")[0]


def consistency(led: Opened, old: SignedCheckpoint, new: SignedCheckpoint) -> dict[str, Any]:
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
    led: Opened,
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
    out = outfile.folder(out_dir)
    paths = [out / f"trusted-{size}.checkpoint", out / name]
    outfile.write_text(paths[0], trusted_text)
    outfile.write_text(paths[1], text)
    return paths
