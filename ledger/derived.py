"""Checks of what verify reads besides the events, and of what is derived from them:
reading a listed segment (a vanished one restarts the check), the index bundles
(``index_cache``), the block-root cache (``tree_cache``), the stored checkpoints
(``checkpoint_invalid``, ``truncated``, ``forked``), their story maps (``story_map``) and
the story-map caches (``story_cache``).
:mod:`ledger.scan` calls them after the events verified."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from . import checkpoint as C
from . import checkpoints as CS
from . import eventindex, merkle, storymap, storyread
from . import tree as T
from .errors import LedgerError
from .store import Segment, Store, open_parquet
from .tree import LeafTree, read_cache
from .verify import Problem, Verifier

if TYPE_CHECKING:
    from .opened import Opened


def why_unreadable(seg: Segment, exc: BaseException) -> str:
    """pyarrow's reason, without the path the line already names, not cut short."""
    text = str(exc)
    try:
        open_parquet(seg.path)  # (opening reads the footer, where it fails)
    except Exception as again:
        text = str(again)
    text = re.sub(r"^.*?is unreadable: |Could not open Parquet input source '[^']*': ", "", text)
    lines = text.strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


class Vanished(Exception):
    """A segment listed when the check began is gone: a compaction merged it since (or
    somebody deleted it). The check starts over from a fresh listing."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def read_listed(
    store: Store, seg: Segment, names: Sequence[str], dictionary: bool = False
) -> pa.Table:
    """``store.read_segment`` of a segment listed earlier; gone, it raises :class:`Vanished`."""
    try:
        return store.read_segment(seg, names, dictionary=dictionary)
    except FileNotFoundError as exc:
        why = f"segment is unreadable: {why_unreadable(seg, exc)}"
        raise Vanished(Problem("unreadable", why, seg.first, seg.name)) from None


# --- the event index -----------------------------------------------------------------


def check_index(led: Opened, v: Verifier, since: int = 0) -> None:
    """After the segments verified: every index bundle a reader would take (docs/FORMAT.md
    §5.3) is exactly the one its segment's events give. The bundles are an untrusted
    cache, but ``lineage``, ``impact`` and ``status`` answer from them, so a verdict of
    OK must cover them."""
    store = led.store
    for seg in store.segments():
        if seg.last < since:
            continue
        path = index_mismatch(store, seg)
        if path is not None:
            v.fail(
                "index_cache",
                f"index/{path.name} does not match the events of {seg.name} (index"
                f" altered; delete index/{seg.name.removesuffix('.parquet')}.* to rebuild it)",
                seg.first,
                f"index/{path.name}",
            )


def index_mismatch(store: Store, seg: Segment) -> Any:
    """The file of ``seg``'s index bundle that is not what its events give, if readers
    would take the bundle; None when it matches or readers derive the index instead."""
    stored = store.index_tables(seg)
    if stored is None:  # missing or not for this segment: readers derive it instead
        return None
    rows = read_listed(store, seg, eventindex.SOURCE_COLUMNS)
    want = eventindex.bundle_tables(eventindex.derive(rows))
    for have, expected, path in zip(stored, want, store.index_files(seg), strict=True):
        if not have.equals(expected, check_metadata=True):
            return path
    return None


# --- trees and checkpoints -------------------------------------------------------------


def check_tree(led: Opened, v: Verifier) -> None:
    """After a full verify: the root, the untrusted block-root cache, stored checkpoints."""
    leaves = LeafTree(v.leaves, block_roots(v.roots, len(v.leaves)))
    for (s, e), r in v.roots.items():
        leaves._memo[(s, e)] = r
    n = len(v.leaves)
    v.report.root = merkle.root_from(n, leaves.subtree_root).hex() if n else None
    cache = read_cache(led.store)
    size = T.cache_size(led.store)
    if size % merkle.HASH_SIZE:
        v.fail(
            "tree_cache",
            f"the block-root cache is {size} bytes long, not a whole number of 32-byte roots"
            " (cache altered or torn; delete tree/blocks to rebuild it)",
            min(max(n - 1, 0), len(cache) * T.BLOCK),
            "tree/blocks",
        )
    for b, r in enumerate(cache):
        if (b + 1) * T.BLOCK > n:
            v.fail(
                "tree_cache",
                f"the block-root cache has an entry for events {b * T.BLOCK}..{(b + 1) * T.BLOCK - 1}"
                f" but the ledger holds {n} events (tail truncated?)",
                min(n, b * T.BLOCK),
                "tree/blocks",
            )
        if leaves.subtree_root(b * T.BLOCK, (b + 1) * T.BLOCK) != r:
            v.fail(
                "tree_cache",
                f"the block-root cache entry for events {b * T.BLOCK}..{(b + 1) * T.BLOCK - 1}"
                " does not match the events (cache altered; delete tree/blocks to rebuild it)",
                b * T.BLOCK,
                "tree/blocks",
            )
    keys = list(v.state.keys.values())
    # Largest first: after a rollback, the verdict names every event removed, not just
    # those the smallest checkpoint beyond the tail vouched for.
    for name in reversed(CS.stored_names(led)):
        where = f"checkpoints/{name}"
        try:
            cp = C.open_checkpoint(CS.read_stored(led, name), led.origin, keys, where=where)
        except LedgerError as exc:
            v.fail("checkpoint_invalid", str(exc), None, where)
        against(v, cp, n, lambda m: merkle.root_from(m, leaves.subtree_root), where)


def check_story_maps(
    led: Opened, v: Verifier, since: int = 0, trusted: bytes | None = None
) -> None:
    """The story-map root of every stored checkpoint beyond ``since`` events is the one
    the events give (docs/FORMAT.md, "Story map"): a forged map would let a bundle leave
    events out. A full check (``since`` 0) builds the maps in one pass over the events
    and also holds the story-map caches (``tree/story-N``) to them; ``verify --since``
    starts from the cached map of its trusted checkpoint (``trusted``: that checkpoint's
    story root, which the cache must match) and rebuilds only the stories the newer
    events touch."""
    keys = list(v.state.keys.values())
    events = len(v.hashes)
    committed: list[tuple[int, bytes, str, int | None]] = []
    beyond: list[tuple[C.SignedCheckpoint, str]] = []
    for name in CS.stored_names(led):
        try:
            cp = C.open_checkpoint(CS.read_stored(led, name), led.origin, keys)
        except LedgerError:
            continue  # (check_tree reported it)
        if cp.size > events:  # (verify --since: check_tree, which names it, did not run)
            beyond.append((cp, f"checkpoints/{name}"))
            continue
        story = cp.story_root
        if story is not None and cp.size > since:
            committed.append((cp.size, story, f"checkpoints/{name}", cp.story_format))
    for cp, where in sorted(beyond, key=lambda b: -b[0].size):  # (the most removed first)
        against(v, cp, events, lambda m: b"", where)  # (truncated: the root is not read)
    committed.sort()
    # (A cache beyond the events outlived a rollback: the checkpoints decide on that.)
    caches = [
        (name, int(x))
        for name in ([] if since else led.store.cached_names("story-"))
        if (x := name.removeprefix("story-")).isdigit() and int(x) <= len(v.leaves)
    ]
    if not committed and not caches:
        return
    current = [size for size, _, _, fmt in committed if fmt == 2]
    maps: dict[int, storymap.MapCache | None] = {}
    start = storyread.cached_map(led.store, since, trusted) if since and trusted else None
    if start is not None:
        try:
            for size in current:
                maps[size] = start = storyread.advance(led.store, start, size)
        except storymap.StoryMapError:
            maps = {}  # (an altered cache: decide on all the events)
    if not maps and (current or caches):
        maps = storyread.maps_at(led.store, current + [size for _, size in caches])
    # (checkpoints issued before deployment histories commit to version keys only)
    legacy = [size for size, _, _, fmt in committed if fmt == 1]
    v1 = storyread.stories_at(led.store, legacy, envs=False) if legacy else {}
    for size, story, where, fmt in committed:
        built = maps.get(size)
        got = v1.get(size) if fmt == 1 else built.root() if built else None
        if got != story:
            v.fail(
                "story_map",
                f"the story map this checkpoint commits to is not the one its {size} events"
                " give (forged: evidence bundles against it could leave events out)",
                size - 1,
                where,
            )
    for name, size in caches:
        built = maps.get(size)
        if built is None or led.store.read_cached(name) != built.to_bytes():
            v.fail(
                "story_cache",
                f"tree/{name} is not the story map of the first {size} events (cache"
                f" altered; delete tree/{name} to rebuild it)",
                max(size - 1, 0),
                f"tree/{name}",
            )


def block_roots(roots: dict[tuple[int, int], bytes], n: int) -> dict[int, bytes]:
    """Roots of the full blocks that the workers' subtree roots tile (a block of equal,
    aligned power-of-two subtrees has the root of their roots), so that the main process
    does not hash those blocks' leaves again."""
    out: dict[int, bytes] = {}
    for b in range(n // T.BLOCK):
        lo, hi = b * T.BLOCK, (b + 1) * T.BLOCK
        parts = sorted((s, e) for s, e in roots if lo <= s and e <= hi)
        size = parts[0][1] - parts[0][0] if parts else 0
        if size and parts == [(s, s + size) for s in range(lo, hi, size)]:
            out[b] = merkle.root([roots[p] for p in parts])
    return out


def against(
    v: Verifier, cp: C.SignedCheckpoint, n: int, root_at: Callable[[int], bytes], where: str
) -> None:
    """Fail ``truncated`` or ``forked`` if the ledger's tree does not extend ``cp``."""
    if cp.size > n:
        v.fail(
            "truncated",
            f"{cp.describe()} vouches for {cp.size} events but the ledger holds {n}:"
            f" events {n}..{cp.size - 1} were removed (truncated tail / rollback)",
            n,
            where,
        )
    if cp.size and root_at(cp.size) != cp.root:
        v.fail(
            "forked",
            f"the first {cp.size} events no longer hash to the root of {cp.describe()}"
            " (history rewritten: forked)",
            cp.size - 1,
            where,
        )
