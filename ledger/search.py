"""``ledger models``: find versions by name, tag, registrant, date, environment, alias or
metric, over the DuckDB views (ledger/views.py), now or as of a past instant.

Each filter is one SQL condition with bound parameters (no user text is spliced into
the SQL but the comparison operator, taken from a fixed set).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from . import events as E
from .errors import InputError
from .inputs import parse_instant
from .query import Cutoff, run
from .store import Store

_METRIC_RE = re.compile(r"\s*([A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63})\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*")
_OPS = {">=": ">=", "<=": "<=", "==": "=", "!=": "<>", ">": ">", "<": "<"}

SELECT = """
SELECT v.model, v.version, v.status, v.live_in, v.aliases, v.registered_by, v.registered_at
FROM model_versions v JOIN registrations r USING (model, version)
WHERE {where}
ORDER BY v.model, v.version
"""


@dataclass(frozen=True)
class Filters:
    """What ``ledger models`` looks for; every filter given must hold."""

    name: str | None = None  # a glob: fraud.*
    tags: Sequence[str] = ()  # KEY=VALUE (the version's tag, or its model's)
    registered_by: str | None = None
    since: int | str | None = None
    until: int | str | None = None
    live_in: str | None = None
    alias: str | None = None
    metrics: Sequence[str] = field(default_factory=tuple)  # 'auc>=0.9'


def search(
    store: Store, f: Filters, as_of: int | str | None = None, at_seq: int | None = None
) -> tuple[pa.Table, Cutoff]:
    """The versions every filter of ``f`` holds for (as of ``as_of`` / ``at_seq``)."""
    where, params = conditions(f)
    return run(store, SELECT.format(where=" AND ".join(where) or "true"), params, as_of, at_seq)


def conditions(f: Filters) -> tuple[list[str], dict[str, Any]]:
    """The SQL conditions and their parameters, each filter checked first."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if f.name is not None:
        if not isinstance(f.name, str) or not f.name or len(f.name) > E.MAX_NAME:
            raise InputError(
                f"--name must be a model name or a glob such as fraud.*, got {f.name!r}"
            )
        # (fnmatch's translation is a regex DuckDB's regexp_full_match reads alike)
        where.append("regexp_full_match(v.model, $name)")
        params["name"] = fnmatch.translate(f.name).removeprefix("(?s:").removesuffix(")\\Z")
    for i, spec in enumerate(f.tags):
        key, value = E.parse_pair(spec, "--tag")
        where.append(
            f"EXISTS (SELECT 1 FROM tags t WHERE t.model = v.model AND (t.version = v.version"
            f" OR t.version IS NULL) AND t.tag = $tag{i} AND t.value = $value{i})"
        )
        params[f"tag{i}"], params[f"value{i}"] = key, value
    if f.registered_by is not None:
        where.append("v.registered_by = $by")
        params["by"] = E.check_actor(f.registered_by)
    for bound, op, when in (("since", ">=", f.since), ("until", "<=", f.until)):
        if when is not None:
            micros = when if type(when) is int else parse_instant(str(when), f"--{bound}")
            where.append(f"epoch_us(v.registered_at) {op} ${bound}")
            params[bound] = micros
    if f.live_in is not None:
        where.append("list_contains(v.live_in, $live)")
        params["live"] = E.check_env(f.live_in)
    if f.alias is not None:
        where.append("list_contains(v.aliases, $alias)")
        params["alias"] = E.check_alias(f.alias)
    for i, spec in enumerate(f.metrics):
        m = _METRIC_RE.fullmatch(spec) if isinstance(spec, str) else None
        number = _number(m[3]) if m else None
        if m is None or number is None:
            raise InputError(
                f"malformed --metric {spec!r}: expected NAME OP NUMBER, e.g. 'auc>=0.9'"
                f" (OP one of {', '.join(_OPS)})"
            )
        where.append(
            f"TRY_CAST(json_extract(r.metrics, '$.\"' || $metric{i} || '\"') AS DOUBLE)"
            f" {_OPS[m[2]]} $bound{i}"
        )
        params[f"metric{i}"], params[f"bound{i}"] = m[1], number
    return where, params


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


__all__ = ["Filters", "conditions", "search"]
