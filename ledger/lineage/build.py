"""The reference builder: the lineage graph from plain event rows, one event at a time
(:func:`build`, over :class:`_Builder`). It is the definition the Arrow fast path
(:func:`ledger.lineage.fast.from_table`) is held to, and what that path falls back to on a
table it cannot vouch for; the family reads (:mod:`ledger.family`) build from it too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .. import events as E
from ..compat import graph_dicts
from ..gcpause import collector_paused
from .graph import (
    ACTOR,
    APPROVED_BY,
    BUILT_FROM,
    COMMIT,
    DATASET,
    DEPLOYED_TO,
    DEPRECATED,
    DERIVED_FROM,
    ENV,
    MODEL,
    REGISTERED_BY,
    REJECTED_BY,
    TRAINED_ON,
    _multidigraph,
    actor_id,
    commit_id,
    dataset_id,
    env_id,
    model_id,
)


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
        from ..errors import CorruptLedgerError

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
