"""Benchmark: status, as-of and audit queries (issue 4) beside a bare count(*) floor.

``run(scale)`` returns dicts (name, value, unit, target, limit). ``small`` builds a real,
signed 10k-event ledger with ``benchmarks.generator``. ``full`` (1M events, 10k models,
~100k versions) uses the ledger in $LEDGER_BENCH_PATH if set (e.g. one built by the
generator), else writes a *synthetic* ledger in seconds: the real segment schema and
layout, realistic canonical payloads and a valid lifecycle order, but random hash and
signature bytes (signing 1M events through the API takes over an hour on this machine;
queries never look at signatures, so the figures are the same).

    python -m benchmarks.bench_queries [small|full]
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from ledger import Ledger
from ledger import events as E
from ledger.query import Session, load_queries
from ledger.store import ROW_GROUP, SCHEMA, SEGMENT_EVENTS, segment_name

ORIGIN = "bench.example/queries"
START = 1_736_121_600_000_000  # 2025-01-06T00:00:00Z
YEAR = 365 * 86_400 * 1_000_000
HOUR = 3_600 * 1_000_000
TEAMS = ("fraud", "credit", "search", "ads", "vision", "speech", "nlp", "pricing")
ACTORS = {
    "registrar": ["alice", "erin", "frank", "grace"],
    "approver": ["bob", "dave", "olivia", "peggy"],
    "deployer": ["carol", "sybil", "walter"],
}


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def build_synthetic(path: Path, events: int = 1_000_000, models: int = 10_000, seed: int = 0):
    """Write an unsigned ledger with the real schema; returns facts for the queries."""
    rng = random.Random(seed)
    path.mkdir(parents=True)
    (path / "events").mkdir()
    kid = {a: f"{rng.getrandbits(64):016x}" for group in ACTORS.values() for a in group}
    kid["admin"] = f"{rng.getrandbits(64):016x}"
    evs: list[tuple] = [(0, "genesis", None, None, "admin", _canon({"actor": "admin"}))]
    for i, (role, names) in enumerate(ACTORS.items()):
        for j, a in enumerate(names):
            p = {"actor": a, "key_id": kid[a], "public_key": "A" * 44, "roles": [role]}
            evs.append((i * 10 + j + 1, "key_add", None, None, "admin", _canon(p)))
    revoke_at = START + YEAR // 2
    evs.append((revoke_at, "key_revoke", None, None, "admin", _canon({"key_id": kid["dave"]})))
    names = [
        f"{rng.choice(TEAMS)}.model.m{m:05d}" for m in range(models)
    ]  # ~10 versions each on average
    digests = [f"sha256:{rng.getrandbits(256):064x}" for _ in range(500)]
    per_version = 10
    n_versions = events // per_version
    counts = {n: 0 for n in names}
    for _ in range(n_versions):
        counts[names[rng.randrange(models)]] += 1
    for name, nv in counts.items():
        t = START + rng.randrange(YEAR // 2)
        prev_prod = None
        for v in range(1, nv + 1):
            t += rng.randrange(HOUR, YEAR // (2 * max(nv, 1)))
            reg = rng.choice(ACTORS["registrar"])
            ds = [
                {"digest": rng.choice(digests), "name": n, "uri": f"s3://data/{name}/{n}/{v}"}
                for n in ("train", "holdout")
            ]
            payload = {
                "artifact": {"digest": f"sha256:{rng.getrandbits(256):064x}", "uri": f"s3://m/{v}"},
                "code": {"commit": f"{rng.getrandbits(160):040x}", "repo": "https://git/x"},
                "datasets": ds if rng.random() > 0.02 else [],
                "metrics": {"auc": round(rng.random(), 4)},
                "params": {"lr": "0.1"},
                "parents": [{"model": name, "relation": "retrain", "version": v - 1}]
                if v > 1
                else [],
                "tags": {"team": name.split(".")[0]},
            }
            evs.append((t, "register", name, v, reg, _canon(payload)))

            def act(dt: int, action: str, who: str, model=name, version=v, t=t, **p: Any) -> None:
                evs.append((t + dt, action, model, version, who, _canon(p)))

            appr = rng.choice(ACTORS["approver"])
            dep = rng.choice(ACTORS["deployer"])
            if rng.random() < 0.08:
                act(2 * HOUR, "reject", appr)
                continue
            act(1 * HOUR, "approve", appr, env="staging")
            act(1 * HOUR + 1, "approve", rng.choice(ACTORS["approver"]), env="staging")
            act(2 * HOUR, "deploy", dep, env="staging")
            act(24 * HOUR, "approve", appr, env="production")
            act(25 * HOUR, "approve", rng.choice(ACTORS["approver"]), env="production")
            act(26 * HOUR, "deploy", dep, env="production", comment="weekly release")
            act(27 * HOUR, "approve", appr, env="production-eu")
            act(28 * HOUR, "deploy", dep, env="production-eu")
            if rng.random() < 0.6:
                act(3 * HOUR, "approve", appr, env="canary")
                act(4 * HOUR, "deploy", dep, env="canary")
            if prev_prod is not None:
                act(30 * HOUR, "deprecate", reg, version=prev_prod)
            prev_prod = v
    evs.sort(key=lambda e: e[0])
    evs = evs[:events]
    n = len(evs)
    cols: dict[str, list[Any]] = {c: [] for c in SCHEMA.names}
    for seq, (t, action, model, version, actor, payload) in enumerate(evs):
        cols["seq"].append(seq)
        cols["ts"].append(max(t, START))
        cols["action"].append(action)
        cols["model"].append(model)
        cols["version"].append(version)
        cols["actor"].append(actor)
        cols["key_id"].append(kid[actor])
        cols["payload"].append(payload)
        cols["hash"].append(rng.randbytes(32))
        cols["sig"].append(rng.randbytes(64))
        cols["canonical"].append(payload.encode() + rng.randbytes(200))
    table = pa.Table.from_pydict(cols, schema=SCHEMA)
    import pyarrow.parquet as pq

    for first in range(0, n, SEGMENT_EVENTS):
        part = table.slice(first, SEGMENT_EVENTS)
        last = first + part.num_rows - 1
        pq.write_table(
            part,
            path / "events" / segment_name(first, last),
            compression="zstd",
            row_group_size=ROW_GROUP,
            use_dictionary=["action", "model", "actor", "key_id"],
        )
    ident = {"format": E.FORMAT, "origin": ORIGIN, "genesis_hash": "0" * 64}
    (path / "ledger.json").write_text(json.dumps(ident))
    busiest = max(counts, key=counts.get)  # type: ignore[arg-type]
    return {"events": n, "models": models, "versions": n_versions, "model": busiest,
            "dataset": digests[0], "mid_ts": START + YEAR // 2}  # fmt: skip


def _best(fn: Any, repeat: int = 5) -> float:
    fn()  # warm: OS page cache, DuckDB's parquet metadata
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


LEDGER_BIN = shutil.which("ledger") or "ledger"


def _cli(args: list[str], path: Path) -> float:
    env = dict(os.environ, LEDGER_PATH=str(path), COLUMNS="200")
    subprocess.run([LEDGER_BIN, *args], env=env, capture_output=True)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        r = subprocess.run([LEDGER_BIN, *args], env=env, capture_output=True)
        times.append(time.perf_counter() - t)
        if r.returncode:
            raise RuntimeError(r.stderr.decode())
    return statistics.median(times)


def run(scale: str = "small") -> list[dict]:
    tmp = tempfile.TemporaryDirectory()
    facts: dict[str, Any]
    if os.environ.get("LEDGER_BENCH_PATH"):
        path = Path(os.environ["LEDGER_BENCH_PATH"])
        led = Ledger.open(path)
        kind = "given ledger"
        facts = {}
    elif scale == "full":
        path = Path(tmp.name) / "reg"
        t = time.perf_counter()
        facts = build_synthetic(path)
        kind = f"synthetic ledger, built in {time.perf_counter() - t:.0f} s"
        led = Ledger.open(path)
    else:
        from benchmarks.generator import SCALES, build

        path = Path(tmp.name) / "reg"
        built = build(path, **SCALES.get(scale, SCALES["small"]), seed=0)
        led, f = built.ledger, built.facts
        facts = {"model": f.live[0], "dataset": f.dataset_digest, "mid_ts": f.mid_ts}
        kind = "generator ledger"
    if "model" not in facts:  # a given ledger: find the facts with SQL
        s = Session(led.store)
        facts["model"] = s.run(
            "SELECT model FROM registrations GROUP BY model ORDER BY count(*) DESC LIMIT 1"
        ).to_pylist()[0]["model"]
        facts["dataset"] = s.run("SELECT digest FROM datasets LIMIT 1").to_pylist()[0]["digest"]
        ts = s.run("SELECT epoch_us(min(ts)) a, epoch_us(max(ts)) b FROM events").to_pylist()[0]
        facts["mid_ts"] = (ts["a"] + ts["b"]) // 2
    segs = led.store.segments()
    n = segs[-1].last + 1
    paths = [str(s.path) for s in segs]
    import duckdb

    con = duckdb.connect()
    floor = _best(lambda: con.execute("SELECT count(*) FROM read_parquet(?)", [paths]).fetchall())
    floor_scan = _best(
        lambda: con.execute(
            "SELECT count(*) FROM read_parquet(?) WHERE action = 'deploy'", [paths]
        ).fetchall()
    )
    floor_json = _best(
        lambda: con.execute(
            "SELECT count(DISTINCT payload ->> '$.env') FROM read_parquet(?)", [paths]
        ).fetchall()
    )
    limit = f"count(*) {floor * 1000:.1f} ms"
    out: list[dict] = []

    def rec(name: str, seconds: float, target: float | None) -> None:
        row = {"name": name, "value": round(seconds * 1000, 1), "unit": "ms",
               "target": None if target is None else target * 1000, "limit": limit,
               "events": n, "ledger": kind}  # fmt: skip
        out.append(row)
        print(
            f"{name:<44} {row['value']:>9.1f} ms  target {row['target'] or '-':>6}  ({limit})",
            flush=True,
        )

    rec("floor: SELECT count(*)", floor, None)
    rec("floor: count(*) WHERE action='deploy'", floor_scan, None)
    rec("floor: json ->> env over all payloads", floor_json, None)
    rec("status, all models (warm, in-process)", _best(lambda: led.status()), 0.5)
    rec("status --env production (warm)", _best(lambda: led.status(env="production")), 0.5)
    mid = facts["mid_ts"]
    rec("status --as-of mid (warm)", _best(lambda: led.status(as_of=mid)), 0.5)
    rec(
        "status --env production --as-of mid",
        _best(lambda: led.status(env="production", as_of=mid)),
        0.5,
    )
    rec("status --at-seq n/2 (warm)", _best(lambda: led.status(at_seq=n // 2)), 0.5)
    rec("status MODEL --as-of mid", _best(lambda: led.status(facts["model"], as_of=mid)), 0.5)
    rec("history MODEL (warm)", _best(lambda: led.history(facts["model"])), 0.5)
    params = {
        "production-history": {"model": facts["model"]},
        "dataset-exposure": {"dataset": facts["dataset"]},
    }
    for q in load_queries():
        rec(f"query {q}", _best(lambda q=q: led.query(q, params.get(q)), 3), 1.0)
        rec(
            f"query {q} --as-of mid",
            _best(lambda q=q: led.query(q, params.get(q), as_of=mid), 3),
            0.5,
        )
    rec("CLI: ledger --version (start-up)", _cli(["--version"], path), None)
    rec("CLI: ledger status --format csv (fresh)", _cli(["status", "--format", "csv"], path), 1.0)
    rec("CLI: ledger status (table, fresh)", _cli(["status"], path), 1.0)
    tmp.cleanup()
    return out


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else "small")
