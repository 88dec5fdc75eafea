"""The lineage picture of an audit report: a layered layout drawn as inline SVG (pure).

The version reported on sits in column 0; what it was made from (parent versions,
datasets, commits) in the columns to its left, by the longest path to it, and what was
made from it (derived versions) to its right, so every edge points rightwards, from
what was used to what was made. Within a column, nodes are ordered by the mean row of
their neighbours (one sweep each way), which keeps most edges from crossing in the
small families reports show. The picture is drawn here rather than by Graphviz so the
page never depends on a program being installed; the report's table of edges is its
text alternative, complete even when the picture is cut to :data:`MAX_NODES`.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: The most nodes drawn (those nearest the version); the edge table lists them all.
MAX_NODES = 120
#: Characters of a label drawn in a box (the full label is the box's tooltip).
LABEL_CHARS = 30

_W, _H = 228, 46  # a node's box
_COL, _ROW = 300, 62  # the pitch of columns and rows
_PAD = 16
_KIND_ORDER = {"model": 0, "dataset": 1, "commit": 2}


@dataclass(frozen=True)
class Node:
    """One box: a model version, dataset or commit."""

    key: str
    kind: str
    label: str
    #: the tooltip's second line (a digest, a status)
    detail: str = ""
    subject: bool = False
    #: the text in the box, when not the label (a URI's last part, a short commit)
    box: str = ""


@dataclass(frozen=True)
class Edge:
    """``target`` was made from ``source`` (a parent, a dataset, a commit), as ``label``
    says (finetune, trained on, built from …)."""

    source: str
    target: str
    label: str
    #: whether the label is written on the picture (a derivation's relation), or only
    #: in its tooltip (the boxes' kinds say "dataset", "commit")
    shown: bool = True


def columns(subject: str, edges: Iterable[Edge]) -> dict[str, int]:
    """Each node's column: minus its longest path to ``subject`` for what it was made
    from, plus the longest path from it for what was made from it, 0 for itself."""
    edges = list(edges)
    col = {subject: 0}
    ancestors = _reach(subject, {(e.target, e.source) for e in edges})
    descendants = _reach(subject, {(e.source, e.target) for e in edges})
    for side, sign in ((ancestors, -1), (descendants, 1)):
        depth = {n: 0 for n in side}
        depth[subject] = 0
        # (longest paths in a DAG by relaxation: at most one pass per node)
        for _ in range(len(side) + 1):
            changed = False
            for e in edges:
                a, b = (e.target, e.source) if sign < 0 else (e.source, e.target)
                if a in depth and b in side and depth[b] < depth[a] + 1:
                    depth[b] = depth[a] + 1
                    changed = True
            if not changed:
                break
        col.update({n: sign * d for n, d in depth.items() if n != subject})
    return col


def _reach(start: str, pairs: set[tuple[str, str]]) -> set[str]:
    """The nodes reachable from ``start`` over (from, to) ``pairs``, ``start`` excluded."""
    out: dict[str, list[str]] = {}
    for a, b in pairs:
        out.setdefault(a, []).append(b)
    seen: set[str] = set()
    todo = [start]
    while todo:
        for b in out.get(todo.pop(), ()):
            if b not in seen and b != start:
                seen.add(b)
                todo.append(b)
    return seen


def layout(
    col: dict[str, int], first: dict[str, tuple[int, str]], links: Sequence[tuple[str, str]]
) -> dict[str, int]:
    """Each item's row within its column (``col``): first in the order of ``first``, then
    by the mean row of the items it is linked to, one sweep rightwards and one back."""
    by_col: dict[int, list[str]] = {}
    for k in col:
        by_col.setdefault(col[k], []).append(k)
    for members in by_col.values():
        members.sort(key=lambda k: first[k])
    row = {k: i for members in by_col.values() for i, k in enumerate(members)}
    near: dict[str, list[str]] = {}
    for a, b in links:
        near.setdefault(a, []).append(b)
        near.setdefault(b, []).append(a)
    order = sorted(by_col)
    for sweep in (order, order[::-1]):
        for c in sweep:
            members = by_col[c]
            means = {k: _mean(k, near, row, col) for k in members}
            members.sort(key=lambda k: (means[k], row[k]))
            row.update({k: i for i, k in enumerate(members)})
    return row


def _mean(key: str, near: dict[str, list[str]], row: dict[str, int], col: dict[str, int]) -> float:
    """The mean row of ``key``'s neighbours in other columns (its own row if none)."""
    rows = [row[m] for m in near.get(key, ()) if col[m] != col[key]]
    return sum(rows) / len(rows) if rows else row[key]


def _short(text: str) -> str:
    """At most LABEL_CHARS characters: the start and the end, which tell names apart."""
    if len(text) <= LABEL_CHARS:
        return text
    head = LABEL_CHARS // 3
    return text[:head] + "…" + text[len(text) - (LABEL_CHARS - head - 1) :]


#: Characters that are invisible, or reorder the text around them (bidirectional
#: overrides), shown as ``[U+XXXX]`` so that a hostile name cannot hide or disguise text.
INVISIBLE = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e"
    "\u2028\u2029\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]"
)


def plain(text: object) -> str:
    """``text`` escaped for HTML or SVG text and attributes, invisible characters shown."""
    return INVISIBLE.sub(lambda m: f"[U+{ord(m[0]):04X}]", html.escape(str(text), quote=True))


_e = plain


def svg(nodes: Sequence[Node], edges: Sequence[Edge], *, prefix: str, title: str, desc: str) -> str:
    """The picture as an ``<svg>`` element for an HTML page (no external reference:
    ``prefix`` makes its element ids unique in the page)."""
    subject = next(n.key for n in nodes if n.subject)
    col = columns(subject, edges)
    nodes = [n for n in nodes if n.key in col]
    if len(nodes) > MAX_NODES:  # the nearest, so the version and its parents stay drawn
        nodes = sorted(nodes, key=lambda n: (abs(col[n.key]), col[n.key]))[:MAX_NODES]
    keep = {n.key for n in nodes}
    edges = [e for e in edges if e.source in keep and e.target in keep]
    # An edge across several columns passes through a slot of its own in each column
    # between (a dummy item in the layout), never behind another node's box.
    items = {n.key: col[n.key] for n in nodes}
    first = {n.key: (_KIND_ORDER.get(n.kind, 9), n.label) for n in nodes}
    chains = []
    for i, e in enumerate(edges):
        chain = [e.source]
        for c in range(col[e.source] + 1, col[e.target]):
            dummy = f"\0{i}:{c}"
            items[dummy], first[dummy] = c, (9, "")
            chain.append(dummy)
        chains.append([*chain, e.target])
    row = layout(items, first, [pair for ch in chains for pair in itertools.pairwise(ch)])
    left = min(items.values())
    x = {k: _PAD + (c - left) * _COL for k, c in items.items()}
    y = {k: _PAD + row[k] * _ROW + _H // 2 for k in items}  # (the middle of the slot)
    width = max(x.values()) + _W + _PAD
    height = max(y.values()) + _H // 2 + _PAD
    out = [
        f'<svg class="lineage" role="img" aria-labelledby="{prefix}-t {prefix}-d"'
        f' viewBox="0 0 {width} {height}" width="{width}" height="{height}">',
        f'<title id="{prefix}-t">{_e(title)}</title>',
        f'<desc id="{prefix}-d">{_e(desc)}</desc>',
        f'<defs><marker id="{prefix}-arrow" viewBox="0 0 10 10" refX="10" refY="5"'
        ' markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" class="arrow"/></marker></defs>',
    ]
    for e, chain in zip(edges, chains, strict=True):
        x1, y1 = x[e.source] + _W, y[e.source]
        d = [f"M{x1},{y1}"]
        for k in chain[1:]:
            x2, y2 = x[k], y[k]
            mid = (x1 + x2) // 2
            d.append(f"C{mid},{y1} {mid},{y2} {x2},{y2}")
            x1, y1 = x2 + _W, y2
            if k != e.target:
                d.append(f"L{x1},{y1}")
        lx, ly = (x[e.source] + _W + x[chain[1]]) // 2, (y[e.source] + y[chain[1]]) // 2 - 4
        label = f'<text x="{lx}" y="{ly}" text-anchor="middle">{_e(e.label)}</text>'
        out.append(
            f'<g class="edge"><title>{_e(e.label)}</title>'
            f'<path d="{" ".join(d)}" marker-end="url(#{prefix}-arrow)"/>'
            f"{label if e.shown else ''}</g>"
        )
    for n in nodes:
        kind = n.kind + (" · this version" if n.subject else "")
        tip = n.label + (f"\n{n.detail}" if n.detail else "")
        cls = f"node {_e(n.kind)}" + (" subject" if n.subject else "")
        rx = {"model": 8, "commit": _H // 2}.get(n.kind, 0)
        top = y[n.key] - _H // 2
        out.append(
            f'<g class="{cls}"><title>{_e(tip)}</title>'
            f'<rect x="{x[n.key]}" y="{top}" width="{_W}" height="{_H}" rx="{rx}"/>'
            f'<text x="{x[n.key] + 10}" y="{top + 17}" class="kind">{_e(kind)}</text>'
            f'<text x="{x[n.key] + 10}" y="{top + 35}">{_e(_short(n.box or n.label))}</text>'
            "</g>"
        )
    out.append("</svg>")
    return "\n".join(out)
