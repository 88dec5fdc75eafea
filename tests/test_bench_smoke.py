"""The benchmarks never rot: a few hundred events through every benchmark path (no peers)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import generator
from benchmarks.__main__ import main
from ledger import Ledger


def test_generator_is_seeded_and_realistic(tmp_path: Path) -> None:
    a = generator.build(tmp_path / "a", events=300, models=6, seed=7)
    b = generator.build(tmp_path / "b", events=300, models=6, seed=7)
    ta, tb = a.ledger.events(), b.ledger.events()
    assert ta.num_rows == tb.num_rows == 300
    assert ta["canonical"].to_pylist() == tb["canonical"].to_pylist()
    assert a.ledger.verify().ok
    f = a.facts
    assert f.events == 300 and f.models == 6
    assert set(f.counts) >= {"register", "approve", "deploy", "undeploy", "deprecate"}
    assert set(f.revoked) == {"dave", "carol.old"}
    assert sorted(a.ledger.keys(), key=lambda k: k.actor)[0].actor == "admin"
    revoked = [k for k in a.ledger.keys() if not k.active]
    assert {k.key_id for k in revoked} == {k.key_id for k in f.revoked.values()}
    assert f.ancestry_depth >= 1 and f.first_ts < f.mid_ts < f.last_ts
    # Every current key can still sign: the returned keys are the live ones.
    for name, key in a.keys.items():
        assert Ledger.open(tmp_path / "a").keys()  # opens
        assert any(k.key_id == key.key_id and k.active for k in a.ledger.keys()), name


def test_every_benchmark_path_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("LEDGER_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "rows.json"
    main(["run", "--scale", "tiny", "--no-peers", "--json", str(out)])
    data = json.loads(out.read_text())
    rows = {(r["group"], r["name"]): r for r in data["rows"]}
    failed = [
        r
        for r in data["rows"]
        if str(r.get("note", "")).startswith("failed") or r["name"] == "failed"  # (a script)
    ]
    assert not failed, failed
    for name in ("ed25519_sign_1core", "ed25519_verify_allcores", "fsync_append", "duckdb_count"):
        assert rows[("limit", name)]["value"] > 0
    for name in ("batch_append", "api_append", "cli_register", "verify_full", "status"):
        assert rows[("ledger", name)]["value"] > 0, name
    assert rows[("ledger", "batch_append")]["limit_value"] > 0
    assert 0 < rows[("ledger", "disk_bytes_per_event")]["value"] < 2000
    for name in ("append_rate_ratio", "segments", "verify_vs_compacted", "fresh_lineage",
                 "fresh_impact_rss", "warm_live", "threads"):  # fmt: skip
        assert rows[("daily_use", name)]["value"] > 0, name
    assert "targets missed:" in capsys.readouterr().out
