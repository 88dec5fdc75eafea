"""Checking a checkpoint from anywhere, a transparency log's or a ledger's, on its own
(``ledger verify-checkpoint``): C2SP syntax, origin, at least k of the given keys'
signatures, and optionally that a ledger extends it (docs/proofs.md)."""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import note
from .checkpoint import parse_body
from .checkpoints import read_note
from .errors import InputError
from .keys import VerifierKey, as_verifier_key


@dataclass(frozen=True)
class CheckpointCheck:
    """What :func:`check` found; truthy when the checkpoint holds. ``problem`` says what
    failed and ``kind`` names it (``bad_signature``, ``too_few_signatures``, ``origin``,
    ``truncated``, ``forked``)."""

    where: str
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()
    #: ``name+<note key id>`` of each given key that signed, in the order given
    signed_by: tuple[str, ...] = ()
    keys: int = 0
    required: int = 1
    #: with a ledger: its path and how many events it holds
    ledger: str | None = None
    ledger_size: int | None = None
    problem: str | None = None
    kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def __bool__(self) -> bool:
        return self.ok

    @property
    def root_b64(self) -> str:
        return base64.b64encode(self.root).decode()

    def summary(self) -> str:
        """One line: ``OK: checkpoint of …`` or ``FAIL: <file>: <what>``."""
        if not self.ok:
            return f"FAIL: {self.where}: {self.problem}"
        line = (
            f"OK: checkpoint of {self.origin}, {self.size} entries, root {self.root_b64},"
            f" signed by {', '.join(self.signed_by)} ({len(self.signed_by)} of"
            f" {_keys(self.keys)}, {self.required} required)"
        )
        if self.ledger is not None:
            line += f"; ledger {self.ledger} extends it ({self.ledger_size} events)"
        return line


def _keys(n: int) -> str:
    return f"{n} key" if n == 1 else f"{n} keys"


def check(
    text: str,
    keys: Iterable[bytes | VerifierKey],
    *,
    min_signatures: int = 1,
    origin: str | None = None,
    where: str = "checkpoint",
) -> CheckpointCheck:
    """Check a checkpoint on its own (no ledger): C2SP signed-note and tlog-checkpoint
    syntax, the origin (``origin`` if given, and the name of every C2SP verifier key),
    and that at least ``min_signatures`` distinct ``keys`` signed it, none of them badly.

    A malformed note, or a ``min_signatures`` that the keys cannot reach, raises
    InputError; a checkpoint that does not hold is a failed :class:`CheckpointCheck`.
    """
    wanted = [as_verifier_key(k) for k in keys]
    if not wanted:
        raise InputError("give at least one key (--key) to check the checkpoint's signature")
    if type(min_signatures) is not int or min_signatures < 1:
        raise InputError(f"--min-signatures must be a positive integer, got {min_signatures!r}")
    cp = parse_body(text, where)
    # Distinct keys: a PEM key and the vkey of the same key under the origin are one.
    given: list[VerifierKey] = []
    seen: set[tuple[str, bytes]] = set()
    for k in wanted:
        if (k.note_name(cp.origin), k.public_key) not in seen:
            seen.add((k.note_name(cp.origin), k.public_key))
            given.append(k)
    if min_signatures > len(given):
        raise InputError(
            f"--min-signatures {min_signatures} cannot be met: only {_keys(len(given))}"
            " given (a key given twice counts once)"
        )
    # A key without a name signs under the origin, which may not be a valid signer name:
    # then it matches no signature line.
    names = [k.note_name(cp.origin) for k in given]
    usable = [i for i, k in enumerate(given) if _signs_under(names[i], k.public_key)]
    try:
        found = note.verify_note(text, [(names[i], given[i].public_key) for i in usable])
    except note.NoteError as exc:
        raise InputError(f"{where} is not a signed note: {exc}") from None
    labels = [k.label(cp.origin) for k in given]
    signed = tuple(labels[i] for i in sorted(usable[j] for j in found.verified))
    result = CheckpointCheck(
        where, cp.origin, cp.size, cp.root, cp.extensions, signed, len(given), min_signatures
    )

    def fail(kind: str, problem: str) -> CheckpointCheck:
        return dataclasses.replace(result, problem=problem, kind=kind)

    if origin is not None and cp.origin != origin:
        return fail("origin", f"the checkpoint's origin is {cp.origin!r}, not {origin!r}")
    for k, label in zip(given, labels, strict=True):
        if k.name is not None and k.name != cp.origin:
            return fail(
                "origin",
                f"the checkpoint's origin {cp.origin!r} is not the name of verifier key {label}"
                " (a C2SP key verifies checkpoints of the log it names)",
            )
    if found.invalid:
        name, kid = found.invalid[0]
        return fail("bad_signature", f"invalid signature by {name}+{kid}")
    if len(signed) < min_signatures:
        missing = [label for label in labels if label not in signed]
        if not signed:
            return fail(
                "too_few_signatures",
                f"not signed by the {_keys(len(given))} given (signed by:"
                f" {', '.join(found.signers)})",
            )
        return fail(
            "too_few_signatures",
            f"signed by {_keys(len(signed))} ({', '.join(signed)}), {min_signatures} required;"
            f" not by {', '.join(missing)}",
        )
    return result


def _signs_under(name: str, public_key: bytes) -> bool:
    try:
        note.key_id(name, public_key)
    except note.NoteError:
        return False
    return True


def check_extends(store: Any, origin: str, result: CheckpointCheck, name: str) -> CheckpointCheck:
    """``result`` (a checkpoint that held) checked against the ledger in ``store`` of
    ``origin``: same origin, and the first ``size`` events hash to the checkpoint's root
    (else ``truncated`` or ``forked``). Rehashes those events: the block-root cache is
    not trusted for a verdict."""
    from .tree import Tree

    if not result.ok:
        return result
    segments = store.segments()
    n = segments[-1].last + 1 if segments else 0

    def fail(kind: str, problem: str) -> CheckpointCheck:
        return dataclasses.replace(result, ledger=name, ledger_size=n, problem=problem, kind=kind)

    if result.origin != origin:
        return fail(
            "origin", f"the checkpoint's origin is {result.origin!r}, ledger {name}'s {origin!r}"
        )
    if result.size > n:
        return fail(
            "truncated",
            f"the checkpoint vouches for {result.size} events but ledger {name} holds {n}:"
            f" events {n}..{result.size - 1} were removed (truncated tail / rollback)",
        )
    tree = Tree(store, result.size, segments=segments, use_cache=False)
    if tree.root() != result.root:
        return fail(
            "forked",
            f"the first {result.size} events of ledger {name} do not hash to the checkpoint's"
            " root (history rewritten: forked)",
        )
    return dataclasses.replace(result, ledger=name, ledger_size=n)


def verify_file(
    path: str | os.PathLike[str],
    keys: Iterable[bytes | VerifierKey],
    *,
    min_signatures: int = 1,
    origin: str | None = None,
    ledger: str | os.PathLike[str] | None = None,
) -> CheckpointCheck:
    """Check the checkpoint file ``path`` (see :func:`check`) and, given a ``ledger``
    folder, that the ledger extends it (see :func:`check_extends`)."""
    result = check(
        read_note(path), keys, min_signatures=min_signatures, origin=origin, where=str(path)
    )
    if ledger is None or not result.ok:
        return result
    from .store import Store

    store = Store(ledger)
    identity = store.read_identity()
    with store.reading():
        return check_extends(store, identity["origin"], result, str(ledger))
