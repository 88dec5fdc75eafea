"""Building evidence bundles: one model version's story, or one model's deployment
history in one environment, against a stored checkpoint, for an auditor to check offline.

:func:`build` and :func:`build_deployments` read the checkpoint's events from the
ledger, pick the story the checkpoint's story map commits to (with the key events its
signatures and the checkpoint's signer need), and attach each event's RFC 6962 inclusion
proof and the story map's proof that these are all. What a bundle holds and how it is
checked is :mod:`ledger.evidencecheck` (docs/FORMAT.md, "Evidence bundle"); its names
are re-exported here (``evidence.check``, ``evidence.verify_file``, ``evidence.dumps``,
``evidence.Verdict``, :data:`FORMAT`, ...).
"""

from __future__ import annotations

import base64
import os
from typing import Any

from . import checkpoint as C
from . import checkpoints as CS
from . import events as E
from . import merkle, storymap, storyread
from .errors import CorruptLedgerError, InputError, NotFoundError
from .evidencecheck import (
    FORMAT,
    FORMAT_V1,
    MAX_BUNDLE,
    EvidenceReport,
    Incomplete,
    Verdict,
    check,
    dumps,
    load,
    verify_file,
)
from .gcpause import collector_paused
from .keys import PAYLOAD_TYPE
from .opened import Opened


def _envelope(canon: bytes, kid: str, sig: bytes) -> dict[str, Any]:
    return {
        "payload": base64.b64encode(canon).decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": kid, "sig": base64.b64encode(sig).decode()}],
    }


def build(
    led: Opened, model: str, version: int, checkpoint: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The bundle for ``model:version`` against a checkpoint file (default: latest):
    every event of the version's story among the checkpoint's events, every key event,
    each with its inclusion proof, and the story map's proofs that these are all."""
    E.check_model_name(model)
    vkey = storymap.version_key(model, version)

    def found(cp: C.SignedCheckpoint, table: Any, story: list[tuple[int, bytes]]) -> None:
        if not any(table["action"][s].as_py() == E.REGISTER
                   and table["model"][s].as_py() == model for s, _ in story):  # fmt: skip
            raise NotFoundError(
                f"{model}:{version} is not registered in the {cp.describe()}",
                kind="unknown_version",
            )

    return _bundle(led, vkey, checkpoint, found) | {"model": model, "version": version}


def build_deployments(
    led: Opened, model: str, env: str, checkpoint: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """The bundle for the deployment history of ``model`` in ``env`` against a checkpoint
    file (default: latest): every deploy and undeploy of its versions there among the
    checkpoint's events, with the grants, policies and key events they need, and the
    story map's proof that these are all (what was live there at any instant)."""
    E.check_model_name(model)
    E.check_env(env)

    def found(cp: C.SignedCheckpoint, table: Any, story: list[tuple[int, bytes]]) -> None:
        if not story:
            raise NotFoundError(
                f"no version of {model} was ever deployed to {env} in the {cp.describe()}",
                kind="unknown_model",
            )

    return _bundle(led, storymap.env_key(model, env), checkpoint, found) | {
        "env": env,
        "model": model,
    }


def _bundle(
    led: Opened,
    key: str,
    checkpoint: str | os.PathLike[str] | None,
    found: Any,
) -> dict[str, Any]:
    """The members every bundle has, for the story ``key``; ``found(cp, table, story)``
    raises if there is nothing to prove."""
    from .tree import Tree

    cp = CS.open_file(led, checkpoint) if checkpoint is not None else CS.latest(led)
    committed = cp.story_root
    if committed is None:
        raise InputError(
            f"the {cp.describe()} commits to no story map (issued before story maps), so a"
            " bundle against it could not prove it is complete; issue a new checkpoint"
            " (ledger checkpoint) and build the bundle against that"
        )
    if key.startswith("env:") and cp.story_format == 1:
        raise InputError(
            f"the {cp.describe()} commits to a {storymap.EXTENSION_V1} map, which has no"
            " deployment histories; issue a new checkpoint (ledger checkpoint) and build the"
            " bundle against that"
        )
    table = led.store.read([*storyread.STORY_COLUMNS, "sig", "canonical"])
    table = table.slice(0, cp.size)
    st = storyread.stories_of(table)
    with collector_paused():
        leaves = st.leaves(envs=cp.story_format != 1)
    story = st.story(key)
    found(cp, table, story)
    seqs = {s for s, _ in story}
    if storymap.root(leaves) != committed:
        raise CorruptLedgerError(
            f"the story map of the {cp.describe()} does not match the events (run ledger verify)"
        )
    tree = Tree(led.store, cp.size)
    if tree.root() != cp.root:
        tree = Tree(led.store, cp.size, use_cache=False)
    out = []
    for seq in sorted(seqs):
        canon = table["canonical"][seq].as_py()
        proof = tree.inclusion(seq)
        merkle.verify_inclusion(seq, cp.size, merkle.leaf_hash(canon), proof, cp.root)
        out.append(
            {
                "envelope": _envelope(
                    canon, table["key_id"][seq].as_py(), table["sig"][seq].as_py()
                ),
                "proof": [h.hex() for h in proof],
            }
        )

    # The key events of the checkpoint's signer that the story lacks: with them a reader
    # without --trusted-key can authenticate the checkpoint from the bundle's registry.
    signer = st.signer_keys(cp.signer_key_id, cp.size) if cp.signer_key_id else []
    extra = []
    for seq in sorted({s for s, _ in signer} - seqs):
        canon = table["canonical"][seq].as_py()
        proof = tree.inclusion(seq)
        extra.append(
            {
                "envelope": _envelope(
                    canon, table["key_id"][seq].as_py(), table["sig"][seq].as_py()
                ),
                "proof": [h.hex() for h in proof],
            }
        )

    def part(key: str, events: list[tuple[int, bytes]]) -> dict[str, Any]:
        return {
            "events": [[s, h.hex()] for s, h in events],
            "proof": [h.hex() for h in storymap.prove(leaves, key)],
        }

    return {
        "checkpoint": cp.note,
        "events": out,
        "format": FORMAT,
        "origin": led.origin,
        "signer_keys": extra,
        "story": part(key, story),
    }


__all__ = [
    "FORMAT",
    "FORMAT_V1",
    "MAX_BUNDLE",
    "EvidenceReport",
    "Incomplete",
    "Verdict",
    "build",
    "build_deployments",
    "check",
    "dumps",
    "load",
    "verify_file",
]
