"""Single-event appends, to segments and through the journal, and what a fresh reader
pays for the journal.

    python -m benchmarks.bench_append [--events 3000] [--fresh 10]

Not part of ``python -m benchmarks run``. Two ledgers are written one event at a time,
never compacted by hand, the appends alternating between them (so that the machine's
load falls on both alike): one by a plain writer (a segment per append, then automatic
merges), one by a journaling writer (docs/FORMAT.md §5.4). Each figure is printed beside
the physical floor measured in the same run (benchmarks/limits.py): one fsynced 300-byte
append to a file (what a journal record costs at least), and a new file made durable
(write, fsync, rename, fsync of the folder: what a segment costs at least).

Then a fresh ``ledger status MODEL`` process on each ledger (mean of ``--fresh`` runs):
the journal's reader copy is the difference.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _floor(folder: Path) -> tuple[float, float]:
    """Seconds per fsynced 300-byte append, and per new file made durable (write, fsync,
    rename, fsync of the folder): benchmarks/limits.py's disk probes."""
    from benchmarks import limits

    rows = {r["name"]: r["value"] for r in limits.disk(folder)}
    return 1 / rows["fsync_append"], 1 / rows["atomic_file"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--fresh", type=int, default=10)
    args = ap.parse_args()

    from ledger import Ledger, SigningKey, actions
    from ledger.keys import write_key_files

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        admin, alice = SigningKey.generate(), SigningKey.generate()
        write_key_files(root / "alice.pem", alice)
        leds = {}
        for journal in (False, True):
            path = root / ("journal" if journal else "segments")
            led = Ledger.init(path, admin, "admin")
            led.add_key(alice.public_key, "alice", ["registrar"], key=admin)
            led.register("model", key=alice)
            leds[journal] = Ledger.open(path, journal=journal)
        took: dict[bool, list[float]] = {False: [], True: []}
        for i in range(args.events):
            for journal in (False, True) if i % 2 else (True, False):
                draft = actions.tag_set("model", 1, {"round": str(i)})
                t = time.perf_counter()
                leds[journal].append(draft, alice)
                took[journal].append(time.perf_counter() - t)
        record, new_file = _floor(root)
        print(f"single-event appends, {args.events:,} to each ledger, alternating")
        for journal, label in ((False, "to segments (+ merges)"), (True, "through the journal")):
            d = took[journal]
            first, last = d[: len(d) // 10], d[-len(d) // 10 :]
            print(f"  {label:24s} mean {statistics.fmean(d) * 1e3:6.3f} ms"
                  f"  median {statistics.median(d) * 1e3:6.3f} ms"
                  f"  first 10% {statistics.fmean(first) * 1e3:6.3f}"
                  f"  last 10% {statistics.fmean(last) * 1e3:6.3f} ms")  # fmt: skip
        print(f"  floor: fsynced 300-byte append {record * 1e3:.3f} ms;"
              f" a new file made durable {new_file * 1e3:.3f} ms")  # fmt: skip
        files = {j: sorted(p.name for p in (root / n / "events").iterdir())
                 for j, n in ((False, "segments"), (True, "journal"))}  # fmt: skip
        print(f"  files in events/: segments {len(files[False])}, journal {len(files[True])}"
              f" ({', '.join(n for n in files[True] if not n.endswith('.parquet'))})")  # fmt: skip
        cmd = [sys.executable, "-P", "-c", "from ledger.cli import main; main()", "status", "model"]
        for name in ("segments", "journal"):
            runs = []
            for _ in range(args.fresh):
                t = time.perf_counter()
                subprocess.run([*cmd, "--ledger", str(root / name)], check=True,
                               capture_output=True)  # fmt: skip
                runs.append(time.perf_counter() - t)
            print(f"fresh `ledger status model` on the {name:8s} ledger:"
                  f" {statistics.fmean(runs):.3f} s (mean of {args.fresh})")  # fmt: skip
        t = time.perf_counter()
        for _ in range(args.fresh):
            subprocess.run([sys.executable, "-P", "-c", "import pyarrow"], check=True)
        print(f"  peer: `import pyarrow` alone {(time.perf_counter() - t) / args.fresh:.3f} s")


if __name__ == "__main__":
    main()
