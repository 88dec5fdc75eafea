"""Point reads (ledger/pointread.py) against the DuckDB views they stand in for: on
generated histories, cut into segments with bundles on disk or derived, ``status MODEL``,
``status MODEL --env ENV`` and ``history MODEL[:VERSION]`` give the views' tables
exactly (schema and rows), now and at any seq or instant; a long-lived Ledger's cache
follows appends and is dropped when the ledger under it is replaced."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger import Ledger, LedgerError, store
from ledger import query as Q
from ledger.errors import NotFoundError
from ledger.store import SCHEMA, Store, segment_name
from tests.test_lineage_family import ENVS, _history, _table, steps


def _write_ledger(root: Path, rows: list[dict], cuts: list[int], with_bundles: bool) -> Ledger:
    table = _table(rows)
    n = table.num_rows
    table = table.append_column("sig", pa.array([b"\0" * 64] * n, pa.binary(64)))
    table = table.append_column("canonical", pa.array([b"{}"] * n, pa.binary()))
    table = table.select(SCHEMA.names).cast(SCHEMA)
    (root / "events").mkdir(parents=True)
    ident = {"format": "ledger/1", "origin": "test.example/p", "genesis_hash": "0" * 64}
    (root / "ledger.json").write_text(json.dumps(ident))
    s = Store(root)
    edges = sorted({c % n for c in cuts} | {0, n})
    with s.lock():
        for a, b in itertools.pairwise(edges):
            if a < b:
                part = table.slice(a, b - a)
                pq.write_table(part, root / "events" / segment_name(a, b - 1))
                if with_bundles:
                    from ledger import eventindex

                    s._write_index(segment_name(a, b - 1), eventindex.derive(part))
    return Ledger.open(root)


def _answer(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except LedgerError as exc:
        return (type(exc).__name__, str(exc))


# A rollback: v2 then v1 deployed to the same environment; the live row is v1's.
ROLLBACK = [
    ("register", 0, 0, 0, 0, 0, [], -1),
    ("register", 0, 0, 0, 0, 0, [], -1),
    ("approve", 0, 1, 0, 0, 1, [], -1),
    ("deploy", 0, 1, 0, 0, 1, [], -1),
    ("deploy", 0, 0, 0, 0, 2, [], -1),
    ("undeploy", 0, 0, 0, 1, 2, [], -1),
]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    steps,
    st.lists(st.integers(0, 200), max_size=3),
    st.booleans(),
    st.one_of(st.none(), st.integers(-1, 95)),
)
@example(ROLLBACK, [], False, None)
@example(ROLLBACK, [5], True, 7)
def test_point_reads_equal_the_views(tmp_path_factory, monkeypatch, spec, cuts, with_bundles, at):
    monkeypatch.setattr(store, "INDEX_MIN_ROWS", 1)  # bundles on disk for small segments too
    rows = _history(spec)
    led = _write_ledger(tmp_path_factory.mktemp("p"), rows, cuts, with_bundles)
    ts = rows[min(max(at or 0, 0), len(rows) - 1)]["ts"]
    whens = [{}, {"at_seq": at} if at is not None else {"as_of": ts}]
    for when in whens:
        # The reference: the views themselves, one DuckDB session per instant.
        session = _answer(Q.Session, led.store, **when)
        registered = {(r["model"], r["version"]) for r in rows if r["action"] == "register"}
        for model in [*sorted({r["model"] for r in rows if r["model"]}), "zz.none"]:
            known = any(m == model for m, _ in registered)
            if not isinstance(session, Q.Session):  # the instant is refused: alike
                if known:
                    assert _answer(led.status, model, **when) == session
                continue
            want = session.run(Q.STATUS_VERSIONS, {"model": model})
            if not known:  # never registered: an error, where the views answer nothing
                assert want.num_rows == 0
                with pytest.raises(NotFoundError, match="is not registered"):
                    led.status(model, **when)
                with pytest.raises(NotFoundError, match="is not registered"):
                    led.history(model, **when)
                continue
            assert led.status(model, **when) == want, (model, when)
            for env in ENVS:
                want = session.run(Q.STATUS_ENV, {"model": model, "env": env})
                assert led.status(model, env, **when) == want, (model, env, when)
            for version in (None, 1):
                want = session.run(Q.HISTORY, {"model": model, "version": version})
                if version is not None and (model, version) not in registered:
                    with pytest.raises(NotFoundError, match="is not registered"):
                        led.history(model, version, **when)
                    continue
                assert led.history(model, version, **when) == want, (model, when)
        if isinstance(session, Q.Session):
            session.close()


def test_a_long_lived_ledger_follows_appends_and_rewrites(history, tmp_path):
    led = history.ledger
    k = history.keys
    first = led.status(model="fraud.detector.xgb")
    assert first.num_rows == 1
    led.register("fraud.detector.xgb", key=k["alice"])  # through this object
    assert led.status(model="fraud.detector.xgb").num_rows == 2
    other = Ledger.open(history.path)  # another writer
    other.register("fraud.detector.xgb", key=k["alice"])
    other.deploy("fraud.detector.xgb", 3, "staging", key=k["carol"])
    assert led.status(model="fraud.detector.xgb")["version"].to_pylist() == [1, 2, 3]
    assert led.status(model="fraud.detector.xgb", env="staging")["version"].to_pylist() == [3]
    assert led.status(model="fraud.detector.xgb").equals(
        Q.status(led.store, "fraud.detector.xgb")[0]
    )
    # The folder replaced by a copy of its past: the kept rows are not trusted blindly.
    import shutil

    backup = tmp_path / "backup"
    shutil.copytree(history.path, backup)
    other.register("fraud.detector.xgb", key=k["alice"])
    assert led.status(model="fraud.detector.xgb").num_rows == 4
    shutil.rmtree(history.path)
    shutil.copytree(backup, history.path)
    other.register("fraud.detector.base", key=k["alice"])  # same length, another head
    assert led.status(model="fraud.detector.xgb").num_rows == 3


def test_warm_point_reads_need_no_scan(history, monkeypatch):
    led = history.ledger
    led.status(model="fraud.detector.xgb")

    def no(*a, **k):
        raise AssertionError("a point read scanned the ledger")

    monkeypatch.setattr(Store, "bundles", no)
    monkeypatch.setattr(Store, "read", no)
    assert led.status(model="fraud.detector.xgb").num_rows == 1
    assert led.status(model="fraud.detector.xgb", env="production").num_rows == 1
    assert led.history("fraud.detector.xgb").num_rows == 5


@pytest.mark.parametrize("bad", [-1, 99])
def test_a_bad_at_seq_is_the_same_error(history, bad):
    led = history.ledger
    a = _answer(led.status, "fraud.detector.xgb", at_seq=bad)
    assert a == _answer(lambda: Q.status(led.store, "fraud.detector.xgb", at_seq=bad)[0])
    assert a[0] == "InputError"


def test_the_last_events_are_the_tail_of_all_events(history, monkeypatch):
    """``events(last=N)`` reads the newest segments only, and equals the slice of all."""
    led = history.ledger
    everything = led.events()
    for model in (None, "fraud.detector.xgb", "fraud.detector.base", "zz.none"):
        whole = everything
        if model is not None:
            whole = whole.filter(pc.equal(whole["model"], model))
        for last in (1, 2, 5, 6, 100):
            want = whole.slice(max(0, whole.num_rows - last))
            assert led.events(model, last=last).equals(want), (model, last)
            cols = ["seq", "action"]
            assert led.events(model, cols, last=last).equals(want.select(cols)), (model, last)
    read = []
    real = Store.read_segment
    monkeypatch.setattr(
        Store, "read_segment", lambda s, seg, *a, **k: read.append(seg) or real(s, seg, *a, **k)
    )
    led.events(last=2)
    assert len(read) <= 2  # (one event per segment here: two segments, not eleven)
    with pytest.raises(LedgerError, match="at least 1"):
        led.events(last=0)


def test_a_fresh_status_of_one_model_does_not_import_pyarrow_compute(history) -> None:
    """Importing pyarrow.compute costs half of a fresh `ledger status MODEL`, and pandas
    (which pyarrow imports to probe values, where it is installed) as much again."""
    from tests.fresh import fresh_cli

    for args in (["status", "fraud.detector.xgb"], ["history", "fraud.detector.xgb"]):
        out, imported = fresh_cli(*args, "--ledger", str(history.path))
        assert out.returncode == 0, out.stderr
        assert imported == {"pyarrow.compute": False, "duckdb": False, "pandas": False}
