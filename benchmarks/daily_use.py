"""The ``daily_use`` part: a ledger as a registry writes it, one action at a time.

A CI job registers, a reviewer approves, a pipeline deploys: each a separate API call,
``ledger`` process or writer process, and nobody runs ``ledger compact``. This part
builds such a ledger (``EVENTS`` single durable appends) and measures what its users
meet, each figure beside its target and, where one exists, the peer or limit measured
in the same run (docs: benchmarks/README.md, "Daily use"):

- the single-append rate over the first and the last 10% of the API appends;
- the segment files left at the end (automatic merges only);
- ``status``, ``log --limit 20``, ``query unapproved-deployments``, ``verify`` as fresh
  CLI processes on that ledger and on a compacted copy of it;
- fresh-process ``lineage M:V`` and ``impact --dataset D`` on the scale's generated
  ledger (1M events at full scale): wall time and peak RSS;
- warm API point reads (versions of a model, what is live in an environment);
- 16 threads x 100 single appends through one ``Ledger`` against one thread, and
  against the MLflow single-writer rate of the peer run.

``python -m benchmarks.daily_use writer PATH KEYFILE MODEL N`` is the writer process
(a separate interpreter: no shared lock object, no shared memory).
"""

from __future__ import annotations

import collections
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

#: Single appends in the ledger this part builds, per scale (the issue: 5,000 at small,
#: 100,000 at full); writer processes, CLI registers and threads for the group commit.
PLAN = {
    "tiny": {"events": 300, "procs": 2, "per_proc": 10, "cli": 2, "threads": 4, "each": 10},
    "small": {"events": 5_000, "procs": 4, "per_proc": 50, "cli": 10, "threads": 16, "each": 100},
    "full": {"events": 100_000, "procs": 4, "per_proc": 250, "cli": 20, "threads": 16, "each": 100},
}
ENVS = ("staging", "production")
DIGESTS = [f"sha256:{i:064x}" for i in range(1, 21)]


def _keys() -> dict[str, Any]:
    from ledger import SigningKey

    return {
        n: SigningKey(bytes([i + 40]) * 32)
        for i, n in enumerate(("admin", "alice", "bob", "carol"))
    }


def _init(path: Path) -> Any:
    from ledger import Ledger

    keys = _keys()
    led = Ledger.init(path, keys["admin"], "admin", origin="bench.example/daily")
    for name, role in (("alice", "registrar"), ("bob", "approver"), ("carol", "deployer")):
        led.add_key(keys[name].public_key, name, role, key=keys["admin"])
    return led


class _Actions:
    """The next action of a registry's life: each model registers a version (its
    parent the previous one, datasets from a shared pool, a commit), approves and
    deploys it to staging, then production; now and then it undeploys."""

    def __init__(self, models: int) -> None:
        self.models = [f"daily.team{i % 7}.model-{i:04d}" for i in range(models)]
        self.version: dict[str, int] = collections.Counter()
        self.step: dict[str, int] = collections.Counter()
        self.i = 0

    def next(self, led: Any, keys: dict[str, Any]) -> None:
        m = self.models[self.i % len(self.models)]
        self.i += 1
        s = self.step[m] % 6
        self.step[m] += 1
        v = self.version[m]
        if s == 0 or v == 0:
            self.version[m] += 1
            v = self.version[m]
            parents = [f"{m}:{v - 1}=finetune"] if v > 1 else []
            d = DIGESTS[(self.i * 7) % len(DIGESTS)]
            led.register(
                m,
                key=keys["alice"],
                artifact={"digest": f"sha256:{self.i:064x}"},
                parents=parents,
                datasets=[f"train=s3://data/{d[-4:]}.parquet@{d}"],
                code=f"https://git.example/{m}@{self.i:040x}",
                metrics=[f"auc=0.{80 + self.i % 19}"],
            )
            if s != 0:
                self.step[m] = 1
        elif s in (1, 3):
            led.approve(m, v, ENVS[s // 3], key=keys["bob"])
        elif s in (2, 4):
            led.deploy(m, v, ENVS[s // 3], key=keys["carol"])
        else:
            led.undeploy(m, v, "staging", key=keys["carol"])


def writer(path: str, keyfile: str, model: str, n: int) -> None:
    """A separate writer process: ``n`` registers of ``model``, each a durable append."""
    from ledger import Ledger
    from ledger.keys import load_signing_key

    led = Ledger.open(path)
    key = load_signing_key(Path(keyfile))
    for i in range(n):
        led.register(model, key=key, artifact={"digest": f"sha256:{i:064x}"})


def _cli() -> tuple[list[str], dict[str, str]]:
    """The console script beside this interpreter, and an environment that keeps
    bytecode (this sandbox sets PYTHONDONTWRITEBYTECODE; an installed package has it)."""
    from .__main__ import cache_dir

    beside = Path(sys.executable).parent / "ledger"
    exe = str(beside) if beside.is_file() else shutil.which("ledger")
    argv = [exe] if exe else [sys.executable, "-c", "from ledger.cli import main; main()"]
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache_dir() / "pycache")
    return argv, env


def _fresh(args: list[str], runs: int) -> tuple[float, int]:
    """Best wall time of ``runs`` fresh CLI processes, and the peak RSS (KiB) of the
    best one, read by a small parent that runs nothing else."""
    argv, env = _cli()
    probe = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
        "t = time.perf_counter() - t\n"
        "if p.returncode not in (0, 1): sys.exit(p.stderr.decode()[-300:])\n"
        "print(t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    subprocess.run([*argv, "--version"], capture_output=True, env=env)  # fills the pycache
    best: tuple[float, int] | None = None
    for _ in range(runs):
        p = subprocess.run(
            [sys.executable, "-c", probe, *argv, *args], capture_output=True, text=True, env=env
        )
        if p.returncode != 0:
            raise RuntimeError(f"ledger {' '.join(args[:2])} failed: {p.stderr.strip()[-300:]}")
        t, rss = p.stdout.split()
        if best is None or float(t) < best[0]:
            best = (float(t), int(rss))
    assert best is not None
    return best


def _build(run: Any, plan: dict[str, int], path: Path) -> tuple[list[float], int]:
    """The daily ledger: API appends through one Ledger, with bursts of fresh CLI
    registers and concurrent writer processes at three points. Returns the duration of
    each API append and the events written."""
    from ledger import Ledger
    from ledger.keys import write_key_files

    led = _init(path)
    keys = _keys()
    keyfile = run.work / "daily-alice.pem"
    if not keyfile.exists():
        write_key_files(keyfile, keys["alice"])
    argv, env = _cli()
    n = plan["events"]
    others = 3 * (plan["procs"] * plan["per_proc"] + plan["cli"])
    api = max(10, n - others - 4)
    bursts = {api // 4, api // 2, 3 * api // 4}
    actions = _Actions(max(5, n // 40))
    durations: list[float] = []
    for i in range(api):
        if i in bursts:
            led = None  # (the writer processes and CLI runs open the folder themselves)
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.daily_use",
                        "writer",
                        str(path),
                        str(keyfile),
                        f"daily.proc.writer-{k}",
                        str(plan["per_proc"]),
                    ],
                    env=env,
                )
                for k in range(plan["procs"])
            ]
            for c in range(plan["cli"]):
                subprocess.run(
                    [*argv, "register", "daily.cli.job", "--ledger", str(path), "--key",
                     str(keyfile), "--artifact-digest", f"sha256:{i + c:064x}"],
                    env=env, check=True, capture_output=True,
                )  # fmt: skip
            for p in procs:
                if p.wait() != 0:
                    raise RuntimeError("a writer process failed")
            led = Ledger.open(path)
        t0 = time.perf_counter()
        actions.next(led, keys)
        durations.append(time.perf_counter() - t0)
    return durations, Ledger.open(path).verify().events


def _rate(durations: list[float]) -> float:
    return len(durations) / sum(durations)


def _pick_family(path: Path) -> tuple[str, str]:
    """A version with ancestors (the median register naming parents) and the dataset
    digest most versions were trained on, from the index (not timed)."""
    from ledger import Ledger

    led = Ledger.open(path)
    with led.store.reading():
        bundles = led.store.bundles()
        counts: collections.Counter[str] = collections.Counter()
        parents: list[tuple[str, int]] = []
        for b in bundles:
            for key in b.edge_keys("digest"):
                counts[key] += len(b.edges("digest", key))
            for key in b.edge_keys("parent"):
                parents.extend((e["model"], e["version"]) for e in b.edges("parent", key))
    parents.sort()
    m, v = parents[len(parents) // 2]
    return f"{m}:{v}", counts.most_common(1)[0][0]


def _threads(plan: dict[str, int], path: Path, threads: int) -> float:
    """Events/s of ``threads`` threads x ``each`` single appends through one Ledger."""
    led = _init(path)
    keys = _keys()
    each = plan["each"]
    errors: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def work(k: int) -> None:
        start.wait()
        try:
            for i in range(each):
                led.register(f"daily.thread.t{k:02d}", key=keys["alice"],
                             artifact={"digest": f"sha256:{i:064x}"})  # fmt: skip
        except BaseException as exc:  # (reported below)
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return threads * each / dt


def run_daily_use(run: Any) -> None:
    from ledger import Ledger

    plan = PLAN[run.scale]
    runs = 1 if run.scale == "tiny" else 3
    path = run.work / "daily"
    if path.exists():
        shutil.rmtree(path)
    t_build = time.perf_counter()
    durations, events = _build(run, plan, path)
    t_build = time.perf_counter() - t_build
    tenth = max(1, len(durations) // 10)
    first, last = _rate(durations[:tenth]), _rate(durations[-tenth:])
    run.add("daily_use", "append_first_10pct", first, "events/s", limit="atomic_file",
            note=f"{tenth} single durable API appends, the first 10% of {len(durations):,}")  # fmt: skip
    run.add("daily_use", "append_last_10pct", last, "events/s", limit="atomic_file",
            note=f"the last 10%; the ledger then held {events:,} events")  # fmt: skip
    run.add("daily_use", "append_rate_ratio", last / first, "x", target=">= 0.8",
            check=lambda v, r: v >= 0.8,
            note=f"last 10% over first 10%; built in {t_build:.0f} s with {plan['procs']}"
            f" writer processes x {plan['per_proc']} and {plan['cli']} CLI registers at"
            " each of three points")  # fmt: skip
    segs = len(list((path / "events").glob("*.parquet")))
    bound = 4 * math.log2(events)
    run.add("daily_use", "segments", segs, "files", target=f"<= 4*log2(n) = {bound:.0f}",
            check=lambda v, r: v <= bound, note=f"segment files for {events:,} events, no compact")  # fmt: skip

    compacted = run.work / "daily-compacted"
    if compacted.exists():
        shutil.rmtree(compacted)
    shutil.copytree(path, compacted)
    Ledger.open(compacted).compact()
    some = Ledger.open(path).events(columns=["model"], last=1)["model"][0].as_py()
    reads = {
        "status": ["status"],
        "log_limit_20": ["log", "--limit", "20"],
        "query_unapproved": ["query", "unapproved-deployments"],
        "verify": ["verify"],
        "status_model": ["status", some],
    }
    for name, args in reads.items():
        daily, _ = _fresh([*args, "--ledger", str(path)], runs)
        flat, _ = _fresh([*args, "--ledger", str(compacted)], runs)
        run.add("daily_use", f"{name}_daily", daily, "s", note=f"fresh `ledger {' '.join(args)}`, {segs} segments")  # fmt: skip
        run.add("daily_use", f"{name}_vs_compacted", daily / flat, "x", target="<= 1.3",
                check=lambda v, r: v <= 1.3, note=f"over {flat:.3f} s on the compacted copy")  # fmt: skip

    big = run.path
    assert big is not None
    ref, digest = _pick_family(big)
    n_big = run.built_facts.get("events", 0)
    t, rss = _fresh(["lineage", ref, "--ledger", str(big)], runs)
    run.add("daily_use", "fresh_lineage", t, "s", limit="import_ledger_cli", target="<= 0.6 s",
            check=lambda v, r: v <= 0.6, note=f"`ledger lineage {ref}` on {n_big:,} events")  # fmt: skip
    run.add("daily_use", "fresh_lineage_rss", rss / 1024, "MB", target="<= 300 MB",
            check=lambda v, r: v <= 300, note="peak RSS of that process")  # fmt: skip
    t, rss = _fresh(["impact", "--dataset", digest, "--format", "csv", "--ledger", str(big)], runs)
    run.add("daily_use", "fresh_impact", t, "s", limit="import_ledger_cli", target="<= 0.6 s",
            check=lambda v, r: v <= 0.6, note=f"`ledger impact --dataset` (the most used digest) on {n_big:,} events, csv")  # fmt: skip
    run.add("daily_use", "fresh_impact_rss", rss / 1024, "MB", target="<= 300 MB",
            check=lambda v, r: v <= 300, note="peak RSS of that process")  # fmt: skip

    led = Ledger.open(big)
    model = ref.rsplit(":", 1)[0]
    led.status(model)  # (warms the cache the point reads keep)
    mlflow = getattr(run, "mlflow", None) or {}
    for name, fn, peer in (
        ("warm_versions", lambda: led.status(model), "search_s"),
        ("warm_live", lambda: led.status(model, "production"), "alias_s"),
    ):
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        times.sort()
        median = times[len(times) // 2]
        note = f"median of 20, API on {n_big:,} events"
        if peer in mlflow:
            note += f"; MLflow (SQLite) {mlflow[peer] / mlflow['reads'] * 1000:.1f} ms in this run"
        run.add("daily_use", name, median * 1000, "ms", target="<= 5 ms", check=lambda v, r: v <= 5, note=note)  # fmt: skip

    one = _threads(plan | {"each": plan["each"]}, run.work / "daily-t1", 1)
    many = _threads(plan, run.work / "daily-tn", plan["threads"])
    run.add("daily_use", "one_thread", one, "events/s", limit="atomic_file", note=f"1 thread x {plan['each']} single appends")  # fmt: skip
    run.add("daily_use", "threads", many, "events/s", limit="atomic_file",
            note=f"{plan['threads']} threads x {plan['each']} through one Ledger (group commit); {many / one:.1f}x one thread")  # fmt: skip
    if "writes" in mlflow:
        rate = mlflow["writes"] / mlflow["write_s"]
        run.add("daily_use", "threads_vs_mlflow", many / rate, "x", target=">= 10", check=lambda v, r: v >= 10,
                note=f"over MLflow's single writer, {rate:.0f} ops/s in this run")  # fmt: skip
    else:
        run.add("daily_use", "threads_vs_mlflow", None, "x", note="no MLflow run (--no-peers or not installed)")  # fmt: skip
    for p in (path, compacted, run.work / "daily-t1", run.work / "daily-tn"):
        shutil.rmtree(p, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["writer"]:
        writer(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
