"""Lineage graph, up/down/impact questions, as-of, the CLI tree, and cycle refusal."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import events as E
from ledger import lineage as L
from ledger.errors import InputError, NotFoundError, RuleViolation

CORPUS = "sha256:" + "c0" * 32
CHAT = "sha256:" + "da" * 32
REPO = "https://git.example/ml/llm"


def family(team):
    """The scripted family (seq in brackets; seq 0-4 are genesis and key additions)::

        llm.base:1 [5]  corpus@CORPUS, REPO@aaaaaaa
        ├── finetune -> llm.chat:1 [6]  chat@CHAT, REPO@bbbbbbb
        │   └── distill -> llm.tiny:1 [8]  REPO@ccccccc
        └── finetune -> llm.code:1 [7]  s3://data/code (no digest), REPO@bbbbbbb
            └── quantize -> llm.q4:1 [9]  (no data, no code)
        llm.tiny:1 + llm.q4:1 -- merge -> llm.merged:1 [10]  eval=chat@CHAT, REPO@ddddddd

    then: approve merged prod [11], deploy merged prod [12], deploy tiny staging [13],
    deploy q4 edge [14], undeploy q4 edge [15], reject code [16], deprecate base [17].
    """
    led, k = team.ledger, team.keys
    a = k["alice"]
    led.register(
        "llm.base",
        key=a,
        datasets=[f"corpus=s3://data/corpus@{CORPUS}"],
        code=f"{REPO}@aaaaaaa",
    )
    led.register(
        "llm.chat",
        key=a,
        datasets=[f"chat=s3://data/chat@{CHAT}"],
        code=f"{REPO}@bbbbbbb",
        parents=["llm.base:1=finetune"],
    )
    led.register(
        "llm.code",
        key=a,
        datasets=["code=s3://data/code"],
        code=f"{REPO}@bbbbbbb",
        parents=["llm.base:1=finetune"],
    )
    led.register("llm.tiny", key=a, code=f"{REPO}@ccccccc", parents=["llm.chat:1=distill"])
    led.register("llm.q4", key=a, parents=["llm.code:1=quantize"])
    led.register(
        "llm.merged",
        key=a,
        datasets=[f"eval=s3://data/chat@{CHAT}"],
        code=f"{REPO}@ddddddd",
        parents=["llm.tiny:1=merge", "llm.q4:1=merge"],
    )
    led.approve("llm.merged", 1, "production", key=k["bob"])
    led.deploy("llm.merged", 1, "production", key=k["carol"])
    led.deploy("llm.tiny", 1, "staging", key=k["carol"])
    led.deploy("llm.q4", 1, "edge", key=k["carol"])
    led.undeploy("llm.q4", 1, "edge", key=k["carol"])
    led.reject("llm.code", 1, key=k["bob"])
    led.deprecate("llm.base", 1, key=a)
    return led


@pytest.fixture
def fam(team):
    """A fresh scripted family, for tests that write."""
    family(team)
    return team


def make_team(root):
    """What conftest's ``team`` fixture makes, in ``root`` (for module-scoped fixtures)."""
    from ledger import Ledger, SigningKey
    from ledger.keys import write_key_files

    from .conftest import TEAM, Team

    keys = {name: SigningKey.generate() for name in TEAM}
    files = {}
    (root / "keys").mkdir()
    for name, key in keys.items():
        files[name] = root / "keys" / f"{name}.pem"
        write_key_files(files[name], key)
    led = Ledger.init(root / "reg", keys["admin"], "admin", origin="test.example/reg")
    for name, role in TEAM.items():
        if name != "admin":
            led.add_key(keys[name].public_key, name, role, key=keys["admin"])
    return Team(led, root / "reg", keys, files)


@pytest.fixture(scope="module")
def family_ro(tmp_path_factory):
    """The scripted family, built once per module: only for tests that do not write."""
    t = make_team(tmp_path_factory.mktemp("family"))
    family(t)
    assert t.ledger.verify().ok  # (so that its reads print no warning)
    return t


def m(ref: str) -> str:
    name, v = ref.rsplit(":", 1)
    return L.model_id(name, int(v))


D_CORPUS = L.dataset_id("s3://data/corpus", CORPUS)
D_CHAT = L.dataset_id("s3://data/chat", CHAT)
D_CODE = L.dataset_id("s3://data/code", None)
C = {x: L.commit_id(REPO, x * 7) for x in "abcd"}


def test_graph_nodes_edges_and_evidence(family_ro):
    fam = family_ro
    g = fam.ledger.lineage_graph()
    kinds = {}
    for _, d in g.nodes(data=True):
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    # 6 versions; 3 datasets (chat named twice is one node); 4 commits; 5 actors; 3 envs
    assert kinds == {"model": 6, "dataset": 3, "commit": 4, "actor": 5, "env": 3}
    ekinds = {}
    for _, _, d in g.edges(data=True):
        ekinds[d["kind"]] = ekinds.get(d["kind"], 0) + 1
    assert ekinds == {
        "registered_by": 6,
        "derived_from": 6,
        "trained_on": 4,
        "built_from": 5,
        "approved_by": 1,
        "deployed_to": 3,
        "rejected_by": 1,
        "deprecated": 1,
    }
    hashes = dict(
        zip(
            *(fam.ledger.events(columns=["seq", "hash"])[c].to_pylist() for c in ("seq", "hash")),
            strict=True,
        )
    )
    # every node and edge points back to the event that justifies it
    for _, d in g.nodes(data=True):
        assert d["hash"] == hashes[d["seq"]].hex()
    for _, _, d in g.edges(data=True):
        assert d["hash"] == hashes[d["seq"]].hex()
    (merge,) = [d for _, v, d in g.out_edges(m("llm.merged:1"), data=True) if v == m("llm.q4:1")]
    assert (merge["kind"], merge["relation"], merge["seq"]) == ("derived_from", "merge", 10)
    assert g.nodes[m("llm.merged:1")]["status"] == "approved"
    assert g.nodes[m("llm.code:1")]["status"] == "rejected"
    assert g.nodes[m("llm.base:1")]["status"] == "deprecated"
    assert g.nodes[m("llm.q4:1")]["status"] == "registered"
    (q4dep,) = [
        d for _, _, d in g.out_edges(m("llm.q4:1"), data=True) if d["kind"] == "deployed_to"
    ]
    assert (q4dep["seq"], q4dep["live"], q4dep["until_seq"], q4dep["actor"]) == (
        14,
        False,
        15,
        "carol",
    )
    assert g.nodes[D_CODE] == {
        "kind": "dataset",
        "label": "code",
        "uri": "s3://data/code",
        "name": "code",
        "seq": 7,
        "ts": g.nodes[m("llm.code:1")]["ts"],
        "hash": hashes[7].hex(),
    }
    for _, d in g.nodes(data=True):
        assert all(type(v) in (str, int, bool) for v in d.values())


def test_up_down_by_hand(family_ro):
    fam = family_ro
    g = fam.ledger.lineage_graph()
    assert L.up(g, m("llm.merged:1")) == {
        m("llm.merged:1"): 0,
        m("llm.tiny:1"): 1,
        m("llm.q4:1"): 1,
        D_CHAT: 1,
        C["d"]: 1,
        m("llm.chat:1"): 2,
        m("llm.code:1"): 2,
        C["c"]: 2,
        m("llm.base:1"): 3,
        C["b"]: 3,
        D_CODE: 3,
        D_CORPUS: 4,
        C["a"]: 4,
    }
    assert set(L.up(g, m("llm.merged:1"), depth=1)) == {
        m("llm.merged:1"),
        m("llm.tiny:1"),
        m("llm.q4:1"),
        D_CHAT,
        C["d"],
    }
    assert L.down(g, m("llm.base:1")) == {
        m("llm.base:1"): 0,
        m("llm.chat:1"): 1,
        m("llm.code:1"): 1,
        m("llm.tiny:1"): 2,
        m("llm.q4:1"): 2,
        m("llm.merged:1"): 3,
    }
    assert set(L.down(g, m("llm.code:1"))) == {m("llm.code:1"), m("llm.q4:1"), m("llm.merged:1")}
    assert set(L.down(g, m("llm.base:1"), depth=1)) == {
        m("llm.base:1"),
        m("llm.chat:1"),
        m("llm.code:1"),
    }
    assert L.up(g, m("llm.base:1")) == {m("llm.base:1"): 0, D_CORPUS: 1, C["a"]: 1}
    assert L.down(g, m("llm.merged:1")) == {m("llm.merged:1"): 0}


def refs(res: L.Impact) -> set[str]:
    return {v["ref"] for v in res.versions}


def live(res: L.Impact) -> set[tuple[str, str]]:
    return {(d["env"], d["ref"]) for d in res.deployments}


def test_impact_by_hand(family_ro):
    fam = family_ro
    g = fam.ledger.lineage_graph()
    res = L.impact(g, dataset=CHAT)
    assert res.sources == [D_CHAT]
    assert refs(res) == {"llm.chat:1", "llm.tiny:1", "llm.merged:1"}
    assert live(res) == {("production", "llm.merged:1"), ("staging", "llm.tiny:1")}
    assert [(v["ref"], v["hops"], v["via"]) for v in res.versions] == [
        ("llm.chat:1", 1, "trained on chat"),
        ("llm.merged:1", 1, "trained on chat"),
        ("llm.tiny:1", 2, "distill llm.chat:1"),
    ]
    res = L.impact(g, dataset="s3://data/code")
    assert refs(res) == {"llm.code:1", "llm.q4:1", "llm.merged:1"}
    assert live(res) == {("production", "llm.merged:1")}  # q4 was taken out of edge
    assert refs(L.impact(g, dataset="s3://data/chat")) == refs(L.impact(g, dataset=CHAT))
    assert refs(L.impact(g, commit="bbbbbbb")) == {
        "llm.chat:1",
        "llm.code:1",
        "llm.tiny:1",
        "llm.q4:1",
        "llm.merged:1",
    }
    assert refs(L.impact(g, commit=f"{REPO}@ccccccc")) == {"llm.tiny:1", "llm.merged:1"}
    assert refs(L.impact(g, commit="d" * 40)) == {"llm.merged:1"}  # a longer spelling matches
    res = L.impact(g, model="llm.q4:1")
    assert refs(res) == {"llm.q4:1", "llm.merged:1"}
    assert res.versions[0]["via"] == "(source)"
    assert live(L.impact(g, model="llm.base:1")) == {
        ("production", "llm.merged:1"),
        ("staging", "llm.tiny:1"),
    }


def test_facade_methods(family_ro):
    led = family_ro.ledger
    sub = led.lineage("llm.code:1", "down")
    assert sorted(n for n in sub if n.startswith("model:")) == [
        m("llm.code:1"),
        m("llm.merged:1"),
        m("llm.q4:1"),
    ]
    assert {n for n in sub if not n.startswith("model:")} == {
        "actor:alice",
        "actor:bob",
        "actor:carol",
        "env:edge",
        "env:production",
    }
    sub = led.lineage("llm.merged:1", "up", depth=1, at_seq=10)
    assert set(sub) == {
        m("llm.merged:1"),
        m("llm.tiny:1"),
        m("llm.q4:1"),
        D_CHAT,
        C["d"],
        "actor:alice",
    }
    assert refs(led.impact(dataset=CHAT[7:], at_seq=9)) == {"llm.chat:1", "llm.tiny:1"}


def test_impact_errors(family_ro):
    fam = family_ro
    g = fam.ledger.lineage_graph()
    with pytest.raises(
        NotFoundError, match="no registered version was trained on a dataset with digest"
    ):
        L.impact(g, dataset="sha256:" + "00" * 32)
    with pytest.raises(NotFoundError, match="built from commit eeeeeee"):
        L.impact(g, commit="eeeeeee")
    with pytest.raises(InputError, match="invalid commit"):
        L.impact(g, commit="xyz")
    with pytest.raises(InputError, match="exactly one"):
        L.impact(g, commit="aaaaaaa", model="llm.q4:1")
    with pytest.raises(NotFoundError, match=r"llm.q4:2 is not registered \(latest is llm.q4:1\)"):
        L.impact(g, model="llm.q4:2")


def test_as_of_and_at_seq(family_ro):
    fam = family_ro
    led = fam.ledger
    g = led.lineage_graph(at_seq=9)  # before the merge
    assert m("llm.merged:1") not in g
    assert refs(L.impact(g, dataset=CHAT)) == {"llm.chat:1", "llm.tiny:1"}
    assert L.impact(g, dataset=CHAT).deployments == []
    g = led.lineage_graph(at_seq=14)  # q4 live on edge, code not yet rejected
    assert live(L.impact(g, model="llm.code:1")) == {
        ("edge", "llm.q4:1"),
        ("production", "llm.merged:1"),
    }
    assert g.nodes[m("llm.code:1")]["status"] == "registered"
    ts = led.events(columns=["seq", "ts"]).to_pylist()
    micros = {r["seq"]: int(r["ts"].timestamp() * 1_000_000) for r in ts}
    g = led.lineage_graph(as_of=micros[12])
    assert live(L.impact(g, model="llm.merged:1")) == {("production", "llm.merged:1")}
    assert m("llm.merged:1") in g and L.live_deployments(g, m("llm.tiny:1")) == []


def test_build_from_plain_rows_equals_fast_path(family_ro):
    fam = family_ro
    led = fam.ledger
    table = led.events(columns=L.COLUMNS)
    rows = table.to_pylist()
    for r in rows:
        r["ts"] = int(r["ts"].timestamp() * 1_000_000)
    fast = L.from_table(table)
    plain = L.build(rows)
    assert dict(fast.nodes(data=True)) == dict(plain.nodes(data=True))
    assert sorted(fast.edges(keys=True, data=True), key=str) == sorted(
        plain.edges(keys=True, data=True), key=str
    )
    sub = L.build(rows, at_seq=9)
    assert set(sub) == set(led.lineage_graph(at_seq=9))


def test_parse_as_of():
    assert E.parse_instant("1970-01-01T00:00:01Z") == 1_000_000
    assert E.parse_instant("1970-01-01T01:00:00+01:00") == 0
    assert E.parse_instant("1970-01-02") == 86_400_000_000
    assert E.parse_instant("1970-01-01T00:00:00.000002") == 2
    with pytest.raises(InputError, match="invalid --as-of timestamp 'yesterday'"):
        E.parse_instant("yesterday")


# --- the CLI -------------------------------------------------------------------------------------

UP_MERGED = """\
llm.merged:1  approved  live: production  (seq 10, alice)
├── merge: llm.q4:1  registered  (seq 9, alice)
│   └── quantize: llm.code:1  rejected  (seq 7, alice)
│       ├── finetune: llm.base:1  deprecated  (seq 5, alice)
│       │   ├── dataset s3://data/corpus @sha256:c0c0c0c0c0c0…
│       │   └── code https://git.example/ml/llm@aaaaaaa
│       ├── dataset s3://data/code
│       └── code https://git.example/ml/llm@bbbbbbb
├── merge: llm.tiny:1  registered  live: staging  (seq 8, alice)
│   ├── distill: llm.chat:1  registered  (seq 6, alice)
│   │   ├── finetune: llm.base:1  deprecated  (seq 5, alice)  (see above)
│   │   ├── dataset s3://data/chat @sha256:dadadadadada…
│   │   └── code https://git.example/ml/llm@bbbbbbb
│   └── code https://git.example/ml/llm@ccccccc
├── dataset s3://data/chat @sha256:dadadadadada…
└── code https://git.example/ml/llm@ddddddd
"""

DOWN_BASE = """\
llm.base:1  deprecated  (seq 5, alice)
├── finetune: llm.chat:1  registered  (seq 6, alice)
│   └── distill: llm.tiny:1  registered  live: staging  (seq 8, alice)
│       └── merge: llm.merged:1  approved  live: production  (seq 10, alice)
└── finetune: llm.code:1  rejected  (seq 7, alice)
    └── quantize: llm.q4:1  registered  (seq 9, alice)
        └── merge: llm.merged:1  approved  live: production  (seq 10, alice)
"""


def test_cli_tree_up_and_down(family_ro, invoke):
    fam = family_ro
    r = invoke(["lineage", "llm.merged:1"], env=fam.env())
    assert (r.exit_code, r.stdout, r.stderr) == (0, UP_MERGED, "")
    r = invoke(["lineage", "llm.merged:1", "--up"], env=fam.env())
    assert r.stdout == UP_MERGED
    r = invoke(["lineage", "llm.base:1", "--down"], env=fam.env())
    assert (r.exit_code, r.stdout) == (0, DOWN_BASE)
    r = invoke(["lineage", "llm.base:1", "--down", "--depth", "1"], env=fam.env())
    assert r.stdout == "\n".join(DOWN_BASE.splitlines()[i] for i in (0, 1, 4)) + "\n"
    r = invoke(["lineage", "llm.base:1", "--down", "--at-seq", "6"], env=fam.env())
    assert r.stdout == (
        "llm.base:1  registered  (seq 5, alice)\n"
        "└── finetune: llm.chat:1  registered  (seq 6, alice)\n"
    )


def test_cli_tree_to_file(family_ro, invoke, tmp_path):
    fam = family_ro
    out = tmp_path / "tree.txt"
    r = invoke(["lineage", "llm.merged:1", "--out", str(out)], env=fam.env())
    assert (r.exit_code, r.stdout) == (0, "")
    assert out.read_text(encoding="utf-8") == UP_MERGED


def test_cli_impact(family_ro, invoke):
    fam = family_ro
    r = invoke(["impact", "--dataset", CHAT, "--format", "csv"], env=fam.env())
    assert (r.exit_code, r.stderr) == (0, "")
    assert r.stdout == (
        "ref,hops,via,status,registered_seq,live_in\n"
        "llm.chat:1,1,trained on chat,registered,6,\n"
        "llm.merged:1,1,trained on chat,approved,10,production\n"
        "llm.tiny:1,2,distill llm.chat:1,registered,8,staging\n"
    )
    r = invoke(["impact", "--commit", "ccccccc", "--format", "json"], env=fam.env())
    doc = json.loads(r.stdout)
    assert doc["sources"] == [C["c"]]
    assert [v["ref"] for v in doc["versions"]] == ["llm.tiny:1", "llm.merged:1"]
    assert [
        (d["env"], d["ref"], d["deploy_seq"], d["deployed_by"]) for d in doc["deployments"]
    ] == [
        ("production", "llm.merged:1", 12, "carol"),
        ("staging", "llm.tiny:1", 13, "carol"),
    ]
    r = invoke(["impact", "--model", "llm.q4:1"], env=fam.env())
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0] == "Impact of model llm.q4:1: 2 version(s) downstream, 1 live deployment(s)"
    assert "Live deployments affected" in r.stdout
    assert [ln for ln in lines if "llm.merged:1" in ln and "production" in ln]
    r = invoke(["impact", "--model", "llm.q4:1", "--at-seq", "9"], env=fam.env())
    assert r.stdout.splitlines()[0].endswith("1 version(s) downstream, 0 live deployment(s)")
    assert r.stdout.rstrip().endswith("No live deployment is affected.")


@pytest.mark.parametrize(
    ("args", "code", "err"),
    [
        (["lineage", "nope:1"], 3, "Error: model nope is not registered\n"),
        (["lineage", "llm.q4:7"], 3, "Error: llm.q4:7 is not registered (latest is llm.q4:1)\n"),
        (
            ["lineage", "llm.q4"],
            2,
            "Error: expected MODEL:VERSION (e.g. fraud.detector.xgb:4), got 'llm.q4'\n",
        ),
        (
            ["lineage"],
            2,
            "Error: give MODEL:VERSION or --all (the whole graph), not both or neither\n",
        ),
        (
            ["lineage", "--all"],
            2,
            "Error: --all needs an export --format (e.g. graphml); the tree needs a root\n",
        ),
        (["lineage", "llm.q4:1", "--format", "png"], 2, "Error: --format png needs --out FILE\n"),
        (
            ["lineage", "llm.q4:1", "--as-of", "soon"],
            2,
            "Error: invalid --as-of timestamp 'soon': use YYYY-MM-DD[THH:MM[:SS[.ffffff]]]"
            "[Z|+HH:MM], e.g. 2026-03-01T09:00:00Z\n",
        ),
        (["impact"], 2, "Error: give exactly one of --dataset, --model or --commit\n"),
        (
            ["impact", "--dataset", "s3://nowhere"],
            3,
            "Error: no registered version was trained on a dataset with URI s3://nowhere\n",
        ),
        (
            ["impact", "--commit", "XYZ"],
            2,
            "Error: invalid commit 'XYZ': expected 7 to 64 lowercase hex digits, optionally"
            " after REPOSITORY@\n",
        ),
        (
            ["impact", "--model", "llm.merged:1", "--at-seq", "9"],
            3,
            "Error: model llm.merged is not registered\n",
        ),
    ],
)
def test_cli_errors(family_ro, invoke, args, code, err):
    fam = family_ro
    r = invoke(args, env=fam.env())
    assert (r.exit_code, r.stdout, r.stderr) == (code, "", err)


# --- cycles are refused at register time ----------------------------------------------------------


def test_parent_registered_later_is_refused(fam, invoke):
    before = fam.ledger.events(columns=["seq"]).num_rows
    with pytest.raises(NotFoundError, match=r"parent llm\.next:1 is not registered"):
        fam.ledger.register("llm.prev", key=fam.keys["alice"], parents=["llm.next:1=finetune"])
    r = invoke(["register", "llm.prev", "--parent", "llm.next:1=finetune"], env=fam.env("alice"))
    assert (r.exit_code, r.stdout, r.stderr) == (
        3,
        "",
        "Error: parent llm.next:1 is not registered; parents must be registered first\n",
    )
    assert fam.ledger.events(columns=["seq"]).num_rows == before


def test_self_parent_is_refused(fam, invoke):
    before = fam.ledger.events(columns=["seq"]).num_rows
    with pytest.raises(RuleViolation, match="a version cannot be its own parent"):
        fam.ledger.register("llm.q4", key=fam.keys["alice"], parents=["llm.q4:2=retrain"])
    r = invoke(["register", "llm.q4", "--parent", "llm.q4:2=retrain"], env=fam.env("alice"))
    assert (r.exit_code, r.stdout, r.stderr) == (
        4,
        "",
        "Error: llm.q4:2 names itself as a parent; a version cannot be its own parent\n",
    )
    r = invoke(["register", "llm.new", "--parent", "llm.new:1=retrain"], env=fam.env("alice"))
    assert r.exit_code == 4
    assert fam.ledger.events(columns=["seq"]).num_rows == before
    assert fam.ledger.lineage_graph().number_of_nodes() == 21


# --- property: the graph agrees with a naive closure over random histories -------------------------


@st.composite
def histories(draw):
    n = draw(st.integers(1, 12))
    regs = []
    for i in range(n):
        parents = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        ds = draw(st.sets(st.integers(0, 3), max_size=2))
        regs.append((sorted(parents), sorted(ds)))
    return regs


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_graph_matches_naive_closure(regs):
    rows = []
    for i, (parents, ds) in enumerate(regs):
        payload = {
            "parents": [{"model": f"m{p}", "version": 1, "relation": "derived"} for p in parents],
            "datasets": [{"name": f"d{d}", "uri": f"s3://d/{d}"} for d in ds],
        }
        rows.append(
            {
                "seq": i,
                "ts": i,
                "action": "register",
                "model": f"m{i}",
                "version": 1,
                "actor": "alice",
                "payload": json.dumps(payload),
                "hash": "00",
            }
        )
    g = L.build(rows)
    anc: dict[int, set[int]] = {}
    for i, (parents, _) in enumerate(regs):
        anc[i] = set(parents).union(*(anc[p] for p in parents))
    for i in range(len(regs)):
        up_models = {n for n in L.up(g, f"model:m{i}:1") if n.startswith("model:")}
        assert up_models == {f"model:m{j}:1" for j in anc[i] | {i}}
        down_models = set(L.down(g, f"model:m{i}:1"))
        assert down_models == {f"model:m{j}:1" for j in anc if i in anc[j] or j == i}
    for d in range(4):
        users = {i for i, (_, ds) in enumerate(regs) if d in ds}
        want = {j for j in anc if j in users or anc[j] & users}
        if not users:
            continue
        got = {v["ref"] for v in L.impact(g, dataset=f"s3://d/{d}").versions}
        assert got == {f"m{j}:1" for j in want}


# --- the fast path (from_table) equals the reference (build), order included ---------------------


def assert_identical(fast, ref):
    """Same nodes, edges, keys and attribute dicts, each inserted in the same order."""
    assert list(fast._node) == list(ref._node)
    for n, d in ref._node.items():
        assert list(fast._node[n].items()) == list(d.items()), n
    for name in ("_succ", "_pred"):
        a, b = getattr(fast, name), getattr(ref, name)
        assert list(a) == list(b)
        for n, nbrs in b.items():
            assert list(a[n]) == list(nbrs), (name, n)
            for v, keyed in nbrs.items():
                assert list(a[n][v]) == list(keyed), (name, n, v)
                for k, d in keyed.items():
                    assert list(a[n][v][k].items()) == list(d.items()), (name, n, v, k)
    # one key dict shared by both directions, as networkx itself does
    for u, nbrs in fast._succ.items():
        for v, keyed in nbrs.items():
            assert fast._pred[v][u] is keyed


def plain_rows(table):
    """The table's rows as build takes them, ts as exact µs."""
    import pyarrow as pa

    rows = table.to_pylist()
    for r, micros in zip(rows, table["ts"].cast(pa.int64()).to_pylist(), strict=True):
        r["ts"] = micros
    return rows


def assert_fast_path_equals_build(table, fast_path=True):
    if fast_path:  # the table is regular: the columnar path itself must build it
        assert_identical(L._Columns(table).graph(), L.build(plain_rows(table)))
    assert_identical(L.from_table(table), L.build(plain_rows(table)))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A small ledger from the benchmark generator (every kind of event and lineage)."""
    from benchmarks import generator

    built = generator.build(tmp_path_factory.mktemp("gen") / "led", events=4000, seed=3)
    return built.ledger.events(columns=L.COLUMNS)


def test_from_table_identical_to_build_on_generated_ledger(generated):
    table = generated
    assert_fast_path_equals_build(table)
    g = L.from_table(table)
    kinds = {d["kind"] for _, _, d in g.edges(data=True)}
    assert kinds == {
        "registered_by",
        "derived_from",
        "trained_on",
        "built_from",
        "approved_by",
        "deployed_to",
        "rejected_by",
        "deprecated",
    }
    assert any(not d["live"] for _, _, d in g.edges(data=True) if d["kind"] == "deployed_to")


def test_from_table_identical_to_build_at_cuts(generated):
    table = generated
    n = table.num_rows
    for at_seq in (0, 5, n // 3, n // 2 + 7, n - 2):
        assert_identical(
            L.from_table(L.select(table, at_seq=at_seq)),
            L.build(plain_rows(table), at_seq=at_seq),
        )
    ts = sorted(plain_rows(table.select(["ts"])), key=lambda r: r["ts"])
    for i in (n // 4, (3 * n) // 4):
        when = ts[i]["ts"]
        assert_identical(
            L.from_table(L.select(table, as_of=when)), L.build(plain_rows(table), as_of=when)
        )


def test_from_table_identical_to_build_on_family(family_ro):
    table = family_ro.ledger.events(columns=L.COLUMNS)
    assert_fast_path_equals_build(table)
    for at_seq in range(table.num_rows):
        assert_identical(
            L.from_table(L.select(table, at_seq=at_seq)),
            L.build(plain_rows(table), at_seq=at_seq),
        )


def odd_table(events):
    """A lineage table from (action, model, version, actor, payload) tuples; payload as a
    dict (written as canonical-looking JSON) or as text."""
    import hashlib

    import pyarrow as pa

    from ledger.store import SCHEMA

    cols = {c: [] for c in L.COLUMNS}
    for seq, (action, model, version, actor, payload) in enumerate(events):
        text = (
            payload
            if isinstance(payload, str)
            else json.dumps(payload, sort_keys=True, separators=(",", ":"))
        )
        cols["seq"].append(seq)
        cols["ts"].append(1_700_000_000_000_000 + seq * 1_000_001)
        cols["action"].append(action)
        cols["model"].append(model)
        cols["version"].append(version)
        cols["actor"].append(actor)
        cols["payload"].append(text)
        cols["hash"].append(hashlib.sha256(str(seq).encode()).digest())
    return pa.Table.from_pydict(cols, schema=pa.schema([SCHEMA.field(c) for c in L.COLUMNS]))


KEYS = [
    ("genesis", None, None, "admin", {"actor": "admin", "roles": ["admin"]}),
    ("key_add", None, None, "admin", {"actor": "alice", "roles": ["registrar"]}),
    ("key_add", None, None, "admin", {"actor": "bob", "roles": ["approver", "deployer"]}),
    ("key_add", None, None, "admin", {"actor": "alice", "roles": ["deployer"]}),  # roles merge
]


def test_from_table_identical_to_build_on_odd_payloads():
    ds = {"uri": "s3://d/a", "digest": "sha256:" + "ab" * 32, "name": "train"}
    table = odd_table(
        [
            *KEYS,
            ("deploy", "m", 1, "bob", {"env": "prod"}),  # before m:1 is registered: ignored
            (
                "register",
                "m",
                1,
                "alice",
                {
                    "artifact": {"uri": "s3://m/1"},  # no digest
                    "description": "",
                    "datasets": [ds, {"uri": "s3://d/b"}, {"uri": "s3://d/c", "name": ""}],
                    "code": {"repo": "https://git/x"},  # no commit: no code node
                    "parents": [],
                },
            ),
            (
                "register",
                "m",
                2,
                "carol",  # an actor no key event named
                {
                    "parents": [
                        {"model": "m", "version": 1, "relation": "retrain"},
                        {"model": "ghost", "version": 3, "relation": "merge"},  # never registered
                        {"model": "m", "version": 9, "relation": "merge"},  # registered later
                        {"model": "m", "version": 1, "relation": "retrain"},  # twice
                    ],
                    "datasets": [ds, {"uri": "s3://d/a", "digest": ""}, ds],
                    "code": {"repo": "https://git/x", "commit": "a" * 40},
                },
            ),
            (
                "register",
                "n",
                1,
                "alice",
                {"parents": [{"model": "n", "version": 1, "relation": "x"}]},
            ),
            ("register", "m", 9, "alice", {}),
            ("approve", "m", 1, "bob", {}),  # no env: only the actor node
            ("approve", "m", 2, "dave", {"env": "prod", "comment": "ok"}),  # parsed in full
            ("approve", "m", 2, "dave", '{"env":"prod"}'),
            ("approve", "m", 2, "dave", '{"env": "staging"}'),  # not canonical
            ("approve", "m", 2, "dave", {"env": 5}),
            ("approve", "zz", 1, "dave", {"env": "prod"}),  # unknown version
            ("approve", "zz", 1, "zed", {"env": "prod"}),  # zed appears nowhere else
            ("deploy", "m", 1, "bob", {"env": "prod"}),
            ("deploy", "m", 2, "bob", {"env": "prod", "comment": "rollforward"}),  # replaces m:1
            ("deploy", "m", 1, "bob", {"env": "edge"}),
            ("undeploy", "m", 2, "bob", {"env": "edge"}),  # closes m:1 there (same model)
            ("deploy", "m", 1, "bob", {"env": "edge"}),
            ("deploy", "m", 1, "bob", {}),  # no env
            ("undeploy", "m", 1, "bob", {"env": "nowhere"}),
            ("reject", "m", 1, "bob", {}),
            ("approve", "m", 1, "bob", {"env": "prod"}),  # after a reject: stays rejected
            ("deprecate", "m", 2, "alice", {}),
            ("reject", "m", 2, "bob", {}),  # after deprecate: stays deprecated
            ("key_revoke", None, None, "admin", {"key_id": "x"}),
            ("key_add", None, None, "admin", {"actor": "erin", "roles": ["registrar"]}),
            ("key_add", None, None, "admin", {"actor": 7}),
        ]
    )
    assert_fast_path_equals_build(table)
    g = L.from_table(table)
    assert g.nodes["model:m:1"]["status"] == "rejected"
    assert g.nodes["model:m:2"]["status"] == "deprecated"
    assert g.nodes["actor:alice"]["roles"] == "deployer,registrar"
    assert "commit:https://git/x@" + "a" * 40 in g and not any(
        d["kind"] == "built_from" for _, _, d in g.out_edges("model:m:1", data=True)
    )
    assert g.has_edge("model:n:1", "model:n:1")  # a self-parent is a loop, as build makes it
    assert not g.has_node("model:ghost:3")
    assert not g.has_node("actor:zed")


def test_from_table_timestamps_written_as_build_writes_them():
    import pyarrow as pa

    table = odd_table([*KEYS, ("register", "m", 1, "alice", {})])
    # from the first instant of year 1000 to the last of 9999; outside, build's own
    # formatting (via datetime) is used
    for micros in (-30_610_224_000_000_000, -1, 0, 999_999, 253_402_300_799_999_999):
        ts = pa.array([micros] * table.num_rows, pa.timestamp("us", tz="UTC"))
        t = table.set_column(table.schema.get_field_index("ts"), "ts", ts)
        assert_fast_path_equals_build(t)


@pytest.mark.parametrize(
    "events",
    [
        [*KEYS, ("register", "m", 1, "alice", {}), ("register", "m", 1, "alice", {})],
        [*KEYS, ("register", "m", 1, "alice", '{"datasets": [{"uri": "s3://x"}],\n"a": 1}')],
        [*KEYS, ("register", "m", 1, "alice", {"description": 5, "artifact": "x"})],
        [*KEYS, ("register", "m", 1, "alice", '{"parents":[],"parents":[]}')],
        [*KEYS, ("register", "m", 1, "alice", "[1, 2]")],
        [*KEYS, ("register", "m", 1, "alice", {"datasets": [{"name": "no uri"}]})],
        [*KEYS, ("register", "m", None, "alice", {})],
        [*KEYS, ("register", "m", 1, "alice", {"tags": {"parents": None}})],
    ],
    ids=[
        "twice",
        "newline",
        "types",
        "repeated-key",
        "not-object",
        "no-uri",
        "no-version",
        "nested-null",  # build copes; the fast path cannot tell it from a top-level null
    ],
)
def test_from_table_irregular_tables_fall_back_to_build(events):
    table = odd_table(events)
    with pytest.raises(L._Irregular):
        L._Columns(table).graph()
    assert_fast_path_equals_build(table, fast_path=False)


def test_from_table_not_json_is_corrupt_either_way():
    from ledger.errors import CorruptLedgerError

    table = odd_table([*KEYS, ("register", "m", 1, "alice", "{nope}")])
    with pytest.raises(CorruptLedgerError, match="seq 4: payload is not JSON"):
        L.from_table(table)
    with pytest.raises(CorruptLedgerError, match="seq 4: payload is not JSON"):
        L.build(plain_rows(table))


def test_from_table_empty():
    table = odd_table([])
    assert_identical(L.from_table(table), L.build([]))
    assert_identical(L.from_table(odd_table(KEYS)), L.build(plain_rows(odd_table(KEYS))))
