"""The benchmark harness: the ledgers under test (generated once, cached), the rows of a
run with the physical limit or peer beside each figure, timing, and the printed table.
The operations measured are :mod:`benchmarks.operations`; ``python -m benchmarks`` runs
them (:mod:`benchmarks.__main__`)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import generator, limits

HERE = Path(__file__).resolve().parent
#: Other engineers' standalone benchmarks, called when present.
SCRIPTS = ("bench_verify", "bench_queries", "bench_lineage", "bench_policy")

SCALES: dict[str, dict[str, int]] = {
    # events/models: the generated ledger; batch: events appended in the batch-append
    # run; singles: single durable appends; cli: events in the ledger for the fresh-process
    # register (the target is stated for 100k); workflow: versions in the peer workflow.
    "tiny": {"events": 300, "models": 6, "batch": 600, "singles": 5, "cli": 300, "workflow": 5},
    "small": {
        "events": 10_000,
        "models": 100,
        "batch": 40_000,
        "singles": 100,
        "cli": 10_000,
        "workflow": 100,
    },
    "full": {
        "events": 1_000_000,
        "models": 10_000,
        "batch": 200_000,
        "singles": 300,
        "cli": 100_000,
        "workflow": 300,
    },
}
BATCH = 10_000  # events per append_many call in the batch-append run


def cache_dir() -> Path:
    return Path(os.environ.get("LEDGER_BENCH_CACHE", "/tmp/ledger-bench-cache"))


class Run:
    """Rows measured so far, the limits by name, and the handles operations need."""

    def __init__(self, scale: str, only: str | None, work: Path, peers: bool = True) -> None:
        self.scale = scale
        self.p = SCALES[scale]
        self.only = only
        self.work = work
        self.peers = peers
        self.rows: list[dict[str, Any]] = []
        self.limits: dict[str, float] = {}
        self.built: generator.Built | None = None
        self.path: Path | None = None
        self.built_facts: dict[str, Any] = {}
        self.elapsed: dict[str, float] = {}

    def wanted(self, *names: str) -> bool:
        if self.only is None:
            return True
        return any(o in n for o in self.only.split(",") for n in names)

    def add(
        self,
        group: str,
        name: str,
        value: float | None,
        unit: str,
        *,
        limit: str | None = None,
        target: str | None = None,
        check: Callable[[float, float | None], bool] | None = None,
        note: str = "",
    ) -> dict[str, Any]:
        """Record one figure. ``limit`` names a limit row; the ratio is value/limit for
        rates (unit ending in /s) and limit/value for times (how close to the floor)."""
        r: dict[str, Any] = {"group": group, "name": name, "value": value, "unit": unit}
        lim = self.limits.get(limit) if limit else None
        r["limit"] = limit
        r["limit_value"] = lim
        r["ratio"] = None
        if lim and value:
            r["ratio"] = value / lim if unit.endswith("/s") else lim / value
        r["target"] = target
        r["ok"] = None if (check is None or value is None) else bool(check(value, r["ratio"]))
        r["note"] = note
        self.rows.append(r)
        _print_row(r)
        return r

    def remeasure(self, name: str, before: str) -> None:
        """Measure a crypto limit again just before an operation: on a shared machine the
        load moves, and a ratio is only fair against the limit of the same moment."""
        fn = {
            "ed25519_sign_1core": lambda s: limits._nacl_sign(s),
            "ed25519_verify_allcores": lambda s: limits._all_cores("verify", s),
        }[name]
        value = fn(0.02 if self.scale == "tiny" else 1.0)
        self.limits[name] = value
        self.add("limit", name, value, "sig/s" if "sign" in name else "verif/s",
                 note=f"measured again just before {before}")  # fmt: skip

    def missing(self, group: str, name: str, why: str) -> None:
        self.add(group, name, None, "", note=f"not available yet: {why}")


# --- the ledger under test ------------------------------------------------------------


def ledger_for(events: int, models: int | None = None, seed: int = 0) -> tuple[Path, Any]:
    """A cached generated ledger of ``events`` events; builds it (timed) if missing."""
    path = cache_dir() / f"bench-{events}-seed{seed}"
    stamp = path / "facts.json"
    if stamp.exists():
        return path, json.loads(stamp.read_text())
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"  building a {events:,}-event ledger in {path} (cached for later runs)...")
    last = [time.perf_counter()]

    def progress(done: int, total: int) -> None:
        if time.perf_counter() - last[0] > 30:
            last[0] = time.perf_counter()
            print(f"    {done:,}/{total:,} events")

    built = generator.build(path, events=events, models=models, seed=0, progress=progress)
    f = built.facts
    facts = {k: v for k, v in vars(f).items() if k not in ("revoked",) and not callable(v)} | {
        "revoked": {k: v.key_id for k, v in f.revoked.items()}
    }
    stamp.write_text(json.dumps(facts, indent=1, default=list))
    return path, facts


def copy_ledger(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("facts.json"))
    return dst


def keys_for(seed: int = 0) -> dict[str, Any]:
    """The generator's current keys (they are derived from the seed)."""
    names = (generator.ADMIN, *generator.REGISTRARS, *generator.APPROVERS, *generator.DEPLOYERS)
    keys = {n: generator._key(seed, n) for n in names}
    keys[generator.JOINER] = generator._key(seed, generator.JOINER)
    keys[generator.ROTATOR] = generator._key(seed, generator.ROTATOR + ".2")
    return keys


#: Repetitions of warm timings; 1 at tiny scale (the smoke test).
RUNS = 3


def best(fn: Callable[[], Any], runs: int | None = None) -> tuple[float, Any]:
    """Best wall time of ``runs`` calls (the first call warms caches and is included)."""
    t_best, out = float("inf"), None
    for _ in range(min(runs or RUNS, RUNS)):
        t0 = time.perf_counter()
        out = fn()
        t_best = min(t_best, time.perf_counter() - t0)
    return t_best, out


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# --- output ---------------------------------------------------------------------------


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v >= 1000:
            return f"{v:,.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}" if v >= 0.001 else f"{v:.2e}"
    return str(v)


def _print_row(r: dict[str, Any]) -> None:
    ratio = r.get("ratio")
    ok = r.get("ok")
    status = "" if ok is None else ("ok" if ok else "MISSED")
    lim = r.get("limit")
    lim_txt = ""
    if isinstance(lim, str) and r.get("limit_value") is not None:
        lim_txt = f"{lim} {_fmt(r['limit_value'])}"
    elif lim not in (None, ""):
        lim_txt = str(lim)
    print(
        f"{r.get('group', '')!s:<9} {r.get('name', '')!s:<26} {_fmt(r.get('value')):>12}"
        f" {r.get('unit', '')!s:<9} {lim_txt:<36}"
        f" {'' if ratio is None else f'{ratio:6.0%}':>6} {r.get('target') or ''!s:<22}"
        f" {status:<6} {r.get('note', '')}",
        flush=True,
    )


def _header() -> None:
    print(
        f"{'group':<9} {'name':<26} {'value':>12} {'unit':<9} {'limit (same run)':<36}"
        f" {'ratio':>6} {'target':<22} {'':<6} note"
    )


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import nacl

    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pynacl": getattr(nacl, "__version__", "?"),
        "loadavg_start": os.getloadavg(),
    }
