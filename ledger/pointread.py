"""Point reads of one model from its index rows, without DuckDB (pure).

``status MODEL``, ``status MODEL --env ENV`` and ``history MODEL`` ask about one model:
its events are a slice of each index bundle (ledger/eventindex.py), and these functions
turn them into exactly the tables the DuckDB views give (ledger/query.py: STATUS_VERSIONS,
STATUS_ENV, HISTORY over model_versions, live and events) — the same columns, types and
rows, held to the views by tests/test_pointread.py. ``rows`` are one model's index rows
in seq order, ``ts`` in µs, as :class:`ledger.family.Family` returns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from . import events as E

_TS = pa.timestamp("us", tz="UTC")
_NAMES = pa.list_(pa.field("l", pa.string()))  # (DuckDB names a list's item "l")

VERSIONS = pa.schema(
    [
        ("version", pa.int64()),
        ("status", pa.string()),
        ("approved_for", _NAMES),
        ("live_in", _NAMES),
        ("aliases", _NAMES),
        ("registered_by", pa.string()),
        ("registered_at", _TS),
        ("artifact_digest", pa.string()),
    ]
)
LIVE = pa.schema(
    [
        ("model", pa.string()),
        ("version", pa.int64()),
        ("env", pa.string()),
        ("since", _TS),
        ("deployed_by", pa.string()),
        ("approved_by", _NAMES),
        ("rollback", pa.bool_()),
    ]
)
HISTORY = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", _TS),
        ("action", pa.string()),
        ("version", pa.int64()),
        ("env", pa.string()),
        ("actor", pa.string()),
        ("key_id", pa.string()),
        ("comment", pa.string()),
    ]
)


def _table(schema: pa.Schema, rows: list[dict[str, Any]]) -> pa.Table:
    cols = []
    for f in schema:
        values = [r[f.name] for r in rows]
        if f.type == _TS:
            # (a view, not cast(): cast would import pyarrow.compute, 0.15 s of a fresh read)
            cols.append(pa.array(values, pa.int64()).view(_TS))
        else:
            cols.append(pa.array(values, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def _current(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per environment, the event that decides what is live there (the last deploy or
    undeploy), as the ``current_deployments`` view finds it."""
    last: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["action"] in (E.DEPLOY, E.UNDEPLOY):
            last[r["env"]] = r  # (rows are in seq order)
    return last


def current_aliases(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per alias, the alias_set event that makes it point where it points now (an alias
    whose last event deleted it is absent), as the ``aliases`` view finds them. An alias
    event's ``env`` is its alias (FORMAT.md §5.3)."""
    last: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["action"] in E.ALIAS_ACTIONS:
            last[r["env"]] = r
    return {a: r for a, r in last.items() if r["action"] == E.ALIAS_SET}


def _sorted_names(values: set[str | None]) -> list[str | None]:
    """``list(x ORDER BY x)`` of distinct values: NULL last, as DuckDB orders."""
    return sorted(v for v in values if v is not None) + ([None] if None in values else [])


def versions(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """``status MODEL``: one row per registered version (STATUS_VERSIONS)."""
    regs: dict[int, dict[str, Any]] = {}
    fates: dict[int, set[str]] = {}
    approved: dict[int, set[str | None]] = {}
    for r in rows:
        a, v = r["action"], r["version"]
        if a == E.REGISTER:
            regs.setdefault(v, r)
        elif a in (E.APPROVE, E.REJECT, E.DEPRECATE):
            fates.setdefault(v, set()).add(a)
            if a == E.APPROVE:
                approved.setdefault(v, set()).add(r["env"])
    live: dict[int, set[str | None]] = {}
    for env, r in _current(rows).items():
        if r["action"] == E.DEPLOY:
            live.setdefault(r["version"], set()).add(env)
    named: dict[int, set[str | None]] = {}
    for alias, r in current_aliases(rows).items():
        named.setdefault(r["version"], set()).add(alias)
    out = []
    for v in sorted(regs):
        r, acts = regs[v], fates.get(v, set())
        status = (
            "deprecated"
            if E.DEPRECATE in acts
            else "rejected"
            if E.REJECT in acts
            else "approved"
            if E.APPROVE in acts
            else "registered"
        )
        out.append(
            {
                "version": v,
                "status": status,
                "approved_for": _sorted_names(approved.get(v, set())),
                "live_in": _sorted_names(live.get(v, set())),
                "aliases": _sorted_names(named.get(v, set())),
                "registered_by": r["actor"],
                "registered_at": r["ts"],
                "artifact_digest": r["artifact_digest"],
            }
        )
    return _table(VERSIONS, out)


def live(rows: Sequence[dict[str, Any]], model: str, env: str) -> pa.Table:
    """``status MODEL --env ENV``: what is live there, who deployed and approved it,
    whether it is a rollback (STATUS_ENV, for one model)."""
    now = _current(rows).get(env)
    if now is None or now["action"] != E.DEPLOY:
        return _table(LIVE, [])
    v, seq = now["version"], now["seq"]
    approvers = {
        r["actor"]
        for r in rows
        if r["action"] == E.APPROVE and r["version"] == v and r["env"] == env and r["seq"] < seq
    }
    deployed = [r["version"] for r in rows if r["action"] == E.DEPLOY and r["env"] == env]
    row = {
        "model": model,
        "version": v,
        "env": env,
        "since": now["ts"],
        "deployed_by": now["actor"],
        "approved_by": _sorted_names(approvers),
        "rollback": v < max(deployed),
    }
    return _table(LIVE, [row])


def history(rows: Sequence[dict[str, Any]], version: int | None = None) -> pa.Table:
    """``history MODEL [VERSION]``: its events in order (HISTORY)."""
    out = [
        {**r, "env": r["env"] if r["action"] in E.ENV_ACTIONS else None}
        for r in rows
        if version is None or r["version"] == version
    ]
    return _table(HISTORY, out)
