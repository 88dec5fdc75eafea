"""The story map's inputs read from the segments (:mod:`ledger.storymap` is the pure
part): the columns it needs, turned into what :meth:`Stories.add_columns` takes with
as little per-event Python as possible (docs/FORMAT.md, "Story map")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import events as E
from . import storymap
from .gcpause import collector_paused

STORY_COLUMNS = ["seq", "action", "model", "version", "hash", "payload", "key_id"]


def stories_at(store: Any, sizes: Sequence[int]) -> dict[int, bytes]:
    """The story-map root of the first ``n`` events for each ``n`` in ``sizes``, in one
    pass over the events (docs/FORMAT.md, "Story map"); ``b""`` for a size beyond the
    events."""
    wanted = sorted(set(sizes))
    if not wanted:
        return {}
    table = store.read(STORY_COLUMNS).slice(0, wanted[-1])
    st = storymap.Stories()
    out: dict[int, bytes] = {}
    at = 0
    with collector_paused():  # (millions of acyclic tuples: the cyclic GC finds nothing)
        for n in wanted:
            if n > table.num_rows:
                out[n] = b""
                continue
            st.add_columns(*story_columns(table.slice(at, n - at)))
            at = n
            out[n] = st.root()
    return out


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
    odd = set(pc.indices_nonzero(pc.and_(moves, pc.invert(found.is_valid()))).to_pylist())
    special = pc.or_(
        pc.is_in(action, pa.array([E.BREAK_GLASS, *sorted(E.KEY_ACTIONS)])),
        pc.match_substring(payload, '"break_glass"'),
    )
    cites = set(pc.indices_nonzero(special).to_pylist())
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
