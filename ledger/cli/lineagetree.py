"""The terminal tree of ``ledger lineage MODEL:VERSION``: a version's family as lines
(:class:`TreeNode`, from :func:`tree` over the lineage graph, :mod:`ledger.lineage`) and
their drawing with rich (:func:`print_tree`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import outfile
from ..compat import nodes as _nodes
from ..compat import pred as _pred
from ..compat import succ as _succ
from ..errors import InputError
from ..lineage import (
    ACTOR,
    COMMIT,
    DATASET,
    DERIVED_FROM,
    ENV,
    LINEAGE_KINDS,
    MODEL,
    edge_word,
    live_deployments,
)

if TYPE_CHECKING:
    import networkx as nx


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
                    word = edge_word(d) if d["kind"] == DERIVED_FROM else None
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


def print_tree(root: TreeNode, out_path: str | None) -> None:
    """Draw the tree with rich, to ``out_path`` or the terminal."""
    from rich.console import Console
    from rich.text import Text
    from rich.tree import Tree

    def grow(parent: Tree, node: Any) -> None:
        for child in node.children:
            grow(parent.add(Text(child.label)), child)

    top = Tree(Text(root.label))
    grow(top, root)
    # A tree is never wrapped or cropped: long URIs stay whole and the lines stay greppable.
    if out_path:
        with outfile.atomic(out_path) as f:
            Console(file=f, width=100_000, color_system=None).print(top)
    else:
        Console(width=None if sys.stdout.isatty() else 100_000, soft_wrap=True).print(top)
