"""Torture run: the long version of the crash, concurrency, lock and corruption tests.

    python benchmarks/torture.py                 # >= 200 SIGKILLs, 8 and 12 writers, ...
    python benchmarks/torture.py --kills 20 --corrupt 10     # a quick look

Real writer processes (tests/writer_process.py) append to one ledger and are SIGKILLed at
exact steps of the on-disk protocol (mid-segment-write, before and after the rename,
mid-compaction, mid-checkpoint when the ledger has checkpoints) and at random instants.
After every kill the ledger must verify and hold every acknowledged event byte for byte.
Then rounds of concurrent writers, with and without a compactor, must give one gap-free
chain of exactly the acknowledged events; lock holders are killed; and damaged copies of a
ledger are read in a sandbox. Prints the counts, and the physical limit of this disk
(durable file creations per second), and exits 1 if any promise was broken.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import writer_process as W

TRAPS = [
    "append:write",
    "append:fsync",
    "append:rename",
    "append:renamed",
    "compact:write",
    "compact:fsync",
    "compact:rename",
    "compact:renamed",
    "compact:unlink",
]


def durable_creates_per_second(root: Path, n: int = 100) -> float:
    """The floor under every append: write a small file, fsync it, rename, fsync the folder."""
    d = root / "fsync-probe"
    d.mkdir()
    t0 = time.perf_counter()
    for i in range(n):
        tmp = d / f".tmp-{i}"
        with open(tmp, "wb") as f:
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, d / f"{i}")
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(fd)
        os.close(fd)
    return n / (time.perf_counter() - t0)


class Tally:
    def __init__(self) -> None:
        self.kills = 0
        self.survived = 0
        self.by_where: collections.Counter[str] = collections.Counter()
        self.acked: dict[int, str] = {}
        self.unacked_durable = 0
        self.temporaries_seen = 0
        self.leftovers_seen = 0
        self.failures: list[str] = []
        self.final: Any = None

    def fail(self, what: str) -> None:
        self.failures.append(what)
        print("FAILURE:", what, flush=True)


def crash_phase(root: Path, kills: int, rng: random.Random, t: Tally) -> tuple[Path, Path]:
    from ledger import Ledger

    path, key = W.make_ledger(root)
    traps = TRAPS + (
        ["checkpoint:rename", "checkpoint:fsync"] if hasattr(Ledger, "checkpoint") else []
    )
    cycle = 0
    while t.kills < kills:
        cycle += 1
        before = W.check(path, t.acked).events
        args = ["--count", "30", "--batch", str(rng.randint(1, 3)), "--prefix", f"c{cycle}"]
        args += ["--compact-every", str(rng.randint(2, 4)), "--checkpoint-every", "3"]
        args += ["--seed", str(rng.randrange(1 << 30))]
        many = cycle % 10 == 0
        if many:  # several writers at once, all killed at random instants
            procs = [W.start(path, key, *args[:-2], "--prefix", f"c{cycle}x{i}") for i in range(4)]
            outs = []
            for p in procs:
                outs.append(W.finish(p, W.kill_at_random(p, rng, within=0.8)))
            where = "random (4 concurrent writers)"
        elif cycle % 2:
            trap = rng.choice(traps)
            proc = W.start(path, key, *args, "--die-at", f"{trap}:{rng.randint(1, 3)}")
            outs = [W.finish(proc)]
            where = outs[0].trap or "finished before the trap"
        else:
            proc = W.start(path, key, *args)
            outs = [W.finish(proc, W.kill_at_random(proc, rng, within=1.0))]
            where = "random instant"
        killed = [o for o in outs if o.returncode == -signal.SIGKILL]
        for o in outs:
            if o.returncode not in (0, -signal.SIGKILL):
                t.fail(f"cycle {cycle}: writer exited {o.returncode}: {o.stderr.strip()[-300:]}")
            t.acked.update(o.acks)
        c = W.check(path, t.acked)
        t.kills += len(killed)
        t.by_where[where] += len(killed)
        t.temporaries_seen += c.temporaries
        t.leftovers_seen += c.superseded
        ok = c.ok and not c.missing and not c.changed
        if not ok:
            t.fail(f"cycle {cycle} ({where}): {c.verdict} missing={c.missing} changed={c.changed}")
        else:
            t.survived += len(killed)
        t.unacked_durable += c.events - before - sum(len(o.acks) for o in outs)
        if cycle % 20 == 0:
            print(f"  {t.kills} kills, {c.events} events, {c.verdict[:40]}", flush=True)
    # The next writer continues the chain and cleans up after the last kill.
    out = W.finish(W.start(path, key, "--count", "3", "--prefix", "final"))
    t.acked.update(out.acks)
    c = W.check(path, t.acked)
    t.final = c
    if not (out.done and c.ok and not c.missing and c.temporaries == 0):
        t.fail(f"final writer: {out.stderr[-300:]} {c}")
    return path, key


def concurrency_phase(root: Path, writers: int, events: int, rounds: int) -> dict[str, Any]:
    res: dict[str, Any] = {"rounds": 0, "acked": 0, "found": 0, "failures": [], "writers": []}
    for r in range(rounds):
        compactor = r % 2 == 1
        n = writers + 4 * (r // 2)  # 8, 8, 12, 12, ...
        path, key = W.make_ledger(root / f"conc{r}")
        t0 = time.perf_counter()
        procs = [
            W.start(
                path, key, "--count", str(events), "--batch", str(1 + i % 3), "--prefix", f"p{i}"
            )
            for i in range(n)
        ]
        comp = W.start(path, key, "--compact-only") if compactor else None
        outs = [W.finish(p, timeout=600) for p in procs]
        secs = time.perf_counter() - t0
        if comp is not None:
            comp.send_signal(signal.SIGKILL)
            W.finish(comp)
        acks: dict[int, str] = {}
        for o in outs:
            if not o.done:
                res["failures"].append(f"round {r}: writer failed: {o.stderr[-300:]}")
            if set(o.acks) & set(acks):
                res["failures"].append(f"round {r}: a seq was acknowledged to two writers")
            acks.update(o.acks)
        c = W.check(path, acks)
        exact = sorted(acks) == list(range(2, c.events))
        if not (c.ok and exact and not c.missing and not c.changed):
            res["failures"].append(f"round {r}: {c.verdict}, exact={exact}")
        res["rounds"] += 1
        res["acked"] += len(acks)
        res["found"] += c.events - 2
        res["writers"].append((n, "with compactor" if compactor else "alone", len(acks) / secs))
    return res


def lock_phase(root: Path, rounds: int) -> list[str]:
    failures = []
    for r in range(rounds):
        path, key = W.make_ledger(root / f"lock{r}")
        holder = W.start(path, key, "--hold-lock")
        try:
            early = W.wait_for(holder, "LOCKED", timeout=120)
        except (TimeoutError, EOFError) as exc:
            holder.kill()  # never leave a lock holder behind
            W.finish(holder)
            failures.append(f"lock round {r}: {exc}")
            continue
        env = {**os.environ, "LEDGER_LOCK_TIMEOUT": "0.5"}
        cmd = [sys.executable, "-c", "from ledger.cli import main; main()", "register", "m"]
        cmd += ["--ledger", str(path), "--key", str(key)]
        blocked = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if blocked.returncode != 7:
            failures.append(f"lock round {r}: a second writer got in while the holder lived")
        holder.send_signal(signal.SIGKILL)
        W.finish(holder, early)
        env["LEDGER_LOCK_TIMEOUT"] = "10"
        after = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        if after.returncode != 0:
            failures.append(
                f"lock round {r}: no writer got in after the holder died: {after.stderr}"
            )
    return failures


def corruption_phase(root: Path, n: int, rng: random.Random) -> dict[str, Any]:
    os.environ.setdefault("LEDGER_TEST_HUGE", str(64 << 20))
    from tests import hostile_files as H

    source = H.build_source(root / "corrupt")
    jobs: list[tuple[str, Any, tuple[Any, ...] | None]] = []
    names = sorted(H.CASES)
    for i in range(n):
        if i < len(names):
            mutate, expected = H.CASES[names[i]]
            jobs.append((names[i], mutate, expected))
        else:
            name = rng.choice(sorted(H.FUZZ))
            jobs.append((name, H.FUZZ[name], None))
    verdicts: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    maxrss = 0.0
    for start in range(0, len(jobs), 20):
        batch = jobs[start : start + 20]
        paths = [
            H.damaged_copy(source, root / f"d{start + j}", m, seed=rng.randrange(1 << 30))
            for j, (_, m, _) in enumerate(batch)
        ]
        results = H.probe_many(paths, timeout=120)
        for (name, _, expected), path in zip(batch, paths, strict=True):
            p = results[path]
            maxrss = max(maxrss, p.maxrss_mb)
            v = p.verdict
            label = (
                f"FAIL {v[1]}"
                if v[0] == "FAIL"
                else f"Error exit {v[1]}"
                if v[0] == "Error"
                else v[0]
            )
            verdicts[label] += 1
            if p.problems:
                stack = p.stderr[-1500:] if v[0] == "hang" else ""  # faulthandler's dump
                failures.append(f"{name}: {p.problems} {stack}")
            elif expected is not None and v != expected:
                failures.append(f"{name}: expected {expected}, got {v}")
            elif v[0] == "OK" and H.events_of(path) != H.events_of(source):
                failures.append(f"{name}: verify said OK but the events changed")
    return {"tried": len(jobs), "verdicts": verdicts, "failures": failures, "maxrss_mb": maxrss}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--events", type=int, default=15, help="events per concurrent writer")
    ap.add_argument("--rounds", type=int, default=4, help="concurrent-writer rounds")
    ap.add_argument("--locks", type=int, default=3, help="lock-holder deaths")
    ap.add_argument("--corrupt", type=int, default=120, help="damaged folders to read")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        root = Path(d)
        t0 = time.perf_counter()
        limit = durable_creates_per_second(root)
        print(
            f"limit: {limit:.0f} durable file creations/s on this disk (write+fsync+rename+fsync)"
        )
        t = Tally()
        print(f"crash phase: {args.kills} kills ...", flush=True)
        crash_phase(root / "crash", args.kills, rng, t)
        found = t.final.events
        print(f"concurrency phase: {args.rounds} rounds ...", flush=True)
        conc = concurrency_phase(root, args.writers, args.events, args.rounds)
        print(f"lock phase: {args.locks} holder deaths ...", flush=True)
        lock_failures = lock_phase(root, args.locks)
        print(f"corruption phase: {args.corrupt} damaged folders ...", flush=True)
        corr = corruption_phase(root, args.corrupt, rng)
        elapsed = time.perf_counter() - t0

    failures = t.failures + conc["failures"] + lock_failures + corr["failures"]
    print()
    print(f"kills survived: {t.survived}/{t.kills}")
    for where, n in sorted(t.by_where.items()):
        print(f"  {where}: {n}")
    print(
        f"events acknowledged: {len(t.acked)}, found: {found - 2} (+2 set-up events);"
        f" acknowledged but missing: {len(t.final.missing)}, changed: {len(t.final.changed)};"
        f" durable but unacknowledged (killed after the rename): {t.unacked_durable}"
    )
    print(
        f"temporary files left by kills and ignored: {t.temporaries_seen};"
        f" compaction leftovers ignored: {t.leftovers_seen}"
    )
    print(
        f"writers: {conc['rounds']} concurrent rounds "
        + ", ".join(f"{n} writers {how} ({rate:.0f} events/s)" for n, how, rate in conc["writers"])
        + f"; events acknowledged {conc['acked']}, found {conc['found']}"
    )
    print(
        f"lock-holder deaths: {args.locks}, second writer let in while holder alive: 0"
        if not lock_failures
        else f"lock failures: {lock_failures}"
    )
    print(f"corrupted files tried: {corr['tried']}, probe peak RSS {corr['maxrss_mb']:.0f} MB")
    print("verdicts by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(corr["verdicts"].items())))
    print(f"failures: {len(failures)}; elapsed {elapsed:.0f}s")
    for f in failures[:20]:
        print("  " + f)
    return 1 if failures else 0


def run(scale: str) -> list[dict[str, Any]]:
    """Harness entry: a short run at "small" scale, the full one otherwise."""
    import contextlib
    import io

    argv = ["--kills", "20", "--corrupt", "40", "--rounds", "2"] if scale == "small" else []
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    text = buf.getvalue()
    survived = next(line for line in text.splitlines() if line.startswith("kills survived"))
    done, total = survived.split(": ")[1].split("/")
    return [
        {
            "name": "torture kills survived",
            "value": int(done),
            "unit": "kills",
            "target": int(total),
        },
        {
            "name": "torture broken promises",
            "value": 0 if code == 0 else 1,
            "unit": "runs",
            "target": 0,
        },
    ]


if __name__ == "__main__":
    sys.exit(main())
