"""Write a lineage graph for the tools people use.

=============  ==========================================  ============================
format         for                                          written by
=============  ==========================================  ============================
graphml        yEd, Cytoscape, Gephi                        networkx
gexf           Gephi                                        networkx
json           D3 (node-link JSON)                          networkx data + json
dot            Graphviz (identifiers quoted)                this module, streamed
svg, png       pictures, when Graphviz's ``dot`` is found   ``dot`` fed our DOT
mermaid        Markdown on GitHub/GitLab (``flowchart``)    this module, streamed
prov-json      W3C PROV-JSON                                this module, streamed
prov-n         W3C PROV-N                                   this module, streamed
=============  ==========================================  ============================

The graph's attributes are already scalars with no ``None`` (see ``ledger.lineage``), so
GraphML and GEXF keep every attribute as a typed key. The formats written here stream:
they hold at most one record in memory beyond the graph. networkx's GraphML/GEXF/JSON
writers build their document first, about two to four times the graph's size.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import quote

import networkx as nx

from .errors import InputError, StorageError
from .lineage import (
    ACTOR,
    APPROVED_BY,
    BUILT_FROM,
    COMMIT,
    DATASET,
    DEPLOYED_TO,
    DEPRECATED,
    DERIVED_FROM,
    ENV,
    LINEAGE_KINDS,
    MODEL,
    REGISTERED_BY,
    REJECTED_BY,
    TRAINED_ON,
)

TEXT_FORMATS = ("graphml", "gexf", "json", "dot", "mermaid", "prov-json", "prov-n")
IMAGE_FORMATS = ("svg", "png")
FORMATS = TEXT_FORMATS + IMAGE_FORMATS

#: The namespace of our PROV identifiers and types.
PROV_NS = "urn:x-ledger:"


def write(g: nx.MultiDiGraph, fmt: str, out: IO[str]) -> None:
    """Write ``g`` in a text format to the text stream ``out``."""
    if fmt not in TEXT_FORMATS:
        raise InputError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    lines: Iterator[str]
    if fmt == "graphml":
        lines = (line + "\n" for line in nx.generate_graphml(g))
    elif fmt == "gexf":
        lines = (line + "\n" for line in nx.generate_gexf(g))
    elif fmt == "json":
        json.dump(nx.node_link_data(g, edges="edges"), out, ensure_ascii=False, indent=1)
        out.write("\n")
        return
    else:
        lines = {"dot": dot, "mermaid": mermaid, "prov-json": prov_json, "prov-n": prov_n}[fmt](g)
    for chunk in lines:
        out.write(chunk)


def write_file(g: nx.MultiDiGraph, fmt: str, path: str | os.PathLike[str]) -> None:
    """Write ``g`` to ``path``; ``svg`` and ``png`` need Graphviz's ``dot`` program."""
    if fmt in IMAGE_FORMATS:
        render_image(g, fmt, path)
        return
    try:
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            write(g, fmt, f)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None


def render_image(g: nx.MultiDiGraph, fmt: str, path: str | os.PathLike[str]) -> None:
    """Render ``g`` to an SVG or PNG file with Graphviz's ``dot``."""
    exe = shutil.which("dot")
    if exe is None:
        raise InputError(
            f"--format {fmt} needs Graphviz's dot program, which is not installed"
            " (e.g. apt-get install graphviz); --format dot writes the source instead"
        )
    with tempfile.NamedTemporaryFile("w", suffix=".dot", encoding="utf-8", delete=False) as f:
        for chunk in dot(g):
            f.write(chunk)
    try:
        proc = subprocess.run(
            [exe, f"-T{fmt}", "-o", os.fspath(path), f.name],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(f.name)
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise StorageError(f"dot could not render {path}: {msg}")


# --- DOT ----------------------------------------------------------------------------------------


def _dq(value: Any) -> str:
    """A DOT double-quoted string (quotes, backslashes and newlines escaped)."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


_DOT_STYLE = {
    MODEL: 'shape=box, style="rounded,filled", fillcolor="#dbeafe"',
    DATASET: 'shape=cylinder, style=filled, fillcolor="#fef3c7"',
    COMMIT: 'shape=hexagon, style=filled, fillcolor="#e5e7eb"',
    ACTOR: 'shape=ellipse, style=filled, fillcolor="#dcfce7"',
    ENV: 'shape=house, style=filled, fillcolor="#fce7f3"',
}


#: Our attribute names that DOT tools take for something else (pydot: a node's ``name``).
_DOT_NAMES = {"name": "dataset_name"}


def dot(g: nx.MultiDiGraph) -> Iterator[str]:
    """DOT text, one line at a time. Every identifier is double-quoted, so ``model:3``
    or a URI survives; every attribute of the graph becomes a DOT attribute."""
    yield "digraph lineage {\n"
    yield "  rankdir=BT;\n  node [fontname=Helvetica];\n  edge [fontname=Helvetica, fontsize=10];\n"
    for n, d in g.nodes(data=True):
        attrs = ", ".join(f"{_DOT_NAMES.get(k, k)}={_dq(v)}" for k, v in d.items())
        yield f"  {_dq(n)} [{attrs}, {_DOT_STYLE.get(d.get('kind'), '')}];\n"
    for u, v, d in g.edges(data=True):
        attrs = ", ".join(f"{_DOT_NAMES.get(k, k)}={_dq(v)}" for k, v in d.items())
        kind = d.get("kind")
        label = d.get("relation") if kind == DERIVED_FROM else kind
        if kind in (APPROVED_BY, DEPLOYED_TO):
            label = f"{kind} {d.get('env')}"
        style = ", style=dashed" if kind not in LINEAGE_KINDS else ""
        yield f"  {_dq(u)} -> {_dq(v)} [label={_dq(label)}, {attrs}{style}];\n"
    yield "}\n"


# --- Mermaid ------------------------------------------------------------------------------------


def _mq(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


_MERMAID_SHAPE = {
    MODEL: ("[", "]"),
    DATASET: ("[(", ")]"),
    COMMIT: ("{{", "}}"),
    ENV: ("([", "])"),
}


def mermaid(g: nx.MultiDiGraph) -> Iterator[str]:
    """A Mermaid ``flowchart`` of the family tree: arrows run from what a version was made
    from to the version (parents, datasets, commits), and from a version to the
    environments where it is live. Actors and past deployments are left out to keep the
    picture readable; the other formats carry them."""
    ids: dict[str, str] = {}
    yield "flowchart TD\n"
    for n, d in g.nodes(data=True):
        kind = d.get("kind")
        if kind not in _MERMAID_SHAPE:
            continue
        if kind == ENV and not any(
            e.get("live") for _, _, e in g.in_edges(n, data=True) if e.get("kind") == DEPLOYED_TO
        ):
            continue
        ids[n] = f"n{len(ids)}"
        if kind == MODEL:
            text = f"{d['label']}<br/>{d['status']}"
        elif kind == DATASET:
            text = f"{d.get('name', 'dataset')}: {d['uri']}"
        elif kind == COMMIT:
            text = d["label"]
        else:
            text = d["label"]
        a, b = _MERMAID_SHAPE[kind]
        cls = d["status"] if kind == MODEL and d["status"] in ("rejected", "deprecated") else kind
        yield f"  {ids[n]}{a}{_mq(text)}{b}:::{cls}\n"
    for u, v, d in g.edges(data=True):
        if u not in ids or v not in ids:
            continue
        kind = d.get("kind")
        if kind == DERIVED_FROM:
            yield f"  {ids[v]} -->|{d['relation']}| {ids[u]}\n"
        elif kind == TRAINED_ON:
            yield f"  {ids[v]} -.->|trained on| {ids[u]}\n"
        elif kind == BUILT_FROM:
            yield f"  {ids[v]} -.->|built from| {ids[u]}\n"
        elif kind == DEPLOYED_TO and d.get("live"):
            yield f"  {ids[u]} ==>|live| {ids[v]}\n"
    yield "  classDef model fill:#dbeafe,stroke:#1d4ed8\n"
    yield "  classDef dataset fill:#fef3c7,stroke:#b45309\n"
    yield "  classDef commit fill:#e5e7eb,stroke:#374151\n"
    yield "  classDef env fill:#fce7f3,stroke:#be185d\n"
    yield "  classDef rejected fill:#fee2e2,stroke:#b91c1c,stroke-dasharray:4\n"
    yield "  classDef deprecated fill:#f3f4f6,stroke:#6b7280,color:#6b7280\n"


# --- W3C PROV -----------------------------------------------------------------------------------

#: Graph edge kind -> the ledger action of the event that justifies it.
_ACTIVITY = {
    REGISTERED_BY: "register",
    APPROVED_BY: "approve",
    REJECTED_BY: "reject",
    DEPRECATED: "deprecate",
    DEPLOYED_TO: "deploy",
}
_ENTITY_TYPE = {MODEL: "ModelVersion", DATASET: "Dataset", COMMIT: "Commit"}


def _local(text: str) -> str:
    """A PROV-N-safe local name: anything but letters, digits and ``_-./~`` is
    percent-encoded, and so is a final dot (PROV-N forbids one)."""
    text = quote(text, safe="/.~")
    return text[:-1] + "%2E" if text.endswith(".") else text


def prov_id(g: nx.MultiDiGraph, n: str) -> str:
    """The PROV qualified name of a graph node, e.g. ``ledger:model/fraud.detector.xgb/1``."""
    d = g._node[n]
    kind = d["kind"]
    if kind == MODEL:
        return f"ledger:model/{_local(d['model'])}/{d['version']}"
    return f"ledger:{kind}/{_local(n.split(':', 1)[1])}"


def _activity(seq: int) -> str:
    return f"ledger:event/{seq}"


def _records(g: nx.MultiDiGraph) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """PROV records as (type, id, attributes) in PROV-JSON's shape, grouped by type.

    Entities are model versions, datasets and commits; agents are actors; each event
    that justifies an edge is an activity typed by its action (``ledger:register``…).
    """
    qn = "prov:QUALIFIED_NAME"
    for n, d in g.nodes(data=True):
        t = _ENTITY_TYPE.get(d["kind"])
        if t is None:
            continue
        attrs: dict[str, Any] = {"prov:type": {"$": f"ledger:{t}", "type": qn}}
        attrs["prov:label"] = d["label"]
        for k, v in d.items():
            if k not in ("kind", "label"):
                attrs[f"ledger:{k}"] = v
        yield "entity", prov_id(g, n), attrs
    for n, d in g.nodes(data=True):
        if d["kind"] == ACTOR:
            yield (
                "agent",
                prov_id(g, n),
                {"prov:type": {"$": "prov:Person", "type": qn}, "prov:label": d["label"]},
            )
    done: set[int] = set()
    for _, _, d in g.edges(data=True):
        action = _ACTIVITY.get(d["kind"])
        if action is None or d["seq"] in done:
            continue
        done.add(d["seq"])
        attrs = {
            "prov:type": {"$": f"ledger:{action}", "type": qn},
            "prov:startTime": d["ts"],
            "prov:endTime": d["ts"],
            "ledger:seq": d["seq"],
            "ledger:hash": d["hash"],
        }
        if "env" in d:
            attrs["ledger:env"] = d["env"]
        yield "activity", _activity(d["seq"]), attrs
    yield from _relations(g)


def _relations(g: nx.MultiDiGraph) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for i, (u, v, d) in enumerate(g.edges(data=True), 1):
        kind = d["kind"]
        act = _activity(d["seq"])
        src = prov_id(g, u)
        if kind == REGISTERED_BY:
            agent = prov_id(g, v)
            yield (
                "wasGeneratedBy",
                f"_:g{i}",
                {"prov:entity": src, "prov:activity": act, "prov:time": d["ts"]},
            )
            yield "wasAssociatedWith", f"_:a{i}", {"prov:activity": act, "prov:agent": agent}
            yield "wasAttributedTo", f"_:t{i}", {"prov:entity": src, "prov:agent": agent}
        elif kind in (TRAINED_ON, BUILT_FROM):
            attrs = {"prov:activity": act, "prov:entity": prov_id(g, v)}
            attrs["prov:role"] = {"$": f"ledger:{kind}", "type": "prov:QUALIFIED_NAME"}
            yield "used", f"_:u{i}", attrs
        elif kind == DERIVED_FROM:
            yield (
                "wasDerivedFrom",
                f"_:d{i}",
                {
                    "prov:generatedEntity": src,
                    "prov:usedEntity": prov_id(g, v),
                    "prov:activity": act,
                    "prov:type": {"$": f"ledger:{d['relation']}", "type": "prov:QUALIFIED_NAME"},
                },
            )
        elif kind in _ACTIVITY:  # approve, reject, deprecate, deploy: act on the version
            agent = prov_id(g, v) if kind != DEPLOYED_TO else f"ledger:actor/{_local(d['actor'])}"
            yield "used", f"_:u{i}", {"prov:activity": act, "prov:entity": src}
            yield "wasAssociatedWith", f"_:a{i}", {"prov:activity": act, "prov:agent": agent}


_ORDER = (
    "entity",
    "activity",
    "agent",
    "wasGeneratedBy",
    "used",
    "wasDerivedFrom",
    "wasAssociatedWith",
    "wasAttributedTo",
)


def _grouped(g: nx.MultiDiGraph) -> Iterator[tuple[str, Iterator[tuple[str, dict[str, Any]]]]]:
    """Records by type in ``_ORDER``, re-walking the graph per type (no record list kept)."""
    for rtype in _ORDER:
        yield rtype, ((i, a) for t, i, a in _records(g) if t == rtype)


def prov_json(g: nx.MultiDiGraph) -> Iterator[str]:
    """W3C PROV-JSON (https://www.w3.org/Submission/prov-json/), streamed record by record."""
    yield '{\n "prefix": {"ledger": ' + json.dumps(PROV_NS) + "}"
    for rtype, recs in _grouped(g):
        first = True
        for rid, attrs in recs:
            head = f',\n "{rtype}": {{\n' if first else ",\n"
            first = False
            yield f"{head}  {json.dumps(rid)}: {json.dumps(attrs, ensure_ascii=False)}"
        if not first:
            yield "\n }"
    yield "\n}\n"


def _pn_value(v: Any) -> str:
    if isinstance(v, dict):  # a typed literal: {"$": value, "type": qualified name}
        if v.get("type") == "prov:QUALIFIED_NAME":
            return f"'{v['$']}'"
        return json.dumps(str(v["$"])) + " %% " + v["type"]
    if isinstance(v, bool):
        return f'"{str(v).lower()}" %% xsd:boolean'
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v), ensure_ascii=False)


def _pn_attrs(attrs: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    items = [f"{k}={_pn_value(v)}" for k, v in attrs.items() if k not in skip]
    return f", [{', '.join(items)}]" if items else ""


def prov_n(g: nx.MultiDiGraph) -> Iterator[str]:
    """W3C PROV-N (https://www.w3.org/TR/prov-n/), streamed record by record."""
    yield "document\n"
    yield f"  prefix ledger <{PROV_NS}>\n"
    for rtype, recs in _grouped(g):
        for rid, a in recs:
            if rtype in ("entity", "agent"):
                yield f"  {rtype}({rid}{_pn_attrs(a)})\n"
            elif rtype == "activity":
                rest = _pn_attrs(a, ("prov:startTime", "prov:endTime"))
                yield f"  activity({rid}, {a['prov:startTime']}, {a['prov:endTime']}{rest})\n"
            elif rtype == "wasGeneratedBy":
                yield f"  wasGeneratedBy({a['prov:entity']}, {a['prov:activity']}, {a['prov:time']})\n"
            elif rtype == "used":
                rest = _pn_attrs(a, ("prov:activity", "prov:entity"))
                yield f"  used({a['prov:activity']}, {a['prov:entity']}, -{rest})\n"
            elif rtype == "wasDerivedFrom":
                rest = _pn_attrs(a, ("prov:generatedEntity", "prov:usedEntity", "prov:activity"))
                yield (
                    f"  wasDerivedFrom({a['prov:generatedEntity']}, {a['prov:usedEntity']},"
                    f" {a['prov:activity']}, -, -{rest})\n"
                )
            elif rtype == "wasAssociatedWith":
                yield f"  wasAssociatedWith({a['prov:activity']}, {a['prov:agent']}, -)\n"
            elif rtype == "wasAttributedTo":
                yield f"  wasAttributedTo({a['prov:entity']}, {a['prov:agent']})\n"
    yield "endDocument\n"


__all__ = [
    "FORMATS",
    "IMAGE_FORMATS",
    "TEXT_FORMATS",
    "dot",
    "mermaid",
    "prov_json",
    "prov_n",
    "write",
    "write_file",
]
