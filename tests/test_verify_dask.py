"""``verify --engine dask``: the same verdicts as the local verifier, on a real cluster.

One LocalCluster (two worker processes on 127.0.0.1) serves the module; every case of
the tamper table (tests/test_tamper.py, imported, not copied) is verified through it with
``--scheduler`` and compared, output and exit code, with the local verifier's. Then the
ways the engine fails: each one ``Error:`` line and exit 8 (2 for a usage mistake).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ledger import scandask
from ledger.procs import main_module_hidden

from . import test_tamper as tamper
from .test_tamper import CASES, stored_checkpoint_altered

distributed = pytest.importorskip("distributed")

# The tamper table's fixtures (pytest finds fixtures by their name in the module).
victim = tamper.victim
_per_event_segments = tamper._per_event_segments

#: No dashboard, and the scheduler's HTTP server on a free loopback port (not 8787).
QUIET = {
    "host": "127.0.0.1",
    "dashboard_address": None,
    "scheduler_kwargs": {"dashboard_address": "127.0.0.1:0"},
}


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes on 127.0.0.1, for the whole module."""
    with main_module_hidden():
        c = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            **QUIET,
        )
    yield c
    c.close()


def _on(cluster) -> list[str]:
    return ["--engine", "dask", "--scheduler", cluster.scheduler_address]


def _verdicts(invoke, path: Path, *extra: str) -> tuple[int, str, str]:
    r = invoke(["verify", "--ledger", str(path), "--format", "json", *extra])
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.parametrize("case", CASES, ids=[c[0].__name__ for c in CASES])
def test_the_dask_engine_gives_the_local_verdict(victim, invoke, cluster, case):
    attack = case[0]
    t = victim
    if attack is stored_checkpoint_altered:
        t.ledger.add_key(t.keys["cp"].public_key, "cp", "checkpointer", key=t.keys["admin"])
    attack(t)
    local = _verdicts(invoke, t.path, "--jobs", "1")
    on_dask = _verdicts(invoke, t.path, *_on(cluster))
    assert on_dask == local
    assert local[0] == 1 and json.loads(local[1])["problems"][0]["kind"] == case[3]


@pytest.mark.parametrize("attacked", [False, True])
def test_a_journal_gets_the_local_verdict_on_dask(victim, invoke, cluster, attacked):
    """The journal (FORMAT.md §5.4) is checked by the leader, from its own copy, which
    workers on other hosts could not open: the verdict is the local one either way."""
    from .test_journal import _into_journal
    from .test_tamper import modified_typed_column

    if attacked:
        modified_typed_column(victim)
    _into_journal(victim.path)
    assert (victim.path / "events" / "journal.arrows").exists()
    local = _verdicts(invoke, victim.path, "--jobs", "1")
    assert _verdicts(invoke, victim.path, *_on(cluster)) == local
    assert local[0] == (1 if attacked else 0)


def test_a_clean_ledger_through_the_scheduler(victim, invoke, cluster):
    args = ["verify", "--ledger", str(victim.path)]
    local = invoke(args)
    r = invoke([*args, *_on(cluster)])
    assert (r.exit_code, r.stdout, r.stderr) == (0, local.stdout, "")
    assert r.stdout.startswith("OK: 11 events, head ")


def test_every_run_goes_to_the_workers(victim, cluster, monkeypatch):
    """The leader checks nothing a worker could: every row the fast path takes comes
    from a Dask task (the tamper cases above would pass even if none did)."""
    seen: list[int] = []
    real = scandask.DaskPool.checks

    def counting(self, tasks, origin, keys):
        seen.append(len(tasks))
        return real(self, tasks, origin, keys)

    monkeypatch.setattr(scandask.DaskPool, "checks", counting)
    monkeypatch.setattr("ledger.scanpool.check_run", None)  # (the local path would fail)
    report = victim.ledger.verify(engine="dask", scheduler=cluster.scheduler_address)
    assert report.ok and seen == [1]


def test_a_local_cluster_for_the_run(history):
    """No --scheduler: a LocalCluster of --jobs workers, started and closed by verify."""
    led = history.ledger
    assert led.verify(engine="dask", jobs=2).to_dict() == led.verify(jobs=1).to_dict()


def test_a_worker_that_dies_mid_run_costs_time_not_the_verdict(history, cluster, monkeypatch):
    marker = history.path.parent / "died-once"
    real = scandask.check_on_worker

    def dies_once(task, origin, keys):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return real(task, origin, keys)

    monkeypatch.setattr(scandask, "check_on_worker", dies_once)
    led = history.ledger
    report = led.verify(engine="dask", scheduler=cluster.scheduler_address)
    assert marker.exists()
    assert report.to_dict() == led.verify(jobs=1).to_dict()


def test_workers_that_keep_dying_are_one_error_line(history, invoke, monkeypatch):
    dask = pytest.importorskip("dask")

    def dies(task, origin, keys):
        os._exit(1)

    monkeypatch.setattr(scandask, "check_on_worker", dies)
    # (a cluster of its own that gives up on a task at its first dead worker, not its
    # fourth: four restarts would cost the module ten seconds)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), main_module_hidden():
        c = distributed.LocalCluster(n_workers=1, threads_per_worker=1, **QUIET)
    with c:
        r = invoke(["verify", "--ledger", str(history.path), *_on(c)])
    assert r.exit_code == 8 and r.stdout == ""
    assert r.stderr.startswith(f"Error: Dask workers of the cluster at {c.scheduler_address}")
    assert r.stderr.count("\n") == 1 and "died running a check" in r.stderr


def test_a_cluster_without_workers_is_an_error_not_a_hang(history, invoke, monkeypatch):
    monkeypatch.setattr(scandask, "NO_WORKERS_TIMEOUT", 0.5)
    with distributed.LocalCluster(n_workers=0, **QUIET) as c:
        r = invoke(["verify", "--ledger", str(history.path), *_on(c)])
    assert (r.exit_code, r.stderr) == (
        8,
        f"Error: the Dask cluster at {c.scheduler_address} has had no workers for 0.5 s\n",
    )


def test_a_worker_that_cannot_see_the_ledger_says_so(history, invoke, cluster, monkeypatch):
    """As a worker on another machine without the shared filesystem would."""
    real = scandask.check_on_worker
    root = str(history.path)

    def elsewhere(task, origin, keys):
        return real((task[0].replace(root, "/nonexistent"), *task[1:]), origin, keys)

    monkeypatch.setattr(scandask, "check_on_worker", elsewhere)
    r = invoke(["verify", "--ledger", root, *_on(cluster)])
    seg = sorted((history.path / "events").glob("*.parquet"))[0]
    assert (r.exit_code, r.stdout) == (8, "")
    assert r.stderr.startswith("Error: a Dask worker on ")
    assert r.stderr.endswith(
        f" cannot open {seg}: No such file or directory; the workers must see the ledger at"
        " the same path as this process (a shared filesystem)\n"
    )


def test_an_unreachable_scheduler_times_out_in_seconds(history, invoke, monkeypatch):
    import socket
    import time

    monkeypatch.setattr(scandask, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    address = f"tcp://127.0.0.1:{port}"
    r = invoke(
        ["verify", "--ledger", str(history.path), "--engine", "dask", "--scheduler", address]
    )
    assert time.monotonic() - start < 10
    assert (r.exit_code, r.stdout) == (8, "")
    assert r.stderr == (
        f"Error: cannot reach the Dask scheduler at tcp://127.0.0.1:{port}: Timed out trying"
        f" to connect to tcp://127.0.0.1:{port} after 1 s\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler needs --engine dask"),
        (
            ["--engine", "dask", "--scheduler", "tcp://127.0.0.1:8786", "--jobs", "2"],
            "--jobs sets the workers of a LocalCluster; a --scheduler's cluster has its own",
        ),
        (
            ["--engine", "dask", "--scheduler", "localhost"],
            "--scheduler 'localhost' is not a scheduler address such as tcp://HOST:PORT:"
            " missing port number in address 'localhost'",
        ),
        (
            ["--engine", "spark"],
            "Invalid value for '--engine': 'spark' is not one of 'local', 'dask'.",
        ),
    ],
)
def test_usage_mistakes(history, invoke, args, message):
    r = invoke(["verify", "--ledger", str(history.path), *args])
    assert (r.exit_code, r.stdout, r.stderr) == (2, "", f"Error: {message}\n")


def test_without_dask_installed_the_error_names_the_extra(history, invoke, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # (import fails as if absent)
    r = invoke(["verify", "--ledger", str(history.path), "--engine", "dask"])
    assert (r.exit_code, r.stdout, r.stderr) == (
        8,
        "",
        "Error: --engine dask needs Dask's distributed: pip install 'ledger[dask]'\n",
    )
