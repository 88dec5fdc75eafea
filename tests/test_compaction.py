"""Automatic compaction: the policy's invariants (Hypothesis, pure), a real ledger written
one event at a time staying within its bound, merges that keep every event's bytes, and
merged-away segments that stay until no reader is reading."""

from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import Draft, InputError, Ledger, SigningKey
from ledger import events as E
from ledger.compaction import FANOUT, level, max_segments, plan
from ledger.store import COLUMNS, SEGMENT_EVENTS, Store
from tests.writer_process import check, finish, make_ledger, start

# --- the policy, pure --------------------------------------------------------------------


def _append(ranges: list[tuple[int, int]], n: int, k: int, top: int) -> int:
    """Add a batch of ``k`` events as the writer does: split at multiples of ``top``."""
    a, last = n, n + k - 1
    while a <= last:
        b = min(last, (a // top + 1) * top - 1)
        ranges.append((a, b))
        a = b + 1
    return last + 1


def _apply(ranges: list[tuple[int, int]], groups: list[tuple[int, int]]) -> None:
    for i, j in reversed(groups):
        ranges[i:j] = [(ranges[i][0], ranges[j - 1][1])]


def _check_invariants(ranges: list[tuple[int, int]], n: int, fanout: int, top: int) -> None:
    assert ranges[0][0] == 0 and ranges[-1][1] == n - 1
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(ranges))
    assert len(ranges) <= max_segments(n, fanout, top)
    full = n // top
    # Each complete block is one segment; the block being filled is tiered.
    assert ranges[:full] == [(b * top, (b + 1) * top - 1) for b in range(full)]
    levels = [level(b - a + 1, fanout) for a, b in ranges[full:]]
    assert levels == sorted(levels, reverse=True)
    assert all(levels.count(x) < fanout for x in set(levels))
    assert plan(ranges, fanout, top) == []  # one round of merges reaches the fixpoint


batches = st.one_of(
    st.just(1), st.just(1), st.integers(1, 9), st.integers(1, 300), st.integers(1, 5000)
)


@settings(max_examples=200, deadline=None)
@given(st.lists(batches, min_size=1, max_size=200), st.sampled_from([2, 3, 4, 8]))
def test_the_policy_keeps_its_invariants_whatever_the_appends(sizes, fanout):
    for top in (64, fanout**6, SEGMENT_EVENTS):
        ranges = [(0, 0)]
        n = 1
        for k in sizes:
            n = _append(ranges, n, k, top)
            _apply(ranges, plan(ranges, fanout, top))
            _check_invariants(ranges, n, fanout, top)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=400))
def test_the_policy_repairs_any_layout(sizes):
    """From a ledger written with merges off (one segment per append), one plan restores
    the invariants: an old ledger needs no manual compact."""
    ranges: list[tuple[int, int]] = []
    n = 0
    for k in sizes:
        n = _append(ranges, n, k, 256)
    _apply(ranges, plan(ranges, FANOUT, 256))
    _check_invariants(ranges, n, FANOUT, 256)


def test_levels_and_the_bound_by_hand():
    assert [level(n) for n in (1, 3, 4, 15, 16, 63, 64, 65535, 65536)] == [
        0, 0, 1, 1, 2, 2, 3, 7, 8,
    ]  # fmt: skip
    # Three single events, then a fourth: the four merge.
    assert plan([(0, 0), (1, 1), (2, 2)]) == []
    assert plan([(0, 0), (1, 1), (2, 2), (3, 3)]) == [(0, 4)]
    # A batch bigger than the segments before it absorbs them.
    assert plan([(0, 20), (21, 21), (22, 22), (23, 100)]) == [(0, 4)]
    # A complete block becomes one segment whatever lies inside it.
    assert plan([(0, 65534), (65535, 65535), (65536, 65536)]) == [(0, 2)]
    assert max_segments(1) == 3 and max_segments(SEGMENT_EVENTS) == 1
    assert max_segments(SEGMENT_EVENTS + 5000) == 1 + 3 * 7
    for n in range(2, 200_000, 997):
        assert max_segments(n) <= 4 * math.log2(n)


# --- a real ledger ------------------------------------------------------------------------


def test_a_ledger_written_one_event_at_a_time_stays_within_the_bound(tmp_path: Path):
    """1,500 appends, mostly single events, some batches: after each, the segments are
    within the bound (and 4·log2 of the events), and the events are exactly what was
    acknowledged, byte for byte, as on a compacted copy."""
    admin = SigningKey(b"a" * 32)
    led = Ledger.init(tmp_path / "reg", admin, "admin", roles="admin,registrar")
    hashes: dict[int, str] = {}
    for i in range(1500):
        if i % 97 == 0:
            drafts = [
                Draft(E.REGISTER, E.register_payload(metadata={"i": j}), f"m{j % 7}")
                for j in range(i % 41 + 2)
            ]
            receipts = led.append_many(drafts, admin)
        else:
            receipts = [led.register(f"m{i % 7}", key=admin)]
        hashes.update((r.seq, r.hash) for r in receipts)
        n = receipts[-1].seq + 1
        count = len(led.store.segments())
        assert count <= max_segments(n) and count <= 4 * math.log2(n), (n, count)
        assert led.store.layout().superseded == []  # no reader: parts deleted at once
    report = led.verify()
    assert report.ok and report.events == n
    table = led.events(columns=["seq", "hash"])
    assert {s: h.hex() for s, h in zip(*table.to_pydict().values(), strict=True)} == {
        0: table["hash"][0].as_py().hex(),
        **hashes,
    }
    os.environ["LEDGER_AUTOCOMPACT"] = "0"
    try:
        copy = Ledger.open(tmp_path / "reg")
        assert copy.compact()[1] == 1
    finally:
        del os.environ["LEDGER_AUTOCOMPACT"]
    assert pq.read_table(copy.store.segments()[0].path).equals(led.events(columns=COLUMNS))


def test_an_old_ledger_is_merged_by_its_next_append(tmp_path: Path, monkeypatch):
    admin = SigningKey(b"a" * 32)
    monkeypatch.setenv("LEDGER_AUTOCOMPACT", "0")
    led = Ledger.init(tmp_path / "reg", admin, "admin", roles="admin,registrar")
    for i in range(300):
        led.register(f"m{i % 3}", key=admin)
    assert len(led.store.segments()) == 301
    monkeypatch.delenv("LEDGER_AUTOCOMPACT")
    led.register("m0", key=admin)
    assert len(led.store.segments()) <= max_segments(302)
    assert led.verify().events == 302


def test_the_knobs(tmp_path: Path, monkeypatch, invoke):
    admin = SigningKey(b"a" * 32)
    led = Ledger.init(tmp_path / "reg", admin, "admin", roles="admin,registrar")
    monkeypatch.setenv("LEDGER_COMPACT_FANOUT", "2")
    for _i in range(40):
        led.register("m", key=admin)
    assert len(led.store.segments()) <= max_segments(41, 2)
    levels = [level(s.count, 2) for s in led.store.segments()]
    assert levels == sorted(levels, reverse=True) and len(set(levels)) == len(levels)
    monkeypatch.setenv("LEDGER_COMPACT_FANOUT", "1")
    with pytest.raises(InputError, match="LEDGER_COMPACT_FANOUT must be a whole number"):
        led.register("m", key=admin)
    monkeypatch.delenv("LEDGER_COMPACT_FANOUT")
    monkeypatch.setenv("LEDGER_AUTOCOMPACT", "off")
    before = len(led.store.segments())
    for _ in range(5):
        led.register("m", key=admin)
    assert len(led.store.segments()) == before + 5


# --- merges and readers ---------------------------------------------------------------------


def _four_singles(led: Ledger, key: SigningKey) -> None:
    """Appends until a merge replaces segments (at most four)."""
    before = {s.name for s in led.store.segments()}
    for _ in range(4):
        led.register("m", key=key)
        if not before <= {s.name for s in led.store.segments()}:
            return
    raise AssertionError("no merge happened")


def test_a_merge_never_deletes_a_segment_under_a_reader_of_this_process(tmp_path: Path):
    admin = SigningKey(b"a" * 32)
    led = Ledger.init(tmp_path / "reg", admin, "admin", roles="admin,registrar")
    reader = Store(tmp_path / "reg")
    with reader.reading():
        listed = reader.segments()
        _four_singles(led, admin)
        assert led.store.layout().superseded != []  # the parts stay ...
        for s in listed:  # ... so what the reader listed is still readable
            assert pq.read_table(s.path).num_rows == s.count
    led.register("m", key=admin)  # the next writer removes them
    assert led.store.layout().superseded == []
    assert led.verify().ok


_HOLDER = """
import sys, time
from ledger.store import Store
s = Store(sys.argv[1])
with s.reading():
    print("READING", flush=True)
    time.sleep(60)
"""


def test_a_merge_never_deletes_a_segment_under_a_reader_of_another_process(tmp_path: Path):
    admin = SigningKey(b"a" * 32)
    led = Ledger.init(tmp_path / "reg", admin, "admin", roles="admin,registrar")
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "reg")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "READING\n"
        _four_singles(led, admin)
        leftovers = led.store.layout().superseded
        assert leftovers != []
        led.register("m", key=admin)  # still reading: still there
        assert all(s.path.exists() for s, _ in leftovers)
    finally:
        holder.kill()
        holder.wait()
    led.register("m", key=admin)
    assert led.store.layout().superseded == []
    assert led.verify().ok


def test_verify_and_reads_racing_merging_writers_never_misreport(tmp_path: Path, invoke):
    """Four writer processes append one event at a time (each append may merge) while
    this process verifies and reads the ledger over and over: every verdict is OK and
    every read succeeds; afterwards the chain holds exactly the acknowledged events."""
    path, key = make_ledger(tmp_path)
    procs = [start(path, key, "--count", "40", "--prefix", f"p{i}") for i in range(4)]
    verdicts, reads = [], 0
    try:
        while any(p.poll() is None for p in procs):
            report = Ledger.open(path).verify(jobs=1)
            verdicts.append(report.ok or str(report.problems[0]))
            for args in (["status"], ["log", "--limit", "3"], ["query", "zombie-deployments"]):
                r = invoke([*args, "--ledger", str(path)])
                assert r.exit_code == 0, r.stderr
                reads += 1
            time.sleep(0.01)
    finally:
        outs = [finish(p) for p in procs]
    assert verdicts and all(v is True for v in verdicts), verdicts
    acks: dict[int, str] = {}
    for out in outs:
        assert out.done and out.returncode == 0, out.stderr
        acks.update(out.acks)
    c = check(path, acks)
    assert c.ok and c.missing == [] and c.changed == [] and sorted(acks) == list(range(2, c.events))
    assert len(Ledger.open(path).store.segments()) <= max_segments(c.events)
