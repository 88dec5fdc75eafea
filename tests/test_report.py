"""The HTML audit report (``ledger report``, ``Ledger.report``): its pieces with exact
content, its facts on the demo ledger, the command's output and errors, and the page in
a real browser (headless Chromium: what it renders, and that it requests nothing)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ledger import Ledger
from ledger import events as E
from ledger import policy as P
from ledger import report as R
from ledger import reporthtml as H
from ledger import reportsvg as S
from ledger.demo import run_demo
from ledger.errors import NotFoundError
from ledger.state import Approval as StateApproval
from ledger.state import State
from ledger.state import Version as StateVersion

TINY, XGB = "fraud.detector.tiny", "fraud.detector.xgb"
NOW = E.parse_instant("2026-10-01T12:00:00Z")  # a fixed generation time


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo ledger (verified by the demo itself; read only: tests that write copy it)."""
    path = tmp_path_factory.mktemp("report") / "demo-ledger"
    run_demo(path, echo=lambda _line: None)
    return path


def gathered(path: Path, ref: tuple[str, int], upto: int | None = None) -> H.Version:
    led = Ledger.open(path)
    if upto is None:
        upto = led.store.tail()[0] - 1
    return R._Gather(led, [ref], upto).run()[ref]


# --- the pieces, exactly ------------------------------------------------------------------------


def test_text_escapes_markup_and_shows_invisible_characters():
    assert H.text("<script>alert(\"x\")</script> & 'q'") == (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;q&#x27;"
    )
    # (a right-to-left override would reorder what follows it on the page: it is shown)
    assert H.text("ok\u202etxt.exe\x00") == (
        'ok<span class="ctl">[U+202E]</span>txt.exe<span class="ctl">[U+0000]</span>'
    )
    assert H.attr('"><b\u200b>') == "&quot;&gt;&lt;b[U+200B]&gt;"
    assert H.text("line 1\nline 2\ttab") == "line 1\nline 2\ttab"


def test_findings_are_marked_in_words_not_colour_alone():
    assert H.flag(P.Violation("approvals", "needs 2 <approvers>")) == (  # type: ignore[arg-type]
        '<strong class="flag violation">⚠ VIOLATION</strong> approvals: needs 2 &lt;approvers&gt;'
    )
    assert H.flag(H.Flag("approvals", "needs 2", covered_by=28)) == (
        '<strong class="flag overridden">⚑ OVERRIDDEN by break-glass seq 28</strong>'
        " approvals: needs 2"
    )


def test_an_unverified_ledger_is_said_plainly():
    never = H.Verification("this ledger has not been verified on this machine", None, "/v")
    assert H.verification(never, 7) == (
        '<p><strong class="flag violation">⚠ NOT VERIFIED</strong>: this ledger has not been'
        " verified on this machine.</p>"
        "<p><strong>This ledger has not been verified on this machine</strong> (no record of"
        " ledger verify in <code>/v</code>). Nothing in this report has been checked against"
        " the signatures and hashes; run <code>ledger verify</code>, then build the report"
        " again.</p>"
    )
    failed = H.Verification(
        "the last ledger verify failed (x)", ("/v/r.json", 0, 0, None, "x"), "/v"
    )
    assert "FAILED</strong> (x); record written <time>1970-01-01T00:00:00.000000Z</time>" in (
        H.verification(failed, 7)
    )
    ok = H.Verification(None, ("/v/r.json", 0, 7, "ab" * 32, None), "/v")
    assert H.verification(ok, 7) == (
        '<p><strong class="flag ok">✔ VERIFIED</strong>: ledger verify accepted every one of'
        " this ledger's 7 events on this machine (the report reads no others).</p>"
        f"<p>ledger verify accepted events 0 to 6 of this ledger on this machine, head"
        f" <code>{'ab' * 32}</code>; record <code>/v/r.json</code>, written"
        " <time>1970-01-01T00:00:00.000000Z</time>.</p>"
    )


def test_the_approvals_tally_counts_as_the_policy_rule_does():
    """Held to ledger.policy: a deploy has enough counted approvals exactly when the
    approvals rule finds no violation, and the rule names the approvers tally counted."""
    day = P.DAY_US
    at = 1_000 * day
    pool = [("alice", at - day), ("bob", at - day), ("bob", at - 2 * day), ("dave", at - 100 * day),
            ("dave", at - day), ("erin", at - 91 * day)]  # fmt: skip
    cases = 0
    for n in range(4):
        for chosen in itertools.combinations(pool, n):
            for need, days, own in itertools.product(range(4), (None, 90), (False, True)):
                pol = P.Policy(
                    approvals_required={"production": need},
                    approval_max_age_days=days,
                    registrant_may_not_approve=own,
                )
                v = StateVersion("m", 1, "alice", 1, 0, [])
                v.approvals["production"] = [
                    StateApproval(actor, seq, when)
                    for seq, (actor, when) in enumerate(sorted(chosen, key=lambda a: a[1]), 2)
                ]
                state = State()
                state.versions[("m", 1)] = v
                ev = E.Event(9, at, "o", E.DEPLOY, "carol", "k", {"env": "production"}, "", "m", 1)
                broken = [x for x in P.evaluate(state, pol, ev) if x.rule == P.APPROVALS]
                tally = R.tally(pol, v, "production", at)
                counted = [a.actor for a in tally if a.counts]
                assert (len(counted) >= need) == (not broken), (chosen, need, days, own)
                if broken:
                    has = f"{len(counted)} ({', '.join(counted)})" if counted else "none"
                    assert f"it has {has}" in broken[0].message
                cases += 1
    assert cases == 42 * 16


def test_lineage_columns_and_picture():
    edges = [
        S.Edge("d", "base", "trained on"),
        S.Edge("base", "me", "finetune"),
        S.Edge("d", "me", "trained on", shown=False),
        S.Edge("me", "kid", "distill"),
        S.Edge("base", "kid", "merge"),
    ]
    assert S.columns("me", edges) == {"me": 0, "base": -1, "d": -2, "kid": 1}
    nodes = [
        S.Node("me", "model", "m:2", subject=True),
        S.Node("base", "model", "m:1"),
        S.Node("d", "dataset", "s3://b/<x>.parquet", "sha256:…", box="<x>.parquet"),
        S.Node("kid", "model", "k:1"),
    ]
    svg = S.svg(nodes, edges, prefix="p", title="Lineage of m:2", desc="4 nodes")
    assert svg.startswith(
        '<svg class="lineage" role="img" aria-labelledby="p-t p-d" viewBox="0 0 1160 140"'
    )
    # The edges that skip a column pass through a slot of their own, not behind a box.
    boxes = [tuple(map(int, b)) for b in re.findall(r'<rect x="(\d+)" y="(\d+)"', svg)]
    passes = [tuple(map(int, m)) for m in re.findall(r" (\d+),(\d+) L(\d+),\d+", svg)]
    assert len(passes) == 2
    for x1, y, _x2 in passes:
        assert not [(bx, by) for bx, by in boxes if bx == x1 and by <= y <= by + 46]
    assert '<title id="p-t">Lineage of m:2</title>' in svg
    assert "&lt;x&gt;.parquet</text>" in svg and "<x>" not in svg
    assert svg.count(">finetune</text>") == svg.count(">trained on</text>") == 1  # (shown=False)
    assert svg.count('<g class="node') == 4 and svg.count('<g class="edge">') == 5
    assert "http" not in svg  # (no xmlns either: the page is HTML, the SVG inline)
    assert S._short("s3://risk-data/transactions-2026q1.parquet") == (
        "s3://risk-…ions-2026q1.parquet"
    )


def hostile_version() -> H.Version:
    evil = '<script>alert("x")</script>'
    return H.Version(
        model="<b>m</b>",
        version=1,
        status="approved",
        live_in=("production",),
        registrant="alice",
        registered_ts=0,
        registered_seq=5,
        register_hash="ab" * 32,
        key_id="0123456789abcdef",
        payload={
            "artifact": {"digest": "sha256:" + "cd" * 32, "uri": '"><img src=x onerror=alert(1)>'},
            "datasets": [{"name": "train", "uri": "javascript:alert(1)//<i>"}],
            "code": {"repo": "https://evil.example/<svg onload=alert(1)>", "commit": "3f2a9c1"},
            "metrics": {"<auc>": 0.9},
            "tags": {"team": "risk\u202eevil"},
            "metadata": {"x": "</td></tr></table><h1>owned</h1>"},
            "description": evil,
        },
        events=[
            H.Event(6, 0, "approve", "bob", "k", "ef" * 32, "production", None, evil),
            H.Event(
                7,
                0,
                "deploy",
                "carol",
                "k",
                "01" * 32,
                "production",
                details="<iframe>",
                flags=(H.Flag("approvals", "needs <2>", 6),),
            ),
        ],
        overrides=[H.Override(6, 0, "admin", "deploy <b>", "approvals", evil, 7)],
        nodes=[S.Node("me", "model", "<b>m</b>:1", evil, subject=True)],
    )


class Tags(HTMLParser):
    """Every start tag and its attributes, and the text outside style/script."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("style", "script")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def parsed(html: str) -> Tags:
    t = Tags()
    t.feed(html)
    t.close()
    return t


def words(html: str) -> str:
    """The page's text, one space between the texts of elements and words."""
    return " ".join(" ".join(parsed(html).text).split())


#: Every element the page may use: none of them loads anything by itself.
ELEMENTS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "h4", "p",
    "strong", "dl", "dt", "dd", "nav", "ul", "li", "a", "main", "section", "table", "caption",
    "thead", "tbody", "tr", "th", "td", "code", "time", "span", "br", "figure", "figcaption",
    "svg", "desc", "defs", "marker", "path", "g", "rect", "text", "footer",
}  # fmt: skip


def loads_nothing(html: str) -> None:
    """No element, attribute or style that fetches anything or runs anything."""
    tags = parsed(html).tags
    assert {t for t, _ in tags} <= ELEMENTS
    for tag, attrs in tags:
        assert not {a for a in attrs if a.startswith("on")}, (tag, attrs)
        assert "src" not in attrs and "srcset" not in attrs, (tag, attrs)
        if "href" in attrs:
            assert (attrs["href"] or "").startswith("#"), (tag, attrs)
        for value in attrs.values():
            assert "url(" not in (value or "").replace("url(#", ""), (tag, attrs)
    style = html[html.index("<style>") : html.index("</style>")]
    assert "url(" not in style and "@import" not in style and "@font-face" not in style
    assert html.count("<style>") == 1


def test_a_hostile_version_is_escaped_everywhere():
    v = hostile_version()
    report = H.Report("o<x>", 8, "00" * 32, 0, "ledger t", H.Verification(None, None, None), [v])
    html = H.page(report)
    loads_nothing(html)
    text = "".join(parsed(html).text)
    for raw in (
        '<script>alert("x")</script>',
        '"><img src=x onerror=alert(1)>',
        "javascript:alert(1)//<i>",
        "https://evil.example/<svg onload=alert(1)>",
        "</td></tr></table><h1>owned</h1>",
        "<b>m</b>:1",
        "needs <2>",
        "<iframe>",
        "risk[U+202E]evil",
    ):
        assert raw in text, raw
    assert "\u202e" not in html
    assert '<strong class="flag overridden">⚑ BREAK-GLASS</strong>' in html
    assert "OVERRIDDEN by break-glass seq 6</strong> approvals: needs &lt;2&gt;" in html


# --- the facts, on the demo ledger --------------------------------------------------------------


def test_a_version_s_facts_timeline_and_overrides(demo):
    v = gathered(demo, (TINY, 1))
    assert (v.status, v.live_in, v.registrant, v.registered_seq) == (
        "approved", ("production", "staging"), "erin", 9
    )  # fmt: skip
    assert [(e.seq, e.action, e.env, e.actor) for e in v.events] == [
        (9, "register", None, "erin"),
        (22, "approve", "staging", "bob"),
        (23, "deploy", "staging", "carol"),
        (27, "approve", "production", "bob"),
        (28, "break_glass", None, "admin"),
        (29, "deploy", "production", "carol"),
    ]
    assert v.events[-1].flags == (
        H.Flag(
            "approvals",
            "deploying fraud.detector.tiny:1 to production needs approvals from 2 distinct"
            " approvers for production, it has 1 (bob); get 1 more approval for production",
            28,
        ),
    )
    (o,) = v.overrides
    assert (o.seq, o.actor, o.target, o.rule, o.used_by) == (
        28, "admin", "deploy fraud.detector.tiny:1 to production", "approvals", 29
    )  # fmt: skip
    assert o.justification.startswith("INC-2291: edge fraud scoring is down")
    staging, production = v.checks
    assert (staging.seq, staging.policy, staging.required) == (23, None, 0)
    assert staging.approvals == (
        H.Approval("bob", 22, E.parse_instant("2026-07-02T10:00:00Z"), "staging", None,
                   "no policy was in force"),
    )  # fmt: skip
    assert (production.seq, production.policy.seq, production.required) == (29, 25, 2)  # type: ignore[union-attr]
    assert production.approvals == (
        H.Approval("bob", 27, E.parse_instant("2026-09-15T10:00:00Z"), "production", True,
                   "a distinct approver"),
    )  # fmt: skip
    assert v.checkpoint is None  # (attached by make(): see below)
    assert {(e.source, e.target, e.label) for e in v.edges} >= {
        ("model:fraud.detector.xgb:1", "model:fraud.detector.tiny:1", "distill"),
        ("model:fraud.detector.base:1", "model:fraud.detector.xgb:1", "finetune"),
    }


def test_a_newer_format_s_action_is_listed_and_changes_nothing(history):
    """An action this version does not know (a newer format's) is shown in the timeline
    with its payload, and replays as nothing, as in verify."""
    gather = R._Gather(history.ledger, [(XGB, 1)], 99)
    gather._event(E.Event(5, 0, "o", E.REGISTER, "alice", "k", {}, "", XGB, 1), "aa" * 32)
    alias = E.Event(6, 1, "o", "retire", "alice", "k", {"alias": "<champion>"}, "", XGB, 1)
    gather._event(alias, "bb" * 32)
    assert [(e.seq, e.action, e.details) for e in gather.builders[(XGB, 1)].events] == [
        (5, "register", None),
        (6, "retire", '{"alias": "<champion>"}'),
    ]
    assert gather.state.versions[(XGB, 1)].status == "registered"
    assert gather.state.next_seq == 6


def test_deployments_past_and_present(demo):
    at = E.parse_instant
    v = gathered(demo, (XGB, 1))
    assert v.deployments == [
        H.Deployment("staging", 11, at("2026-03-03T11:30:00Z"), "carol", False, 16,
                     at("2026-06-16T11:30:00Z"), "replaced by fraud.detector.xgb:2 (deployed by carol)"),
        H.Deployment("production", 13, at("2026-03-04T10:30:00Z"), "carol", False, 18,
                     at("2026-06-22T10:30:00Z"), "replaced by fraud.detector.xgb:2 (deployed by carol)"),
        H.Deployment("production", 19, at("2026-06-25T08:00:00Z"), "carol", True),
    ]  # fmt: skip
    # As the ledger stood on 24 June: version 2 had replaced it everywhere.
    before = gathered(demo, (XGB, 1), upto=18)
    assert [d.live for d in before.deployments] == [False, False]
    assert [e.seq for e in before.events][-1] == 13


def test_the_report_of_a_version_through_the_api(demo, tmp_path):
    led = Ledger.open(demo)
    out = tmp_path / "tiny.html"
    html = led.report(f"{TINY}:1", out=out)
    assert out.read_text(encoding="utf-8") == html
    loads_nothing(html)
    text = words(html)
    for fact in (
        "Audit report: fraud.detector.tiny:1",
        "✔ VERIFIED",
        "Registered by erin",
        "Artifact digest sha256:" + "7c" * 32,
        "Code https://git.example/risk/distill @ c0ffee1",
        "fraud.detector.xgb:1 distill",
        "⚑ OVERRIDDEN by break-glass seq 28 approvals: deploying fraud.detector.tiny:1",
        "28 ⚑ BREAK-GLASS",
        "INC-2291: edge fraud scoring is down",
        "bob 27 2026-09-15T10:00:00.000000Z production ✔ counts: a distinct approver",
        "Tree size 33 events (seq 0 to 32; the version's last: 29)",
        "Signed by notary",
        "Ledger origin demo.example/fraud-models",
        "Ledger head 33 events, last hash 084855e849c94b8971139e221554005a",
    ):
        assert fact in text, fact
    assert html.startswith('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">')
    assert re.search(r'<th scope="col">Event hash</th>', html)
    assert "@media print" in html


def test_every_version_live_in_an_environment_at_an_instant(demo):
    led = Ledger.open(demo)
    then = R.make(led, env="production", as_of="2026-06-24", now=NOW)
    assert "<h1>Audit report: every version live in production</h1>" in then
    text = words(then)
    assert "As of 2026-06-24T00:00:00.000000Z (events up to seq 18)" in text
    assert "fraud.detector.xgb:2 2026-06-22T10:30:00.000000Z 18 carol" in text
    assert len(re.findall(r'<section id="v\d+"', then)) == 1
    assert f"Generated</dt><dd><time>{E.format_ts(NOW)}</time>" in then
    now = R.make(led, env="production")
    assert [h for h in re.findall(r'<h2 id="v\d+-h">([^<]*)</h2>', now)] == [
        "fraud.detector.tiny:1",
        "fraud.detector.xgb:1",
    ]
    empty = R.make(led, env="production", as_of="2026-03-01")
    assert (
        '<p class="empty">Versions live in production (2026-03-01T00:00:00.000000Z (before the first event)): nothing was live in production.</p>'
        in empty
    )
    assert "<table><caption>Versions live" not in empty


def test_the_instant_is_a_cut_for_one_version_too(demo):
    led = Ledger.open(demo)
    html = R.make(led, f"{XGB}:2", as_of="2026-06-24")
    assert "approved; live in production, staging" in html and "rejected" not in html
    with pytest.raises(NotFoundError) as caught:
        R.make(led, f"{XGB}:2", as_of="2026-06-14")
    assert str(caught.value) == f"{XGB}:2 was not registered yet as of 2026-06-14T00:00:00.000000Z"
    with pytest.raises(NotFoundError) as caught:
        R.make(led, f"{XGB}:2", at_seq=13)
    assert str(caught.value) == f"{XGB}:2 was not registered yet at seq 13"


# --- the command --------------------------------------------------------------------------------


def test_the_command_writes_the_page_or_prints_it(demo, invoke, tmp_path):
    out = tmp_path / "tiny.html"
    r = invoke(["report", f"{TINY}:1", "--out", str(out), "--ledger", str(demo)])
    size = out.stat().st_size
    assert (r.exit_code, r.stdout, r.stderr) == (
        0, f"wrote {out}: the audit report of fraud.detector.tiny:1 ({size:,} bytes)\n", ""
    )  # fmt: skip
    r = invoke(["report", f"{TINY}:1", "--ledger", str(demo)])
    assert r.exit_code == 0 and r.stderr == ""

    def timeless(html: str) -> str:  # (the generation time differs)
        return re.sub(r"<time>[^<]*</time> by ledger", "", html)

    assert timeless(r.stdout) == timeless(out.read_text(encoding="utf-8"))
    r = invoke(
        ["report", "--all", "--env", "production", "--at-seq", "18", "--ledger", str(demo),
         "--out", str(tmp_path / "p.html")]
    )  # fmt: skip
    assert r.stdout.startswith(f"wrote {tmp_path / 'p.html'}: the audit report of every version")
    assert "just after event seq 18" in (tmp_path / "p.html").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["fraud.nope:1"], 3, "model fraud.nope is not registered"),
        ([f"{XGB}:9"], 3, f"{XGB}:9 is not registered (latest is {XGB}:3)"),
        (["--all"], 2, "--all needs --env ENV: the environment whose live versions to report"),
        ([], 2, "give MODEL:VERSION or --all --env ENV, not both or neither"),
        ([f"{XGB}:1", "--all", "--env", "production"], 2,
         "give MODEL:VERSION or --all --env ENV, not both or neither"),
        ([f"{XGB}:1", "--env", "production"], 2,
         "--env goes with --all (a report of MODEL:VERSION covers every env)"),
        (["--all", "--env", "Prod!"], 2, "invalid environment name 'Prod!': lowercase letters,"
         " digits, '_' and '-', starting with a letter, at most 32 characters (e.g. production)"),
        ([f"{XGB}:1", "--as-of", "2026-06-24", "--at-seq", "3"], 2,
         "give --as-of or --at-seq, not both"),
        ([f"{XGB}:1", "--at-seq", "99"], 2, "--at-seq 99 is beyond the last event (seq 32)"),
        (["xgb"], 2, "expected MODEL:VERSION (e.g. fraud.detector.xgb:4), got 'xgb'"),
    ],
)  # fmt: skip
def test_the_command_s_errors_are_one_line(demo, invoke, args, code, message):
    r = invoke(["report", *args, "--ledger", str(demo)])
    assert (r.exit_code, r.stdout, r.stderr) == (code, "", f"Error: {message}\n")


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
    }


def test_a_report_writes_nothing_in_the_ledger_folder(demo, invoke, tmp_path):
    before = listing(demo)
    r = invoke(["report", f"{XGB}:1", "--ledger", str(demo), "--out", str(demo / "r.html")])
    assert r.exit_code == 2 and "is inside the ledger folder" in r.stderr
    r = invoke(["report", f"{XGB}:1", "--ledger", str(demo), "--out", str(tmp_path / "r.html")])
    assert r.exit_code == 0
    r = invoke(["report", "--all", "--env", "staging", "--ledger", str(demo)])
    assert r.exit_code == 0
    assert listing(demo) == before


def test_a_report_on_an_unverified_ledger_says_so(history, invoke, tmp_path, verified_dir):
    args = ["report", "fraud.detector.xgb:1", "--ledger", str(history.path)]
    r = invoke([*args, "--out", str(tmp_path / "r.html")])
    warning = (
        "Warning: this ledger has not been verified on this machine (no record of ledger"
        f" verify in {verified_dir}); run ledger verify\n"
    )
    assert (r.exit_code, r.stderr) == (0, warning)
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert (
        '<p class="banner violation"><strong>⚠ NOT VERIFIED</strong>: this ledger has not'
        " been verified on this machine"
    ) in html
    assert "<p><strong>This ledger has not been verified on this machine</strong>" in html
    assert "No stored checkpoint covers the events of fraud.detector.xgb:1" in html
    r = invoke([*args, "--require-verified", "--out", str(tmp_path / "strict.html")])
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr == warning.replace("Warning", "Error")
    assert not (tmp_path / "strict.html").exists()
    history.ledger.verify()
    html = history.ledger.report("fraud.detector.xgb:1")
    assert "✔ VERIFIED" in html and "NOT VERIFIED" not in html
    assert (
        f"ledger verify accepted events 0 to 10 of this ledger on this machine, head <code>{history.ledger.store.tail()[1].hex()}</code>; record <code>{verified_dir}/"
        in html
    )


# --- in a real browser ----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Flags that keep the browser's own background traffic (sign-in, updates, time) down,
#: and send every host name nowhere: a page that asked for anything would fail to get it.
QUIET = [
    "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--host-resolver-rules=MAP * ~NOTFOUND",
]  # fmt: skip


def chromium(page: Path, work: Path) -> tuple[str, list[str]]:
    """Open ``page`` in headless Chromium: the DOM it rendered, and the URLs the page
    itself requested (from the network log: requests made for a page have an initiator;
    the browser's own, e.g. its sign-in check, are "not an origin")."""
    assert CHROMIUM is not None
    netlog = work / f"{page.stem}.netlog.json"
    cmd = [CHROMIUM, *QUIET, f"--user-data-dir={work / ('profile-' + page.stem)}",
           f"--log-net-log={netlog}", "--dump-dom", page.as_uri()]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    raw = netlog.read_text(encoding="utf-8").rstrip().rstrip(",")
    try:
        log = json.loads(raw)
    except json.JSONDecodeError:  # (a log cut short at exit lacks its closing brackets)
        log = json.loads(raw + "]}")
    types = {v: k for k, v in log["constants"]["logEventTypes"].items()}
    asked = []
    for ev in log["events"]:
        params = ev.get("params") or {}
        if (
            types.get(ev["type"]) == "URL_REQUEST_START_JOB"
            and "url" in params
            and params.get("initiator") != "not an origin"
            and params["url"] != page.as_uri()
        ):
            asked.append(params["url"])
    return r.stdout, asked


def hostile_ledger(team) -> Ledger:
    """A ledger whose every free text is markup, script or a bidirectional override."""
    led, k = team.ledger, team.keys
    led.set_policy({"approvals": {"required": {"production": 1}}}, key=k["admin"])
    led.register(
        "m.hostile",
        key=k["alice"],
        artifact={"digest": "sha256:" + "ab" * 32},
        artifact_uri='"><img src=x onerror=alert(1)>',
        datasets=[{"name": "train", "uri": "s3://b/<script>alert(2)</script>.parquet"}],
        code={"repo": "https://evil.example/<svg onload=alert(3)>", "commit": "3f2a9c1"},
        tags={"team": "risk\u202egnp.exe"},
        metadata={"<iframe src=https://evil.example/>": "</td></tr></table><h1>owned</h1>"},
        description="<style>body{background:url(https://evil.example/x)}</style>",
    )
    led.approve("m.hostile", 1, "staging", key=k["bob"], comment="<object data=x>")
    led.break_glass(
        "deploy", "m.hostile", 1, "production", rule="approvals",
        justification='<a href="https://evil.example/">click</a>', key=k["admin"],
    )  # fmt: skip
    led.deploy(
        "m.hostile", 1, "production", key=k["carol"], comment="<link rel=stylesheet href=//e>"
    )
    led.verify()
    return led


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_the_page_in_a_real_browser_shows_the_facts_and_requests_nothing(demo, team, tmp_path):
    page = tmp_path / "tiny.html"
    Ledger.open(demo).report(f"{TINY}:1", out=page)
    dom, asked = chromium(page, tmp_path)
    assert asked == []
    seen = parsed(dom)
    text = words(dom)
    for fact in (
        "Audit report: fraud.detector.tiny:1",
        "✔ VERIFIED",
        "Registered by erin",
        "sha256:" + "7c" * 32,
        "⚑ OVERRIDDEN by break-glass seq 28",
        "INC-2291: edge fraud scoring is down",
        "✔ counts: a distinct approver",
        "Signed by notary",
        "model · this version",  # (the SVG's text, in the DOM)
    ):
        assert fact in text, fact
    drawn = [a for t, a in seen.tags if t == "g" and "node" in (a.get("class") or "").split()]
    assert len(drawn) == len(gathered(demo, (TINY, 1)).nodes) == 8

    # Hostile text stays text in the browser: no element or handler comes out of it.
    evil = tmp_path / "hostile.html"
    hostile_ledger(team).report("m.hostile:1", out=evil)
    dom, asked = chromium(evil, tmp_path)
    assert asked == []
    seen = parsed(dom)
    assert {t for t, _ in seen.tags} <= ELEMENTS
    assert not [a for _, attrs in seen.tags for a in attrs if a.startswith("on")]
    text = "".join(seen.text)
    for raw in (
        '"><img src=x onerror=alert(1)>',
        "s3://b/<script>alert(2)</script>.parquet",
        "<style>body{background:url(https://evil.example/x)}</style>",
        '<a href="https://evil.example/">click</a>',
        "risk[U+202E]gnp.exe",
        "⚑ OVERRIDDEN by break-glass seq 8",
    ):
        assert raw in text, raw

    # The check itself works: a page that does load things is caught.
    control = tmp_path / "control.html"
    control.write_text(
        '<!DOCTYPE html><html lang="en"><head><title>c</title>'
        '<link rel="stylesheet" href="https://cdn.example.org/x.css"></head>'
        '<body><img src="http://img.example.com/a.png" alt=""></body></html>',
        encoding="utf-8",
    )
    _, asked = chromium(control, tmp_path)
    assert sorted(asked) == ["http://img.example.com/a.png", "https://cdn.example.org/x.css"]


def test_ci_installs_chromium_as_it_installs_graphviz():
    run = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text(encoding="utf-8")
    assert "apt-get install -y -q chromium" in run
    assert os.access(Path(__file__).resolve().parents[1] / ".ci" / "run", os.X_OK)
