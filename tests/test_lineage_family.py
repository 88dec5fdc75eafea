"""Family-only lineage against the whole-graph build: for every question (a version's
ancestors or descendants at any depth, the impact of a dataset, a commit or a version)
at any instant, the graph built from the family's index rows gives exactly what the
graph of the whole ledger gives — nodes, edges, attributes and order — and the
column-wise impact gives the same result, field for field."""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger import LedgerError
from ledger import events as E
from ledger import family as F
from ledger import lineage as L
from ledger.bundles import RowBundle, SortedBundle
from ledger.cli.lineagetree import tree
from ledger.eventindex import SCHEMA as INDEX_SCHEMA
from ledger.eventindex import bundle_tables, derive
from ledger.store import SCHEMA

MODELS = ["m.a", "m.b", "m.c", "n.x", "n.y", "p.q", "p.r"]
ENVS = ["staging", "production", "canary"]
ACTORS = ["alice", "bob", "carol"]
DATASETS = [
    {"name": "train", "uri": "s3://d/train", "digest": "sha256:" + "1" * 64},
    {"name": "eval", "uri": "s3://d/train", "digest": "sha256:" + "2" * 64},
    {"name": "holdout", "uri": "s3://d/holdout", "digest": None},
    {"name": "other", "uri": "s3://d/other", "digest": "sha256:" + "1" * 64},
]
CODES = [
    {"repo": "https://git/r", "commit": "abcdef1234"},
    {"repo": "https://git/s", "commit": "abcdef99"},
]

steps = st.lists(
    st.tuples(
        st.sampled_from(
            ["register"] * 4
            + ["approve", "deploy", "deploy", "undeploy", "reject", "deprecate", "key_add"]
        ),
        st.integers(0, len(MODELS) - 1),
        st.integers(0, 20),  # which version / parent
        st.integers(0, 20),
        st.integers(0, len(ENVS) - 1),
        st.integers(0, len(ACTORS) - 1),
        st.lists(st.integers(0, len(DATASETS) - 1), max_size=2, unique=True),
        st.integers(-1, len(CODES) - 1),
    ),
    min_size=1,
    max_size=80,
)


def _history(spec: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Event rows (as segments hold them) for a generated history; only what a ledger
    that verifies could hold (keys first, parents registered first, deploys of
    registered versions, undeploys of live ones)."""
    rows: list[dict[str, Any]] = []
    latest: dict[str, int] = {}
    live: dict[tuple[str, str], int] = {}

    def add(action: str, model: str | None, version: int | None, actor: str, payload: Any) -> None:
        seq = len(rows)
        rows.append(
            {
                "seq": seq,
                "ts": 1_700_000_000_000_000 + seq * 1_000_000 // 3,  # some equal seconds
                "action": action,
                "model": model,
                "version": version,
                "actor": actor,
                "key_id": "k" * 16,
                "hash": hashlib.sha256(str(seq).encode()).digest(),
                "payload": json.dumps(payload, separators=(",", ":"), sort_keys=True),
            }
        )

    add(E.GENESIS, None, None, "admin", {"actor": "admin", "roles": ["admin"], "key_id": "k"})
    for actor in ACTORS:  # (a ledger that verifies names each actor's key first)
        add(E.KEY_ADD, None, None, "admin", {"actor": actor, "roles": ["approver"]})
    for action, mi, a, b, ei, ai, ds, ci in spec:
        model, env, actor = MODELS[mi], ENVS[ei], ACTORS[ai]
        if action == "key_add":
            add(E.KEY_ADD, None, None, "admin", {"actor": actor, "roles": ["registrar"]})
        elif action == "register":
            version = latest.get(model, 0) + 1
            known = [(m, v) for m, n in latest.items() for v in range(1, n + 1)]
            parents = []
            if known and a % 3:
                pm, pv = known[a % len(known)]
                parents.append(
                    {"model": pm, "version": pv, "relation": ["finetune", "distill"][b % 2]}
                )
            payload: dict[str, Any] = {
                "parents": parents,
                "datasets": [{k: v for k, v in DATASETS[d].items() if v is not None} for d in ds],
            }
            if ci >= 0:
                payload["code"] = CODES[ci]
            if b % 4 == 0:
                payload["artifact"] = {"digest": "sha256:" + "f" * 64, "uri": "s3://m/x"}
            if b % 5 == 0:
                payload["description"] = "a model"
            latest[model] = version
            add(E.REGISTER, model, version, actor, payload)
        elif model in latest:
            version = 1 + a % latest[model]
            if action == "undeploy":
                if live.get((model, env)) is None:
                    continue
                version = live.pop((model, env))
            if action == "deploy":
                live[(model, env)] = version
            payload = {"env": env} if action in ("approve", "deploy", "undeploy") else {}
            if b % 3 == 0:
                payload["comment"] = "ok"
            add(action, model, version, actor, payload)
    return rows


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    cols = {f.name: [r.get(f.name) for r in rows] for f in SCHEMA if f.name in rows[0]}
    cols["ts"] = pa.array(cols["ts"], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    types = {f.name: f.type for f in SCHEMA}
    return pa.table({k: v if k == "ts" else pa.array(v, types[k]) for k, v in cols.items()})


def _bundles(rows: list[dict[str, Any]], cuts: list[int], sorted_: list[bool]) -> list[Any]:
    """Segments cut at ``cuts``, each indexed as written (SortedBundle) or as a reader
    derives a small one (RowBundle)."""
    table = _table(rows)
    edges = sorted({c % len(rows) for c in cuts} | {0, len(rows)})
    out = []
    for k, (a, b) in enumerate(itertools.pairwise(edges)):
        if a == b:
            continue
        index = derive(table.slice(a, b - a))
        out.append(
            SortedBundle(*bundle_tables(index)) if sorted_[k % len(sorted_)] else RowBundle(index)
        )
    return out


def _whole(rows: list[dict[str, Any]], upto: int | None) -> Any:
    return L.build([{**r, "ts": r["ts"]} for r in rows], at_seq=upto)


def _dump(g: Any) -> Any:
    nodes = [(n, dict(d)) for n, d in g.nodes(data=True)]
    edges = [(u, v, k, dict(d)) for u, v, k, d in g.edges(keys=True, data=True)]
    return nodes, edges


def _answer(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """What ``fn`` returns, or the error it raises (type and message)."""
    try:
        return fn(*args, **kwargs)
    except LedgerError as exc:
        return (type(exc).__name__, str(exc))


def _context(g: Any, ref: str, direction: str, depth: int | None) -> Any:
    node = L.version_node(g, ref)
    walk = L.up if direction == "up" else L.down
    return _dump(L.context(g, walk(g, node, depth)))


def _tree(g: Any, ref: str, direction: str) -> Any:
    return tree(g, L.version_node(g, ref), direction)


def _impact(g_or_fam: Any, **question: Any) -> Any:
    fn = F.impact if isinstance(g_or_fam, F.Family) else L.impact
    return vars(fn(g_or_fam, **question))


@settings(max_examples=200, deadline=None)
@example(  # an environment first named by a deploy of a model outside the family
    [("register", 0, 0, 0, 0, 0, [], -1), ("register", 1, 0, 0, 0, 0, [], -1),
     ("deploy", 1, 0, 0, 0, 0, [], -1), ("deploy", 0, 0, 0, 0, 0, [], -1)],
    [], [True], None,
)  # fmt: skip
@example(  # a dataset first named by a register outside the family
    [("register", 0, 0, 0, 0, 0, [0], -1), ("register", 1, 0, 0, 0, 0, [0], -1)],
    [3], [True, False], None,
)  # fmt: skip
@given(
    steps,
    st.lists(st.integers(0, 200), max_size=4),
    st.lists(st.booleans(), min_size=1, max_size=3),
    st.one_of(st.none(), st.integers(0, 90)),
)
def test_family_graphs_and_impacts_equal_the_whole_graphs(spec, cuts, sorted_, upto):
    rows = _history(spec)
    whole = _whole(rows, upto)
    fam = F.Family(_bundles(rows, cuts, sorted_), upto)
    refs = [
        *sorted({f"{r['model']}:{r['version']}" for r in rows if r["model"]}),
        "m.a:99",
        "zz.q:1",
    ]
    for ref in refs:
        for direction in ("up", "down"):
            part = L.build(F.question_rows(fam, ref, direction))
            for depth in (None, 1):
                want = _answer(_context, whole, ref, direction, depth)
                assert _answer(_context, part, ref, direction, depth) == want, (ref, direction)
            assert _answer(_tree, part, ref, direction) == _answer(_tree, whole, ref, direction)
        assert _answer(_impact, fam, model=ref) == _answer(_impact, whole, model=ref), ref
    queries = [d["digest"] for d in DATASETS if d["digest"]] + [d["uri"] for d in DATASETS]
    for q in [*queries, "1" * 64, "s3://nowhere"]:
        want = _answer(_impact, whole, dataset=q)
        assert _answer(_impact, fam, dataset=q) == want, q
        part = L.build(F.question_rows(fam, dataset=q))
        assert _answer(_impact, part, dataset=q) == want, q
    for c in ["abcdef1", "abcdef1234", "https://git/s@abcdef99", "abcdef99ff", "1234567", "xyz"]:
        assert _answer(_impact, fam, commit=c) == _answer(_impact, whole, commit=c), c


def test_a_real_ledger_answers_alike_both_ways(tmp_path):
    """The benchmark generator's ledger, written through the API (merged segments with
    bundles on disk, small ones derived): every version, both directions."""
    from benchmarks import generator
    from ledger import Ledger

    built = generator.build(tmp_path / "reg", events=3000, models=12, seed=3)
    led = Ledger.open(tmp_path / "reg")
    assert any(p.suffix == ".arrow" for p in (tmp_path / "reg" / "index").iterdir())
    whole = led.lineage_graph()
    versions = sorted(n for n, d in whole.nodes(data=True) if d["kind"] == L.MODEL)
    assert len(versions) > 50
    for n in versions[::3]:
        ref = whole.nodes[n]["label"]
        for direction in ("up", "down"):
            walk = L.up if direction == "up" else L.down
            want = _dump(L.context(whole, walk(whole, n)))
            assert _dump(led.lineage(ref, direction)) == want, (ref, direction)
        assert vars(led.impact(model=ref)) == vars(L.impact(whole, model=ref))
    digest = built.facts.dataset_digest
    assert vars(led.impact(dataset=digest)) == vars(L.impact(whole, dataset=digest))
    mid = built.facts.mid_ts
    past = led.lineage_graph(as_of=mid)
    for n in [v for v in versions if v in past][::5]:
        ref = past.nodes[n]["label"]
        assert _dump(led.lineage(ref, "up", as_of=mid)) == _dump(L.context(past, L.up(past, n)))


@pytest.mark.parametrize("field", ["dataset", "commit"])
def test_no_match_is_the_same_error(tmp_path, field, history):
    led = history.ledger
    whole = led.lineage_graph()
    arg = {field: "s3://nowhere" if field == "dataset" else "deadbeef"}
    with pytest.raises(LedgerError) as a:
        led.impact(**arg)
    with pytest.raises(LedgerError) as b:
        L.impact(whole, **arg)
    assert (type(a.value), str(a.value)) == (type(b.value), str(b.value))


@settings(max_examples=40, deadline=None)
@given(steps, st.lists(st.text(max_size=30), max_size=5))
def test_the_column_wise_derive_equals_the_row_wise_one(spec, odd_payloads):
    """derive() and edge_rows() of a block (pyarrow.compute) against the row-at-a-time
    path small segments take, on generated histories plus payloads of any shape."""
    from ledger import eventindex

    rows = _history(spec)
    odd = ['{"env":"a"} ', '{"env":"a"}x', '{"env":"Z"}', "[]", '{"env":"a","comment":"c"}']
    odd += odd_payloads
    for k, r in enumerate(rows):  # env-ish payloads that are not quite {"env":NAME}
        r["payload"] = odd[k % len(odd)] if k % 3 == 0 else r["payload"]
    table = _table(rows)
    small = eventindex._VECTOR_MIN_ROWS
    try:
        eventindex._VECTOR_MIN_ROWS = 10**9
        want = derive(table), bundle_tables(derive(table))
        eventindex._VECTOR_MIN_ROWS = 0
        got = derive(table), bundle_tables(derive(table))
    finally:
        eventindex._VECTOR_MIN_ROWS = small
    assert got[0].equals(want[0])
    for a, b in zip(got[1], want[1], strict=True):
        assert a.equals(b, check_metadata=True)


def test_a_block_of_env_only_events_derives(monkeypatch):
    """Every payload {"env":NAME} (a merge of deploys only): nothing left to parse."""
    from ledger import eventindex

    rows = [
        r
        for r in _history(
            [("register", 0, 0, 0, 0, 0, [], -1)] + [("deploy", 0, 0, 0, 0, 0, [], -1)] * 3
        )
        if r["action"] == "deploy"
    ]
    table = _table(rows)
    monkeypatch.setattr(eventindex, "_VECTOR_MIN_ROWS", 0)
    assert derive(table)["env"].to_pylist() == ["staging"] * 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps, st.data())
def test_a_sorted_bundle_reads_rows_and_columns_as_the_rows_give_them(spec, data):
    # SortedBundle gathers slices of its memory-mapped columns (the fast path);
    # RowBundle keeps plain row dicts (the reference).
    rows = _history(spec)
    index = derive(_table(rows))
    fast, ref = SortedBundle(*bundle_tables(index)), RowBundle(index)
    models = sorted({r["model"] for r in rows if r["model"]})
    picked = data.draw(st.lists(st.sampled_from(models), unique=True)) if models else []
    names = data.draw(st.lists(st.sampled_from(list(INDEX_SCHEMA.names)), min_size=1, unique=True))
    assert fast.columns(picked, names) == ref.columns(picked, names)
    wanted = [(r["model"], r["seq"]) for r in rows if r["model"]]
    wanted = data.draw(st.lists(st.sampled_from(wanted), unique=True)) if wanted else []
    assert fast.rows_at(wanted) == ref.rows_at(wanted)
