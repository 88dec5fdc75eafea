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

The graph is built from plain rows (:func:`build`) or from an Arrow table of the ledger's
columns (:func:`from_table`, the fast path). ``as_of`` / ``at_seq`` are honoured by
filtering the events before building (:func:`select`), so the graph is the ledger as it
stood then, including which deployments were live.
"""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import networkx as nx

from . import events as E
from .errors import InputError, NotFoundError

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


class _Builder:
    """Fills a MultiDiGraph's adjacency directly: ``add_edges_from`` validates and copies
    every attribute dict, which costs more than the rest of the build at 10^6 edges."""

    def __init__(self) -> None:
        self.g = nx.MultiDiGraph()
        self.node = self.g._node
        self.succ = self.g._succ
        self.pred = self.g._pred
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
                eid = "env:" + env
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
        aid = "actor:" + actor
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
    rows: Iterable[Mapping[str, Any]], as_of: int | None = None, at_seq: int | None = None
) -> nx.MultiDiGraph:
    """Build the lineage graph from plain event rows in seq order.

    Each row maps the names in :data:`COLUMNS` to values: ``ts`` as µs since the epoch
    (or a datetime, or RFC 3339 text), ``payload`` as a dict or JSON text, ``hash`` as
    bytes or hex. Rows after ``as_of`` (µs) or ``at_seq`` are ignored.
    """
    b = _Builder()
    enabled = gc.isenabled()
    gc.disable()  # the build allocates only acyclic dicts; GC passes would triple its time
    try:
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
    finally:
        if enabled:
            gc.enable()
    return b.g


def _micros(ts: Any) -> int:
    if isinstance(ts, datetime):
        return E.parse_instant(ts.isoformat())
    return E.parse_ts(str(ts))


_ENV_RE = r'[{,]"env":"(?P<env>[a-z][a-z0-9_-]{0,31})"'


def from_table(table: Any) -> nx.MultiDiGraph:
    """Build the lineage graph from an Arrow table holding :data:`COLUMNS` (the fast path).

    Timestamps are formatted and the environment of approve/deploy events is pulled out
    of the canonical payload text column-wise, so that only register and key payloads are
    parsed one by one.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = table.num_rows
    action = table["action"]
    ts = pc.strftime(table["ts"].cast(pa.timestamp("us", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
    payload = table["payload"]
    # Canonical JSON escapes every quote inside a string, so '{"env":"' or ',"env":"' can
    # only be a key; a payload naming "env" exactly once therefore has it at the top level.
    # Payloads that do not fit this pattern keep their text and are parsed in full.
    is_env = pc.is_in(action, pa.array([E.APPROVE, E.DEPLOY, E.UNDEPLOY]))
    once = pc.equal(pc.count_substring(payload, '"env":'), 1)
    env = pc.struct_field(pc.extract_regex(payload, _ENV_RE), [0])
    fast = pc.and_(pc.and_(is_env, once), pc.is_valid(env))
    needs_text = pc.or_(
        pc.is_in(action, pa.array([E.REGISTER, E.GENESIS, E.KEY_ADD])),
        pc.and_(is_env, pc.invert(fast)),
    )
    payload = pc.if_else(needs_text, payload, None)
    env = pc.if_else(fast, env, None)
    model = table["model"]
    vid = pc.binary_join_element_wise(
        "model:", model, ":", pc.cast(table["version"], pa.string()), ""
    )
    aid = pc.binary_join_element_wise("actor:", table["actor"], "")
    cols = [
        table["seq"].to_pylist(),
        ts.to_pylist(),
        action.to_pylist(),
        model.to_pylist(),
        table["version"].to_pylist(),
        table["actor"].to_pylist(),
        payload.to_pylist(),
        _hex32(table["hash"]) if n else [],
        vid.to_pylist(),
        aid.to_pylist(),
        env.to_pylist(),
    ]
    b = _Builder()
    event = b.event
    enabled = gc.isenabled()
    gc.disable()
    try:
        for row in zip(*cols, strict=True):
            event(*row)
    finally:
        if enabled:
            gc.enable()
    return b.g


def _hex32(column: Any) -> list[str]:
    """Hex text of a fixed_size_binary(32) column: one hexlify of the data buffer, then
    slices (three times quicker than bytes.hex() per row)."""
    import binascii

    import pyarrow as pa

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if arr.null_count or not pa.types.is_fixed_size_binary(arr.type) or arr.type.byte_width != 32:
        return [h.hex() if h is not None else "" for h in arr.to_pylist()]
    data = arr.buffers()[1]
    raw = data.to_pybytes()[arr.offset * 32 : (arr.offset + len(arr)) * 32]
    text = binascii.hexlify(raw).decode("ascii")
    return [text[i : i + 64] for i in range(0, len(text), 64)]


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
    if nid not in g._node:
        latest = max(
            (d["version"] for d in g._node.values() if d.get("model") == model), default=None
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
    return _walk(g, node, g._succ, depth, LINEAGE_KINDS)


def down(g: nx.MultiDiGraph, node: str, depth: int | None = None) -> dict[str, int]:
    """Descendants of ``node``: every version derived from it (or trained on / built from
    it, for a dataset or commit) -> {node: hops}, ``node`` itself at 0."""
    return _walk(g, node, g._pred, depth, LINEAGE_KINDS)


def live_deployments(g: nx.MultiDiGraph, node: str) -> list[dict[str, Any]]:
    """Deployments of a version live at the graph's point in time, by environment."""
    out = []
    for keyed in g._succ[node].values():
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
        if g._node[n]["kind"] != MODEL:
            continue
        for v, keyed in g._succ[n].items():
            for d in keyed.values():
                if d["kind"] not in LINEAGE_KINDS:
                    extra.add(v)
                if d["kind"] == DEPLOYED_TO:
                    extra.add(actor_id(d["actor"]))
    return g.subgraph(keep | {n for n in extra if n in g._node})


@dataclass
class Impact:
    """What an impact question found: the sources it started from, every version
    downstream (with hops and how it was reached) and their live deployments."""

    sources: list[str]
    versions: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    nodes: set[str] = field(default_factory=set)


def find_datasets(g: nx.MultiDiGraph, uri_or_digest: str) -> list[str]:
    """Dataset nodes whose digest (``sha256:HEX``, or the 64 hex digits alone) or URI is
    ``uri_or_digest``."""
    if re.fullmatch(r"[0-9a-f]{64}", uri_or_digest):
        uri_or_digest = "sha256:" + uri_or_digest
    key = "digest" if E.DIGEST_RE.fullmatch(uri_or_digest) else "uri"
    found = sorted(
        n for n, d in g._node.items() if d["kind"] == DATASET and d.get(key) == uri_or_digest
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
        for n, d in g._node.items()
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
    result = Impact(sources, nodes=set(hops))
    versions = [n for n in hops if g._node[n]["kind"] == MODEL]
    versions.sort(key=lambda n: (hops[n], g._node[n]["model"], g._node[n]["version"]))
    for n in versions:
        d = g._node[n]
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
    for v, keyed in g._succ[n].items():
        if hops.get(v) == hops[n] - 1:
            for d in keyed.values():
                if d["kind"] in LINEAGE_KINDS:
                    parts.append(f"{_edge_word(d)} {g._node[v]['label']}")
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
    d = g._node[n]
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
    adj = g._succ if direction == "up" else g._pred
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
    d = g._node[n]
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
