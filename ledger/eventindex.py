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

Smaller segments get their bundle derived in memory when read (:class:`RowBundle`).

The index is a cache, never evidence: readers check that an index file covers exactly
its segment's seqs and fall back to deriving it from the segment (:func:`derive`) when
it is missing or does not fit; ``verify`` recomputes it and reports a file that
disagrees with the events (``index_cache``). Members are taken as the lineage builder
reads them (``ledger.lineage._Builder``), so a graph built from index rows is the graph
built from the events; tests/test_lineage_family.py holds the two together.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from . import events as E

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
_ENV_ONLY = re.compile(r'\{"env":"([a-z][a-z0-9_-]{0,31})"\}')
_ENV_ONLY_ANCHORED = r'^\{"env":"(?P<env>[a-z][a-z0-9_-]{0,31})"\}$'
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
        rest = pc.indices_nonzero(envs.is_null()).to_pylist()
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


class Bundle:
    """Lookups over one segment's index rows (both kinds of bundle answer alike).

    Rows come back as dicts of :data:`SCHEMA` names, ``ts`` in µs since the epoch."""

    first: int
    last: int

    def model_rows(self, model: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def keyless_rows(self) -> list[dict[str, Any]]:
        """The rows without a model: key and governance events."""
        raise NotImplementedError

    def columns(
        self, models: Iterable[str], names: Sequence[str]
    ) -> dict[str, dict[str, list[Any]]]:
        """For each of ``models`` present here: its events' ``names`` columns as lists,
        in seq order (one conversion per column for all the models: the way to read
        the events of hundreds of models)."""
        raise NotImplementedError

    def edges(self, kind: str, key: str) -> list[dict[str, Any]]:
        """Edges of ``kind`` pointing at ``key``, in seq order."""
        return self.edges_many(kind, [key]).get(key, [])

    def edges_many(self, kind: str, keys: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """:meth:`edges` for many keys at once (those with an edge here)."""
        raise NotImplementedError

    def rows_at(self, wanted: Iterable[tuple[str, int]]) -> dict[int, dict[str, Any]]:
        """The rows of the ``(model, seq)`` events held here, by seq."""
        raise NotImplementedError

    def edge_keys(self, kind: str) -> list[str]:
        """Every key of ``kind``, sorted."""
        raise NotImplementedError

    def first_deploys(self) -> dict[str, tuple[int, str, int]]:
        """Per environment, the first deploy to it here: (seq, model, version)."""
        raise NotImplementedError


def _columns(
    table: pa.Table, dictionaries: dict[str, list[Any]] | None = None
) -> dict[str, list[Any]]:
    """Each column as a list, ``ts`` in µs (no datetime objects). Dictionary columns are
    decoded through ``dictionaries`` (name -> the dictionary's values, decoded once per
    bundle): ``to_pylist`` of a slice would decode the whole dictionary every time."""
    out: dict[str, list[Any]] = {}
    for name in table.column_names:
        col = table[name]
        if name == "ts":
            out[name] = [v for c in col.chunks for v in c.view(pa.int64()).to_pylist()]
        elif dictionaries is not None and pa.types.is_dictionary(col.type):
            values: list[Any] = []
            for c in col.chunks:
                d = dictionaries.get(name)
                if d is None:
                    d = dictionaries[name] = c.dictionary.to_pylist()
                values.extend(None if i is None else d[i] for i in c.indices.to_pylist())
            out[name] = values
        else:
            out[name] = col.to_pylist()
    return out


def _rows(
    table: pa.Table, dictionaries: dict[str, list[Any]] | None = None
) -> list[dict[str, Any]]:
    """:func:`_columns` as one dict per row."""
    if table.num_rows == 0:
        return []
    cols = _columns(table, dictionaries)
    names = list(cols)
    return [dict(zip(names, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]


class SortedBundle(Bundle):
    """A bundle as written beside a segment: two sorted tables and their directories."""

    def __init__(self, events: pa.Table, edges: pa.Table) -> None:
        self.events, self.edges_table = events, edges
        self.first, self.last = json.loads((events.schema.metadata or {})[_RANGE])
        self._models, self._starts = _directory(events, "model")
        self._keys, self._estarts = _directory(edges, "key")
        self._dicts: dict[str, list[Any]] = {}
        self._edicts: dict[str, list[Any]] = {}
        self._kinds: dict[str, dict[str, tuple[int, int]]] = {}
        self._seqs = _int64s(events["seq"].chunk(0))
        self._first_deploys: dict[str, tuple[int, str, int]] | None = None

    @staticmethod
    def fits(events: pa.Table, edges: pa.Table, first: int, last: int) -> bool:
        """Whether the tables are a bundle (the right columns, directories) for exactly
        seqs ``first..last``."""
        if events.schema.names != [*SCHEMA.names, "run"] or events.num_rows != last - first + 1:
            return False
        if edges.schema.names != [*EDGE_SCHEMA.names, "run"]:
            return False
        meta = events.schema.metadata or {}
        if any(k not in meta for k in (_FIRST_DEPLOYS, _RANGE)):
            return False
        try:
            return json.loads(meta[_RANGE]) == [first, last]
        except ValueError:
            return False

    def _slice(self, table: pa.Table, keys: list[Any], starts: list[int], key: Any) -> pa.Table:
        i = bisect.bisect_left(keys, key)
        if i == len(keys) or keys[i] != key:
            return table.slice(0, 0)
        end = starts[i + 1] if i + 1 < len(starts) else table.num_rows
        return table.slice(starts[i], end - starts[i])

    def model_rows(self, model: str) -> list[dict[str, Any]]:
        part = self._slice(self.events, self._models, self._starts, model)
        rows = _rows(part.drop_columns(["model"]), self._dicts)
        for r in rows:
            r["model"] = model
        return rows

    def columns(
        self, models: Iterable[str], names: Sequence[str]
    ) -> dict[str, dict[str, list[Any]]]:
        spans = []
        for m in models:
            i = bisect.bisect_left(self._models, m)
            if i < len(self._models) and self._models[i] == m:
                end = self._starts[i + 1] if i + 1 < len(self._starts) else self.events.num_rows
                spans.append((m, self._starts[i], end))
        if not spans:
            return {}
        cols = {n: self._gather(n, spans) for n in names if n != "model"}
        out: dict[str, dict[str, list[Any]]] = {}
        at = 0
        for m, a, b in spans:
            n = b - a
            out[m] = {name: values[at : at + n] for name, values in cols.items()}
            if "model" in names:
                out[m]["model"] = [m] * n
            at += n
        return out

    def _gather(self, name: str, spans: list[tuple[str, int, int]]) -> list[Any]:
        """Column ``name`` over the rows ``a:b`` of each span, as one list, as
        :func:`_columns` gives it. One conversion per column, not per span: an impact
        reads the rows of hundreds of models in each bundle."""
        column = self.events[name]
        if column.num_chunks != 1:
            parts = pa.concat_tables([self.events.slice(a, b - a) for _, a, b in spans])
            return _columns(parts.select([name]), self._dicts)[name]
        arr = column.chunk(0)
        if name == "ts":
            arr = arr.view(pa.int64())
        if pa.types.is_int64(arr.type) and arr.null_count == 0:
            values = _int64s(arr)  # (no nulls: the buffer is the values)
            return [v for _, a, b in spans for v in values[a:b].tolist()]
        if pa.types.is_dictionary(arr.type):
            d = self._dicts.get(name)
            if d is None:
                d = self._dicts[name] = arr.dictionary.to_pylist()
            codes = pa.concat_arrays([arr.indices.slice(a, b - a) for _, a, b in spans])
            return [None if i is None else d[i] for i in codes.to_pylist()]
        return pa.concat_arrays([arr.slice(a, b - a) for _, a, b in spans]).to_pylist()

    def keyless_rows(self) -> list[dict[str, Any]]:
        start = self._starts[0] if self._starts else self.events.num_rows
        rows = _rows(self.events.slice(0, start).drop_columns(["model"]), self._dicts)
        for r in rows:
            r["model"] = None
        return rows

    def _run(self, model: str) -> tuple[int, int] | None:
        i = bisect.bisect_left(self._models, model)
        if i == len(self._models) or self._models[i] != model:
            return None
        end = self._starts[i + 1] if i + 1 < len(self._starts) else self.events.num_rows
        return self._starts[i], end

    def rows_at(self, wanted: Iterable[tuple[str, int]]) -> dict[int, dict[str, Any]]:
        seqs = self._seqs
        at = []
        for model, seq in wanted:
            run = None if not self.first <= seq <= self.last else self._run(model)
            if run is None:
                continue
            lo, hi = run  # a model's rows are in seq order: search them
            while lo < hi:
                mid = (lo + hi) // 2
                if seqs[mid] < seq:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < run[1] and seqs[lo] == seq:
                at.append((lo, model))
        if not at:
            return {}
        at.sort()
        spans = [(model, i, i + 1) for i, model in at]
        names = [n for n in self.events.column_names if n not in ("model", "run")]
        cols = [self._gather(n, spans) for n in names]
        out = {}
        for k, (_, model) in enumerate(at):
            row = {n: c[k] for n, c in zip(names, cols, strict=True)}
            row["model"] = model
            out[row["seq"]] = row
        return out

    def _kind(self, kind: str) -> dict[str, tuple[int, int]]:
        """Key -> the rows of its edges, for one kind (decoded once: a walk looks up
        many keys)."""
        if kind not in self._kinds:
            lo = bisect.bisect_left(self._keys, f"{kind}\x00")
            hi = bisect.bisect_left(self._keys, f"{kind}\x01")
            names = self._keys.values.slice(lo, hi - lo).to_pylist()
            ends = [
                *self._estarts[lo + 1 : hi].tolist(),
                self._estarts[hi] if hi < len(self._estarts) else self.edges_table.num_rows,
            ]
            self._kinds[kind] = {
                n.split("\x00", 1)[1]: (self._estarts[lo + k], ends[k]) for k, n in enumerate(names)
            }
        return self._kinds[kind]

    def edges_many(self, kind: str, keys: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        keys = list(keys)
        if kind in self._kinds or len(keys) > 4:
            index = self._kind(kind)
            spans = [(k, *index[k]) for k in keys if k in index]
        else:  # a few keys: search for them rather than decode the kind's every key
            spans = []
            for k in keys:
                i = bisect.bisect_left(self._keys, f"{kind}\x00{k}")
                if i < len(self._keys) and self._keys[i] == f"{kind}\x00{k}":
                    end = (
                        self._estarts[i + 1]
                        if i + 1 < len(self._estarts)
                        else self.edges_table.num_rows
                    )
                    spans.append((k, self._estarts[i], end))
        if not spans:
            return {}
        table = pa.concat_tables([self.edges_table.slice(a, b - a) for _, a, b in spans])
        cols = _columns(table.select(["model", "version", "seq"]), self._edicts)
        out: dict[str, list[dict[str, Any]]] = {}
        at = 0
        for key, a, b in spans:
            out[key] = [
                {"key": key, "kind": kind, "model": m, "version": v, "seq": q}
                for m, v, q in zip(
                    cols["model"][at : at + b - a],
                    cols["version"][at : at + b - a],
                    cols["seq"][at : at + b - a],
                    strict=True,
                )
            ]
            at += b - a
        return out

    def edge_keys(self, kind: str) -> list[str]:
        return sorted(self._kind(kind))

    def first_deploys(self) -> dict[str, tuple[int, str, int]]:
        if self._first_deploys is None:
            raw = json.loads((self.events.schema.metadata or {})[_FIRST_DEPLOYS])
            self._first_deploys = {env: (v[0], v[1], v[2]) for env, v in raw.items()}
        return self._first_deploys


#: Values a directory decodes one at a time before it decodes them all (~20 lookups).
_DECODE_AFTER = 300


class _Keys:
    """A sorted string array as a sequence ``bisect`` can search, decoding only the few
    values a search looks at (a bundle's directory has thousands), straight from the
    buffers (a string array without nulls: a dictionary)."""

    def __init__(self, values: pa.Array) -> None:
        self.values = values
        self._reads = 0
        self._all: list[Any] | None = None
        self._offsets: memoryview | None = None
        self._data: memoryview | None = None

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> Any:
        if self._all is not None:
            return self._all[i]
        self._reads += 1
        if self._reads > _DECODE_AFTER:  # many searches: decoding them all is cheaper
            self._all = self.values.to_pylist()
            return self._all[i]
        if self._offsets is None:
            _, offsets, data = self.values.buffers()
            self._offsets = memoryview(offsets).cast("i")[self.values.offset :]  # type: ignore[arg-type]
            self._data = memoryview(data)  # type: ignore[arg-type]
        return bytes(self._data[self._offsets[i] : self._offsets[i + 1]]).decode()


def _directory(table: pa.Table, column: str) -> tuple[Any, Any]:
    """The sorted dictionary of ``column`` and where each value's run starts (the
    ``run`` column), both read in place from the memory-mapped buffers."""
    col = table[column]
    if col.num_chunks == 0 or len(col) == 0:
        return _Keys(pa.array([], pa.string())), memoryview(b"").cast("q")
    if col.num_chunks != 1 or table["run"].num_chunks != 1:
        raise ValueError("bundle tables hold one batch")
    chunk = col.chunk(0)
    if not pa.types.is_dictionary(chunk.type):
        raise ValueError("bundle directory column is not dictionary-encoded")
    keys = _Keys(chunk.dictionary)
    run = table["run"].chunk(0)
    if run.null_count != len(run) - len(keys) or (len(keys) and run[len(keys) - 1].as_py() is None):
        raise ValueError("bundle directory does not match its dictionary")
    return keys, _int64s(run)[: len(keys)]


def _int64s(array: pa.Array) -> memoryview:
    """An int64 array's values as a memoryview of its buffer (no copy, no objects)."""
    buf = array.buffers()[1]
    return memoryview(buf).cast("q")[array.offset : array.offset + len(array)]  # type: ignore[arg-type]


class RowBundle(Bundle):
    """A bundle derived in memory, for a segment without one on disk."""

    def __init__(self, index: pa.Table) -> None:
        rows = _rows(index)
        self.first = rows[0]["seq"] if rows else -1
        self.last = rows[-1]["seq"] if rows else -1
        self._by_model: dict[str | None, list[dict[str, Any]]] = {}
        self._first_deploys: dict[str, tuple[int, str, int]] = {}
        for r in rows:
            self._by_model.setdefault(r["model"], []).append(r)
            if r["action"] == E.DEPLOY and r["env"] is not None:
                self._first_deploys.setdefault(r["env"], (r["seq"], r["model"], r["version"]))
        e = edge_rows(index)
        self._edges: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for vals in zip(*(e[n] for n in EDGE_SCHEMA.names), strict=True):
            row = dict(zip(EDGE_SCHEMA.names, vals, strict=True))
            self._edges.setdefault((row["kind"], row["key"]), []).append(row)

    def model_rows(self, model: str) -> list[dict[str, Any]]:
        return list(self._by_model.get(model, ()))

    def keyless_rows(self) -> list[dict[str, Any]]:
        return list(self._by_model.get(None, ()))

    def columns(
        self, models: Iterable[str], names: Sequence[str]
    ) -> dict[str, dict[str, list[Any]]]:
        out = {}
        for m in models:
            rows = self._by_model.get(m)
            if rows:
                out[m] = {name: [r[name] for r in rows] for name in names}
        return out

    def edges_many(self, kind: str, keys: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        return {k: list(self._edges[(kind, k)]) for k in keys if (kind, k) in self._edges}

    def rows_at(self, wanted: Iterable[tuple[str, int]]) -> dict[int, dict[str, Any]]:
        out = {}
        for model, seq in wanted:
            if self.first <= seq <= self.last:
                for r in self._by_model.get(model, ()):
                    if r["seq"] == seq:
                        out[seq] = r
        return out

    def edge_keys(self, kind: str) -> list[str]:
        return sorted(k for kd, k in self._edges if kd == kind)

    def first_deploys(self) -> dict[str, tuple[int, str, int]]:
        return dict(self._first_deploys)


def rows_in_order(parts: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows from several lookups as one list in seq order, each once."""
    seen: dict[int, dict[str, Any]] = {}
    for rows in parts:
        for r in rows:
            seen.setdefault(r["seq"], r)
    return [seen[s] for s in sorted(seen)]
