"""``python -m benchmarks run [--scale tiny|small|full] [--only NAME] [--json FILE]``.

One run measures, in this order: the machine's physical limits (``benchmarks.limits``),
the ledger's operations on a generated ledger (``benchmarks.generator``), the other
engineers' benchmark scripts (``benchmarks/bench_*.py``, each ``run(scale)``) and the
peers (MLflow on SQLite, GTO on git, each in its own virtualenv under
``benchmarks/.venvs``). It prints one table, every figure beside the limit it is bounded
by and the ratio to it, and writes every row to a JSON file.

``--only NAME[,NAME…]`` runs the groups or rows whose name contains one of the NAMEs
(e.g. ``limit``, ``append``, ``verify``, ``peers``, ``lineage``, ``daily``). Generated ledgers are cached in
``$LEDGER_BENCH_CACHE`` (default ``/tmp/ledger-bench-cache``) because a million signed
events take minutes to build; every operation that writes works on a copy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import generator, harness
from .harness import (  # (keys_for, cache_dir: for the bench_*.py scripts)
    HERE,
    SCALES,
    Run,
    _header,
    cache_dir,
    keys_for,
    ledger_for,
    machine,
)
from .operations import (
    op_batch_append,
    op_checkpoint_since_prove,
    op_cli_register,
    op_daily_use,
    op_disk,
    op_generator,
    op_limits,
    op_lineage,
    op_log_export,
    op_peers,
    op_queries,
    op_scripts,
    op_single_appends,
    op_verify,
)

__all__ = ["cache_dir", "keys_for", "ledger_for", "main", "run"]


OPS: list[tuple[str, Callable[[Run], None]]] = [
    ("generator", op_generator),
    ("append", op_batch_append),
    ("append_single", op_single_appends),
    ("cli_register", op_cli_register),
    ("verify", op_verify),
    ("since_prove", op_checkpoint_since_prove),
    ("status_queries", op_queries),
    ("lineage_export", op_lineage),
    ("log_export", op_log_export),
    ("disk", op_disk),
    ("scripts", op_scripts),
    ("peers", op_peers),
    ("daily_use", op_daily_use),
]


def run(
    scale: str = "small",
    only: str | None = None,
    json_path: str | None = None,
    peers: bool = True,
    work: Path | None = None,
    skip: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Run the benchmarks; returns the rows (also printed, and written to ``json_path``)."""
    harness.RUNS = {"tiny": 1, "small": 3, "full": 2}[scale]
    info = machine()
    print(
        f"ledger benchmarks, scale {scale}: {info['date']}, {info['cores']} cores"
        f" ({info['cpu']}), Python {info['python']}, load {info['loadavg_start'][0]:.1f}"
    )
    own_work = work is None
    work = work or Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    r = Run(scale, only, work, peers)
    try:
        p = SCALES[scale]
        t0 = time.perf_counter()
        if scale == "tiny":
            path = work / "tiny"
            built = generator.build(path, events=p["events"], models=p["models"], seed=0)
            facts = json.loads(
                json.dumps(
                    {k: v for k, v in vars(built.facts).items() if k != "revoked"}, default=list
                )
            )
        else:
            path, facts = ledger_for(p["events"], p["models"])
        r.path, r.built_facts = path, facts
        print(
            f"  ledger: {path} ({facts['events']:,} events) ready in"
            f" {time.perf_counter() - t0:.1f} s"
        )
        _header()
        op_limits(r)
        for name, fn in OPS:
            if (name == "peers" and not peers) or name in skip:
                continue
            if not r.wanted(name) and name not in ("scripts", "peers"):
                continue
            if name == "peers" and not r.wanted("peers", "mlflow", "gto"):
                continue
            t_op = time.perf_counter()
            try:
                fn(r)
                r.elapsed[name] = time.perf_counter() - t_op
            except Exception as exc:
                traceback.print_exc()
                r.add(name, "failed", None, "", note=f"{type(exc).__name__}: {exc}")
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    info["loadavg_end"] = os.getloadavg()
    info["seconds_per_part"] = {k: round(v, 2) for k, v in r.elapsed.items()}
    print("seconds per part: " + ", ".join(f"{k} {v:.1f}" for k, v in r.elapsed.items()))
    missed = [x["name"] for x in r.rows if x.get("ok") is False]
    print(f"targets missed: {', '.join(missed) if missed else 'none'}")
    print(
        f"load average at start {info['loadavg_start'][0]:.1f}, at end {info['loadavg_end'][0]:.1f}"
    )
    if json_path:
        Path(json_path).write_text(
            json.dumps({"machine": info, "scale": scale, "rows": r.rows}, indent=1, default=str)
        )
        print(f"wrote {json_path}")
    return r.rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("run", help="run the benchmarks")
    rp.add_argument("--scale", choices=list(SCALES), default="small")
    rp.add_argument("--only", help="run only groups/rows whose name contains this")
    rp.add_argument("--json", dest="json_path", help="write the rows to this JSON file")
    rp.add_argument("--no-peers", action="store_true", help="skip MLflow and GTO")
    rp.add_argument("--skip", default="", help="comma-separated parts to skip (see OPS)")
    a = ap.parse_args(argv)
    out = Path(a.json_path or HERE / "results" / f"{a.scale}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    skip = tuple(x for x in a.skip.split(",") if x)
    run(a.scale, a.only, str(out), not a.no_peers, skip=skip)


if __name__ == "__main__":
    main()
