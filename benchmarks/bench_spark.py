"""Benchmark: the audit queries on Spark SQL (``--engine spark``) beside DuckDB (issue 19).

Builds the 1M-event synthetic ledger of benchmarks/bench_queries.py (the real segment
schema and layout, random signature bytes: queries never read them), or uses the ledger
in $LEDGER_BENCH_PATH. For each named query it prints DuckDB's best of 3, Spark's
first run (planning and code generation included) and Spark's second run, and whether
the two engines gave the same rows. The Spark driver's start is reported on its own.

    python -m benchmarks.bench_spark [EVENTS] [--master URL]

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_queries import _best, build_synthetic
from ledger import Ledger, sparkquery
from ledger import query as duck
from ledger.query import Session, load_queries


def _facts(led: Ledger) -> dict[str, dict[str, Any]]:
    s = Session(led.store)
    try:
        model = s.run(
            "SELECT model FROM deployment_log WHERE env = 'production'"
            " GROUP BY model ORDER BY count(*) DESC, model LIMIT 1"
        ).to_pylist()[0]["model"]
        dataset = s.run(
            "SELECT d.digest FROM live JOIN datasets d USING (model, version) LIMIT 1"
        ).to_pylist()[0]["digest"]
    finally:
        s.close()
    return {
        "production-history": {"model": model},
        "dataset-exposure": {"dataset": dataset},
        "live-by-package": {"package": "numpy"},
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("events", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--master", default=None)
    ap.add_argument("--only", nargs="*", help="only these queries")
    a = ap.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    if os.environ.get("LEDGER_BENCH_PATH"):
        path, kind = Path(os.environ["LEDGER_BENCH_PATH"]), "given ledger"
    else:
        path = Path(tmp.name) / "reg"
        t = time.perf_counter()
        build_synthetic(path, events=a.events, models=max(1, a.events // 100))
        kind = f"synthetic ledger, built in {time.perf_counter() - t:.0f} s"
    led = Ledger.open(path)
    n = led.store.segments()[-1].last + 1
    print(f"{n:,} events ({kind}); {len(led.store.segments())} segments", flush=True)
    params = _facts(led)
    t = time.perf_counter()
    engine = sparkquery.engine(a.master)
    print(
        f"Spark driver start ({engine.master}): {engine.start_seconds:.1f} s"
        f" (measured from the caller: {time.perf_counter() - t:.1f} s)",
        flush=True,
    )
    print(f"{'query':<26} {'DuckDB':>9} {'Spark 1st':>10} {'Spark 2nd':>10} {'ratio':>6} rows same")
    for name in load_queries():
        if a.only and name not in a.only:
            continue
        p = params.get(name)
        d_table = duck.named(led.store, name, p)[0]
        d = _best(lambda name=name, p=p: duck.named(led.store, name, p), 3)
        t = time.perf_counter()
        s_table = sparkquery.named(led.store, name, p, master=a.master)[0]
        first = time.perf_counter() - t
        t = time.perf_counter()
        sparkquery.named(led.store, name, p, master=a.master)
        second = time.perf_counter() - t
        same = s_table.to_pylist() == d_table.to_pylist()
        print(
            f"{name:<26} {d * 1000:>7.0f}ms {first:>9.1f}s {second:>9.1f}s"
            f" {second / max(d, 1e-9):>5.0f}x {d_table.num_rows:>5} {'yes' if same else 'NO'}",
            flush=True,
        )
    sparkquery.stop()
    tmp.cleanup()


if __name__ == "__main__":
    main()
