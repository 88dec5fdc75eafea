"""The audit report as a self-contained HTML page (pure: facts in, text out).

:mod:`ledger.report` gathers the facts into the dataclasses of :mod:`ledger.reportfacts`;
:func:`page` writes them out. The page needs nothing but itself: the stylesheet is
inline, the lineage is inline SVG (:mod:`ledger.reportsvg`), and it has no script, font,
image or link that leaves the page (every ``href`` is a ``#fragment``). Every text from
the ledger goes through :func:`text` (escaped, invisible and reordering characters shown
as ``[U+XXXX]``). Findings are marked with words as well as colour (``VIOLATION``,
``OVERRIDDEN``, ``BREAK-GLASS``, ``counts``), so the page reads the same in grey, in
print and aloud; the tables have captions and ``<th scope>`` headers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from . import events as E
from . import reportsvg as S
from .reportfacts import (
    Approval,
    Checkpoint,
    DeployCheck,
    Deployment,
    Event,
    Flag,
    Override,
    Policy,
    Report,
    Verification,
    Version,
)

#: The facts' classes are :mod:`ledger.reportfacts`'s, named here too for the gatherer.
__all__ = [
    "Approval", "Checkpoint", "DeployCheck", "Deployment", "Event", "Flag", "Override",
    "Policy", "Report", "Verification", "Version", "page",
]  # fmt: skip

#: The files of an artifact's manifest listed at most (the count is always given).
MAX_MANIFEST = 200


# --- text and small pieces ------------------------------------------------------------------------


def text(value: object) -> str:
    """``value`` as HTML text: escaped, and invisible or reordering characters shown
    as a marked ``[U+XXXX]`` (``<span class="ctl">``)."""
    return S.INVISIBLE.sub(
        lambda m: f'<span class="ctl">[U+{ord(m[0]):04X}]</span>',
        S.html.escape(str(value), quote=True),
    )


attr = S.plain  # (an attribute value: escaped, invisible characters as plain text)


def ts(micros: int | None) -> str:
    return "" if micros is None else f"<time>{E.format_ts(micros)}</time>"


def code(value: object) -> str:
    return f"<code>{text(value)}</code>"


def value(v: Any) -> str:
    """A payload value: text as it is, anything else as compact JSON."""
    if isinstance(v, str):
        return text(v)
    return code(json.dumps(v, ensure_ascii=False, sort_keys=True))


def flag(f: Flag) -> str:
    """A finding, in words: ``VIOLATION`` when open, ``OVERRIDDEN`` when a grant covers it."""
    if f.covered_by is None:
        mark = '<strong class="flag violation">⚠ VIOLATION</strong>'
    else:
        mark = (
            f'<strong class="flag overridden">⚑ OVERRIDDEN by break-glass seq'
            f" {f.covered_by}</strong>"
        )
    return f"{mark} {text(f.rule)}: {text(f.message)}"


def table(
    caption: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    cls: str = "",
    empty: str = "none",
) -> str:
    """A ``<table>`` with a caption and column headers; cells are HTML already (the
    first one of each row is its row header)."""
    body = [
        "<tr>"
        + "".join(
            f'<th scope="row">{c}</th>' if i == 0 else f"<td>{c}</td>" for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    ]
    if not body:
        return f'<p class="empty">{text(caption)}: {text(empty)}.</p>'
    head = "".join(f'<th scope="col">{text(h)}</th>' for h in headers)
    klass = f' class="{cls}"' if cls else ""
    return (
        f"<table{klass}><caption>{text(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def pairs(caption: str, mapping: Any) -> str:
    """A name/value table of a payload member (a JSON object), or its value if not one."""
    if mapping is None:
        return ""
    if not isinstance(mapping, Mapping):
        return f"<p><strong>{text(caption)}:</strong> {value(mapping)}</p>"
    return table(caption, ["Name", "Value"], ([text(k), value(v)] for k, v in mapping.items()))


def _section(ident: str, level: int, title: str, body: str) -> str:
    return (
        f'<section id="{ident}" aria-labelledby="{ident}-h">'
        f'<h{level} id="{ident}-h">{text(title)}</h{level}>{body}</section>'
    )


# --- one version ---------------------------------------------------------------------------------


def facts(v: Version) -> str:
    """The version's facts: who registered it and when, its artifact, code, datasets,
    parents, metrics, params, tags, metadata and description."""
    p = v.payload
    art = p.get("artifact") if isinstance(p.get("artifact"), dict) else None
    code_ = p.get("code") if isinstance(p.get("code"), dict) else None
    live = ", ".join(text(e) for e in v.live_in) or "nowhere"
    rows = [
        ("Model", code(v.model)),
        ("Version", str(v.version)),
        ("Status", f"{text(v.status)}; live in {live}"),
        ("Registered by", text(v.registrant)),
        ("Registered at", ts(v.registered_ts)),
        ("Register event", f"seq {v.registered_seq}, hash {code(v.register_hash)}"),
        ("Signing key", code(v.key_id)),
    ]
    if art is not None:
        rows.append(("Artifact digest", code(art.get("digest", "none recorded"))))
        for k, label in (("uri", "URI"), ("kind", "kind"), ("name", "name"), ("size", "size")):
            if k in art:
                rows.append((f"Artifact {label}", value(art[k])))
    else:
        rows.append(("Artifact", "none recorded"))
    if code_ is not None:
        rows.append(("Code", f"{text(code_.get('repo', '?'))} @ {code(code_.get('commit', '?'))}"))
    if "description" in p:
        rows.append(("Description", f'<span class="prose">{value(p["description"])}</span>'))
    out = [
        '<table class="facts"><caption>Registration</caption><tbody>',
        *(f'<tr><th scope="row">{k}</th><td>{c}</td></tr>' for k, c in rows),
        "</tbody></table>",
    ]
    datasets = _list(p.get("datasets"))
    out.append(
        table(
            "Datasets",
            ["Name", "URI", "Digest"],
            (
                [text(d.get("name", "")), text(d.get("uri", "")), code(d.get("digest", "none"))]
                for d in datasets
                if isinstance(d, dict)
            ),
            empty="none recorded",
        )
    )
    parents = _list(p.get("parents"))
    out.append(
        table(
            "Parents",
            ["Parent version", "Relation"],
            (
                [code(f"{q.get('model')}:{q.get('version')}"), text(q.get("relation", ""))]
                for q in parents
                if isinstance(q, dict)
            ),
            empty="none (a base model)",
        )
    )
    for key, caption in (
        ("metrics", "Metrics"),
        ("params", "Parameters"),
        ("tags", "Tags"),
        ("metadata", "Metadata"),
    ):
        if key in p:
            out.append(pairs(caption, p[key]))
    manifest = art.get("manifest") if art is not None else None
    if isinstance(manifest, list):
        rows_ = [
            [text(f.get("path", "")), value(f.get("size", "")), code(f.get("digest", ""))]
            for f in manifest[:MAX_MANIFEST]
            if isinstance(f, dict)
        ]
        more = len(manifest) - len(rows_)
        out.append(
            table(f"Artifact manifest ({len(manifest)} files)", ["Path", "Size", "Digest"], rows_)
        )
        if more > 0:
            out.append(f"<p>… and {more} more files (ledger history {text(v.ref)}).</p>")
    return "".join(out)


_TIMELINE = [
    "Seq", "Time (UTC)", "Action", "Environment", "Actor", "Signing key", "Event hash",
    "Details", "Policy",
]  # fmt: skip


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def timeline(v: Version) -> str:
    """Every event of the version (and the grants for it), in order."""
    rows = []
    for ev in v.events:
        key = f'<code class="key">{text(ev.key_id)}</code>'
        key += f" ({text(ev.key_note)})" if ev.key_note else ""
        policy = "<br>".join(flag(f) for f in ev.flags) or "—"
        rows.append(
            [
                str(ev.seq),
                ts(ev.ts),
                text(ev.action),
                text(ev.env or ""),
                text(ev.actor),
                key,
                f'<code class="hash">{text(ev.hash)}</code>',
                f'<span class="prose">{text(ev.details)}</span>' if ev.details else "",
                policy,
            ]
        )
    return table(
        f"Events of {v.ref}",
        _TIMELINE,
        rows,
        cls="timeline",
    )


def deployments(v: Version) -> str:
    """Every deploy of the version: where, when, by whom, and until when."""
    rows = []
    for d in v.deployments:
        state = ('<strong class="flag live">LIVE</strong>' if d.live else "ended") + (
            " (rollback)" if d.rollback else ""
        )
        until = (
            f"seq {d.ended_seq}, {ts(d.ended_ts)}: {text(d.ended_how)}"
            if d.ended_seq is not None
            else "—"
        )
        rows.append([text(d.env), str(d.seq), ts(d.ts), text(d.actor), until, state])
    return table(
        f"Deployments of {v.ref}",
        ["Environment", "Deploy seq", "Deployed at", "Deployed by", "Ended", "State"],
        rows,
        empty="never deployed",
    )


def policy_line(pol: Policy | None) -> str:
    if pol is None:
        return "No policy was in force: no approvals were required."
    desc = f" ({text(pol.description)})" if pol.description else ""
    rules = ", ".join(text(r) for r in pol.rules) or "none"
    return (
        f"Policy in force: set at seq {pol.seq} by {text(pol.actor)} on {ts(pol.ts)}{desc};"
        f" rules on: {rules}."
    )


def check(c: DeployCheck, level: int) -> str:
    """One deploy against the policy in force: the approvals it counted, the verdicts."""
    counted = sum(a.counts is True for a in c.approvals)
    need = ""
    if c.policy is not None and c.required:
        s = "s" if c.required != 1 else ""
        need = f" It requires {c.required} approval{s} for {text(c.env)}; {counted} counted."
    elif c.policy is not None:
        need = f" It requires no approvals for {text(c.env)}."
    rows = [
        [
            text(a.actor),
            str(a.seq),
            ts(a.ts),
            text(a.env),
            {True: "✔ counts", False: "✘ does not count", None: "— not counted"}[a.counts]
            + f": {text(a.why)}",
        ]
        for a in c.approvals
    ]
    verdicts = [f"<li>{flag(f)}</li>" for f in c.flags] or [
        '<li><strong class="flag ok">✔ OK</strong>: no rule of the policy in force was broken</li>'
        if c.policy is not None
        else "<li>No rule to check.</li>"
    ]
    return (
        f"<h{level}>Deploy to {text(c.env)} at seq {c.seq} by {text(c.actor)}, {ts(c.ts)}"
        f"</h{level}>"
        f"<p>{policy_line(c.policy)}{need}</p>"
        + table(
            f"Approvals for {c.env} before seq {c.seq}",
            ["Approver", "Seq", "Approved at", "For", "Counted"],
            rows,
            empty="none",
        )
        + f'<ul class="verdicts">{"".join(verdicts)}</ul>'
    )


def governance(v: Version, level: int) -> str:
    """Approvals against the policy at each deploy, other findings, and overrides."""
    out = [check(c, level + 1) for c in v.checks] or ["<p>Never deployed: no deploy to check.</p>"]
    deploys = {c.seq for c in v.checks}
    other = [
        [str(ev.seq), text(ev.action), "<br>".join(flag(f) for f in ev.flags)]
        for ev in v.events
        if ev.flags and ev.seq not in deploys
    ]
    out.append(f"<h{level + 1}>Other events</h{level + 1}>")
    out.append(
        table(
            "Policy findings on the version's other events",
            ["Seq", "Action", "Finding"],
            other,
            empty="none",
        )
    )
    out.append(f"<h{level + 1}>Break-glass overrides</h{level + 1}>")
    out.append(
        table(
            f"Break-glass grants for {v.ref}",
            ["Grant seq", "Granted at", "By", "Permits", "Bypasses", "Justification", "Used"],
            (
                [
                    f'{o.seq} <strong class="flag overridden">⚑ BREAK-GLASS</strong>',
                    ts(o.ts),
                    text(o.actor),
                    text(o.target),
                    text(o.rule),
                    f'<span class="prose">{text(o.justification)}</span>',
                    f"by seq {o.used_by}" if o.used_by is not None else "unused",
                ]
                for o in v.overrides
            ),
            empty="none",
        )
    )
    return "".join(out)


def lineage(v: Version, prefix: str) -> str:
    """The lineage picture and its text alternative, the table of its edges."""
    labels = {n.key: n for n in v.nodes}
    picture = S.svg(
        v.nodes,
        v.edges,
        prefix=prefix,
        title=f"Lineage of {v.ref}",
        desc=(
            f"What {v.ref} was made from (left) and what was made from it (right):"
            f" {len(v.nodes)} nodes, {len(v.edges)} edges, listed in the table below."
        ),
    )
    rows = [
        [
            f"{text(labels[e.source].label)} ({text(labels[e.source].kind)})",
            text(e.label),
            f"{text(labels[e.target].label)} ({text(labels[e.target].kind)})",
        ]
        for e in v.edges
        if e.source in labels and e.target in labels
    ]
    note = (
        f"<p>{len(v.nodes) - S.MAX_NODES} nodes farther from {text(v.ref)} are not drawn;"
        " the table lists every edge.</p>"
        if len(v.nodes) > S.MAX_NODES
        else ""
    )
    return (
        f'<figure class="lineage">{picture}<figcaption>Lineage of {text(v.ref)}: arrows point'
        " from what was used to what was made from it.</figcaption></figure>"
        + note
        + table(f"Lineage edges of {v.ref}", ["Used", "How", "Made"], rows, empty="none")
    )


def checkpoint(v: Version) -> str:
    cp = v.checkpoint
    if cp is None:
        return (
            f"<p><strong>No stored checkpoint covers the events of {text(v.ref)}</strong>"
            f" (its last event is seq {v.last_seq}); ledger checkpoint signs one.</p>"
        )
    kid = f", key id {code(cp.signer_key_id)}" if cp.signer_key_id else ""
    return table(
        "Newest stored checkpoint covering the version's events",
        ["Property", "Value"],
        [
            [
                "Tree size",
                f"{cp.size} events (seq 0 to {cp.size - 1}; the version's last: {v.last_seq})",
            ],
            ["Root (base64)", f'<code class="hash">{text(cp.root)}</code>'],
            ["Signed by", f"{text(cp.signer)}{kid}"],
            ["File", code(f"checkpoints/{cp.name}")],
        ],
    )


def version_section(v: Version, index: int, level: int) -> str:
    """Every part of one version's report as sections with headings at ``level``, inside
    a section of the version with its own heading one level up when ``level`` > 2 (a page
    of one version has its name as the h1 already)."""
    p = f"v{index}"
    parts = [
        _section(f"{p}-facts", level, "Facts", facts(v)),
        _section(f"{p}-timeline", level, "Timeline", timeline(v)),
        _section(f"{p}-deployments", level, "Deployments", deployments(v)),
        _section(f"{p}-policy", level, "Approvals and policy", governance(v, level)),
        _section(f"{p}-lineage", level, "Lineage", lineage(v, f"{p}-svg")),
        _section(f"{p}-checkpoint", level, "Checkpoint", checkpoint(v)),
    ]
    if level <= 2:
        return "".join(parts)
    return _section(p, level - 1, v.ref, "".join(parts))


# --- the page ---------------------------------------------------------------------------------


def verification(ver: Verification, events: int) -> str:
    """What the report was built from: the record of verify on this machine."""
    rec = ver.record
    if rec is None:
        where = f" (no record of ledger verify in {code(ver.record_dir)})" if ver.record_dir else ""
        said = (
            "<p><strong>This ledger has not been verified on this machine</strong>"
            f"{where}. Nothing in this report has been checked against the signatures and"
            " hashes; run <code>ledger verify</code>, then build the report again.</p>"
        )
    elif rec[4] is not None:
        said = (
            f"<p><strong>The last ledger verify of this ledger on this machine FAILED</strong>"
            f" ({text(rec[4])}); record written {ts(rec[1])}.</p>"
        )
    else:
        head = f", head {code(rec[3])}" if rec[3] else ""
        said = (
            f"<p>ledger verify accepted events 0 to {rec[2] - 1} of this ledger on this machine"
            f"{head}; record {code(rec[0])}, written {ts(rec[1])}.</p>"
        )
    if ver.problem is None:
        now = (
            f'<p><strong class="flag ok">✔ VERIFIED</strong>: ledger verify accepted every one'
            f" of this ledger's {events} events on this machine (the report reads no others).</p>"
        )
    else:
        now = f'<p><strong class="flag violation">⚠ NOT VERIFIED</strong>: {text(ver.problem)}.</p>'
    return now + said


_STYLE = """
:root{color-scheme:light;--ink:#1b1b1b;--muted:#555;--line:#bbb;--bad:#8a1c1c;--badbg:#fde8e8;
--warn:#6b4a00;--warnbg:#fff3cd;--good:#1d5c2e;--goodbg:#e6f4ea}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--ink);margin:0 auto;
max-width:1200px;padding:1rem 1.5rem}
h1{font-size:1.6rem;margin:.2rem 0 .6rem}h2{font-size:1.3rem;border-bottom:2px solid var(--line);
margin-top:2rem}h3{font-size:1.1rem;margin-top:1.4rem}h4,h5{font-size:1rem;margin:1rem 0 .3rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;width:100%}
caption{text-align:left;font-weight:600;padding:.2rem 0}
th,td{border:1px solid var(--line);padding:.25rem .45rem;text-align:left;vertical-align:top}
thead th{background:#eee}tbody th{font-weight:600;background:#f7f7f7}
table.facts{width:auto}table.facts th{white-space:nowrap}
code{font:12.5px/1.3 ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere}
code.hash{word-break:break-all}time,code.key{white-space:nowrap}
table.timeline{font-size:.92em}table.timeline code.hash{display:inline-block;width:16.5ch}
.prose{white-space:pre-wrap}.ctl{border:1px dashed currentColor;font-size:.8em}
.flag{padding:0 .25rem;border:1px solid currentColor;border-radius:3px}
.violation{color:var(--bad);background:var(--badbg)}.overridden{color:var(--warn);background:var(--warnbg)}
.ok,.live{color:var(--good);background:var(--goodbg)}
.banner{border:2px solid currentColor;padding:.4rem .7rem;margin:.6rem 0}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.1rem 1rem;margin:.4rem 0}
dl.meta dt{font-weight:600}dl.meta dd{margin:0}
nav ul{columns:2;margin:.3rem 0}
figure.lineage{margin:.5rem 0;overflow-x:auto}
svg.lineage{max-width:100%;height:auto;font:12px system-ui,sans-serif}
svg.lineage rect{fill:#fff;stroke:#444;stroke-width:1.2}
svg.lineage .dataset rect{stroke-dasharray:5 3}
svg.lineage .subject rect{stroke-width:3.5;fill:#f2f2f2}
svg.lineage .kind{font-size:10.5px;fill:#555;text-transform:uppercase;letter-spacing:.04em}
svg.lineage .edge path{fill:none;stroke:#666;stroke-width:1.3}
svg.lineage .edge text{font-size:10.5px;fill:#333;paint-order:stroke;stroke:#fff;stroke-width:3px}
svg.lineage .arrow{fill:#666}
.empty{color:var(--muted)}
footer{margin-top:2rem;border-top:1px solid var(--line);color:var(--muted);font-size:.9em}
@media print{body{max-width:none;padding:0;font-size:10pt}nav{display:none}
a{color:inherit;text-decoration:none}h2,h3,h4{break-after:avoid}tr,figure{break-inside:avoid}
.flag,.banner{background:none!important;color:#000!important}thead th,tbody th{background:none}
figure.lineage{overflow:visible}@page{margin:1.5cm}}
"""


_PARTS = [
    ("facts", "Facts"),
    ("timeline", "Timeline"),
    ("deployments", "Deployments"),
    ("policy", "Approvals and policy"),
    ("lineage", "Lineage"),
    ("checkpoint", "Checkpoint"),
]


def page(r: Report) -> str:
    """The whole page."""
    if r.env is None:
        (v,) = r.versions
        title = f"Audit report: {v.ref}"
        index = [(f"v1-{k}", t) for k, t in _PARTS]
    else:
        title = f"Audit report: every version live in {r.env}"
        index = [("live", f"Live in {r.env}")]
        index += [(f"v{i}", x.ref) for i, x in enumerate(r.versions, 1)]
    when = r.as_of or "now"
    if r.verification.ok:
        banner = (
            '<p class="banner ok"><strong>✔ VERIFIED</strong>: built from events that'
            " ledger verify accepted on this machine.</p>"
        )
    else:
        banner = (
            '<p class="banner violation"><strong>⚠ NOT VERIFIED</strong>:'
            f" {text(r.verification.problem)}.</p>"
        )
    meta = [
        ("Ledger origin", code(r.origin)),
        ("Ledger head", f"{r.events} events, last hash {code(r.head)}"),
        ("As of", text(when)),
        ("Generated", f"{ts(r.generated)} by {text(r.tool)}"),
    ]
    out = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="{attr(r.tool)}">\n'
        f"<title>{text(title)} ({text(r.origin)})</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n<header>\n",
        f"<h1>{text(title)}</h1>\n{banner}\n",
        '<dl class="meta">' + "".join(f"<dt>{k}</dt><dd>{c}</dd>" for k, c in meta),
        "</dl>\n</header>\n",
        '<nav aria-label="Contents"><ul>'
        + "".join(f'<li><a href="#{k}">{text(t)}</a></li>' for k, t in index)
        + '<li><a href="#verification">Verification</a></li></ul></nav>\n<main>\n',
    ]
    if r.env is None:
        out.append(version_section(r.versions[0], 1, 2))
    else:
        rows = [
            [f'<a href="#v{i}">{text(f"{m}:{n}")}</a>', ts(since), str(seq), text(by)]
            for i, (m, n, since, seq, by) in enumerate(r.live, 1)
        ]
        live = table(
            f"Versions live in {r.env} ({when})",
            ["Version", "Live since", "Deploy seq", "Deployed by"],
            rows,
            empty=f"nothing was live in {r.env}",
        )
        out.append(_section("live", 2, f"Live in {r.env}", live))
        out += [version_section(v, i, 3) for i, v in enumerate(r.versions, 1)]
    out.append(_section("verification", 2, "Verification", verification(r.verification, r.events)))
    out.append(
        "\n</main>\n<footer><p>Generated "
        f"{ts(r.generated)} by {text(r.tool)} from ledger {code(r.origin)} at head"
        f" {code(r.head)} ({r.events} events). This page is self-contained: it loads"
        " nothing from anywhere.</p></footer>\n</body>\n</html>\n"
    )
    return "".join(out)
