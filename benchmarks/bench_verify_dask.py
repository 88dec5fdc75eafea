"""Verify on Dask (issue 19): events/s of the local verifier and of ``--engine dask``.

``python benchmarks/bench_verify_dask.py [--events N] [--workers 1,2,4] [--ledger PATH]``
measures, on one generated ledger (benchmarks/generator.py, cached like bench_verify's):

* ``ed25519_verify_raw_1core``: libsodium's verify on real (key, DSSE message,
  signature) triples of the ledger, one core: a worker's physical limit;
* ``disk_read``: reading every segment file once (MB/s and events/s): the cap of any
  engine that reads the ledger from this disk;
* ``leader_only``: a full verify whose per-run checks are already done (a pool that
  hands back recorded results): the sequential part no number of workers removes;
* ``verify_local``: ``Ledger.verify()`` with the default jobs (every core);
* ``verify_dask_Nw``: ``Ledger.verify(engine="dask", scheduler=...)`` on a warm
  LocalCluster of N single-threaded worker processes (best of two runs), and
  ``verify_dask_oneshot_2w``: the whole ``--engine dask`` run without a scheduler
  (cluster start, verify, close);
* ``projection_16core``: per-worker rate x 16 x the parallel efficiency measured from 1
  to 2 workers, capped by 16 x the raw 1-core verify rate, the disk read rate and the
  leader's rate. The method and its inputs are printed beside it.

Each figure is printed beside its limit. On a machine with fewer cores than workers the
extra workers share cores: their figure says what oversubscription costs, not scaling.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # (run as a script: make ``benchmarks`` importable)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _ledger(events: int, path: str | None) -> Path:
    if path:
        return Path(path)
    cache = Path(os.environ.get("LEDGER_BENCH_CACHE", "/tmp/ledger-bench-cache"))
    out = cache / f"verify-dask-{events}"
    if not (out / "ledger.json").exists():
        from benchmarks import generator

        cache.mkdir(parents=True, exist_ok=True)
        generator.build(out, events=events, seed=0)
    return out


def _best(fn: Any, runs: int = 2) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        assert getattr(out, "ok", True), out
    return best


def _disk(path: Path) -> tuple[float, float]:
    """Seconds and bytes to read every segment file once (page cache as it stands)."""
    files = sorted((path / "events").glob("*.parquet"))
    t0 = time.perf_counter()
    size = 0
    for f in files:
        size += len(f.read_bytes())
    return time.perf_counter() - t0, size


class _Recorded:
    """A RunPool handing back results computed before: what is left is the leader."""

    def __init__(self, results: list[Any]) -> None:
        self.results = results

    def checks(
        self, tasks: Sequence[Any], origin: str, keys: dict[str, bytes]
    ) -> Generator[Any, None, None]:
        yield from self.results[: len(tasks)]


def _leader_only(led: Any) -> float:
    from ledger import scan
    from ledger.scanworkers import check_task

    recorded: list[Any] = []

    class Recording:
        def checks(self, tasks: Sequence[Any], origin: str, keys: dict[str, bytes]) -> Any:
            for t in tasks:
                recorded.append(check_task(t, origin, keys))
                yield recorded[-1]

    assert scan.verify_full(led, pool=Recording()).ok
    return _best(lambda: scan.verify_full(led, pool=_Recorded(list(recorded))))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--ledger")
    args = ap.parse_args(argv)
    from benchmarks.bench_verify import _raw_rate_of, _sample
    from ledger import Ledger
    from ledger.scan import default_jobs

    path = _ledger(args.events, args.ledger)
    led = Ledger.open(path)
    n = led.verify(jobs=1).events
    cores = default_jobs()
    rows: list[tuple[str, float, str, str]] = []

    def add(name: str, value: float, unit: str, note: str = "") -> None:
        rows.append((name, value, unit, note))
        print(f"{name:28} {value:>14,.1f} {unit:9} {note}", flush=True)

    print(f"# {n:,} events, {cores} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    raw, _cpu = _raw_rate_of("open", _sample(path), 2.0)
    add("ed25519_verify_raw_1core", raw, "verif/s", "libsodium crypto_sign_open, 1 core")
    secs, size = _disk(path)
    add("disk_read", size / secs / 1e6, "MB/s", f"{size / 1e6:.0f} MB of segments")
    disk_rate = n / secs
    add("disk_read_events", disk_rate, "events/s", "the same, in events")
    leader = n / _leader_only(led)
    add("leader_only", leader, "events/s", "sequential part, workers' results ready")
    local = n / _best(lambda: led.verify())
    add("verify_local", local, "events/s", f"--jobs {cores}; {local / raw / cores:.0%} of raw")
    from ledger.scandask import local_cluster

    rates: dict[int, float] = {}
    for w in [int(x) for x in args.workers.split(",")]:
        t0 = time.perf_counter()
        c = local_cluster(w)
        start = time.perf_counter() - t0
        try:
            addr = c.scheduler_address
            led.verify(engine="dask", scheduler=addr)  # (warm: imports, first uses)
            rates[w] = n / _best(lambda a=addr: led.verify(engine="dask", scheduler=a))
        finally:
            c.close()
        over = " (more workers than cores)" if w > cores else ""
        add(
            f"verify_dask_{w}w",
            rates[w],
            "events/s",
            f"{rates[w] / local:.2f}x local; {rates[w] / raw / min(w, cores):.0%} of raw"
            f" x {min(w, cores)}; cluster start {start:.1f} s{over}",
        )
    t = _best(lambda: led.verify(engine="dask", jobs=2), runs=1)
    add("verify_dask_oneshot_2w", n / t, "events/s", f"{t:.1f} s: start, verify, close")
    if 1 in rates and 2 in rates:
        eff = rates[2] / (2 * rates[1])
        linear = rates[1] * 16 * eff
        caps = {"16 x raw 1-core": 16 * raw, "disk read": disk_rate, "leader": leader}
        proj = min(linear, *caps.values())
        cap = min(caps, key=lambda k: caps[k])
        binding = "uncapped" if proj == linear else f"capped by {cap}"
        add(
            "projection_16core",
            proj,
            "events/s",
            f"{rates[1]:,.0f}/s per worker x 16 x {eff:.2f} efficiency (1->2 workers) ="
            f" {linear:,.0f}; caps: "
            + ", ".join(f"{k} {v:,.0f}" for k, v in caps.items())
            + f"; {binding}",
        )


if __name__ == "__main__":
    main()
