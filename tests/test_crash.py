"""Crash tests: real writer processes killed with SIGKILL at exact and at random instants.

After every kill the ledger must verify, hold every acknowledged event byte for byte
(its canonical bytes hash to what the writer was told), ignore any half-written temporary
file, and let the next writer continue the chain. ``benchmarks/torture.py`` runs the
long version (hundreds of kills); this is a representative sample.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ledger import Ledger
from tests.writer_process import check, finish, kill_at_random, make_ledger, start

#: Each instant of the on-disk protocol a kill can land on, as ``PHASE:POINT:N``.
#: With --compact-every 2, the writer's 2nd append is followed by a compaction.
TRAPS = [
    ("append:write:2", "append:write"),  # part of the segment's bytes in the temp file
    ("append:fsync:1", "append:fsync"),  # temp file complete, not yet fsynced
    ("append:rename:2", "append:rename"),  # fsynced, not yet renamed
    ("append:renamed:1", "append:renamed"),  # renamed, folder not yet fsynced
    ("compact:write:1", "compact:write"),  # merged segment half written
    ("compact:rename:1", "compact:rename"),  # merged segment complete, not renamed
    ("compact:renamed:1", "compact:renamed"),  # merged segment live, parts not deleted
    ("compact:unlink:1", "compact:unlink"),  # some parts deleted, others not
    # The automatic merges after an append (the events are durable, not yet acknowledged).
    ("merge:write:1", "merge:write"),  # merged segment half written
    ("merge:rename:1", "merge:rename"),  # merged segment complete, not renamed
    ("merge:renamed:1", "merge:renamed"),  # merged segment live, parts not deleted
    ("merge:unlink:2", "merge:unlink"),  # some parts deleted, others not
]
if hasattr(Ledger, "checkpoint"):
    TRAPS += [("checkpoint:rename:1", "checkpoint:rename")]


def _cycle(path: Path, key: Path, acks: dict[int, str], *args: str) -> tuple[object, object]:
    out = finish(start(path, key, *args))
    acks.update(out.acks)
    return out, check(path, acks)


def test_kill_at_every_step_of_the_protocol(tmp_path: Path) -> None:
    path, key = make_ledger(tmp_path)
    acks: dict[int, str] = {}
    unacked = 0
    for i, (trap, where) in enumerate(TRAPS):
        events_before = check(path, acks).events
        out, c = _cycle(
            path,
            key,
            acks,
            # (the compactions would leave the automatic merges nothing to do)
            *("--count", "6", "--compact-every", "0" if trap.startswith("merge") else "2"),
            *("--checkpoint-every", "2"),
            *("--prefix", f"k{i}", "--die-at", trap, "--seed", str(i)),
        )
        assert out.returncode == -9 and out.trap == where, (trap, out.stderr)
        assert c.ok, (trap, c.verdict)
        assert c.missing == [] and c.changed == [], trap
        # At most the one batch in flight is on disk without an acknowledgement.
        extra = c.events - events_before - len(out.acks)
        assert 0 <= extra <= 1, (trap, extra)
        unacked += extra
        if where in ("append:write", "append:fsync", "compact:write", "merge:write"):
            # The half-written temporary file is there, and was not taken for a segment.
            assert c.temporaries == 1, trap
        if where in ("compact:renamed", "compact:unlink", "merge:renamed", "merge:unlink"):
            assert c.superseded >= 1, trap  # leftovers of the compaction, checked and ignored
    # The next writer cleans up and continues the chain.
    out, c = _cycle(path, key, acks, "--count", "3", "--prefix", "last")
    assert out.done and out.returncode == 0, out.stderr
    assert c.ok and c.missing == [] and c.changed == []
    assert c.temporaries == 0 and c.superseded == 0
    assert c.events == 2 + len(acks) + unacked


def test_kill_at_random_instants(tmp_path: Path) -> None:
    rng = random.Random(7)
    path, key = make_ledger(tmp_path)
    acks: dict[int, str] = {}
    kills = 0
    for i in range(8):
        batch = rng.choice(["1", "1", "3"])
        proc = start(
            path,
            key,
            *("--count", "100000", "--batch", batch, "--compact-every", "3", "--prefix", f"r{i}"),
        )
        early = kill_at_random(proc, rng, within=0.4)
        out = finish(proc, early)
        kills += out.returncode == -9
        acks.update(out.acks)
        c = check(path, acks)
        assert c.ok, c.verdict
        assert c.missing == [] and c.changed == []
    assert kills >= 6  # the writers were really killed mid-run, not left to finish
    out = finish(start(path, key, "--count", "2", "--prefix", "after"))
    acks.update(out.acks)
    c = check(path, acks)
    assert out.done and c.ok and c.missing == [] and c.temporaries == 0


def test_torture_script_prints_its_counts(tmp_path: Path) -> None:
    """A tiny run of benchmarks/torture.py, so the long run's script cannot rot."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "torture.py"
    args = ["--kills", "3", "--writers", "2", "--events", "2", "--rounds", "1"]
    args += ["--locks", "1", "--corrupt", "2", "--dir", str(tmp_path)]
    res = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for label in ("kills survived", "acknowledged", "writers", "corrupted files tried"):
        assert label in res.stdout, res.stdout


@pytest.mark.slow
def test_torture_long(tmp_path: Path) -> None:
    """The long run (>= 200 kills, 8+ writers); about as slow as benchmarks/torture.py."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "torture.py"
    res = subprocess.run(
        [sys.executable, str(script), "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert res.returncode == 0, res.stdout + res.stderr
