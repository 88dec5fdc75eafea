"""Tampering with the event index (index/*.arrow, docs/FORMAT.md §5.3) on a real ledger.

The bundles are a cache readers answer ``lineage``, ``impact`` and ``status`` from, so
``verify`` holds each one a reader would take to the bundle its segment's events give:
an altered bundle is an ``index_cache`` verdict naming the file, a bundle readers would
not take (truncated, for another range) is ignored by both, and deleting a bundle only
costs speed."""

from __future__ import annotations

import json
from collections.abc import Callable

import pyarrow as pa
import pytest

from ledger import Ledger, SigningKey, store
from ledger.store import segment_name

SEGMENT = segment_name(0, 10)
EVENTS = f"index/{SEGMENT.removesuffix('.parquet')}.events.arrow"
EDGES = f"index/{SEGMENT.removesuffix('.parquet')}.edges.arrow"


@pytest.fixture
def indexed(history, monkeypatch):
    """``history`` (11 events) compacted into one segment with its index bundle."""
    monkeypatch.setattr(store, "INDEX_MIN_ROWS", 1)
    led = history.ledger
    with led.store.lock():
        led.store.compact()
    assert (history.path / EVENTS).exists() and (history.path / EDGES).exists()
    assert led.verify(jobs=1).ok
    return history


def _rewrite(path, change: Callable[[pa.Table], pa.Table]) -> None:
    table = pa.ipc.open_file(pa.BufferReader(path.read_bytes())).read_all()
    new = change(table)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, new.schema) as w:
        w.write_table(new)


def _set(column: str, fn: Callable[[list], list]) -> Callable[[pa.Table], pa.Table]:
    def change(table: pa.Table) -> pa.Table:
        i = table.schema.get_field_index(column)
        col = table[column]
        values = fn(col.to_pylist())
        return table.set_column(i, table.schema.field(i), pa.array(values, col.type))

    return change


def env_renamed(t):
    """status/impact would see xgb:1 live in 'canary' instead of 'production'."""
    _rewrite(
        t.path / EVENTS, _set("env", lambda v: [x and x.replace("production", "canary") for x in v])
    )


def parent_edge_dropped(t):
    """lineage would show xgb without its parent base:1 (edge rows' seq changed)."""
    _rewrite(t.path / EDGES, _set("seq", lambda v: [x + 100 for x in v]))


def first_deploys_rewritten(t):
    def change(table: pa.Table) -> pa.Table:
        meta = dict(table.schema.metadata)
        meta[b"ledger.first_deploys"] = json.dumps({"production": [0, "x", 9]}).encode()
        return table.replace_schema_metadata(meta)

    _rewrite(t.path / EVENTS, change)


def parents_blanked(t):
    _rewrite(t.path / EVENTS, _set("parents", lambda v: [None] * len(v)))


# (attack, file) — every alteration of a bundle readers would take is index_cache at
# the segment's first seq.
CASES = [
    (env_renamed, EVENTS),
    (parent_edge_dropped, EDGES),
    (first_deploys_rewritten, EVENTS),
    (parents_blanked, EVENTS),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0].__name__ for c in CASES])
def test_an_altered_index_gets_its_verdict(indexed, invoke, case):
    attack, file = case
    attack(indexed)
    before = {p: p.read_bytes() for p in indexed.path.rglob("*") if p.is_file()}
    r = invoke(["verify", "--format", "json"], env=indexed.env())
    assert r.exit_code == 1
    assert json.loads(r.stdout)["problems"][0] == {
        "kind": "index_cache",
        "seq": 0,
        "segment": file,
        "message": f"{file} does not match the events of {SEGMENT} (index altered;"
        f" delete index/{SEGMENT.removesuffix('.parquet')}.* to rebuild it)",
    }
    assert {p: p.read_bytes() for p in indexed.path.rglob("*") if p.is_file()} == before


def test_the_index_is_what_readers_answer_from(indexed):
    """Why verify must check it: a forged bundle changes what lineage says."""
    led = Ledger.open(indexed.path)
    want = led.lineage("fraud.detector.xgb:1")
    parents_blanked(indexed)
    parent_edge_dropped(indexed)
    forged = Ledger.open(indexed.path).lineage("fraud.detector.xgb:1")
    assert sorted(forged.nodes) != sorted(want.nodes)


def test_verify_since_a_checkpoint_checks_the_index_of_the_events_after_it(indexed, tmp_path):
    from ledger import checkpoint as C
    from ledger import tree

    led = indexed.ledger
    key = SigningKey(b"k" * 32)
    kept = tmp_path / "kept.checkpoint"
    kept.write_text(C.sign(led.origin, 5, tree.Tree(led.store, use_cache=False).root(5), key))
    assert led.verify(since=kept, trusted_keys=[key.public_key], jobs=1).ok
    env_renamed(indexed)
    report = Ledger.open(indexed.path).verify(since=kept, trusted_keys=[key.public_key], jobs=1)
    assert [(p.kind, p.segment) for p in report.problems] == [("index_cache", EVENTS)]


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(p.read_bytes()[:100]),  # truncated: not readable
        lambda p: p.unlink(),  # deleted: readers derive the index
        lambda p: p.write_bytes(b"not arrow"),
    ],
    ids=["truncated", "deleted", "garbage"],
)
def test_a_bundle_readers_would_not_take_is_not_a_verdict(indexed, damage):
    led = Ledger.open(indexed.path)
    want = led.lineage("fraud.detector.xgb:1")
    damage(indexed.path / EVENTS)
    again = Ledger.open(indexed.path)
    assert again.verify(jobs=1).ok
    got = again.lineage("fraud.detector.xgb:1")
    assert sorted(got.nodes) == sorted(want.nodes)
