"""Write a lineage graph for the tools people use.

=============  ==========================================  ============================
format         for                                          written by
=============  ==========================================  ============================
graphml        yEd, Cytoscape, Gephi                        this module, streamed
gexf           Gephi (GEXF 1.2)                             this module, streamed
json           D3 (node-link JSON)                          networkx data + json
dot            Graphviz (identifiers quoted)                this module, streamed
svg, png       pictures, when Graphviz's ``dot`` is found   ``dot`` fed our DOT
mermaid        Markdown on GitHub/GitLab (``flowchart``)    this module, streamed
prov-json      W3C PROV-JSON                                this module, streamed
prov-n         W3C PROV-N                                   this module, streamed
=============  ==========================================  ============================

The graph's attributes are already scalars with no ``None`` (see ``ledger.lineage``), so
GraphML and GEXF keep every attribute as a typed key (long, boolean or string). The
formats written here stream: beyond the graph they hold one record at a time (PROV also
a map of node ids). Node-link JSON is built as one document by networkx first, about
half the graph's size again. Every format is read back by its standard reader in
tests/test_export.py.
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
from xml.sax.saxutils import escape, quoteattr

import networkx as nx

from . import outfile
from .compat import nodes as _nodes
from .compat import succ as _succ
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
    if fmt == "json":
        json.dump(nx.node_link_data(g, edges="edges"), out, ensure_ascii=False, indent=1)
        out.write("\n")
        return
    else:
        lines = {
            "graphml": graphml,
            "gexf": gexf,
            "dot": dot,
            "mermaid": mermaid,
            "prov-json": prov_json,
            "prov-n": prov_n,
        }[fmt](g)
    for chunk in lines:
        out.write(chunk)


def write_file(g: nx.MultiDiGraph, fmt: str, path: str | os.PathLike[str]) -> None:
    """Write ``g`` to ``path``; ``svg`` and ``png`` need Graphviz's ``dot`` program."""
    if fmt in IMAGE_FORMATS:
        render_image(g, fmt, path)
        return
    with outfile.atomic(path) as f:
        write(g, fmt, f)


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
        with outfile.atomic(path, binary=True) as out:  # (dot writes the image to it)
            proc = subprocess.run(
                [exe, f"-T{fmt}", f.name], stdout=out, stderr=subprocess.PIPE, check=False
            )
            if proc.returncode != 0:
                lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
                raise StorageError(f"dot could not render {path}: {(lines or ['no message'])[-1]}")
    finally:
        os.unlink(f.name)


# --- GraphML and GEXF, streamed ------------------------------------------------------------------


def _xml_type(values: set[type], ints: str) -> str:
    if values == {bool}:
        return "boolean"
    if values == {int}:
        return ints
    return "string"


def _xml_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return escape(str(v))


def _keys(items: Iterator[dict[str, Any]], skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Attribute name -> the types its values take, over one pass of nodes or edges."""
    seen: dict[str, set[type]] = {}
    for d in items:
        for k, v in d.items():
            if k not in skip:
                seen.setdefault(k, set()).add(type(v))
    return {k: seen[k] for k in sorted(seen)}  # type: ignore[misc]


def graphml(g: nx.MultiDiGraph) -> Iterator[str]:
    """GraphML (yEd, Cytoscape, Gephi), streamed: one pass to declare the typed keys, one
    to write. Edges get unique ids ``e0``, ``e1``…; values keep their types (long,
    boolean, string) so readers get ints and booleans back."""
    nkeys = _keys(d for _, d in g.nodes(data=True))
    ekeys = _keys(d for _, _, d in _edges(g))
    yield "<?xml version='1.0' encoding='utf-8'?>\n"
    yield (
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xsi:schemaLocation="http://graphml.graphdrawing.org/xmlns'
        ' http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd">\n'
    )
    nid = {k: f"n_{i}" for i, k in enumerate(nkeys)}
    eid = {k: f"e_{i}" for i, k in enumerate(ekeys)}
    for scope, keys, ids in (("node", nkeys, nid), ("edge", ekeys, eid)):
        for k, types in keys.items():
            t = _xml_type(types, "long")  # type: ignore[arg-type]
            yield f'  <key id="{ids[k]}" for="{scope}" attr.name={quoteattr(k)} attr.type="{t}" />\n'
    yield '  <graph edgedefault="directed">\n'
    for n, d in g.nodes(data=True):
        data = "".join(f'<data key="{nid[k]}">{_xml_text(v)}</data>' for k, v in d.items())
        yield f"    <node id={quoteattr(n)}>{data}</node>\n"
    for i, (u, v, d) in enumerate(_edges(g)):
        data = "".join(f'<data key="{eid[k]}">{_xml_text(x)}</data>' for k, x in d.items())
        yield f'    <edge id="e{i}" source={quoteattr(u)} target={quoteattr(v)}>{data}</edge>\n'
    yield "  </graph>\n</graphml>\n"


def gexf(g: nx.MultiDiGraph) -> Iterator[str]:
    """GEXF 1.2 (Gephi), streamed like GraphML; a node's ``label`` is its GEXF label."""
    nkeys = _keys((d for _, d in g.nodes(data=True)), skip=("label",))
    ekeys = _keys(d for _, _, d in _edges(g))
    yield "<?xml version='1.0' encoding='utf-8'?>\n"
    yield (
        '<gexf xmlns="http://www.gexf.net/1.2draft"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xsi:schemaLocation="http://www.gexf.net/1.2draft http://www.gexf.net/1.2draft/gexf.xsd"'
        ' version="1.2">\n'
    )
    yield '  <graph defaultedgetype="directed" mode="static">\n'
    ids: dict[str, dict[str, str]] = {}
    n_attr = 0
    for scope, keys in (("node", nkeys), ("edge", ekeys)):
        ids[scope] = {}
        yield f'    <attributes class="{scope}" mode="static">\n'
        for k, types in keys.items():
            ids[scope][k] = str(n_attr)
            t = _xml_type(types, "long")  # type: ignore[arg-type]
            yield f'      <attribute id="{n_attr}" title={quoteattr(k)} type="{t}" />\n'
            n_attr += 1
        yield "    </attributes>\n"
    yield "    <nodes>\n"
    nid = ids["node"]
    for n, d in g.nodes(data=True):
        vals = "".join(
            f'<attvalue for="{nid[k]}" value={quoteattr(_xml_value(v))} />'
            for k, v in d.items()
            if k != "label"
        )
        label = quoteattr(str(d.get("label", n)))
        yield f"      <node id={quoteattr(n)} label={label}><attvalues>{vals}</attvalues></node>\n"
    yield "    </nodes>\n    <edges>\n"
    eid = ids["edge"]
    for i, (u, v, d) in enumerate(_edges(g)):
        vals = "".join(
            f'<attvalue for="{eid[k]}" value={quoteattr(_xml_value(x))} />' for k, x in d.items()
        )
        yield (
            f'      <edge id="{i}" source={quoteattr(u)} target={quoteattr(v)}>'
            f"<attvalues>{vals}</attvalues></edge>\n"
        )
    yield "    </edges>\n  </graph>\n</gexf>\n"


def _xml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


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
    d = _nodes(g)[n]
    kind = d["kind"]
    if kind == MODEL:
        return f"ledger:model/{_local(d['model'])}/{d['version']}"
    return f"ledger:{kind}/{_local(n.split(':', 1)[1])}"


def _activity(seq: int) -> str:
    return f"ledger:event/{seq}"


_QN = "prov:QUALIFIED_NAME"


def _edges(g: nx.MultiDiGraph) -> Iterator[tuple[str, str, dict[str, Any]]]:
    # The adjacency directly: MultiDiGraph.edges(data=True) costs twice as much per edge.
    for u, nbrs in _succ(g).items():
        for v, keyed in nbrs.items():
            for d in keyed.values():
                yield u, v, d


class _Prov:
    """PROV records of a lineage graph, one record type at a time (each a fresh walk of
    the graph, so no list of records is ever held). Entities are model versions, datasets
    and commits; agents are actors; each event that justifies an edge is an activity
    typed by its action (``ledger:register``…)."""

    def __init__(self, g: nx.MultiDiGraph) -> None:
        self.g = g
        self.ids: dict[str, str] = {}

    def id(self, n: str) -> str:
        r = self.ids.get(n)
        if r is None:
            r = self.ids[n] = prov_id(self.g, n)
        return r

    def sections(self) -> Iterator[tuple[str, Iterator[tuple[str, dict[str, Any]]]]]:
        yield "entity", self.entities()
        yield "activity", self.activities()
        yield "agent", self.agents()
        yield "wasGeneratedBy", self.generations()
        yield "used", self.usages()
        yield "wasDerivedFrom", self.derivations()
        yield "wasAssociatedWith", self.associations()
        yield "wasAttributedTo", self.attributions()

    def entities(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for n, d in self.g.nodes(data=True):
            t = _ENTITY_TYPE.get(d["kind"])
            if t is None:
                continue
            attrs: dict[str, Any] = {"prov:type": {"$": f"ledger:{t}", "type": _QN}}
            attrs["prov:label"] = d["label"]
            for k, v in d.items():
                if k not in ("kind", "label"):
                    attrs[f"ledger:{k}"] = v
            yield self.id(n), attrs

    def agents(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for n, d in self.g.nodes(data=True):
            if d["kind"] == ACTOR:
                yield (
                    self.id(n),
                    {"prov:type": {"$": "prov:Person", "type": _QN}, "prov:label": d["label"]},
                )

    def activities(self) -> Iterator[tuple[str, dict[str, Any]]]:
        done: set[int] = set()
        for _, _, d in _edges(self.g):
            action = _ACTIVITY.get(d["kind"])
            if action is None or d["seq"] in done:
                continue
            done.add(d["seq"])
            attrs = {
                "prov:type": {"$": f"ledger:{action}", "type": _QN},
                "prov:startTime": d["ts"],
                "prov:endTime": d["ts"],
                "ledger:seq": d["seq"],
                "ledger:hash": d["hash"],
            }
            if "env" in d:
                attrs["ledger:env"] = d["env"]
            yield _activity(d["seq"]), attrs

    def generations(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for i, (u, _, d) in enumerate(_edges(self.g), 1):
            if d["kind"] == REGISTERED_BY:
                act = _activity(d["seq"])
                yield (
                    f"_:g{i}",
                    {"prov:entity": self.id(u), "prov:activity": act, "prov:time": d["ts"]},
                )

    def usages(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for i, (u, v, d) in enumerate(_edges(self.g), 1):
            kind = d["kind"]
            if kind in (TRAINED_ON, BUILT_FROM):
                role = {"$": f"ledger:{kind}", "type": _QN}
                attrs = {
                    "prov:activity": _activity(d["seq"]),
                    "prov:entity": self.id(v),
                    "prov:role": role,
                }
                yield f"_:u{i}", attrs
            elif kind in _ACTIVITY and kind != REGISTERED_BY:  # approve, reject, deprecate, deploy
                yield f"_:u{i}", {"prov:activity": _activity(d["seq"]), "prov:entity": self.id(u)}

    def derivations(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for i, (u, v, d) in enumerate(_edges(self.g), 1):
            if d["kind"] == DERIVED_FROM:
                yield (
                    f"_:d{i}",
                    {
                        "prov:generatedEntity": self.id(u),
                        "prov:usedEntity": self.id(v),
                        "prov:activity": _activity(d["seq"]),
                        "prov:type": {"$": f"ledger:{d['relation']}", "type": _QN},
                    },
                )

    def associations(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for i, (_, v, d) in enumerate(_edges(self.g), 1):
            kind = d["kind"]
            if kind in _ACTIVITY:
                agent = f"ledger:actor/{_local(d['actor'])}" if kind == DEPLOYED_TO else self.id(v)
                yield f"_:a{i}", {"prov:activity": _activity(d["seq"]), "prov:agent": agent}

    def attributions(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for i, (u, v, d) in enumerate(_edges(self.g), 1):
            if d["kind"] == REGISTERED_BY:
                yield f"_:t{i}", {"prov:entity": self.id(u), "prov:agent": self.id(v)}


def _grouped(g: nx.MultiDiGraph) -> Iterator[tuple[str, Iterator[tuple[str, dict[str, Any]]]]]:
    return _Prov(g).sections()


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
