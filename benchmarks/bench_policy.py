"""Policy benchmark: one ``ledger deploy`` checked against a policy, from a fresh process.

Target (issue 6): on a 100,000-event ledger a single ``ledger deploy`` checked against a
realistic policy takes <= 0.5 s wall, from process start to exit.

Scales: ``tiny`` = 400 events, ``small`` = 10k, ``full`` = 100k (the target's size).
Ledgers come from ``benchmarks.generator`` and are cached in ``$LEDGER_BENCH_CACHE``
(default ``/tmp/ledger-bench-cache``); pass ``--ledger PATH`` to use an existing one. The
benchmark works on a copy, so the cached ledger is never changed.

What it does: registers a fresh version of a busy model, approves it for staging,
deploys it there and approves it twice for production (all through the library); then
times ``ledger deploy MODEL:V --env production`` as a fresh process (the console script,
no shell; wall time, and the child's user+sys CPU time, which a loaded machine
inflates less), undoing each deploy in between, first with no policy and then under a policy
that switches every rule on. It also times a refused deploy (too few approvals) and the
policy check itself in process.

Limits printed beside the figures, measured in the same run and environment:
``python -c pass`` and ``python -c 'import ledger.cli'`` (interpreter start and the CLI's
imports: the floor under any fresh-process command), wall and CPU. Children run with a
bytecode cache (a private ``PYTHONPYCACHEPREFIX``), as on a normal install; where
``PYTHONDONTWRITEBYTECODE`` is set, one more row shows the deploy compiling every module.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCALES = {"tiny": 400, "small": 10_000, "full": 100_000}
TARGET_S = 0.5
RUNS = 5

POLICY: dict[str, Any] = {
    "description": "benchmark: every rule switched on",
    "approvals": {"required": {"staging": 1, "production": 2}, "max_age_days": 90},
    "separation_of_duties": {"registrant_may_not_approve": True, "approver_may_not_deploy": True},
    "register_metadata": {
        "artifact_digest": True,
        "datasets_with_digest": 1,
        "code_commit": True,
        "tags": ["risk_tier"],
        "metrics": ["auc >= 0.5"],
    },
    "promotion_order": {"environments": ["staging", "production"]},
    "signers": [
        {"action": "deploy", "env": "production", "actors": ["carol", "sybil", "walter"]},
        {"action": "policy_set", "actors": ["admin"]},
    ],
}


def _source(scale: str, path: str | None) -> Path:
    if path:
        return Path(path)
    from benchmarks import generator

    events = SCALES[scale]
    cache = Path(os.environ.get("LEDGER_BENCH_CACHE", "/tmp/ledger-bench-cache"))
    target = cache / f"policy-{events}-seed0"
    if not (target / "ledger.json").exists():
        cache.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        bigger = cache / "bench-1000000-seed0"  # the harness's full-scale ledger
        if (bigger / "ledger.json").exists() and _prefix(bigger, events, target):
            return target
        generator.build(target, events=events, seed=0)
    return target


def _prefix(src: Path, events: int, dst: Path) -> bool:
    """Copy the first ``events`` events of a generated ledger (a prefix of a valid chain
    is a valid ledger; seed-0 keys are the same), cutting the last segment. Much faster
    than generating; False if ``src`` is too short."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ledger.store import _DICT_COLUMNS, _STATS_COLUMNS, ROW_GROUP, Store

    segs = Store(src).segments()
    if not segs or segs[-1].last < events - 1:
        return False
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "events").mkdir(parents=True)
    shutil.copy2(src / "ledger.json", tmp / "ledger.json")
    for seg in segs:
        if seg.first >= events:
            break
        if seg.last < events:
            shutil.copy2(seg.path, tmp / "events" / seg.path.name)
            continue
        table = pq.read_table(seg.path)
        table = table.filter(pc.less(table["seq"], events))
        name = f"{seg.first:012d}-{events - 1:012d}.parquet"
        pq.write_table(
            table,
            tmp / "events" / name,
            compression="zstd",
            row_group_size=ROW_GROUP,
            use_dictionary=_DICT_COLUMNS,
            write_statistics=_STATS_COLUMNS,
        )
    tmp.rename(dst)
    return True


def _current_key(led: Any, name: str) -> Any:
    """The generator derives keys from the seed; find ``name``'s active one."""
    from benchmarks.generator import _key

    active = {k.key_id for k in led.keys() if k.active and k.actor == name}
    for label in (name, f"{name}.2"):
        key = _key(0, label)
        if key.key_id in active:
            return key
    raise SystemExit(f"no active key of {name} derived from seed 0 in this ledger")


_CPU: list[float] = []  # user+sys CPU seconds of each timed child, beside its wall time


def _wall(argv: list[str], env: dict[str, str], ok: bool = True) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    _CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    if (r.returncode == 0) != ok:
        raise SystemExit(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()}")
    return wall


def run(scale: str = "full", ledger: str | None = None) -> list[dict[str, Any]]:
    from benchmarks import limits
    from ledger import Ledger
    from ledger import events as E
    from ledger.keys import write_key_files

    src = _source(scale, ledger)
    scratch = Path(tempfile.mkdtemp(prefix="bench-policy-"))
    try:
        work = scratch / "ledger"
        shutil.copytree(src, work)
        led = Ledger.open(work)
        keys = {n: _current_key(led, n) for n in ("admin", "alice", "bob", "olivia", "carol")}
        kfile = scratch / "carol.pem"
        write_key_files(kfile, keys["carol"])
        # The model with the most versions: the write path replays the most for it.
        busiest = max(led.state().latest.items(), key=lambda kv: kv[1])[0]
        r = led.register(
            busiest,
            key=keys["alice"],
            artifact={"digest": "sha256:" + "5a" * 32},
            datasets=["train=s3://bench/train.parquet@sha256:" + "1c" * 32],
            code="https://git.example/bench@0123abcd",
            metrics=["auc=0.9"],
            tags=["risk_tier=low"],
        )
        v = r.version
        led.approve(busiest, v, "staging", key=keys["bob"])
        led.deploy(busiest, v, "staging", key=keys["carol"])
        led.approve(busiest, v, "production", key=keys["bob"])
        led.approve(busiest, v, "production", key=keys["olivia"])
        exe = Path(sys.executable).with_name("ledger")
        cmd = [str(exe) if exe.exists() else "ledger", "deploy", f"{busiest}:{v}"]
        cmd += ["--env", "production", "--comment", "bench"]
        # Children run as on a normal install: bytecode cached (here in a private
        # folder, warmed below), even where PYTHONDONTWRITEBYTECODE is set.
        nopyc = os.environ | {"LEDGER_PATH": str(work), "LEDGER_KEY": str(kfile)}
        env = {k: v for k, v in nopyc.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")

        def cycle(env: dict[str, str] = env) -> list[float]:
            walls = []
            for _ in range(RUNS):
                walls.append(_wall(cmd, env))
                led.undeploy(busiest, v, "production", key=keys["carol"])
            return walls

        cycle()  # warm the bytecode cache and the page cache
        _CPU.clear()
        bare = cycle()
        bare_cpu = min(_CPU)
        led.set_policy(POLICY, key=keys["admin"])
        _CPU.clear()
        checked = cycle()
        checked_cpu = min(_CPU)
        cold = cycle(nopyc) if nopyc.get("PYTHONDONTWRITEBYTECODE") else None
        events = led.store.tail()[0]

        # A refusal: a second fresh version, one production approval short.
        r2 = led.register(
            busiest,
            key=keys["alice"],
            artifact={"digest": "sha256:" + "5b" * 32},
            datasets=["train=s3://bench/train.parquet@sha256:" + "1c" * 32],
            code="https://git.example/bench@0123abcd",
            metrics=["auc=0.9"],
            tags=["risk_tier=low"],
        )
        led.approve(busiest, r2.version, "staging", key=keys["bob"])
        led.deploy(busiest, r2.version, "staging", key=keys["carol"])
        led.approve(busiest, r2.version, "production", key=keys["bob"])
        refuse = [*cmd[:2], f"{busiest}:{r2.version}", *cmd[3:]]
        _CPU.clear()
        refused = [_wall(refuse, env, ok=False) for _ in range(RUNS)]
        refused_cpu = min(_CPU)

        # The policy check alone, in process, on the State the write path builds.
        from ledger import policy as P

        st = led.state(models={busiest})
        ev = E.Event(
            st.next_seq, E.now_micros(), led.origin, E.DEPLOY, "carol",
            keys["carol"].key_id, {"env": "production"}, "0" * 64, busiest, v,
        )  # fmt: skip
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            P.check(st, ev)
        check_us = (time.perf_counter() - t0) / n * 1e6

        # The floor, in the children's environment: interpreter start, the CLI's imports.
        py = sys.executable
        start = min(_wall([py, "-c", "pass"], env) for _ in range(RUNS))
        _CPU.clear()
        imp = min(_wall([py, "-c", "import ledger.cli"], env) for _ in range(RUNS))
        floor = [
            limits.row("python_startup", start, "s", "python -c pass"),
            limits.row("import_ledger_cli", imp, "s", "python -c 'import ledger.cli'"),
            limits.row("import_ledger_cli_cpu", min(_CPU), "s", "user+sys CPU of the same"),
        ]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    note = f"{events:,} events, {busiest}:{v}, best of {RUNS} fresh processes"
    rows = [
        {
            "name": "deploy_policy_checked_fresh_process",
            "value": min(checked),
            "unit": "s",
            "target": TARGET_S,
            "median": statistics.median(checked),
            "max": max(checked),
            "cpu": checked_cpu,
            "note": note,
        },
        {
            "name": "deploy_no_policy_fresh_process",
            "value": min(bare),
            "unit": "s",
            "median": statistics.median(bare),
            "max": max(bare),
            "cpu": bare_cpu,
            "note": "same ledger before the policy was set",
        },
        {
            "name": "deploy_refused_by_policy_fresh_process",
            "value": min(refused),
            "unit": "s",
            "target": TARGET_S,
            "median": statistics.median(refused),
            "max": max(refused),
            "cpu": refused_cpu,
            "note": "exit 4, too few approvals",
        },
        {
            "name": "policy_check_in_process",
            "value": check_us,
            "unit": "us",
            "note": "ledger.policy.check on the write path's State, every rule on",
        },
    ]
    if cold:
        rows.append(
            {
                "name": "deploy_policy_checked_no_bytecode_cache",
                "value": min(cold),
                "unit": "s",
                "median": statistics.median(cold),
                "note": "as this environment runs (PYTHONDONTWRITEBYTECODE): compiles every module",
            }
        )
    limit = {r["name"]: r["value"] for r in floor}
    for r in rows:
        if r["unit"] == "s":
            r["limit"] = limit.get("import_ledger_cli")
    return rows + floor


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--ledger", help="Use this ledger (copied; never changed).")
    args = ap.parse_args(argv)
    for r in run(args.scale, args.ledger):
        extra = "".join(
            f"  {k}={r[k]:.3f}" if isinstance(r[k], float) else f"  {k}={r[k]}"
            for k in ("median", "max", "cpu", "target", "limit")
            if r.get(k) is not None
        )
        print(f"{r['name']:<42} {r['value']:>10.4f} {r['unit']:<3}{extra}  {r.get('note', '')}")


if __name__ == "__main__":
    main()
