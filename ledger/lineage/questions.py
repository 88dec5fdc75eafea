"""The lineage questions, asked of a built graph (a networkx ``MultiDiGraph`` or an
:class:`ledger.lineage.graph.Adjacency`, read through :mod:`ledger.compat`): a version's
node, its ancestors (:func:`up`) and descendants (:func:`down`), their live deployments,
the :func:`context` the exports write, and :func:`impact` (everything downstream of a
dataset, a version or a commit, and where it is live).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import events as E
from ..compat import nodes as _nodes
from ..compat import pred as _pred
from ..compat import succ as _succ
from ..errors import InputError, NotFoundError
from ..inputs import digest_hex, resolve_digest
from .graph import (
    COMMIT,
    DATASET,
    DEPLOYED_TO,
    DERIVED_FROM,
    LINEAGE_KINDS,
    MODEL,
    actor_id,
    model_id,
)

if TYPE_CHECKING:
    import networkx as nx


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
    """Dataset nodes whose URI or digest is ``uri_or_digest`` (a digest in any of the
    forms of ledger/inputs.py: ``sha256:HEX``, the hex alone, or a prefix of 12 or more
    digits naming one digest of the graph's datasets)."""
    datasets = [d for d in _nodes(g).values() if d["kind"] == DATASET]
    key, want = "uri", uri_or_digest
    if digest_hex(uri_or_digest) is not None:
        digests = [d["digest"] for d in datasets if d.get("digest")]
        key = "digest"
        want = resolve_digest(uri_or_digest, lambda _: digests) or uri_or_digest
    found = sorted(n for n, d in _nodes(g).items() if d["kind"] == DATASET and d.get(key) == want)
    if not found:
        raise NotFoundError(no_dataset(uri_or_digest))
    return found


def no_dataset(uri_or_digest: str) -> str:
    """What a dataset question that finds nothing says."""
    h = digest_hex(uri_or_digest)
    if h is None:
        what = f"with URI {uri_or_digest}"
    elif len(h) == 64:
        what = f"with digest sha256:{h}"
    else:
        what = f"whose digest starts with sha256:{h}"
    return f"no registered version was trained on a dataset {what}"


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
                    parts.append(f"{edge_word(d)} {_nodes(g)[v]['label']}")
    return "; ".join(sorted(parts))


def edge_word(d: Mapping[str, Any]) -> str:
    """How a lineage edge reads: a derivation's relation, else its kind in words."""
    if d["kind"] == DERIVED_FROM:
        return d["relation"]
    return d["kind"].replace("_", " ")
