"""Lineage: every model version's family tree as a networkx ``MultiDiGraph``, built from events.

Nodes (the id is prefixed by its kind, so no two kinds can collide)::

    model:NAME:VERSION        a registered model version        kind=model
    dataset:URI[@sha256:HEX]  a dataset, by URI and digest      kind=dataset
    commit:REPO@COMMIT        a code commit                     kind=commit
    actor:NAME                a person or service with a key    kind=actor
    env:NAME                  a deployment environment          kind=env

Edges point from the thing that depends to what it depends on (provenance style)::

    version -> parent version  derived_from   relation=finetune|distill|quantize|merge|…
    version -> dataset         trained_on     name=<the dataset's name in that register>
    version -> commit          built_from
    version -> actor           registered_by | approved_by (env=…) | rejected_by | deprecated
    version -> env             deployed_to    actor=…, live, until_seq/until_ts/until_hash

Every node and edge carries ``seq``, ``ts`` (RFC 3339) and ``hash`` (hex) of the event that
justifies it (for a node: the first event that names it), so each one points back to signed
evidence. Every attribute is a scalar (str, int or bool) and none is ``None``, so the graph
can be written to GraphML or GEXF as it is.

The graph is built from plain rows (:func:`build`, the reference) or from an Arrow table of
the ledger's columns (:func:`from_table`, the fast path; it returns an identical graph,
insertion order included). ``as_of`` / ``at_seq`` are honoured by
filtering the events before building (:func:`select`), so the graph is the ledger as it
stood then, including which deployments were live.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import events as E
from .compat import graph_dicts
from .compat import nodes as _nodes
from .compat import pred as _pred
from .compat import succ as _succ
from .errors import InputError, NotFoundError
from .gcpause import collector_paused

if TYPE_CHECKING:  # networkx is imported when a graph is built (0.25 s of start-up)
    import networkx as nx

#: The ledger columns the graph is built from.
COLUMNS = ["seq", "ts", "action", "model", "version", "actor", "payload", "hash"]

MODEL, DATASET, COMMIT, ACTOR, ENV = "model", "dataset", "commit", "actor", "env"
DERIVED_FROM, TRAINED_ON, BUILT_FROM = "derived_from", "trained_on", "built_from"
REGISTERED_BY, APPROVED_BY, REJECTED_BY = "registered_by", "approved_by", "rejected_by"
DEPLOYED_TO, DEPRECATED = "deployed_to", "deprecated"
#: Edge kinds that make up the family tree (followed by up, down and impact).
LINEAGE_KINDS = frozenset({DERIVED_FROM, TRAINED_ON, BUILT_FROM})


def model_id(model: str, version: int) -> str:
    return f"model:{model}:{version}"


def dataset_id(uri: str, digest: str | None) -> str:
    return f"dataset:{uri}@{digest}" if digest else f"dataset:{uri}"


def commit_id(repo: str, commit: str) -> str:
    return f"commit:{repo}@{commit}"


def actor_id(actor: str) -> str:
    return f"actor:{actor}"


def env_id(env: str) -> str:
    return f"env:{env}"


# --- as-of ------------------------------------------------------------------------------------


def select(table: Any, as_of: int | None = None, at_seq: int | None = None) -> Any:
    """The events of an Arrow ``table`` with ``ts <= as_of`` and ``seq <= at_seq``."""
    if as_of is None and at_seq is None:
        return table
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = None
    if at_seq is not None:
        if at_seq < 0:
            raise InputError(f"--at-seq must be 0 or more, got {at_seq}")
        mask = pc.less_equal(table["seq"], at_seq)
    if as_of is not None:
        when = pa.scalar(as_of, pa.timestamp("us", tz="UTC"))
        m = pc.less_equal(table["ts"].cast(pa.timestamp("us", tz="UTC")), when)
        mask = m if mask is None else pc.and_(mask, m)
    return table.filter(mask)


# --- building -----------------------------------------------------------------------------------


class Adjacency:
    """The lineage graph without networkx: the three dicts a networkx ``MultiDiGraph``
    keeps inside (``_node``: node -> attributes; ``_succ``/``_pred``: node -> neighbour
    -> edge key -> attributes), laid out alike, so that every question below answers
    the same on either. The terminal tree and ``impact`` use it: importing networkx
    would cost a fresh ``ledger lineage`` more than answering it."""

    def __init__(self) -> None:
        self._node: dict[str, dict[str, Any]] = {}
        self._succ: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
        self._pred: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}

    def number_of_nodes(self) -> int:
        return len(self._node)


def _multidigraph() -> nx.MultiDiGraph:
    import networkx as nx

    return nx.MultiDiGraph()


class _Builder:
    """Fills a MultiDiGraph's adjacency directly: ``add_edges_from`` validates and copies
    every attribute dict, which costs more than the rest of the build at 10^6 edges."""

    def __init__(self, graph: Any = None) -> None:
        self.g = _multidigraph() if graph is None else graph
        self.node, self.succ, self.pred = graph_dicts(self.g)
        #: (model, env) -> the attribute dict of the deployed_to edge live there now
        self.live: dict[tuple[str, str], dict[str, Any]] = {}

    def add_node(self, n: str, attrs: dict[str, Any]) -> dict[str, Any]:
        d = self.node.get(n)
        if d is None:
            self.node[n] = d = attrs
            self.succ[n] = {}
            self.pred[n] = {}
        return d

    def add_edge(self, u: str, v: str, key: int, attrs: dict[str, Any]) -> None:
        kd = self.succ[u].get(v)
        if kd is None:
            kd = self.succ[u][v] = {}
            self.pred[v][u] = kd
        kd[key] = attrs

    def event(
        self,
        seq: int,
        ts: str,
        action: str,
        model: str | None,
        version: int | None,
        actor: str,
        payload: Any,
        hash_: str,
        vid: str | None = None,
        aid: str | None = None,
        env: str | None = None,
    ) -> None:
        """Apply one event. ``vid``/``aid``/``env`` may be given precomputed (the fast path
        computes them column-wise); otherwise they are derived here."""
        if action == E.REGISTER:
            self.register(model, version, actor, _payload(payload, seq), seq, ts, hash_)  # type: ignore[arg-type]
            return
        if action not in E.MODEL_ACTIONS:
            if action == E.GENESIS or action == E.KEY_ADD:
                self.key_added(_payload(payload, seq), seq, ts, hash_)
            return  # key revocations and newer formats' actions add nothing to lineage
        if vid is None:
            if model is None:
                return
            vid = model_id(model, version)  # type: ignore[arg-type]
        vd = self.node.get(vid)
        if vd is None:
            return  # only possible in a ledger that fails verify; lineage stays best effort
        if aid is None:
            aid = actor_id(actor)
        if aid not in self.node:
            self.add_node(aid, {"kind": ACTOR, "label": actor, "seq": seq, "ts": ts, "hash": hash_})
        if action == E.APPROVE or action == E.DEPLOY or action == E.UNDEPLOY:
            if env is None:
                env = _payload(payload, seq).get("env")
                if not isinstance(env, str):
                    return
            if action == E.APPROVE:
                d = {"kind": APPROVED_BY, "env": env, "seq": seq, "ts": ts, "hash": hash_}
                self.add_edge(vid, aid, seq, d)
                if vd["status"] == "registered":
                    vd["status"] = "approved"
                return
            prev = self.live.pop((model, env), None)  # type: ignore[arg-type]
            if prev is not None:  # replaced (deploy of another version) or taken out (undeploy)
                prev["live"] = False
                prev["until_seq"], prev["until_ts"], prev["until_hash"] = seq, ts, hash_
            if action == E.DEPLOY:
                eid = env_id(env)
                if eid not in self.node:
                    self.add_node(
                        eid, {"kind": ENV, "label": env, "seq": seq, "ts": ts, "hash": hash_}
                    )
                d = {
                    "kind": DEPLOYED_TO,
                    "env": env,
                    "actor": actor,
                    "live": True,
                    "seq": seq,
                    "ts": ts,
                    "hash": hash_,
                }
                self.add_edge(vid, eid, seq, d)
                self.live[(model, env)] = d  # type: ignore[index]
        elif action == E.REJECT:
            self.add_edge(vid, aid, seq, {"kind": REJECTED_BY, "seq": seq, "ts": ts, "hash": hash_})
            if vd["status"] != "deprecated":
                vd["status"] = "rejected"
        elif action == E.DEPRECATE:
            self.add_edge(vid, aid, seq, {"kind": DEPRECATED, "seq": seq, "ts": ts, "hash": hash_})
            vd["status"] = "deprecated"

    def key_added(self, p: dict[str, Any], seq: int, ts: str, hash_: str) -> None:
        name = p.get("actor")
        if isinstance(name, str):
            ev = {"seq": seq, "ts": ts, "hash": hash_}
            d = self.add_node(actor_id(name), {"kind": ACTOR, "label": name, **ev})
            roles = sorted(set(d.get("roles", "").split(",") + list(p.get("roles", ()))))
            d["roles"] = ",".join(r for r in roles if r)

    def register(
        self, model: str, version: int, actor: str, p: dict[str, Any], seq: int, ts: str, hash_: str
    ) -> None:
        ev = {"seq": seq, "ts": ts, "hash": hash_}
        vid = model_id(model, version)
        attrs = {
            "kind": MODEL,
            "label": f"{model}:{version}",
            "model": model,
            "version": version,
            "status": "registered",
            "actor": actor,
            **ev,
        }
        art = p.get("artifact")
        if isinstance(art, dict):
            if isinstance(art.get("digest"), str):
                attrs["artifact_digest"] = art["digest"]
            if isinstance(art.get("uri"), str):
                attrs["artifact_uri"] = art["uri"]
        if isinstance(p.get("description"), str):
            attrs["description"] = p["description"]
        self.add_node(vid, attrs)
        aid = actor_id(actor)
        if aid not in self.node:
            self.add_node(aid, {"kind": ACTOR, "label": actor, **ev})
        self.add_edge(vid, aid, seq, {"kind": REGISTERED_BY, "seq": seq, "ts": ts, "hash": hash_})
        for par in p.get("parents", ()):
            pid = model_id(par["model"], par["version"])
            if pid not in self.node:
                continue  # refused by the write path; verify reports it
            d = {
                "kind": DERIVED_FROM,
                "relation": par["relation"],
                "seq": seq,
                "ts": ts,
                "hash": hash_,
            }
            self.add_edge(vid, pid, seq, d)
        for ds in p.get("datasets", ()):
            uri, digest, name = ds.get("uri"), ds.get("digest"), ds.get("name")
            did = dataset_id(uri, digest)
            if did not in self.node:
                nd = {"kind": DATASET, "label": name or uri, "uri": uri, **ev}
                if digest:
                    nd["digest"] = digest
                if name:
                    nd["name"] = name
                self.add_node(did, nd)
            d = {"kind": TRAINED_ON, "seq": seq, "ts": ts, "hash": hash_}
            if name:
                d["name"] = name
            self.add_edge(vid, did, seq, d)
        code = p.get("code")
        if isinstance(code, dict) and code.get("repo") and code.get("commit"):
            repo, commit = code["repo"], code["commit"]
            cid = commit_id(repo, commit)
            if cid not in self.node:
                label = f"{repo}@{commit[:12]}"
                nd = {"kind": COMMIT, "label": label, "repo": repo, "commit": commit}
                self.add_node(cid, nd | ev)
            self.add_edge(vid, cid, seq, {"kind": BUILT_FROM, "seq": seq, "ts": ts, "hash": hash_})


def _payload(payload: Any, seq: int) -> dict[str, Any]:
    if isinstance(payload, dict):
        return payload
    try:
        p = json.loads(payload)
    except (TypeError, ValueError):
        from .errors import CorruptLedgerError

        raise CorruptLedgerError(f"seq {seq}: payload is not JSON; run ledger verify") from None
    return p if isinstance(p, dict) else {}


def _ts_text(ts: Any) -> str:
    if isinstance(ts, int):
        return E.format_ts(ts)
    if isinstance(ts, datetime):
        return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(ts)


def _hash_text(h: Any) -> str:
    return h.hex() if isinstance(h, (bytes, bytearray)) else str(h)


def build(
    rows: Iterable[Mapping[str, Any]],
    as_of: int | None = None,
    at_seq: int | None = None,
    graph: Any = None,
) -> Any:
    """Build the lineage graph from plain event rows in seq order.

    Each row maps the names in :data:`COLUMNS` to values: ``ts`` as µs since the epoch
    (or a datetime, or RFC 3339 text), ``payload`` as a dict or JSON text, ``hash`` as
    bytes or hex. Rows after ``as_of`` (µs) or ``at_seq`` are ignored. The graph is a
    new networkx ``MultiDiGraph``, or ``graph`` (e.g. an empty :class:`Adjacency`).
    """
    b = _Builder(graph)
    with collector_paused():  # only acyclic dicts: collector passes would triple the time
        for r in rows:
            ts = r["ts"]
            if at_seq is not None and r["seq"] > at_seq:
                break
            if as_of is not None:
                micros = ts if isinstance(ts, int) else _micros(ts)
                if micros > as_of:
                    break
            b.event(
                r["seq"],
                _ts_text(ts),
                r["action"],
                r.get("model"),
                r.get("version"),
                r["actor"],
                r["payload"],
                _hash_text(r["hash"]),
            )
    return b.g


def _micros(ts: Any) -> int:
    if isinstance(ts, datetime):
        return E.parse_instant(ts.isoformat())
    return E.parse_ts(str(ts))


def from_table(table: Any) -> nx.MultiDiGraph:
    """Build the lineage graph from an Arrow table holding :data:`COLUMNS` (the fast path).

    The result is identical to :func:`build` over the same rows: the same nodes, edges,
    keys and attribute dicts, inserted in the same order. The work is done per kind of
    event and column-wise (see :class:`_Columns`). A table the fast path cannot vouch for
    (a null where the write path allows none, a payload of another shape, a version
    registered twice ...) is built by :func:`build` itself: odd ledgers are slower,
    never different.
    """
    import pyarrow as pa

    with collector_paused():  # only acyclic dicts: collector passes would triple the time
        try:
            return _Columns(table).graph()
        except (_Irregular, pa.ArrowException):  # (Arrow: e.g. a column over 2 GiB)
            return build(_table_rows(table))


def _table_rows(table: Any) -> Iterable[dict[str, Any]]:
    for batch in table.select(COLUMNS).to_batches():
        yield from batch.to_pylist()


class _Irregular(Exception):
    """The table holds something only :func:`build` handles (see :func:`from_table`)."""


def _take(values: list[Any], index: Iterable[int]) -> list[Any]:
    return list(map(values.__getitem__, index))


#: An approve/deploy/undeploy payload that is exactly {"env": NAME}: the common case, and
#: unambiguous (anything else is parsed with json.loads, as build does).
_ENV_ONLY = E.ENV_ONLY_ANCHORED
#: Register payload text that Arrow's JSON reader could read otherwise than json.loads:
#: a raw line break (the payloads are read as newline-delimited JSON), a null parents or
#: datasets list (build fails on it), anything not shaped like one object.
_ODD_REGISTER = r'[\r\n]|"(?:parents|datasets)":null|^[^{]|[^}]$'
#: Years 1000-9999 in µs: there strftime and Arrow's cast write a ts the same way.
_TS_RANGE = (-30_610_224_000_000_000, 253_402_300_799_999_999)


def _register_schema() -> Any:
    """The part of a register payload the graph uses. Arrow's JSON reader refuses any
    other type at these paths (and a repeated key), where build would differ."""
    import pyarrow as pa

    s = pa.string()
    return pa.schema(
        [
            ("artifact", pa.struct([("digest", s), ("uri", s)])),
            ("description", s),
            (
                "parents",
                pa.list_(pa.struct([("model", s), ("version", pa.int64()), ("relation", s)])),
            ),
            ("datasets", pa.list_(pa.struct([("uri", s), ("digest", s), ("name", s)]))),
            ("code", pa.struct([("repo", s), ("commit", s)])),
        ]
    )


def _register_payloads(payload: Any) -> Any:
    """The register payloads parsed by Arrow's JSON reader (in C++, on its threads) into
    a table of :func:`_register_schema`, one row per payload."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    schema = _register_schema()
    if len(payload) == 0:
        return schema.empty_table()
    if pc.any(pc.match_substring_regex(payload, _ODD_REGISTER)).as_py():
        raise _Irregular("register payload")
    lines = pc.binary_join_element_wise(payload, "\n", "")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    off = memoryview(lines.buffers()[1]).cast("i")
    text = lines.buffers()[2][off[lines.offset] : off[lines.offset + len(lines)]]
    try:
        parsed = pj.read_json(
            pa.BufferReader(text),
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
    except pa.ArrowException as exc:
        raise _Irregular("register payload") from exc
    if parsed.num_rows != len(payload):
        raise _Irregular("register payload")
    return parsed.combine_chunks()


def _array(x: Any) -> Any:
    import pyarrow as pa

    return x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x


def _env_only(payload: Any) -> Any:
    """NAME where a payload is exactly {"env": NAME}, else null."""
    import pyarrow.compute as pc

    return pc.struct_field(pc.extract_regex(payload, _ENV_ONLY), [0]).combine_chunks()


def _ts_texts(ts: Any) -> Any:
    """RFC 3339 text of a timestamp[us, UTC] column, as E.format_ts writes it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # "2025-01-06 00:01:09.258275" -> "2025-01-06T00:01:09.258275Z"
    text = pc.cast(ts.cast(pa.timestamp("us")), pa.string())
    return pc.binary_join_element_wise(pc.utf8_replace_slice(text, 10, 11, "T"), "Z", "")


def _version_ids(reg: Any) -> Any:
    """``model:NAME:VERSION`` of each register row; irregular if one is missing or twice."""
    import pyarrow.compute as pc

    if reg["model"].null_count or reg["version"].null_count:
        raise _Irregular("register without model or version")
    vid = _model_ids(reg["model"], reg["version"]).combine_chunks()
    if pc.count_distinct(vid).as_py() != len(vid):
        raise _Irregular("a version registered twice")
    return vid


def _model_ids(model: Any, version: Any) -> Any:
    """:func:`model_id`, column-wise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.binary_join_element_wise("model:", model, ":", pc.cast(version, pa.string()), "")


def _valid_actions(act: Any, rows: Any, envs: Any, vids: Any, reg_rows: Any) -> tuple[Any, ...]:
    """The actions build applies (on a version registered before them): their columns,
    rows, version indices, actions, env where the payload is exactly {"env": NAME}, and
    where an env action's payload is something else. ``envs`` and ``vids`` are futures
    (of _env_only and _version_ids, submitted before this)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    vid = _model_ids(act["model"], act["version"])
    k = pc.index_in(vid, value_set=vids.result())
    ok = _array(pc.fill_null(pc.less(pc.take(reg_rows, k), rows), False))
    act = act.filter(ok).combine_chunks()
    rows, k = pc.filter(rows, ok), pc.filter(k, ok)
    action = act["action"].combine_chunks()
    is_env = pc.is_in(action, pa.array([E.APPROVE, E.DEPLOY, E.UNDEPLOY]))
    env = _array(pc.filter(envs.result(), ok))
    slow = _array(pc.and_(is_env, pc.is_null(env)))
    return act, rows, k, action, env, slow


def _parent_columns(lists: Any, vids: Any, reg_rows: Any) -> tuple[Any, ...]:
    """The parents of the register payloads that build links (registered before the
    child, or the child itself: a loop), flattened: (rows, child index, parent index,
    relation)."""
    import pyarrow.compute as pc

    flat = lists.flatten()
    if flat.null_count or any(flat.field(i).null_count for i in range(3)):
        raise _Irregular("a parent without model, version or relation")
    k = pc.list_parent_indices(lists)
    pid = _model_ids(flat.field("model"), flat.field("version"))
    pk = pc.index_in(pid, value_set=vids)
    rows = pc.take(reg_rows, k)
    ok = pc.fill_null(pc.less_equal(pc.take(reg_rows, pk), rows), False)
    return tuple(pc.filter(x, ok) for x in (rows, k, pk, flat.field("relation")))


def _dataset_columns(lists: Any) -> tuple[Any, ...]:
    """The datasets of the register payloads, flattened: (register index, uri, digest,
    name, node id, the ids dictionary-encoded in order of first mention)."""
    import pyarrow.compute as pc

    flat = lists.flatten()
    if flat.null_count or flat.field("uri").null_count:
        raise _Irregular("a dataset without a URI")
    k = pc.list_parent_indices(lists)
    uri, digest, name = flat.field("uri"), flat.field("digest"), flat.field("name")
    did = pc.if_else(  # dataset_id(), column-wise
        pc.fill_null(pc.not_equal(digest, ""), False),  # build tests `if digest:`
        pc.binary_join_element_wise("dataset:", uri, "@", digest, ""),
        pc.binary_join_element_wise("dataset:", uri, ""),
    )
    return k, uri, digest, name, did, pc.dictionary_encode(did)


def _code_columns(code: Any) -> tuple[Any, ...]:
    """The registers naming a code repository and commit (build tests both for truth):
    (register index, repo, commit, node id, the ids dictionary-encoded)."""
    import pyarrow.compute as pc

    repo, commit = pc.struct_field(code, [0]), pc.struct_field(code, [1])
    ok = pc.fill_null(pc.and_(pc.not_equal(repo, ""), pc.not_equal(commit, "")), False)
    repo, commit = pc.filter(repo, ok), pc.filter(commit, ok)
    cid = pc.binary_join_element_wise("commit:", repo, "@", commit, "")  # commit_id()
    return pc.indices_nonzero(ok), repo, commit, cid, pc.dictionary_encode(cid)


def _concat(arrays: list[Any], type_: Any) -> Any:
    import pyarrow as pa

    chunks: list[Any] = []
    for a in arrays:
        chunks.extend(c.cast(type_) for c in (a.chunks if isinstance(a, pa.ChunkedArray) else [a]))
    return pa.chunked_array(chunks, type_).combine_chunks()


def _ints(values: Iterable[int]) -> Any:
    import pyarrow as pa

    return pa.array(values, pa.int64())


#: Node kinds in the order build adds them within one event (a register adds its version,
#: then its registrant, datasets and commit; a deploy its deployer, then the environment).
_NODE_ORDER = (MODEL, ACTOR, DATASET, COMMIT, ENV)


class _Columns:
    """The fast path of :func:`from_table`, one kind of event at a time.

    Ids, validity (an action counts only on a version registered before it),
    environments, statuses and deployment spans are computed column-wise in Arrow;
    register payloads go through Arrow's JSON reader with a fixed schema. Each kind's
    attribute dicts are made by one comprehension over zipped lists, sharing the ``seq``,
    ``ts`` and ``hash`` objects of an event between its node and its edges. Edges are
    kept as (row, version index, target kind, target index) columns beside their dicts.
    :meth:`_fill` then puts nodes and edges in build's order (a stable sort on the row,
    the kinds being concatenated in the order build adds them within one event) and
    makes every adjacency dict in one C-level ``dict(zip(...))`` instead of one Python
    insertion per edge.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        #: kind -> (rows, ids, attrs) of its nodes, in any order (sorted in _fill)
        self.node_parts: dict[str, tuple[Any, list[str], list[dict[str, Any]]]] = {}
        #: (rows, version index, target kind, target index, keys, attrs), one edge kind each
        self.edge_parts: list[tuple[Any, Any, str, Any, list[Any], list[dict[str, Any]]]] = []
        self.actor_index: dict[str, int] = {}  # actor name -> index among actor nodes
        self.actor_first: dict[str, int] = {}  # actor name -> row first naming it
        self.roles: dict[str, str] = {}  # actor name -> roles, from key events
        self.pool: Any = None  # threads for Arrow work that can run beside the Python work

    def graph(self) -> nx.MultiDiGraph:
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow as pa
        import pyarrow.compute as pc

        g = _multidigraph()
        t = self.table
        if t.num_rows == 0:
            return g
        self._check()
        action = t["action"]
        is_reg = pc.equal(action, E.REGISTER)
        is_act = pc.is_in(action, pa.array(sorted(E.MODEL_ACTIONS - {E.REGISTER})))
        cols = t.select(["action", "model", "version", "actor", "payload"])
        reg, act = cols.filter(is_reg), cols.filter(is_act)
        # Arrow releases the GIL: parse the payloads on other threads meanwhile
        with ThreadPoolExecutor(2) as pool:
            self.pool = pool
            parsed = pool.submit(_register_payloads, reg["payload"])
            envs = pool.submit(_env_only, act["payload"])
            ts = pool.submit(_ts_texts, t["ts"])
            reg = reg.combine_chunks()
            self.reg_rows = rows = pc.indices_nonzero(is_reg)
            vid = pool.submit(_version_ids, reg)
            acts = pool.submit(_valid_actions, act, pc.indices_nonzero(is_act), envs, vid, rows)
            self._rows(ts)
            self._keys(pc.is_in(action, pa.array([E.GENESIS, E.KEY_ADD])))
            self.vid_arr = vid.result()
            self._registers(reg, parsed.result())
            self._actions(*acts.result())
        self._versions()
        self._actors()
        self._fill(g)
        return g

    # -- checks and per-row lists ----------------------------------------------------------------

    def _check(self) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        t = self.table
        want = {
            "seq": pa.types.is_integer,
            "ts": lambda ty: ty == pa.timestamp("us", tz="UTC"),
            "action": pa.types.is_string,
            "model": pa.types.is_string,
            "version": pa.types.is_integer,
            "actor": pa.types.is_string,
            "payload": pa.types.is_string,
            "hash": lambda ty: ty == pa.binary(32),
        }
        for name, ok in want.items():
            if name not in t.column_names or not ok(t.schema.field(name).type):
                raise _Irregular(name)
        for name in ("seq", "ts", "action", "actor", "payload", "hash"):
            if t[name].null_count:
                raise _Irregular(name)
        lo, hi = pc.min_max(t["ts"].cast(pa.int64())).values()
        if lo.as_py() < _TS_RANGE[0] or hi.as_py() > _TS_RANGE[1]:
            raise _Irregular("ts")

    def _rows(self, ts: Any) -> None:
        """seq, ts text and hash text of every row, as Python lists whose objects every
        node and edge of the row shares."""
        t = self.table
        self.seq = t["seq"].to_pylist()
        self.hash = _hex32(t["hash"])
        self.ts = ts.result().to_pylist()

    def _sth(self, rows: list[int]) -> tuple[list[Any], list[str], list[str]]:
        return _take(self.seq, rows), _take(self.ts, rows), _take(self.hash, rows)

    def _actors_of(self, actors: Any, rows: Any) -> tuple[list[str], Any, Any]:
        """For a column of actor names: (distinct names, each row's index into them, each
        row's actor node index); notes the first of ``rows`` naming each actor."""
        import pyarrow.compute as pc

        enc = pc.dictionary_encode(actors)
        names = enc.dictionary.to_pylist()
        first = pc.take(rows, pc.index_in(enc.dictionary, value_set=actors)).to_pylist()
        index = []
        for name, r in zip(names, first, strict=True):
            if r < self.actor_first.get(name, r + 1):
                self.actor_first[name] = r
            index.append(self.actor_index.setdefault(name, len(self.actor_index)))
        return names, enc.indices, pc.take(_ints(index), enc.indices)

    def _edges(
        self, rows: Any, u: Any, kind: str, v: Any, keys: list[Any], ds: list[dict[str, Any]]
    ) -> None:
        self.edge_parts.append((rows, u, kind, v, keys, ds))

    # -- key events ------------------------------------------------------------------------------

    def _keys(self, is_key: Any) -> None:
        """Genesis and key_add: a handful, replayed one by one as _Builder.key_added."""
        import pyarrow.compute as pc

        from .errors import CorruptLedgerError

        rows = pc.indices_nonzero(is_key).to_pylist()
        texts = pc.filter(self.table["payload"], is_key).to_pylist()  # (a take would copy)
        for r, text in zip(rows, texts, strict=True):
            try:
                p = _payload(text, self.seq[r])
                name = p.get("actor")
                if not isinstance(name, str):
                    continue
                roles = sorted(set(self.roles.get(name, "").split(",") + list(p.get("roles", ()))))
                self.roles[name] = ",".join(x for x in roles if x)
            except (CorruptLedgerError, TypeError, AttributeError) as exc:
                raise _Irregular("key payload") from exc
            self.actor_first.setdefault(name, r)
            self.actor_index.setdefault(name, len(self.actor_index))

    # -- register --------------------------------------------------------------------------------

    def _registers(self, reg: Any, p: Any) -> None:
        import pyarrow.compute as pc

        vid, rows_arr = self.vid_arr, self.reg_rows
        parents = self.pool.submit(
            _parent_columns, p.column("parents").combine_chunks(), vid, rows_arr
        )
        datasets = self.pool.submit(_dataset_columns, p.column("datasets").combine_chunks())
        code = self.pool.submit(_code_columns, p.column("code").combine_chunks())
        rows = rows_arr.to_pylist()
        self.vids = vid.to_pylist()
        self.reg_sth = S, T, H = self._sth(rows)
        names, which, v = self._actors_of(reg["actor"].combine_chunks(), rows_arr)
        self.reg_actor = _take(names, which.to_pylist())
        self.reg_mv = reg["model"].to_pylist(), reg["version"].to_pylist()
        art = p.column("artifact").combine_chunks()
        self.reg_extra = [
            ("artifact_digest", pc.struct_field(art, [0]).to_pylist()),
            ("artifact_uri", pc.struct_field(art, [1]).to_pylist()),
            ("description", p.column("description").to_pylist()),
        ]
        by = [
            {"kind": REGISTERED_BY, "seq": s, "ts": t, "hash": h}
            for s, t, h in zip(S, T, H, strict=True)
        ]
        self._edges(rows_arr, _ints(range(len(rows))), ACTOR, v, S, by)
        self._parents(*parents.result())
        self._datasets(*datasets.result())
        self._code(*code.result())

    def _parents(self, rows: Any, k: Any, pk: Any, rel: Any) -> None:
        S, T, H = (_take(x, k.to_pylist()) for x in self.reg_sth)
        ds = [
            {"kind": DERIVED_FROM, "relation": r, "seq": s, "ts": t, "hash": h}
            for r, s, t, h in zip(rel.to_pylist(), S, T, H, strict=True)
        ]
        self._edges(rows, k, MODEL, pk, S, ds)

    def _datasets(self, k: Any, uri: Any, digest: Any, name: Any, did: Any, enc: Any) -> None:
        import pyarrow.compute as pc

        names = [x or None for x in name.to_pylist()]  # build tests `if name:`
        S, T, H = (_take(x, k.to_pylist()) for x in self.reg_sth)
        ds = [
            {"kind": TRAINED_ON, "seq": s, "ts": t, "hash": h, "name": nm}
            if nm
            else {"kind": TRAINED_ON, "seq": s, "ts": t, "hash": h}
            for nm, s, t, h in zip(names, S, T, H, strict=True)
        ]
        rows = pc.take(self.reg_rows, k)
        self._edges(rows, k, DATASET, enc.indices, S, ds)
        first = pc.index_in(enc.dictionary, value_set=did)
        uris, digests = uri.to_pylist(), digest.to_pylist()
        nodes = []
        for i in first.to_pylist():
            nm, dg = names[i], digests[i]
            d = {"kind": DATASET, "label": nm or uris[i], "uri": uris[i]}
            d["seq"], d["ts"], d["hash"] = S[i], T[i], H[i]
            if dg:
                d["digest"] = dg
            if nm:
                d["name"] = nm
            nodes.append(d)
        self.node_parts[DATASET] = (pc.take(rows, first), enc.dictionary.to_pylist(), nodes)

    def _code(self, k: Any, repo: Any, commit: Any, cid: Any, enc: Any) -> None:
        import pyarrow.compute as pc

        S, T, H = (_take(x, k.to_pylist()) for x in self.reg_sth)
        ds = [
            {"kind": BUILT_FROM, "seq": s, "ts": t, "hash": h}
            for s, t, h in zip(S, T, H, strict=True)
        ]
        rows = pc.take(self.reg_rows, k)
        self._edges(rows, k, COMMIT, enc.indices, S, ds)
        first = pc.index_in(enc.dictionary, value_set=cid)
        f = first.to_pylist()
        nodes = [
            {
                "kind": COMMIT,
                "label": f"{r}@{c[:12]}",
                "repo": r,
                "commit": c,
                "seq": S[i],
                "ts": T[i],
                "hash": H[i],
            }
            for r, c, i in zip(
                pc.take(repo, first).to_pylist(), pc.take(commit, first).to_pylist(), f, strict=True
            )
        ]
        self.node_parts[COMMIT] = (pc.take(rows, first), enc.dictionary.to_pylist(), nodes)

    # -- approve, reject, deploy, undeploy, deprecate --------------------------------------------

    def _actions(self, act: Any, rows_arr: Any, k: Any, action: Any, env: Any, slow: Any) -> None:
        """Approve, reject, deploy, undeploy, deprecate: the valid ones (_valid_actions)."""
        import pyarrow.compute as pc

        if pc.any(slow).as_py():
            env = _array(self._slow_envs(act["payload"], rows_arr, env, slow))
        has_env = pc.is_valid(env)
        names, which, actor_v = self._actors_of(act["actor"].combine_chunks(), rows_arr)
        S, T, H = self._sth(rows_arr.to_pylist())
        enc = pc.dictionary_encode(env)
        values = enc.dictionary.to_pylist()

        def at(kind: str, need_env: bool = False) -> tuple[Any, list[int]]:
            m = pc.equal(action, kind)
            pos = pc.indices_nonzero(pc.and_(m, has_env) if need_env else m)
            return pos, pos.to_pylist()

        def edges(pos: Any, v_kind: str, v: Any, ds: list[dict[str, Any]], keys: list) -> None:
            self._edges(pc.take(rows_arr, pos), pc.take(k, pos), v_kind, v, keys, ds)

        dep_pos, dep = at(E.DEPLOY, True)
        until = self.pool.submit(self._until, act, action, has_env, enc.indices, dep_pos)
        pos, a = at(E.APPROVE, True)
        envs = _take(values, pc.take(enc.indices, pos).to_pylist())
        ds = [
            {"kind": APPROVED_BY, "env": e, "seq": S[i], "ts": T[i], "hash": H[i]}
            for e, i in zip(envs, a, strict=True)
        ]
        edges(pos, ACTOR, pc.take(actor_v, pos), ds, _take(S, a))
        self.approved = set(pc.take(k, pos).to_pylist())
        pos, r = at(E.REJECT)
        ds = [{"kind": REJECTED_BY, "seq": S[i], "ts": T[i], "hash": H[i]} for i in r]
        edges(pos, ACTOR, pc.take(actor_v, pos), ds, _take(S, r))
        self.rejected = set(pc.take(k, pos).to_pylist())
        pos, d = at(E.DEPRECATE)
        ds = [{"kind": DEPRECATED, "seq": S[i], "ts": T[i], "hash": H[i]} for i in d]
        edges(pos, ACTOR, pc.take(actor_v, pos), ds, _take(S, d))
        self.deprecated = set(pc.take(k, pos).to_pylist())
        # deployed_to
        pos, until = dep_pos, until.result()
        envs = _take(values, pc.take(enc.indices, pos).to_pylist())
        deployers = _take(names, pc.take(which, pos).to_pylist())
        ds = [
            {
                "kind": DEPLOYED_TO,
                "env": e,
                "actor": a,
                "live": True,
                "seq": S[i],
                "ts": T[i],
                "hash": H[i],
            }
            if j is None
            else {
                "kind": DEPLOYED_TO,
                "env": e,
                "actor": a,
                "live": False,
                "seq": S[i],
                "ts": T[i],
                "hash": H[i],
                "until_seq": S[j],
                "until_ts": T[j],
                "until_hash": H[j],
            }
            for e, a, i, j in zip(envs, deployers, dep, until, strict=True)
        ]
        env_dep = pc.take(env, pos)
        env_ids = pc.unique(env_dep)  # in order of first deploy
        edges(pos, ENV, pc.index_in(env_dep, value_set=env_ids), ds, _take(S, dep))
        first = pc.index_in(env_ids, value_set=env_dep).to_pylist()
        nodes = [
            {"kind": ENV, "label": e, "seq": S[dep[i]], "ts": T[dep[i]], "hash": H[dep[i]]}
            for e, i in zip(env_ids.to_pylist(), first, strict=True)
        ]
        self.node_parts[ENV] = (
            pc.take(rows_arr, pc.take(pos, _ints(first))),
            [env_id(x["label"]) for x in nodes],
            nodes,
        )

    def _slow_envs(self, payload: Any, rows_arr: Any, env: Any, slow: Any) -> Any:
        """The env of payloads that are not exactly {"env": NAME}, read as build reads it."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from .errors import CorruptLedgerError

        idx = pc.indices_nonzero(slow)
        found = []
        for text, r in zip(
            payload.take(idx).to_pylist(), pc.take(rows_arr, idx).to_pylist(), strict=True
        ):
            try:
                e = _payload(text, self.seq[r]).get("env")
            except CorruptLedgerError as exc:
                raise _Irregular("payload") from exc
            found.append(e if isinstance(e, str) else None)
        return pc.replace_with_mask(env, slow, pa.array(found, pa.string()))

    @staticmethod
    def _until(act: Any, action: Any, has_env: Any, env_index: Any, deploys: Any) -> list[Any]:
        """For each deploy at ``deploys``: the position of the next deploy or undeploy of
        the same model in the same environment (any version: a deploy replaces the one
        live), or None while it is live."""
        import pyarrow as pa
        import pyarrow.compute as pc

        is_dep = pc.equal(action, E.DEPLOY)
        du = pc.and_(pc.or_(is_dep, pc.equal(action, E.UNDEPLOY)), has_env)
        model = pc.dictionary_encode(act["model"].combine_chunks()).indices
        key = pc.add(
            pc.multiply(pc.cast(model, pa.int64()), len(pc.unique(env_index)) + 1),
            pc.cast(env_index, pa.int64()),
        )
        t = pa.table({"key": pc.filter(key, du), "pos": pc.indices_nonzero(du)})
        t = t.take(pc.sort_indices(t, [("key", "ascending"), ("pos", "ascending")]))
        key, pos = t["key"].combine_chunks(), t["pos"].combine_chunks()
        n = len(pos)
        same = pc.equal(key[1:], key[: max(n - 1, 0)])
        nxt = pc.if_else(same, pos[1:], pa.nulls(max(n - 1, 0), pos.type))
        nxt = pa.concat_arrays([nxt, pa.nulls(min(n, 1), pos.type)])
        t = pa.table({"pos": pos, "next": nxt}).filter(pc.is_in(pos, value_set=deploys))
        t = t.sort_by("pos")
        return t["next"].to_pylist()

    # -- nodes and the adjacency -----------------------------------------------------------------

    def _versions(self) -> None:
        S, T, H = self.reg_sth
        models, versions = self.reg_mv
        dep, rej, app = self.deprecated, self.rejected, self.approved
        # deprecated > rejected > approved > registered, whatever the order (_Builder.event)
        status = [
            "deprecated"
            if i in dep
            else "rejected"
            if i in rej
            else "approved"
            if i in app
            else "registered"
            for i in range(len(models))
        ]
        ds = [
            {
                "kind": MODEL,
                "label": f"{m}:{v}",
                "model": m,
                "version": v,
                "status": st,
                "actor": a,
                "seq": s,
                "ts": t,
                "hash": h,
            }
            for m, v, st, a, s, t, h in zip(
                models, versions, status, self.reg_actor, S, T, H, strict=True
            )
        ]
        for name, values in self.reg_extra:  # in build's order
            for d, x in zip(ds, values, strict=True):
                if x is not None:
                    d[name] = x
        self.node_parts[MODEL] = (self.reg_rows, self.vids, ds)

    def _actors(self) -> None:
        names = list(self.actor_index)  # in index order
        nodes = []
        for name in names:
            r = self.actor_first[name]
            d = {"kind": ACTOR, "label": name, "seq": self.seq[r], "ts": self.ts[r]}
            d["hash"] = self.hash[r]
            if name in self.roles:
                d["roles"] = self.roles[name]
            nodes.append(d)
        rows = _ints([self.actor_first[n] for n in names])
        self.node_parts[ACTOR] = (rows, [actor_id(n) for n in names], nodes)

    def _fill(self, g: nx.MultiDiGraph) -> None:
        """Nodes, then edges, in build's order: a stable sort on the row, the kinds having
        been concatenated in the order build adds them within one event."""
        import itertools

        import pyarrow as pa
        import pyarrow.compute as pc

        offset: dict[str, int] = {}
        ids: list[str] = []
        attrs: list[dict[str, Any]] = []
        rows: list[Any] = []
        for kind in _NODE_ORDER:
            r, i, a = self.node_parts.get(kind, (_ints([]), [], []))
            offset[kind] = len(ids)
            ids += i
            attrs += a
            rows.append(r)
        order = pc.sort_indices(_concat(rows, pa.int64())).to_pylist()
        ordered = _take(ids, order)
        # each node's adjacency dicts, by index (lists: no hashing in the loop below)
        out: list[dict[str, Any]] = [{} for _ in ids]
        into: list[dict[str, Any]] = [{} for _ in ids]
        node, succ, pred = graph_dicts(g)
        node.update(zip(ordered, _take(attrs, order), strict=True))
        succ.update(zip(ordered, _take(out, order), strict=True))
        pred.update(zip(ordered, _take(into, order), strict=True))
        parts = self.edge_parts
        perm = pc.sort_indices(_concat([p[0] for p in parts], pa.int64()))
        u = pc.take(_concat([p[1] for p in parts], pa.int64()), perm).to_pylist()
        v = _concat([pc.add(pc.cast(p[3], pa.int64()), offset[p[2]]) for p in parts], pa.int64())
        v = pc.take(v, perm).to_pylist()
        perm = perm.to_pylist()
        chain = itertools.chain.from_iterable
        keys = _take(list(chain(p[4] for p in parts)), perm)
        ds = _take(list(chain(p[5] for p in parts)), perm)
        for su, pv, a, b, key, d in zip(
            _take(out, u), _take(into, v), _take(ids, u), _take(ids, v), keys, ds, strict=True
        ):  # as _Builder.add_edge
            kd = su.get(b)
            if kd is None:
                su[b] = pv[a] = {key: d}
            else:
                kd[key] = d


def _hex32(column: Any) -> list[str]:
    """Hex text of a fixed_size_binary(32) column: one hexlify of the data buffer, viewed
    as a string array of 64-character values (no per-row Python work but the str objects)."""
    import array
    import binascii

    import pyarrow as pa

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if arr.null_count or not pa.types.is_fixed_size_binary(arr.type) or arr.type.byte_width != 32:
        return [h.hex() if h is not None else "" for h in arr.to_pylist()]
    if n == 0:
        return []
    raw = memoryview(arr.buffers()[1])[arr.offset * 32 : (arr.offset + n) * 32]
    text = pa.py_buffer(binascii.hexlify(raw))
    if len(text) >= 2**31:
        return [h.hex() for h in arr.to_pylist()]
    offsets = pa.py_buffer(array.array("i", range(0, 64 * n + 1, 64)))
    return pa.StringArray.from_buffers(n, offsets, text).to_pylist()


# --- questions ----------------------------------------------------------------------------------


def _walk(
    g: nx.MultiDiGraph, start: str, adj: Any, depth: int | None, kinds: frozenset[str]
) -> dict[str, int]:
    """Breadth-first over edges of ``kinds`` in ``adj`` (succ: up, pred: down) -> {node: hops}."""
    seen = {start: 0}
    frontier = [start]
    hops = 0
    while frontier and (depth is None or hops < depth):
        hops += 1
        nxt = []
        for u in frontier:
            for v, keyed in adj[u].items():
                if v not in seen and any(d["kind"] in kinds for d in keyed.values()):
                    seen[v] = hops
                    nxt.append(v)
        frontier = nxt
    return seen


def version_node(g: nx.MultiDiGraph, ref: str) -> str:
    """The node of ``MODEL:VERSION``; NotFoundError if the graph has no such version."""
    model, version = E.parse_model_ref(ref)
    nid = model_id(model, version)
    if nid not in _nodes(g):
        latest = max(
            (d["version"] for d in _nodes(g).values() if d.get("model") == model), default=None
        )
        if latest is None:
            raise NotFoundError(f"model {model} is not registered", kind="unknown_model")
        raise NotFoundError(
            f"{model}:{version} is not registered (latest is {model}:{latest})",
            kind="unknown_version",
        )
    return nid


def up(g: nx.MultiDiGraph, node: str, depth: int | None = None) -> dict[str, int]:
    """Ancestors of ``node``: parent versions back to base models, their datasets and
    commits -> {node: hops}, ``node`` itself at 0."""
    return _walk(g, node, _succ(g), depth, LINEAGE_KINDS)


def down(g: nx.MultiDiGraph, node: str, depth: int | None = None) -> dict[str, int]:
    """Descendants of ``node``: every version derived from it (or trained on / built from
    it, for a dataset or commit) -> {node: hops}, ``node`` itself at 0."""
    return _walk(g, node, _pred(g), depth, LINEAGE_KINDS)


def live_deployments(g: nx.MultiDiGraph, node: str) -> list[dict[str, Any]]:
    """Deployments of a version live at the graph's point in time, by environment."""
    out = []
    for keyed in _succ(g)[node].values():
        for d in keyed.values():
            if d["kind"] == DEPLOYED_TO and d["live"]:
                out.append(d)
    return sorted(out, key=lambda d: d["env"])


def context(g: nx.MultiDiGraph, nodes: Iterable[str]) -> nx.MultiDiGraph:
    """The subgraph of ``nodes`` plus the actors and environments of their versions
    (who registered, approved, rejected, deprecated and deployed them, and where)."""
    keep = set(nodes)
    extra = set()
    for n in keep:
        if _nodes(g)[n]["kind"] != MODEL:
            continue
        for v, keyed in _succ(g)[n].items():
            for d in keyed.values():
                if d["kind"] not in LINEAGE_KINDS:
                    extra.add(v)
                if d["kind"] == DEPLOYED_TO:
                    extra.add(actor_id(d["actor"]))
    return _subgraph(g, keep | {n for n in extra if n in _nodes(g)})


def _subgraph(g: nx.MultiDiGraph, nodes: set[str]) -> nx.MultiDiGraph:
    """A view of ``nodes`` that lists them in the graph's own (event) order. (``subgraph``
    lists a small selection in the order of a set, which varies from run to run.)"""
    import networkx as nx

    return nx.subgraph_view(g, filter_node=nodes.__contains__)


@dataclass
class Impact:
    """What an impact question found: the sources it started from, every version
    downstream (with hops and how it was reached) and their live deployments."""

    sources: list[str]
    versions: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    nodes: set[str] = field(default_factory=set)
    #: node -> label, for the sources (``MODEL:VERSION`` for a version)
    labels: dict[str, str] = field(default_factory=dict)


def find_datasets(g: nx.MultiDiGraph, uri_or_digest: str) -> list[str]:
    """Dataset nodes whose digest (``sha256:HEX``, or the 64 hex digits alone) or URI is
    ``uri_or_digest``."""
    if re.fullmatch(r"[0-9a-f]{64}", uri_or_digest):
        uri_or_digest = "sha256:" + uri_or_digest
    key = "digest" if E.DIGEST_RE.fullmatch(uri_or_digest) else "uri"
    found = sorted(
        n for n, d in _nodes(g).items() if d["kind"] == DATASET and d.get(key) == uri_or_digest
    )
    if not found:
        what = "digest" if key == "digest" else "URI"
        raise NotFoundError(
            f"no registered version was trained on a dataset with {what} {uri_or_digest}"
        )
    return found


def find_commits(g: nx.MultiDiGraph, spec: str) -> list[str]:
    """Commit nodes matching ``COMMIT`` (7+ hex digits, a prefix either way round) or
    ``REPOSITORY@COMMIT``."""
    repo, _, commit = spec.rpartition("@")
    if not re.fullmatch(r"[0-9a-f]{7,64}", commit):
        raise InputError(
            f"invalid commit {spec!r}: expected 7 to 64 lowercase hex digits, optionally"
            " after REPOSITORY@"
        )
    found = sorted(
        n
        for n, d in _nodes(g).items()
        if d["kind"] == COMMIT
        and (not repo or d["repo"] == repo)
        and (d["commit"].startswith(commit) or commit.startswith(d["commit"]))
    )
    if not found:
        raise NotFoundError(f"no registered version was built from commit {spec}")
    return found


def impact(
    g: nx.MultiDiGraph,
    *,
    dataset: str | None = None,
    model: str | None = None,
    commit: str | None = None,
) -> Impact:
    """Every version downstream of a dataset, a model version or a commit, and every
    deployment of those versions live now (at the graph's point in time)."""
    if sum(x is not None for x in (dataset, model, commit)) != 1:
        raise InputError("give exactly one of --dataset, --model or --commit")
    if dataset is not None:
        sources = find_datasets(g, dataset)
    elif commit is not None:
        sources = find_commits(g, commit)
    else:
        sources = [version_node(g, model)]  # type: ignore[arg-type]
    hops: dict[str, int] = {}
    for s in sources:
        for n, h in down(g, s).items():
            if h < hops.get(n, 1 << 30):
                hops[n] = h
    result = Impact(sources, nodes=set(hops), labels={s: _nodes(g)[s]["label"] for s in sources})
    versions = [n for n in hops if _nodes(g)[n]["kind"] == MODEL]
    versions.sort(key=lambda n: (hops[n], _nodes(g)[n]["model"], _nodes(g)[n]["version"]))
    for n in versions:
        d = _nodes(g)[n]
        live = live_deployments(g, n)
        result.versions.append(
            {
                "ref": d["label"],
                "hops": hops[n],
                "via": _via(g, n, hops),
                "status": d["status"],
                "registered_seq": d["seq"],
                "live_in": ",".join(x["env"] for x in live),
            }
        )
        for x in live:
            result.deployments.append(
                {
                    "env": x["env"],
                    "ref": d["label"],
                    "since": x["ts"],
                    "deploy_seq": x["seq"],
                    "deployed_by": x["actor"],
                }
            )
    result.deployments.sort(key=lambda r: (r["env"], r["ref"]))
    return result


def _via(g: nx.MultiDiGraph, n: str, hops: dict[str, int]) -> str:
    """How ``n`` was reached: its lineage edges into the nodes one hop nearer the source."""
    if hops[n] == 0:
        return "(source)"
    parts = []
    for v, keyed in _succ(g)[n].items():
        if hops.get(v) == hops[n] - 1:
            for d in keyed.values():
                if d["kind"] in LINEAGE_KINDS:
                    parts.append(f"{_edge_word(d)} {_nodes(g)[v]['label']}")
    return "; ".join(sorted(parts))


def _edge_word(d: Mapping[str, Any]) -> str:
    if d["kind"] == DERIVED_FROM:
        return d["relation"]
    return d["kind"].replace("_", " ")


# --- the terminal tree --------------------------------------------------------------------------


@dataclass
class TreeNode:
    """One line of the tree view and its children."""

    label: str
    children: list[TreeNode] = field(default_factory=list)


def describe(g: nx.MultiDiGraph, n: str) -> str:
    """A one-line description of a node for the tree view."""
    d = _nodes(g)[n]
    kind = d["kind"]
    if kind == MODEL:
        live = ", ".join(x["env"] for x in live_deployments(g, n))
        text = f"{d['label']}  {d['status']}"
        if live:
            text += f"  live: {live}"
        return text + f"  (seq {d['seq']}, {d['actor']})"
    if kind == DATASET:
        text = f"dataset {d['uri']}"
        if d.get("digest"):
            text += f" @{d['digest'][:19]}…"
        return text
    if kind == COMMIT:
        return f"code {d['repo']}@{d['commit']}"
    return f"{kind} {d['label']}"


def tree(
    g: nx.MultiDiGraph, root: str, direction: str = "up", depth: int | None = None
) -> TreeNode:
    """The family tree of ``root`` (``up``: ancestors, ``down``: descendants). A node
    reached twice (a merge) is expanded once and marked ``(see above)`` after that."""
    if direction not in ("up", "down"):
        raise InputError("direction must be up or down")
    adj = _succ(g) if direction == "up" else _pred(g)
    expanded: set[str] = set()

    def node(n: str, level: int, edge: str | None) -> TreeNode:
        text = describe(g, n)
        if edge:
            text = f"{edge}: {text}"
        t = TreeNode(text)
        if n in expanded:
            if any(_lineage_edges(adj[n])):
                t.label += "  (see above)"
            return t
        expanded.add(n)
        if depth is not None and level >= depth:
            return t
        kids = []
        for v, keyed in adj[n].items():
            for d in keyed.values():
                if d["kind"] in LINEAGE_KINDS:
                    word = _edge_word(d) if d["kind"] == DERIVED_FROM else None
                    kids.append((_order(g, v), v, word))
        for _, v, word in sorted(kids):
            t.children.append(node(v, level + 1, word))
        return t

    return node(root, 0, None)


def _lineage_edges(keyed_by_nbr: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> Iterable[bool]:
    for keyed in keyed_by_nbr.values():
        for d in keyed.values():
            if d["kind"] in LINEAGE_KINDS:
                yield True


_KIND_ORDER = {MODEL: 0, DATASET: 1, COMMIT: 2, ENV: 3, ACTOR: 4}


def _order(g: nx.MultiDiGraph, n: str) -> tuple[int, str, int]:
    d = _nodes(g)[n]
    return (_KIND_ORDER[d["kind"]], d.get("model", d["label"]), d.get("version", 0))


__all__ = [
    "COLUMNS",
    "LINEAGE_KINDS",
    "Impact",
    "TreeNode",
    "build",
    "context",
    "describe",
    "down",
    "from_table",
    "impact",
    "live_deployments",
    "select",
    "tree",
    "up",
    "version_node",
]
