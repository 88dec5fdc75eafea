"""The operations one benchmark run measures, each ``op_NAME(run)`` adding its rows to
the :class:`~benchmarks.harness.Run` (with the limit or peer it is bounded by)."""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import generator, limits
from .harness import (
    BATCH,
    SCRIPTS,
    Run,
    _print_row,
    best,
    cache_dir,
    copy_ledger,
    du,
    keys_for,
    ledger_for,
)

# --- operations --------------------------------------------------------------------------


def op_limits(run: Run) -> None:
    rows = limits.measure(run.path, 0.02 if run.scale == "tiny" else 1.0)
    for r in rows:
        run.limits[r["name"]] = r["value"]
        if run.wanted("limit", r["name"]):
            run.rows.append(r | {"limit": None, "ratio": None, "target": None, "ok": None})
            _print_row(run.rows[-1])


def _import_drafts(n: int, seed: int) -> list[Any]:
    """``n`` realistic drafts of new models (prefix ``import.``), no timestamps."""
    from ledger import events as E

    world = generator._World(seed, max(1, n // 100), prefix="import")
    out: list[Any] = []
    while len(out) < n:
        out += world.week_events(max(1, n // 80), max(1, n // 1000), [])
    return [
        E.Draft(a, kw.get("payload", {}), kw.get("model"), kw.get("version"))
        for _, a, kw in out[:n]
    ]


def op_batch_append(run: Run) -> None:
    """append_many of BATCH-event batches by one importer key holding every model role."""
    from ledger import Ledger, SigningKey
    from ledger import events as E

    n = run.p["batch"]
    drafts = _import_drafts(n, seed=1)
    path = run.work / "batch"
    if path.exists():
        shutil.rmtree(path)
    admin, imp = SigningKey(b"\x01" * 32), SigningKey(b"\x02" * 32)
    led = Ledger.init(path, admin, "admin")
    led.add_key(imp.public_key, "importer", "registrar,approver,deployer", key=admin)
    batch = min(BATCH, n)
    run.remeasure("ed25519_sign_1core", "batch_append")
    # The first batch starts the signing helper (once per process): timed apart.
    t0 = time.perf_counter()
    c0 = time.process_time()
    led.append_many(drafts[:batch], imp)
    first, cpu_first = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(batch, n, batch):
        led.append_many(drafts[i : i + batch], imp)
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    done = n - batch
    if done <= 0:  # tiny scale: one batch is all there is
        done, dt, cpu = batch, first, cpu_first
    rate = done / dt
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(_count_actions(drafts).items()))
    run.add(
        "ledger",
        "batch_append",
        rate,
        "events/s",
        limit="ed25519_sign_1core",
        target=">= 70% of 1-core sign",
        check=lambda v, r: r is not None and r >= 0.70,
        note=f"{done:,} events in {batch:,}-event batches; main-process CPU"
        f" {cpu / done * 1e6:.1f} µs/event; mix: {kinds}",
    )
    run.add(
        "ledger",
        "batch_append_cpu",
        done / cpu,
        "events/s",
        limit="ed25519_sign_1core_cpu",
        note="per CPU-second of the main process (the helper signs; this process signs the"
        " chunks the helper has not started when a batch ends)",
    )
    run.add(
        "ledger",
        "batch_append_first",
        batch / first,
        "events/s",
        limit="ed25519_sign_1core",
        note="first batch of the process (starts the signing helper)",
    )
    os.environ["LEDGER_SIGN_WORKERS"] = "0"
    try:
        path2 = run.work / "batch-serial"
        if path2.exists():
            shutil.rmtree(path2)
        led2 = Ledger.init(path2, admin, "admin")
        led2.add_key(imp.public_key, "importer", "registrar,approver,deployer", key=admin)
        m = min(n, 2 * batch)
        t0 = time.perf_counter()
        for i in range(0, m, batch):
            led2.append_many(drafts[i : i + batch], imp)
        dt = time.perf_counter() - t0
    finally:
        del os.environ["LEDGER_SIGN_WORKERS"]
    run.add(
        "ledger",
        "batch_append_1core",
        m / dt,
        "events/s",
        limit="ed25519_sign_1core",
        note="same, signing in-process (LEDGER_SIGN_WORKERS=0)",
    )
    del E


def _count_actions(drafts: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in drafts:
        out[d.action] = out.get(d.action, 0) + 1
    return out


def op_single_appends(run: Run) -> None:
    """Durable single appends through the API on a copy of the scale's ledger."""
    from ledger import Ledger

    assert run.path is not None
    path = copy_ledger(run.path, run.work / "singles")
    keys = keys_for()
    led = Ledger.open(path)
    n = run.p["singles"]
    t0 = time.perf_counter()
    r = led.register("bench.single", key=keys["alice"], artifact={"digest": "sha256:" + "ab" * 32})
    first = time.perf_counter() - t0
    run.add(
        "ledger",
        "api_append_first",
        first,
        "s",
        note="first append of a fresh Ledger object: replays the touched models only",
    )
    t0 = time.perf_counter()
    led.approve("bench.single", r.version, "staging", key=keys["bob"])
    second = time.perf_counter() - t0
    run.add(
        "ledger",
        "api_append_second",
        second,
        "s",
        note="second append: builds the full write-path state once, kept from then on",
    )
    t0 = time.perf_counter()
    for i in range(n):
        if i % 3 == 0:
            r = led.register(
                "bench.single", key=keys["alice"], artifact={"digest": "sha256:" + "cd" * 32}
            )
        elif i % 3 == 1:
            led.approve("bench.single", r.version, "staging", key=keys["bob"])
        else:
            led.deploy("bench.single", r.version, "staging", key=keys["carol"])
    dt = time.perf_counter() - t0
    run.add(
        "ledger",
        "api_append",
        n / dt,
        "events/s",
        limit="atomic_file",
        note=f"{n} single durable appends (register/approve/deploy), each fsynced",
    )
    segs = len(list((path / "events").glob("*.parquet")))
    t, _ = best(led.compact, 1)
    run.add(
        "ledger",
        "compact_after_singles",
        t,
        "s",
        note=f"merges the {segs} segments left by the single appends",
    )


def op_cli_register(run: Run) -> None:
    """Fresh-process ``ledger register`` on a ledger of the size the target names."""
    from ledger.keys import write_key_files

    events = run.p["cli"]
    src = run.path if events == run.p["events"] else ledger_for(events)[0]
    assert src is not None
    path = copy_ledger(src, run.work / "cli")
    keyfile = run.work / "alice.pem"
    if not keyfile.exists():
        write_key_files(keyfile, keys_for()["alice"])
    # The console script installed beside this interpreter: on PATH there may be a
    # wrapper instead (pyenv's shim is a bash script that re-resolves the version, ~80 ms).
    beside = Path(sys.executable).parent / "ledger"
    exe = str(beside) if beside.is_file() else shutil.which("ledger")
    argv = [exe] if exe else [sys.executable, "-m", "ledger.cli"]
    times: list[float] = []
    cpus: list[float] = []
    # This sandbox sets PYTHONDONTWRITEBYTECODE, so every process compiles the ledger's
    # modules; an installed package has its bytecode. Keep a cache outside the repo.
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(cache_dir() / "pycache")
    subprocess.run([*argv, "--version"], capture_output=True, env=env)  # fills the cache
    for i in range(1 if run.scale == "tiny" else 5):
        cmd = [
            *argv,
            "register",
            "bench.cli",
            "--ledger",
            str(path),
            "--key",
            str(keyfile),
            "--artifact-digest",
            "sha256:" + f"{i:02d}" * 32,
            "--metric",
            f"auc=0.9{i}",
        ]
        t0 = time.perf_counter()
        c0 = os.times()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        c1 = os.times()
        times.append(time.perf_counter() - t0)
        cpus.append(c1.children_user - c0.children_user + c1.children_system - c0.children_system)
        if p.returncode != 0:
            run.add("ledger", "cli_register", None, "s", note=f"failed: {p.stderr.strip()}")
            return
    times.sort()
    run.add(
        "ledger",
        "cli_register",
        times[len(times) // 2],
        "s",
        limit="import_ledger_cli",
        target="<= 0.4 s",
        check=lambda v, r: v <= 0.4,
        note=f"median of {len(times)} fresh processes on a {events:,}-event ledger (best"
        f" {times[0]:.3f} s); CPU user+sys {sorted(cpus)[len(cpus) // 2]:.3f} s",
    )


def op_verify(run: Run) -> None:
    from ledger import Ledger

    assert run.path is not None
    led = Ledger.open(run.path)
    n = run.built_facts["events"]
    run.remeasure("ed25519_verify_allcores", "verify_full")
    t0 = time.perf_counter()
    report = led.verify()
    dt = time.perf_counter() - t0
    run.add(
        "ledger",
        "verify_full",
        n / dt,
        "events/s",
        limit="ed25519_verify_allcores",
        target=">= 85% of all-core verify",
        check=lambda v, r: bool(report.ok) and r is not None and r >= 0.85,
        note=f"{n:,} events in {dt:.2f} s; {report.summary()[:60]}",
    )


def op_checkpoint_since_prove(run: Run) -> None:
    """Checkpoint, then 1k new events, then ``verify --since``; inclusion proofs."""
    from ledger import Ledger, SigningKey

    assert run.path is not None
    if not hasattr(Ledger, "checkpoint"):
        run.missing("ledger", "verify_since", "no Ledger.checkpoint (issue 3)")
        return
    path = copy_ledger(run.path, run.work / "since")
    keys = keys_for()
    led = Ledger.open(path)
    cp_key = SigningKey(b"\x03" * 32)
    try:
        led.add_key(cp_key.public_key, "notary", "checkpointer", key=keys["admin"])
        t, _ = best(lambda: led.checkpoint(cp_key), 1)
    except Exception as exc:  # another engineer's feature: report, don't stop the run
        run.missing("ledger", "checkpoint", f"{type(exc).__name__}: {exc}")
        return
    run.add("ledger", "checkpoint", t, "s", note="verifies what is new, signs the tree head")
    files = sorted((path / "checkpoints").glob("*.checkpoint"))
    new = min(1000, max(10, run.p["events"] // 10))
    drafts = _import_drafts(new, seed=2)
    from ledger import events as E

    imp = SigningKey(b"\x02" * 32)
    led.add_key(imp.public_key, "importer", "registrar,approver,deployer", key=keys["admin"])
    led.append_many([E.Draft(d.action, d.payload, d.model, d.version) for d in drafts], imp)
    t, rep = best(lambda: led.verify(since=files[-1]), 1)
    run.add(
        "ledger",
        "verify_since",
        t,
        "s",
        target="<= 1.5 s",
        check=lambda v, r: bool(rep.ok) and v <= 1.5,
        note=f"{new + 1} new events after the checkpoint; {rep.summary()[:50]}",
    )
    led.checkpoint(cp_key)
    seq = run.built_facts["events"] // 2
    t, _ = best(lambda: led.prove(seq), 3)
    run.add("ledger", "prove", t, "s", note=f"inclusion proof of seq {seq}, warm")


def op_queries(run: Run) -> None:
    from ledger import Ledger

    assert run.path is not None
    led = Ledger.open(run.path)
    f = run.built_facts
    if not hasattr(Ledger, "status"):
        run.missing("ledger", "status", "no Ledger.status (issue 4)")
        return
    t, tab = best(lambda: led.status(), 3)
    run.add(
        "ledger",
        "status",
        t,
        "s",
        limit="duckdb_count",
        target="<= 0.5 s warm",
        check=lambda v, r: v <= 0.5,
        note=f"all models, warm; {tab.num_rows} rows",
    )
    model = f["live"][0]
    t, tab = best(lambda: led.status(model), 3)
    run.add("ledger", "status_model", t, "s", note=f"versions of {model}")
    t, tab = best(lambda: led.status(env="production"), 3)
    run.add("ledger", "status_env", t, "s", note=f"live in production: {tab.num_rows} rows")
    t, tab = best(lambda: led.status(as_of=f["mid_ts"]), 3)
    run.add("ledger", "status_as_of", t, "s", note="as of half-way through the history")
    t, tab = best(lambda: led.history(model), 3)
    run.add("ledger", "history", t, "s", note=f"{tab.num_rows} events of {model}")
    params = {"dataset": f["dataset_digest"], "model": model}
    for q in led.queries():
        given = {p.name: params[p.name] for p in q.params if p.required and p.name in params}
        if any(p.required and p.name not in params for p in q.params):
            run.missing("query", q.name, "needs parameters the harness does not know")
            continue
        try:
            t, tab = best(lambda q=q, given=given: led.query(q.name, given), 3)
        except Exception as exc:
            run.add("query", q.name, None, "s", note=f"failed: {type(exc).__name__}: {exc}")
            continue
        run.add("query", q.name, t, "s", limit="duckdb_groupby", note=f"{tab.num_rows} rows, warm")


def op_lineage(run: Run) -> None:
    from ledger import Ledger

    assert run.path is not None
    led = Ledger.open(run.path)
    if not hasattr(Ledger, "lineage_graph"):
        run.missing("lineage", "lineage", "no Ledger.lineage (issue 5)")
        return
    f = run.built_facts
    t, g = best(led.lineage_graph, 1)
    run.add(
        "lineage",
        "graph_build",
        t,
        "s",
        note=f"{g.number_of_nodes():,} nodes, {g.number_of_edges():,} edges",
    )
    deep = "{}:{}".format(*f["deepest"])
    wide = "{}:{}".format(*f["widest"])
    t, _ = best(lambda: led.lineage(deep, "up"), 1)
    run.add("lineage", "up", t, "s", note=f"{deep}: {f['ancestry_depth']} generations up")
    t, _ = best(lambda: led.lineage(wide, "down"), 1)
    run.add("lineage", "down", t, "s", note=f"{wide}")
    t, _ = best(lambda: led.impact(dataset=f["dataset_digest"]), 1)
    run.add("lineage", "impact_dataset", t, "s", note="every version downstream of a dataset")
    try:
        from ledger import export as X
    except ImportError:
        run.missing("lineage", "export", "no ledger.export (issue 5)")
        return
    for fmt in X.TEXT_FORMATS if run.scale != "full" else ("dot", "mermaid"):
        out = run.work / f"lineage.{fmt}"
        try:
            t, _ = best(lambda fmt=fmt, out=out: X.write_file(g, fmt, out), 1)
        except Exception as exc:
            run.add("export", fmt, None, "s", note=f"failed: {type(exc).__name__}: {exc}")
            continue
        size = out.stat().st_size
        out.unlink()
        run.add("export", fmt, t, "s", note=f"whole graph, {size / 1e6:.1f} MB")


def op_log_export(run: Run) -> None:
    """``ledger log`` rendered in each output format (json, jsonl, csv, parquet)."""
    from ledger import Ledger
    from ledger import output as O

    assert run.path is not None
    led = Ledger.open(run.path)
    t, table = best(led.events, 1)
    run.add(
        "ledger",
        "read_all_events",
        table.num_rows / t,
        "events/s",
        limit="parquet_read",
        note="Ledger.events(): every column of every segment",
    )
    render = getattr(O, "render_arrow", None)
    if render is None:
        run.missing("export", "log", "no ledger.output.render_arrow")
        return
    for fmt in ("jsonl", "csv", "parquet") if run.scale != "full" else ("jsonl", "parquet"):
        out = run.work / f"log.{fmt}"
        try:
            with open(out, "wb") as fh:
                t0 = time.perf_counter()
                _render_to(render, table, fmt, fh)
                t = time.perf_counter() - t0
        except Exception as exc:
            run.add("export", f"log_{fmt}", None, "s", note=f"failed: {type(exc).__name__}: {exc}")
            continue
        run.add(
            "export",
            f"log_{fmt}",
            table.num_rows / t,
            "events/s",
            note=f"all events, {out.stat().st_size / 1e6:.1f} MB",
        )
        out.unlink()


def _render_to(render: Callable[..., Any], table: Any, fmt: str, fh: Any) -> None:
    """Render ``table`` as ``ledger log --format fmt`` would, into the binary file ``fh``."""
    import io

    if fmt == "parquet":
        render(table, fmt, path=fh.name)
        return
    buf = io.StringIO()
    render(table, fmt, out=buf)
    fh.write(buf.getvalue().encode())


def op_disk(run: Run) -> None:
    assert run.path is not None
    n = run.built_facts["events"]
    size = du(run.path / "events")
    run.add(
        "ledger",
        "disk_bytes_per_event",
        size / n,
        "B/event",
        target="<= 300 B/event",
        check=lambda v, r: v <= 300,
        note=f"{size / 1e6:.1f} MB for {n:,} events after compaction",
    )


def op_generator(run: Run) -> None:
    f = run.built_facts
    if f.get("seconds"):
        run.add(
            "ledger",
            "generator_build",
            f["events"] / f["seconds"],
            "events/s",
            note=f"generator.build: {f['events']:,} events, {f['models']:,} models,"
            f" {f['versions']:,} versions, weekly batches per signer + compaction (cached)",
        )


# --- other engineers' scripts and the peers ------------------------------------------------


def op_scripts(run: Run) -> None:
    for name in SCRIPTS:
        if not run.wanted(name, name.removeprefix("bench_")):
            continue
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"benchmarks.{name}":
                run.missing(name.removeprefix("bench_"), name, "script not written")
                continue
            raise
        fn = mod.run
        kwargs: dict[str, Any] = {}
        params = inspect.signature(fn).parameters
        if "ledger_path" in params:
            kwargs["ledger_path"] = str(run.path)
        elif run.scale == "tiny":
            run.add(name.removeprefix("bench_"), name, None, "", note="skipped at tiny scale")
            continue
        print(f"  -- {name}.run({run.scale!r}, {kwargs})")
        try:
            rows = fn(run.scale if run.scale != "tiny" else "small", **kwargs)
        except Exception as exc:
            traceback.print_exc()
            run.add(name, "failed", None, "", note=f"{type(exc).__name__}: {exc}")
            continue
        for r in rows:
            r = dict(r)
            r.setdefault("group", name.removeprefix("bench_"))
            run.rows.append(r)
            _print_row(r)


def op_peers(run: Run) -> None:
    from .peers import run_peers

    run_peers(run)


def op_daily_use(run: Run) -> None:
    """A ledger written one action at a time (issue 13): see ``benchmarks.daily_use``."""
    from .daily_use import run_daily_use

    run_daily_use(run)
