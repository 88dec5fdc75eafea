"""Issuing a checkpoint: verify what is new since the last one, sign the next, store it,
and bring the caches built beside it (block roots, story map) up to its size.

Above verification (:mod:`ledger.scan`), which it runs first: a checkpoint is never
signed over events that do not verify."""

from __future__ import annotations

from . import events as E
from . import storyread
from .checkpoint import EMPTY, SignedCheckpoint, file_name, sign
from .checkpoints import registry, stored
from .errors import CorruptLedgerError, KeyProblem
from .keys import SigningKey
from .opened import Opened
from .scan import verify_full, verify_since
from .tree import Tree, read_cache, write_cache


def issue(led: Opened, key: SigningKey) -> SignedCheckpoint:
    """Verify what is new since the last checkpoint, then sign and store a checkpoint."""
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
        name = file_name(n, root, text)
        led.store.write_checkpoint(name, text.encode())
        roots = Tree(led.store, n, fresh_from=prev.size if prev else 0).full_block_roots()
        if roots != read_cache(led.store):
            write_cache(led.store, roots)
        storyread.keep_cache(led.store, story)
        return SignedCheckpoint(
            text,
            led.origin,
            n,
            root,
            rec.key_id,
            f"{rec.actor} (key {rec.key_id})",
            led.store.checkpoint_path(name),
        )
