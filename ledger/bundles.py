"""Lookups over a segment's index rows (docs/FORMAT.md §5.3): :class:`SortedBundle` reads
the two memory-mapped files written beside a segment, :class:`RowBundle` holds rows
derived in memory for a segment without them; both answer alike (a differential test in
tests/test_lineage_family.py holds them together). :mod:`ledger.eventindex` derives the
rows and lays the files out."""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable, Sequence
from typing import Any

import pyarrow as pa

from . import events as E
from .eventindex import _FIRST_DEPLOYS, _RANGE, EDGE_SCHEMA, SCHEMA, edge_rows


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
            self._offsets = memoryview(offsets).cast("i")[self.values.offset :]
            self._data = memoryview(data)
        data, at = self._data, self._offsets
        return bytes(data[at[i] : at[i + 1]]).decode()  # type: ignore[index]


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
    return memoryview(buf).cast("q")[array.offset : array.offset + len(array)]


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
