"""The story map's inputs read from the segments (:mod:`ledger.storymap` is the pure
part): the columns it needs, turned into what :meth:`Stories.add_columns` takes with
as little per-event Python as possible (docs/FORMAT.md, "Story map")."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from . import events as E
from . import storymap
from .compat import indices_nonzero
from .gcpause import collector_paused

STORY_COLUMNS = ["seq", "action", "model", "version", "hash", "payload", "key_id"]


def stories_at(store: Any, sizes: Sequence[int], envs: bool = True) -> dict[int, bytes]:
    """The story-map root of the first ``n`` events for each ``n`` in ``sizes``, in one
    pass over the events (docs/FORMAT.md, "Story map"); ``b""`` for a size beyond the
    events. Without ``envs``, the ``ledger-story/1`` map (version keys only)."""
    return {n: m.root() if m else b"" for n, m in maps_at(store, sizes, envs).items()}


def maps_at(
    store: Any, sizes: Sequence[int], envs: bool = True
) -> dict[int, storymap.MapCache | None]:
    """The story map of the first ``n`` events for each ``n`` in ``sizes``, built from
    every event in one pass; None for a size beyond the events. The first map is built
    whole, each next one from it by the stories the events in between changed (a ledger
    with a checkpoint a day for years has thousands of sizes)."""
    wanted = sorted(set(sizes))
    if not wanted:
        return {}
    table = store.read(STORY_COLUMNS).slice(0, wanted[-1])
    st = storymap.Stories()
    out: dict[int, storymap.MapCache | None] = {}
    at = 0
    last: storymap.MapCache | None = None
    with collector_paused():  # (millions of acyclic tuples: the cyclic GC finds nothing)
        for n in wanted:
            if n > table.num_rows:
                out[n] = None
                continue
            st.add_columns(*story_columns(table.slice(at, n - at)))
            if last is None:
                last = storymap.MapCache.build(n, st.leaves(envs))
            else:
                last = last.updated(n, storymap.changed(st, None, at, envs), check=False)
            at = n
            out[n] = last
    return out


def advance(store: Any, cache: storymap.MapCache, n: int) -> storymap.MapCache:
    """The story map of the first ``n`` events from ``cache`` (the map of fewer): the
    stories are rebuilt only for the models the new events touch, from their events and
    the key, policy and break-glass events (:func:`ledger.storymap.changed`). Raises
    StoryMapError if a bucket it opens was altered, CorruptLedgerError if the ledger
    holds fewer than ``n`` events."""
    import json

    from .tree import read_columns

    m = cache.size
    if n == m:
        return cache
    new = read_columns(store.segments(), m, n, ["action", "model", "payload"])
    actions = new["action"]
    touched = {x for x in new["model"] if x is not None}
    if E.BREAK_GLASS in actions:  # (a grant names a model in its payload)
        for action, payload in zip(actions, new["payload"], strict=True):
            if action == E.BREAK_GLASS:
                with contextlib.suppress(TypeError, ValueError, RecursionError):
                    named = json.loads(payload).get("model")
                    if isinstance(named, str):
                        touched.add(named)
    special = {*E.KEY_ACTIONS, E.POLICY_SET, E.BREAK_GLASS}
    table = store.read_where(STORY_COLUMNS, special, touched, before=n)
    st = storymap.Stories()
    with collector_paused():
        st.add_columns(*story_columns(table))
    return cache.updated(n, storymap.changed(st, touched, m))


#: Story-map caches kept in ``tree/`` (those of the newest checkpoints).
KEEP_CACHES = 3
_CACHE_PREFIX = "story-"


def cache_name(size: int) -> str:
    return f"{_CACHE_PREFIX}{size:012d}"


def cached_map(store: Any, size: int, root: bytes) -> storymap.MapCache | None:
    """The cached story map of ``size`` events if its root is ``root`` (taken from a
    signed checkpoint: the cache itself is not trusted), else None."""
    data = store.read_cached(cache_name(size))
    if data is None:
        return None
    try:
        cache = storymap.MapCache.from_bytes(data)
    except storymap.StoryMapError:
        return None
    return cache if cache.size == size and cache.root() == root else None


def map_of(store: Any, n: int, trusted: Sequence[tuple[int, bytes]]) -> storymap.MapCache:
    """The story map of the first ``n`` events: from the newest cache at a size in
    ``trusted`` (size, story root of a checkpoint whose signature verified) when there
    is one, else from every event."""
    for size, root in sorted(trusted, reverse=True):
        if size > n:
            continue
        cache = cached_map(store, size, root)
        if cache is not None:
            try:
                return advance(store, cache, n)
            except storymap.StoryMapError:
                break  # (an altered cache: build from the events instead)
    built = maps_at(store, [n])[n]
    if built is None:
        raise storymap.StoryMapError(f"the ledger holds fewer than {n} events")
    return built


def keep_cache(store: Any, cache: storymap.MapCache) -> None:
    """Write ``cache`` to ``tree/`` and drop all but the newest :data:`KEEP_CACHES`
    (caller holds the lock). A cache: failing to write it fails nothing."""
    with contextlib.suppress(OSError):
        store.write_cached(cache_name(cache.size), cache.to_bytes())
        for name in store.cached_names(_CACHE_PREFIX)[:-KEEP_CACHES]:
            store.drop_cached(name)


def _hashes(column: Any) -> list[bytes]:
    """A fixed_size_binary(32) column as bytes objects, sliced from its buffer (ten
    times faster than ``to_pylist`` for a million hashes)."""
    out: list[bytes] = []
    for chunk in column.chunks:
        if chunk.null_count:
            out.extend(chunk.to_pylist())
            continue
        raw = chunk.buffers()[1].to_pybytes()
        start = chunk.offset * 32
        out.extend(raw[i : i + 32] for i in range(start, start + 32 * len(chunk), 32))
    return out


def story_columns(table: Any) -> tuple[Any, ...]:
    """The columns :meth:`ledger.storymap.Stories.add_columns` takes: the environments
    matched in Arrow, JSON parsed only for key events, grants and the events citing one."""
    import json

    import pyarrow as pa
    import pyarrow.compute as pc

    from .eventindex import _ENV_ONLY_ANCHORED

    payload, action = table["payload"], table["action"]
    moves = pc.is_in(action, pa.array([E.DEPLOY, E.UNDEPLOY]))
    found = pc.extract_regex(payload, _ENV_ONLY_ANCHORED)
    envs = pc.if_else(
        pc.and_(moves, found.is_valid()), pc.struct_field(found, [0]), pa.scalar(None, pa.string())
    ).to_pylist()
    odd = set(indices_nonzero(pc.and_(moves, pc.invert(found.is_valid()))).to_pylist())
    special = pc.or_(
        pc.is_in(action, pa.array([E.BREAK_GLASS, *sorted(E.KEY_ACTIONS)])),
        pc.match_substring(payload, '"break_glass"'),
    )
    cites = set(indices_nonzero(special).to_pylist())
    parsed: dict[int, dict[str, Any]] = {}
    for i in sorted(odd | cites):
        try:
            p = json.loads(payload[i].as_py())
        except (TypeError, ValueError, RecursionError):
            p = None
        p = p if isinstance(p, dict) else {}
        if i in odd:
            env = p.get("env")
            envs[i] = env if isinstance(env, str) else None
        if i in cites:
            parsed[i] = p
    return (
        table["seq"].to_pylist(),
        action.to_pylist(),
        table["model"].to_pylist(),
        table["version"].to_pylist(),
        _hashes(table["hash"]),
        table["key_id"].to_pylist(),
        envs,
        parsed,
    )


def stories_of(table: Any) -> storymap.Stories:
    """The stories of the events in ``table`` (which holds :data:`STORY_COLUMNS`, from
    seq 0 on)."""
    st = storymap.Stories()
    with collector_paused():
        st.add_columns(*story_columns(table.select(STORY_COLUMNS)))
    return st
