"""The story map as a user meets it: a big ledger written one action at a time, a fresh
``ledger`` process per command.

``python benchmarks/bench_story_daily.py [--ledger PATH] [--appends N]``, on a copy of
``--ledger`` (default the cached 1M benchmark ledger; the cache is only read):

1. a checkpointer key is added and a first ``ledger checkpoint`` runs (it verifies every
   event and builds the whole story map);
2. ``--appends`` registers (default 1,000) are appended one durable append each, as a
   registry writes them (automatic merges on, as by default);
3. ``ledger checkpoint`` and ``ledger verify --since FIRST`` run, each in a fresh process:
   the figures a daily job pays. Beside them: a fresh process's start-up (``ledger
   --version``), the floor every command pays.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import generator
from ledger import Ledger, SigningKey
from ledger import events as E
from ledger.keys import write_key_files

CACHE = Path("/tmp/ledger-bench-cache")


def _cli(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from ledger.cli import main; main()", *args],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ledger", type=Path, default=CACHE / "bench-1000000-seed0")
    ap.add_argument("--appends", type=int, default=1000)
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        path = work / "L"
        shutil.copytree(a.ledger, path)
        cp, alice = SigningKey(b"u" * 32), generator._key(0, "alice")
        write_key_files(work / "cp.pem", cp)
        led = Ledger.open(path)
        led.add_key(cp.public_key, "bench-cp", "checkpointer", key=generator._key(0, "admin"))
        key = ["--ledger", str(path), "--key", str(work / "cp.pem")]
        t_first = _cli("checkpoint", *key)
        (first,) = sorted((path / "checkpoints").glob("*.checkpoint"))
        t = time.perf_counter()
        for i in range(a.appends):
            led.append(E.Draft(E.REGISTER, {}, f"daily.model-{i % 50:02d}"), alice)
        t_appends = time.perf_counter() - t
        t_cp = _cli("checkpoint", *key)
        t_since = _cli("verify", "--ledger", str(path), "--since", str(first))
        t_start = min(_cli("--version") for _ in range(3))
        n = led.store.tail()[0]
        print(f"ledger of {n:,} events, {len(list((path / 'events').iterdir()))} segments")
        print(f"first_checkpoint      {t_first:6.2f} s   (verifies every event, builds the map)")
        print(f"single_appends        {t_appends:6.2f} s   {a.appends:,} durable appends")
        print(
            f"checkpoint_after      {t_cp:6.2f} s   fresh process; start-up floor {t_start:.2f} s"
        )
        print(
            f"verify_since_after    {t_since:6.2f} s   fresh process; start-up floor {t_start:.2f} s"
        )


if __name__ == "__main__":
    main()
