"""The event index: the typed columns plus the payload members reads ask for (pure).

Point reads (``status MODEL``, ``history``) and family lineage (``lineage MODEL:VERSION``,
``impact``) need, of each event, its typed columns and a few payload members: an
approval's environment, a register's parents, datasets, code and artifact. Parsing every
payload of a big ledger for them costs more than the question, so writers keep this
projection beside each segment of 1,024 events or more, as a *bundle* of two Arrow IPC
files read memory-mapped (docs/FORMAT.md §5.3):

* ``index/<first>-<last>.events.arrow``: one row per event (:data:`SCHEMA`), sorted by
  model (key and governance events first) then seq, with a directory of where each
  model's rows start, so one model's events are a zero-copy slice;
* ``index/<first>-<last>.edges.arrow``: one row per lineage edge of the registers
  (:data:`EDGE_SCHEMA`: parent, dataset, code), sorted by what the edge points at, so the
  children of a version, or the versions trained on a dataset, are a slice too.

Smaller segments get their bundle derived in memory when read; the lookups over both
kinds of bundle are :mod:`ledger.bundles`.

The index is a cache, never evidence: readers check that an index file covers exactly
its segment's seqs and fall back to deriving it from the segment (:func:`derive`) when
it is missing or does not fit; ``verify`` recomputes it and reports a file that
disagrees with the events (``index_cache``). Members are taken as the lineage builder
reads them (``ledger.lineage._Builder``), so a graph built from index rows is the graph
built from the events; tests/test_lineage_family.py holds the two together.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from . import events as E
from .compat import indices_nonzero

#: The segment columns the index is derived from.
SOURCE_COLUMNS = ["seq", "ts", "action", "model", "version", "actor", "key_id", "hash", "payload"]
#: Columns copied from the segment as they are.
_TYPED = SOURCE_COLUMNS[:-1]

PARENT = pa.struct([("model", pa.string()), ("version", pa.int64()), ("relation", pa.string())])
DATASET = pa.struct([("name", pa.string()), ("uri", pa.string()), ("digest", pa.string())])

SCHEMA = pa.schema(
    [
        ("seq", pa.int64()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("action", pa.string()),
        ("model", pa.string()),
        ("version", pa.int64()),
        ("actor", pa.string()),
        ("key_id", pa.string()),
        ("hash", pa.binary(32)),
        # approve, deploy, undeploy: the environment
        ("env", pa.string()),
        # any event: its comment
        ("comment", pa.string()),
        # register: what the version rests on
        ("artifact_digest", pa.string()),
        ("artifact_uri", pa.string()),
        ("description", pa.string()),
        ("parents", pa.list_(PARENT)),
        ("datasets", pa.list_(DATASET)),
        ("code_repo", pa.string()),
        ("code_commit", pa.string()),
        # genesis, key_add: whom the key is for, and its roles
        ("key_actor", pa.string()),
        ("key_roles", pa.list_(pa.string())),
    ]
)
COLUMNS = tuple(SCHEMA.names)
_DERIVED = [c for c in COLUMNS if c not in _TYPED]

#: A payload that is exactly ``{"env":"<name>"}`` (most events): no JSON parse needed.
_ENV_ONLY = E.ENV_ONLY
_ENV_ONLY_ANCHORED = E.ENV_ONLY_ANCHORED
#: From this many rows on, derive and edge_rows work column-wise in pyarrow.compute
#: (whose import, ~0.1 s, a reader of a few small segments should not pay).
_VECTOR_MIN_ROWS = 2048


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def members(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The derived members of one event, as :data:`SCHEMA` names them (absent = null)."""
    out: dict[str, Any] = {}
    if isinstance(payload.get("comment"), str):
        out["comment"] = payload["comment"]
    if action in E.ENV_ACTIONS:
        out["env"] = _str(payload.get("env"))
    elif action in E.ALIAS_ACTIONS:  # (the target policy reads as an environment)
        out["env"] = _str(payload.get("alias"))
    elif action == E.DESCRIBE:
        out["description"] = _str(payload.get("description"))
    elif action == E.REGISTER:
        art = payload.get("artifact")
        if isinstance(art, dict):
            out["artifact_digest"] = _str(art.get("digest"))
            out["artifact_uri"] = _str(art.get("uri"))
        out["description"] = _str(payload.get("description"))
        parents = []
        for p in payload.get("parents") or ():
            if (
                isinstance(p, dict)
                and isinstance(p.get("model"), str)
                and type(p.get("version")) is int
                and isinstance(p.get("relation"), str)
            ):
                parents.append({k: p[k] for k in ("model", "version", "relation")})
        out["parents"] = parents
        datasets = []
        for d in payload.get("datasets") or ():
            if isinstance(d, dict) and isinstance(d.get("uri"), str):
                datasets.append({k: _str(d.get(k)) or None for k in ("name", "uri", "digest")})
        out["datasets"] = datasets
        code = payload.get("code")
        if isinstance(code, dict) and code.get("repo") and code.get("commit"):
            out["code_repo"], out["code_commit"] = _str(code["repo"]), _str(code["commit"])
    elif action in (E.GENESIS, E.KEY_ADD):
        out["key_actor"] = _str(payload.get("actor"))
        roles = payload.get("roles")
        if isinstance(roles, list):
            out["key_roles"] = [r for r in roles if isinstance(r, str)]
    return out


def derive(table: pa.Table) -> pa.Table:
    """The index rows of segment rows (a table holding :data:`SOURCE_COLUMNS`)."""
    n = table.num_rows
    derived: dict[str, list[Any]] = {c: [None] * n for c in _DERIVED}
    actions = table["action"].to_pylist()
    if n >= _VECTOR_MIN_ROWS:
        # A merge or verify of a whole block: match the env-only payloads (most events)
        # in Arrow and parse only the rest.
        import pyarrow.compute as pc

        found = pc.extract_regex(table["payload"], _ENV_ONLY_ANCHORED)
        envs = pc.if_else(
            pc.and_(pc.is_in(table["action"], pa.array(sorted(E.ENV_ACTIONS))), found.is_valid()),
            pc.struct_field(found, [0]),
            pa.scalar(None, pa.string()),
        )
        derived["env"] = envs.to_pylist()
        rest = indices_nonzero(envs.is_null()).to_pylist()
        todo: Iterable[tuple[int, Any]] = zip(
            rest, table["payload"].take(pa.array(rest, pa.int64())).to_pylist(), strict=True
        )
    else:
        todo = enumerate(table["payload"].to_pylist())
    for i, payload in todo:
        action = actions[i]
        if n < _VECTOR_MIN_ROWS and action in E.ENV_ACTIONS and payload is not None:
            m = _ENV_ONLY.fullmatch(payload)
            if m:
                derived["env"][i] = m[1]
                continue
        try:
            p = json.loads(payload)
        except (TypeError, ValueError, RecursionError):
            continue  # a payload that is not JSON: verify names it; the index stays empty
        if not isinstance(p, dict):
            continue
        for name, value in members(action, p).items():
            derived[name][i] = value
    arrays = []
    for field in SCHEMA:
        if field.name in derived:
            arrays.append(pa.array(derived[field.name], type=field.type))
        else:  # (the segment's own types; cast would import pyarrow.compute)
            column = table[field.name]
            arrays.append(column if column.type == field.type else column.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def fits(index: pa.Table, first: int, last: int) -> bool:
    """Whether ``index`` has this module's columns and one row per seq ``first..last``."""
    if index.schema != SCHEMA or index.num_rows != last - first + 1:
        return False
    seq = index["seq"]
    return index.num_rows == 0 or (seq[0].as_py() == first and seq[len(seq) - 1].as_py() == last)


# --- bundles: the index rows arranged for lookups ---------------------------------------

#: Edge kinds: ``parent`` (key ``MODEL:VERSION`` of the parent), ``dataset`` (key the
#: dataset node id, ``URI[@DIGEST]``), ``digest``, ``uri``, ``code`` (key ``REPO@COMMIT``)
#: and ``commit`` (key the commit). Each row names the register (model, version, seq).
EDGE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("kind", pa.string()),
        ("model", pa.string()),
        ("version", pa.int64()),
        ("seq", pa.int64()),
    ]
)
_FIRST_DEPLOYS = b"ledger.first_deploys"
_RANGE = b"ledger.range"
#: Columns the bundle stores dictionary-encoded (few distinct values).
_DICTIONARY = ("action", "model", "actor", "key_id", "env", "code_repo", "key_actor")


def edge_rows(index: pa.Table) -> dict[str, list[Any]]:
    """The lineage edges of the registers among index rows, as columns of EDGE_SCHEMA."""
    out: dict[str, list[Any]] = {name: [] for name in EDGE_SCHEMA.names}
    actions = index["action"].to_pylist()
    regs = [i for i, a in enumerate(actions) if a == E.REGISTER]
    if not regs:
        return out
    names = ("seq", "model", "version", "parents", "datasets", "code_repo", "code_commit")
    cols = {}
    if index.num_rows >= _VECTOR_MIN_ROWS:
        picked = index.select(list(names)).take(regs)
        cols = {c: picked[c].to_pylist() for c in names}
    else:  # (no take(): it would import pyarrow.compute into a reader)
        for c in names:
            values = index[c].to_pylist()
            cols[c] = [values[i] for i in regs]
    keys, kinds, models, versions, seqs = (out[name] for name in EDGE_SCHEMA.names)

    def add(key: str, kind: str, model: str, version: int, seq: int) -> None:
        keys.append(key)
        kinds.append(kind)
        models.append(model)
        versions.append(version)
        seqs.append(seq)

    for k in range(len(regs)):
        m, v, seq = cols["model"][k], cols["version"][k], cols["seq"][k]
        for p in cols["parents"][k] or ():
            add(f"{p['model']}:{p['version']}", "parent", m, v, seq)
        for d in cols["datasets"][k] or ():
            uri, digest = d["uri"], d["digest"]
            add(f"{uri}@{digest}" if digest else uri, "dataset", m, v, seq)
            add(uri, "uri", m, v, seq)
            if digest:
                add(digest, "digest", m, v, seq)
        repo, commit = cols["code_repo"][k], cols["code_commit"][k]
        if repo and commit:
            add(f"{repo}@{commit}", "code", m, v, seq)
            add(commit, "commit", m, v, seq)
    return out


def _run_starts(values: list[Any]) -> tuple[list[Any], list[int]]:
    """For values in sorted order: the distinct values and where each run starts."""
    keys: list[Any] = []
    starts: list[int] = []
    for i, v in enumerate(values):
        if not keys or v != keys[-1]:
            keys.append(v)
            starts.append(i)
    return keys, starts


def bundle_tables(index: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The two tables of a bundle for index rows (SCHEMA, seq order): the events sorted
    by (model, seq) with their directory, and the edges sorted by (kind, key, seq)."""
    import pyarrow.compute as pc  # (writers only: a merge of 1,024 events or more)

    order = pc.sort_indices(
        index, sort_keys=[("model", "ascending", "at_start"), ("seq", "ascending")]
    )
    events = index.take(order)
    models = events["model"].to_pylist()
    keys, starts = _run_starts(models)
    if keys and keys[0] is None:  # the rows without a model come first
        keys, starts = keys[1:], starts[1:]
    envs: dict[str, list[Any]] = {}
    deploys = index.filter(pc.equal(index["action"], E.DEPLOY))
    for seq, env, model, version in zip(
        *(deploys[c].to_pylist() for c in ("seq", "env", "model", "version")),
        strict=True,
    ):
        if env is not None and env not in envs:
            envs[env] = [seq, model, version]
    arrays = []
    for field in SCHEMA:
        col = events[field.name]
        if field.name == "model":  # a sorted dictionary: codes rise with the rows
            arrays.append(_sorted_dictionary(models, keys))
        elif field.name in _DICTIONARY:
            arrays.append(pc.dictionary_encode(col).combine_chunks())
        else:
            arrays.append(col.combine_chunks())
    seqs = index["seq"].to_pylist()
    meta = {
        _FIRST_DEPLOYS: json.dumps(envs).encode(),
        _RANGE: json.dumps([seqs[0], seqs[-1]] if seqs else [-1, -1]).encode(),
    }
    arrays.append(_run_column(starts, len(models)))
    events = pa.Table.from_arrays(arrays, names=[*SCHEMA.names, "run"]).replace_schema_metadata(
        meta
    )
    e = edge_rows(index)
    etable = pa.Table.from_pydict(e, schema=EDGE_SCHEMA)
    # (a stable sort: equal edges of one register keep their order)
    etable = etable.take(
        pc.sort_indices(
            etable, sort_keys=[("kind", "ascending"), ("key", "ascending"), ("seq", "ascending")]
        )
    )
    edge_cols = [etable[name].combine_chunks() for name in EDGE_SCHEMA.names]
    combined = [
        f"{kind}\x00{key}"
        for kind, key in zip(etable["kind"].to_pylist(), etable["key"].to_pylist(), strict=True)
    ]
    ekeys, estarts = _run_starts(combined)
    edge_cols[0] = _sorted_dictionary(combined, ekeys)
    edge_cols[1] = pc.dictionary_encode(edge_cols[1])
    edge_cols[2] = pc.dictionary_encode(edge_cols[2])
    edge_cols.append(_run_column(estarts, len(combined)))
    edges = pa.Table.from_arrays(edge_cols, names=[*EDGE_SCHEMA.names, "run"])
    return events, edges


def _run_column(starts: list[int], rows: int) -> pa.Array:
    """The directory as a column: row ``i`` holds where run ``i`` (the rows of the
    ``i``-th dictionary value) starts; the rows after the last run are null."""
    return pa.array(starts + [None] * (rows - len(starts)), pa.int64())


def _sorted_dictionary(values: list[Any], keys: list[Any]) -> pa.DictionaryArray:
    code = {k: i for i, k in enumerate(keys)}
    return pa.DictionaryArray.from_arrays(
        pa.array([None if v is None else code[v] for v in values], pa.int32()),
        pa.array(keys, pa.string()),
    )
