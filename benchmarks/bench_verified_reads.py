"""What the verified-reads check (ledger/verified.py) costs a read, beside its floor.

``python benchmarks/bench_verified_reads.py [--ledger PATH] [--runs N] [--verify]
[--no-append]`` measures, in one run, on the 1M-event benchmark ledger by default:

* ``stat_floor``: one ``os.stat`` per live segment (the least such a check can cost);
* ``check_unchanged``: ``verified.check`` of a freshly opened ``Ledger`` when nothing
  changed since the record was written (a listing of ``events/``, a stat per segment
  and per index file, one small JSON file), the median of ``--runs``;
* ``check_after_append``: on a copy of the ledger, the first check after one appended
  event (verified on the fly with the ``verify --since`` machinery, then recorded), and
  the next check (back to ``check_unchanged``).

The record is written to a temporary folder (never into the ledger). By default it is
written from the ledger's tail without verifying (``verified.accept`` with the head the
tail names): the check's cost does not depend on how the record came about, and a full
verify of 1M events takes a minute on two cores; ``--verify`` runs the real one.
The cached benchmark ledger is never written: the append goes to a copy.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import Ledger, verified
from ledger.verify import VerifyReport

DEFAULT = Path("/tmp/ledger-bench-cache/bench-1000000-seed0")


def _record(led: Ledger, real: bool) -> None:
    if real:
        report = led.verify()
        assert report.ok, report.summary()
        return
    n, head, _ = led.store.tail()
    report = VerifyReport(events=n, head=head.hex())
    verified.accept(led, report, verified.listing(led.store))


def _ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _check(path: Path) -> None:
    problem = verified.check(Ledger.open(path))
    assert problem is None, problem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ledger", type=Path, default=DEFAULT)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--verify", action="store_true", help="record with a real verify")
    ap.add_argument("--no-append", action="store_true", help="skip the append on a copy")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-verified-") as tmp:
        os.environ["LEDGER_VERIFIED_DIR"] = str(Path(tmp) / "records")
        led = Ledger.open(args.ledger)
        segs = led.store.segments()
        events = segs[-1].last + 1
        _record(led, args.verify)
        paths = [s.path for s in segs]
        floor = _ms(lambda: [os.stat(p) for p in paths], args.runs)
        open_only = _ms(lambda: Ledger.open(args.ledger), args.runs)
        check = _ms(lambda: _check(args.ledger), args.runs)
        print(f"ledger: {args.ledger} ({events:,} events, {len(segs)} segments)")
        print(f"stat_floor        {floor:8.3f} ms  (os.stat of {len(segs)} segments)")
        print(f"open_ledger       {open_only:8.3f} ms  (Ledger.open alone, not part of the check)")
        print(
            f"check_unchanged   {check - open_only:8.3f} ms  (median of {args.runs}; target <= 20 ms)"
        )
        if args.no_append:
            return
        copy = Path(tmp) / "copy"
        shutil.copytree(args.ledger, copy)
        led = Ledger.open(copy)
        _record(led, args.verify)
        from benchmarks.generator import ADMIN, _key  # the generator's keys (seed 0)
        from ledger import SigningKey

        led.add_key(SigningKey.generate().public_key, "bench", "approver", key=_key(0, ADMIN))
        t = time.perf_counter()
        _check(copy)
        first = (time.perf_counter() - t) * 1000
        again = _ms(lambda: _check(copy), args.runs)
        print(
            f"check_after_append{first:8.1f} ms  (first read after 1 append: verified on the fly)"
        )
        print(f"check_next        {again:8.3f} ms  (the read after that, incl. Ledger.open)")


if __name__ == "__main__":
    main()
