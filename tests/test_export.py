"""Every export read back by its standard reader, with counts and key attributes checked."""

from __future__ import annotations

import io
import json
import re
import shutil
from collections import Counter

import networkx as nx
import pydot
import pytest
from prov.model import (
    PROV_TYPE,
    ProvActivity,
    ProvAgent,
    ProvAssociation,
    ProvAttribution,
    ProvDerivation,
    ProvDocument,
    ProvEntity,
    ProvGeneration,
    ProvUsage,
)

from ledger import export as X
from ledger import lineage as L

from .test_lineage import CHAT, D_CHAT, family, m, make_team

N_NODES, N_EDGES = 21, 27  # the scripted family: see test_lineage.family


@pytest.fixture(scope="module")
def g(tmp_path_factory):
    team = make_team(tmp_path_factory.mktemp("family"))
    family(team)
    return team.ledger.lineage_graph()


def text(graph, fmt: str) -> str:
    buf = io.StringIO()
    X.write(graph, fmt, buf)
    return buf.getvalue()


def edge_multiset(graph) -> Counter:
    return Counter(
        (u, v, tuple(sorted((k, str(x)) for k, x in d.items() if k != "id")))
        for u, v, d in graph.edges(data=True)
    )


def test_graphml_round_trip(g, tmp_path):
    path = tmp_path / "g.graphml"
    X.write_file(g, "graphml", path)
    back = nx.read_graphml(path, force_multigraph=True)
    assert (back.number_of_nodes(), back.number_of_edges()) == (N_NODES, N_EDGES)
    assert dict(back.nodes(data=True)) == dict(g.nodes(data=True))  # types kept: int, bool
    assert back.nodes[m("llm.q4:1")]["version"] == 1
    assert edge_multiset(back) == edge_multiset(g)
    (dep,) = [
        d for _, _, d in back.out_edges(m("llm.q4:1"), data=True) if d["kind"] == "deployed_to"
    ]
    assert (dep["live"], dep["until_seq"], dep["env"]) == (False, 15, "edge")


def test_gexf_round_trip(g, tmp_path):
    path = tmp_path / "g.gexf"
    X.write_file(g, "gexf", path)
    back = nx.read_gexf(path)
    assert (back.number_of_nodes(), back.number_of_edges()) == (N_NODES, N_EDGES)
    assert back.nodes[m("llm.merged:1")]["label"] == "llm.merged:1"
    assert back.nodes[m("llm.merged:1")]["status"] == "approved"
    assert back.nodes[D_CHAT]["digest"] == CHAT
    rel = sorted(
        (u, v, d["relation"]) for u, v, d in back.edges(data=True) if d["kind"] == "derived_from"
    )
    assert rel == sorted(
        (u, v, d["relation"]) for u, v, d in g.edges(data=True) if d["kind"] == "derived_from"
    )
    assert edge_multiset(back) == edge_multiset(g)


def test_node_link_json_round_trip(g):
    back = nx.node_link_graph(json.loads(text(g, "json")), edges="edges")
    assert isinstance(back, nx.MultiDiGraph)
    assert dict(back.nodes(data=True)) == dict(g.nodes(data=True))
    assert sorted(back.edges(keys=True, data=True), key=str) == sorted(
        g.edges(keys=True, data=True), key=str
    )


def _unquote(s: str) -> str:
    assert s[0] == s[-1] == '"', s
    return re.sub(r"\\(.)", r"\1", s[1:-1])


def test_dot_read_by_pydot(g):
    (d,) = pydot.graph_from_dot_data(text(g, "dot"))
    nodes = {
        _unquote(n.get_name()): n for n in d.get_nodes() if n.get_name() not in ("node", "edge")
    }
    assert set(nodes) == set(g)
    assert len(d.get_edges()) == N_EDGES
    q4 = nodes[m("llm.q4:1")].get_attributes()
    assert (_unquote(q4["kind"]), _unquote(q4["status"]), _unquote(q4["seq"])) == (
        "model",
        "registered",
        "9",
    )
    merges = [
        (_unquote(e.get_source()), _unquote(e.get_destination()))
        for e in d.get_edges()
        if e.get_attributes().get("relation") == '"merge"'
    ]
    assert sorted(merges) == [
        (m("llm.merged:1"), m("llm.q4:1")),
        (m("llm.merged:1"), m("llm.tiny:1")),
    ]
    assert _unquote(nodes[D_CHAT].get_attributes()["dataset_name"]) == "chat"


def test_awkward_names_survive(team, tmp_path):
    """Quotes, backslashes, colons and non-ASCII in identifiers survive DOT, GraphML, JSON."""
    led, k = team.ledger, team.keys
    uri = 's3://b/we"ird\\path/données:1.'
    led.register("m", key=k["alice"], datasets=[{"name": "d", "uri": uri}])
    g = led.lineage_graph()
    did = L.dataset_id(uri, None)
    (d,) = pydot.graph_from_dot_data(text(g, "dot"))
    names = {_unquote(n.get_name()) for n in d.get_nodes() if n.get_name() not in ("node", "edge")}
    assert did in names
    X.write_file(g, "graphml", tmp_path / "a.graphml")
    assert did in nx.read_graphml(tmp_path / "a.graphml", force_multigraph=True)
    mer = text(g, "mermaid")
    assert '[("d: s3://b/we#quot;ird\\path/données:1.")]' in mer
    doc = ProvDocument.deserialize(content=text(g, "prov-json"), format="json")
    ents = {str(r.identifier) for r in doc.get_records(ProvEntity)}
    assert "ledger:dataset/s3%3A//b/we%22ird%5Cpath/donn%C3%A9es%3A1%2E" in ents
    assert "ledger:model/m/1" in ents


NODE_RE = re.compile(r'  (n\d+)(\[|\[\(|\{\{|\(\[)"([^"]*)"(\]|\)\]|\}\}|\]\)):::(\w+)')
EDGE_RE = re.compile(r"  (n\d+) (-->|-\.->|==>)\|([^|]+)\| (n\d+)")


def test_mermaid_structure(g):
    lines = text(g, "mermaid").splitlines()
    assert lines[0] == "flowchart TD"
    nodes = {}
    edges = []
    for line in lines[1:]:
        if mt := NODE_RE.fullmatch(line):
            nodes[mt[1]] = (mt[3], mt[5])
        elif mt := EDGE_RE.fullmatch(line):
            edges.append((mt[1], mt[2], mt[3], mt[4]))
        else:
            assert line.startswith("  classDef "), line
    # 6 versions, 3 datasets, 4 commits, the 2 environments with something live (not edge)
    assert len(nodes) == 15
    assert Counter(c for _, c in nodes.values()) == {
        "model": 4,
        "rejected": 1,
        "deprecated": 1,
        "dataset": 3,
        "commit": 4,
        "env": 2,
    }
    assert {t for t, _ in nodes.values() if t in ("production", "staging", "edge")} == {
        "production",
        "staging",
    }
    # 6 derived, 4 trained on, 5 built from, 2 live deployments
    assert len(edges) == 17
    by_label = {label.split("<br/>")[0]: i for i, (label, _) in nodes.items()}
    assert all(a in nodes and b in nodes for a, _, _, b in edges)
    assert (by_label["llm.q4:1"], "-->", "merge", by_label["llm.merged:1"]) in edges
    assert (by_label["llm.merged:1"], "==>", "live", by_label["production"]) in edges
    assert Counter(lbl for _, _, lbl, _ in edges) == {
        "finetune": 2,
        "distill": 1,
        "quantize": 1,
        "merge": 2,
        "trained on": 4,
        "built from": 5,
        "live": 2,
    }


PROV_COUNTS = {
    # 6 versions + 3 datasets + 4 commits; 5 actors; 6 registers + approve + 3 deploys +
    # reject + deprecate (the undeploy only closes a deployed_to edge)
    ProvEntity: 13,
    ProvAgent: 5,
    ProvActivity: 12,
    ProvGeneration: 6,
    ProvAttribution: 6,
    ProvAssociation: 12,
    ProvUsage: 15,  # 4 trained on + 5 built from + approve, 3 deploys, reject, deprecate
    ProvDerivation: 6,
}


def test_prov_json_read_by_prov(g):
    doc = ProvDocument.deserialize(content=text(g, "prov-json"), format="json")
    got = Counter(type(r) for r in doc.get_records())
    assert got == PROV_COUNTS
    acts = {str(r.identifier): r for r in doc.get_records(ProvActivity)}
    reg = acts["ledger:event/10"]
    assert {str(t) for t in reg.get_attribute(PROV_TYPE)} == {"ledger:register"}
    assert {str(t) for t in acts["ledger:event/16"].get_attribute(PROV_TYPE)} == {"ledger:reject"}
    hashes = {v for v in reg.get_attribute("ledger:hash")}
    assert hashes == {g.nodes[m("llm.merged:1")]["hash"]}
    ders = {
        (
            str(r.get_attribute("prov:generatedEntity").pop()),
            str(r.get_attribute("prov:usedEntity").pop()),
            str(r.get_attribute(PROV_TYPE).pop()),
        )
        for r in doc.get_records(ProvDerivation)
    }
    assert ders == {
        ("ledger:model/llm.chat/1", "ledger:model/llm.base/1", "ledger:finetune"),
        ("ledger:model/llm.code/1", "ledger:model/llm.base/1", "ledger:finetune"),
        ("ledger:model/llm.tiny/1", "ledger:model/llm.chat/1", "ledger:distill"),
        ("ledger:model/llm.q4/1", "ledger:model/llm.code/1", "ledger:quantize"),
        ("ledger:model/llm.merged/1", "ledger:model/llm.tiny/1", "ledger:merge"),
        ("ledger:model/llm.merged/1", "ledger:model/llm.q4/1", "ledger:merge"),
    }
    assocs = {
        (str(r.get_attribute("prov:activity").pop()), str(r.get_attribute("prov:agent").pop()))
        for r in doc.get_records(ProvAssociation)
    }
    assert ("ledger:event/12", "ledger:actor/carol") in assocs  # the deploy
    assert ("ledger:event/11", "ledger:actor/bob") in assocs  # the approval
    ents = {str(r.identifier): r for r in doc.get_records(ProvEntity)}
    ds = ents["ledger:dataset/s3%3A//data/chat%40sha256%3A" + "da" * 32]
    assert {str(t) for t in ds.get_attribute(PROV_TYPE)} == {"ledger:Dataset"}
    assert ds.get_attribute("ledger:digest") == {CHAT}


PN_TYPES = {
    "entity": ProvEntity,
    "agent": ProvAgent,
    "activity": ProvActivity,
    "wasGeneratedBy": ProvGeneration,
    "wasAttributedTo": ProvAttribution,
    "wasAssociatedWith": ProvAssociation,
    "used": ProvUsage,
    "wasDerivedFrom": ProvDerivation,
}


def test_prov_n_structure(g):
    lines = text(g, "prov-n").splitlines()
    assert lines[:2] == ["document", "  prefix ledger <urn:x-ledger:>"]
    assert lines[-1] == "endDocument"
    got = Counter()
    for line in lines[2:-1]:
        mt = re.fullmatch(r"  (\w+)\((.*)\)", line)
        assert mt, line
        got[PN_TYPES[mt[1]]] += 1
        assert mt[2].count("[") == mt[2].count("]")
    assert got == PROV_COUNTS
    assert (
        "  wasDerivedFrom(ledger:model/llm.merged/1, ledger:model/llm.q4/1, ledger:event/10, -, -,"
        " [prov:type='ledger:merge'])" in lines
    )
    # the same records as the prov package writes from our PROV-JSON
    doc = ProvDocument.deserialize(content=text(g, "prov-json"), format="json")
    theirs = Counter(ln.strip().split("(")[0] for ln in doc.get_provn().splitlines() if "(" in ln)
    assert theirs == Counter(ln.strip().split("(")[0] for ln in lines[2:-1])


def test_cli_exports_subgraphs(team, invoke, tmp_path):
    family(team)
    out = tmp_path / "up.graphml"
    r = invoke(
        ["lineage", "llm.merged:1", "--format", "graphml", "--out", str(out)], env=team.env()
    )
    assert (r.exit_code, r.stdout) == (0, f"wrote graphml: 19 nodes, 27 edges to {out}\n")
    back = nx.read_graphml(out, force_multigraph=True)
    assert actor_and_env(back) == {
        "actor:alice",
        "actor:bob",
        "actor:carol",
        "env:edge",
        "env:production",
        "env:staging",
    }
    out = tmp_path / "down.json"
    r = invoke(
        ["lineage", "llm.code:1", "--down", "--format", "json", "--out", str(out)], env=team.env()
    )
    assert r.stdout == f"wrote json: 8 nodes, 9 edges to {out}\n"
    back = nx.node_link_graph(json.loads(out.read_text()), edges="edges")
    assert {n for n in back if n.startswith("model:")} == {
        m("llm.code:1"),
        m("llm.q4:1"),
        m("llm.merged:1"),
    }
    r = invoke(["lineage", "--all", "--format", "mermaid"], env=team.env())
    assert r.exit_code == 0 and r.stdout.startswith("flowchart TD\n")
    r = invoke(["lineage", "llm.tiny:1", "--format", "prov-json", "--depth", "1"], env=team.env())
    doc = ProvDocument.deserialize(content=r.stdout, format="json")
    assert {str(e.identifier) for e in doc.get_records(ProvEntity)} == {
        "ledger:model/llm.tiny/1",
        "ledger:model/llm.chat/1",
        "ledger:commit/https%3A//git.example/ml/llm%40ccccccc",
    }


def actor_and_env(graph) -> set[str]:
    return {n for n in graph if n.startswith(("actor:", "env:"))}


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_svg_and_png(team, invoke, tmp_path):
    family(team)
    svg, png = tmp_path / "g.svg", tmp_path / "g.png"
    r = invoke(["lineage", "llm.merged:1", "--format", "svg", "--out", str(svg)], env=team.env())
    assert (r.exit_code, r.stdout) == (0, f"wrote svg: 19 nodes, 27 edges to {svg}\n")
    body = svg.read_text()
    assert "<svg" in body and "llm.merged:1" in body
    r = invoke(["lineage", "llm.merged:1", "--format", "png", "--out", str(png)], env=team.env())
    assert r.exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_svg_without_dot_is_a_clear_error(team, invoke, tmp_path, monkeypatch):
    family(team)
    monkeypatch.setattr(X.shutil, "which", lambda name: None)
    out = tmp_path / "g.svg"
    r = invoke(["lineage", "llm.q4:1", "--format", "svg", "--out", str(out)], env=team.env())
    assert (r.exit_code, r.stdout, r.stderr) == (
        2,
        "",
        "Error: --format svg needs Graphviz's dot program, which is not installed"
        " (e.g. apt-get install graphviz); --format dot writes the source instead\n",
    )
    assert not out.exists()


def test_unknown_format(g):
    with pytest.raises(Exception, match="unknown export format 'xml'"):
        X.write(g, "xml", io.StringIO())
