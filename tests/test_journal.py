"""The journal (docs/FORMAT.md §5.4): a journaling writer's events, durable in
``events/journal.arrows`` before any segment holds them, read by every reader as one
more segment and verified exactly like one.

* differential: the same appends through the journal and through segments give the same
  events, byte for byte, the same verdict and the same query answers;
* every row-level attack of the tamper table, moved into the journal, gets the verdict it
  gets in a segment, naming the journal;
* journal-only damage: an interrupted append (ignored), a leftover of an interrupted
  move into a segment (ignored, then removed), a gap, another schema, a symbolic link;
* a failed journal append leaves the folder byte-identical;
* real journaling writers SIGKILLed at every step and at random instants lose no
  acknowledged event.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ledger.segments as S
from ledger import Ledger, actions
from ledger import journal as J
from ledger.errors import StorageError

from . import test_tamper as T

# The tamper table's fixtures (its ledgers are built with one segment per event).
from .test_tamper import _per_event_segments, victim  # noqa: F401
from .writer_process import check, finish, kill_at_random, make_ledger, start

JOURNAL = S.JOURNAL


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _tags(led: Ledger, key, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        led.append(actions.tag_set(T.XGB, 1, {"round": str(i)}), key)


def _verdict(invoke, path: Path) -> tuple[int, dict]:
    """Exit code and the first problem of ``verify --format json`` (or, when it passes,
    the report: ``events``, ``head``)."""
    r = invoke(["verify", "--ledger", str(path), "--format", "json"])
    doc = json.loads(r.stdout)
    return r.exit_code, doc["problems"][0] if doc.get("problems") else doc


# --- the journal is one more segment to every reader ------------------------------------


def test_journal_and_segments_hold_the_same_events_and_answers(history, tmp_path, invoke):
    plain_path = tmp_path / "plain"
    import shutil

    shutil.copytree(history.path, plain_path)
    journaled = Ledger.open(history.path, journal=True)
    plain = Ledger.open(plain_path)
    alice = history.keys["alice"]
    # Same drafts, same timestamps: the events must be the same bytes.
    ts = journaled.store.tail()[2]
    for i in range(300):  # (past one move of the journal into a segment)
        for led in (journaled, plain):
            led.append_many([_at(actions.tag_set(T.XGB, 1, {"round": str(i)}), ts + i + 1)], alice)
    names = sorted(p.name for p in (history.path / "events").iterdir())
    assert JOURNAL in names  # 300 - 256 events wait in it
    cols = list(S.COLUMNS)
    a = Ledger.open(history.path).events(columns=cols)
    b = Ledger.open(plain_path).events(columns=cols)
    assert a.equals(b)
    assert _verdict(invoke, history.path)[0] == 0
    # The queries' DuckDB reads the journal too.
    for args in (["history", T.XGB], ["status", T.XGB]):
        one = invoke([*args, "--ledger", str(history.path)])
        two = invoke([*args, "--ledger", str(plain_path)])
        assert one.exit_code == 0 and one.stdout == two.stdout
    q = "SELECT count(*) AS n, max(seq) AS last FROM events"
    one = invoke(["sql", q, "--ledger", str(history.path)])
    two = invoke(["sql", q, "--ledger", str(plain_path)])
    assert one.exit_code == 0 and one.stdout == two.stdout


def _at(draft, ts: int):
    import dataclasses

    return dataclasses.replace(draft, ts=ts)


def test_the_journal_moves_into_a_segment_every_256_events(team):
    led = Ledger.open(team.path, journal=True)
    alice = team.keys["alice"]
    first = led.store.tail()[0]
    led.register(T.XGB, key=alice)
    _tags(led, alice, S.JOURNAL_EVENTS - 2)
    journal = J.read(team.path / "events" / JOURNAL)
    assert journal.table.num_rows == S.JOURNAL_EVENTS - 1
    assert journal.first == first
    _tags(led, alice, 1, start=999)
    assert not (team.path / "events" / JOURNAL).exists()
    assert led.store.tail()[0] == first + S.JOURNAL_EVENTS
    assert Ledger.open(team.path).verify().ok


def test_a_writer_without_the_journal_moves_it_into_a_segment_first(team, invoke):
    journaled = Ledger.open(team.path, journal=True)
    alice = team.keys["alice"]
    journaled.register(T.XGB, key=alice)
    _tags(journaled, alice, 5)
    plain = Ledger.open(team.path)
    plain.append(actions.tag_set(T.XGB, 1, {"after": "yes"}), alice)
    assert not (team.path / "events" / JOURNAL).exists()
    # ... and a journaling writer goes on from there.
    _tags(journaled, alice, 3, start=10)
    code, out = _verdict(invoke, team.path)
    assert code == 0 and out["events"] == 5 + 1 + 5 + 1 + 3


def test_a_reader_writes_nothing_in_the_ledger_folder(team, invoke):
    led = Ledger.open(team.path, journal=True)
    led.register(T.XGB, key=team.keys["alice"])
    before = _snapshot(team.path)
    for args in (["verify"], ["log"], ["status", T.XGB], ["sql", "SELECT count(*) FROM events"]):
        assert invoke([*args, "--ledger", str(team.path)]).exit_code == 0, args
    assert _snapshot(team.path) == before


# --- every row-level attack, in the journal -----------------------------------------------

#: The tamper table's attacks that damage rows of the one segment of ``history``; but for
#: the removal of its last event, which the segment's name betrays. The journal has no
#: name: its last record removed is a shorter ledger, which a checkpoint betrays (below).
ROW_ATTACKS = [
    c
    for c in T.CASES
    if c[2] == T.ALL and c[1] is not None and c[1] >= 1 and c[3] != "segment_range"
]


def _into_journal(path: Path) -> None:
    """Move events 1.. of the ledger's one segment into the journal (as a journaling
    writer that wrote them would have them), event 0 staying in a segment."""
    seg = path / "events" / T.ALL
    table = pq.read_table(seg).cast(S.SCHEMA)
    pq.write_table(table.slice(0, 1), path / "events" / S.segment_name(0, 0))
    (path / "events" / JOURNAL).write_bytes(J.header() + J.record(table.slice(1)))
    seg.unlink()


@pytest.mark.parametrize("case", ROW_ATTACKS, ids=[c[0].__name__ for c in ROW_ATTACKS])
def test_an_attack_on_the_journal_gets_the_segments_verdict(victim, invoke, case):  # noqa: F811
    attack, _, _, kind, _ = case
    attack(victim)
    code, want = _verdict(invoke, victim.path)
    assert code == 1 and want["kind"] == kind
    _into_journal(victim.path)
    got_code, got = _verdict(invoke, victim.path)
    assert (got_code, got["kind"], got["seq"]) == (code, kind, want["seq"])
    assert got["segment"] == JOURNAL
    assert got["message"] == want["message"].replace(T.ALL, JOURNAL)


def test_a_journal_cut_short_below_a_checkpoint_is_caught(team, invoke):
    led = _journaled(team)
    cp = T.SigningKey(b"c" * 32)
    led.add_key(cp.public_key, "cp", "checkpointer", key=team.keys["admin"])
    _tags(led, team.keys["alice"], 2, start=40)
    led.checkpoint(cp)
    jpath = team.path / "events" / JOURNAL
    contents = J.read(jpath)
    jpath.write_bytes(J.header() + J.record(contents.table.slice(0, contents.table.num_rows - 1)))
    code, out = _verdict(invoke, team.path)
    assert code == 1, out
    assert out["kind"] == "truncated", out


def test_the_untouched_journal_verifies(victim, invoke):  # noqa: F811
    _into_journal(victim.path)
    code, out = _verdict(invoke, victim.path)
    assert code == 0 and out["events"] == 11


# --- damage only a journal can have --------------------------------------------------------


def _journaled(team, n: int = 6) -> Ledger:
    led = Ledger.open(team.path, journal=True)
    led.register(T.XGB, key=team.keys["alice"])
    _tags(led, team.keys["alice"], n - 1)
    return led


def test_an_interrupted_append_is_not_an_event_and_the_next_writer_cuts_it_off(team, invoke):
    led = _journaled(team)
    jpath = team.path / "events" / JOURNAL
    whole = J.read(jpath)
    record = J.record(whole.table.slice(whole.table.num_rows - 1))
    with open(jpath, "ab") as f:
        f.write(record[: len(record) // 2])  # a crash in the middle of the next record
    code, out = _verdict(invoke, team.path)
    assert code == 0 and out["events"] == 5 + 6
    del led
    led2 = Ledger.open(team.path, journal=True)
    _tags(led2, team.keys["alice"], 1, start=50)
    after = J.read(jpath)
    assert after.valid == after.size and after.table.num_rows == 7
    code, out = _verdict(invoke, team.path)
    assert code == 0 and out["events"] == 5 + 7


def test_a_journal_left_beside_its_segment_is_ignored_then_removed(team, invoke, monkeypatch):
    _journaled(team)
    jpath = team.path / "events" / JOURNAL
    saved = jpath.read_bytes()
    led = Ledger.open(team.path)  # (a writer without the journal moves it first)
    with led.store.lock():
        led.store.flush_journal()
    jpath.write_bytes(saved)  # as if the move was interrupted before the journal went
    code, out = _verdict(invoke, team.path)
    assert code == 0 and out["events"] == 11
    with Ledger.open(team.path).store.lock():
        pass  # (the next writer's clean-up)
    assert not jpath.exists()


def test_a_journal_left_beside_a_segment_it_differs_from_is_overlap(team, invoke):
    _journaled(team)
    jpath = team.path / "events" / JOURNAL
    contents = J.read(jpath)
    led = Ledger.open(team.path)
    with led.store.lock():
        led.store.flush_journal()
    rows = contents.table.to_pydict()
    rows["actor"][2] = "mallory"
    jpath.write_bytes(J.header() + J.record(pa.Table.from_pydict(rows, schema=S.SCHEMA)))
    code, out = _verdict(invoke, team.path)
    assert (code, out["kind"], out["segment"]) == (1, "overlap", JOURNAL)
    # A writer leaves it for verify, and refuses to write past it.
    before = _snapshot(team.path)
    with Ledger.open(team.path).store.lock():
        pass
    assert _snapshot(team.path) == before


def test_a_journal_that_does_not_follow_the_segments_is_a_gap(team, invoke):
    _journaled(team)
    jpath = team.path / "events" / JOURNAL
    contents = J.read(jpath)
    jpath.write_bytes(J.header() + J.record(contents.table.slice(2)))
    code, out = _verdict(invoke, team.path)
    first = contents.first
    assert (code, out["kind"], out["seq"]) == (1, "segment_missing", first)
    r = invoke(["approve", f"{T.XGB}:1", "--env", "qa", "--key", str(team.key_files["dave"]),
                "--ledger", str(team.path)])  # fmt: skip
    assert r.exit_code != 0 and "run ledger verify" in r.stderr


def test_a_journal_with_other_columns_is_bad_schema(team, invoke):
    _journaled(team)
    jpath = team.path / "events" / JOURNAL
    table = J.read(jpath).table.drop_columns(["payload"])
    jpath.write_bytes(bytes(table.schema.serialize()) + bytes(table.to_batches()[0].serialize()))
    code, out = _verdict(invoke, team.path)
    assert (code, out["kind"], out["segment"]) == (1, "bad_schema", JOURNAL)


def test_a_journal_that_is_a_symbolic_link_is_refused(team, invoke, tmp_path):
    _journaled(team)
    jpath = team.path / "events" / JOURNAL
    elsewhere = tmp_path / "elsewhere.arrows"
    elsewhere.write_bytes(jpath.read_bytes())
    jpath.unlink()
    jpath.symlink_to(elsewhere)
    code, out = _verdict(invoke, team.path)
    assert (code, out["kind"]) == (1, "symlink")


def test_a_failed_journal_append_leaves_the_folder_byte_identical(team, monkeypatch):
    led = _journaled(team)
    before = _snapshot(team.path)
    real = os.fdatasync

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(StorageError, match=r"cannot append to events/journal\.arrows"):
        led.append(actions.tag_set(T.XGB, 1, {"lost": "yes"}), team.keys["alice"])
    monkeypatch.setattr(os, "fdatasync", real)
    assert _snapshot(team.path) == before
    _tags(led, team.keys["alice"], 1, start=70)  # the same writer goes on
    assert Ledger.open(team.path).verify().ok


# --- crashes ---------------------------------------------------------------------------

#: (trap, where the kill lands) for a journaling writer that moves its journal into a
#: segment every 4 events.
TRAPS = [
    ("append:jwrite:2", "append:jwrite"),  # a record half written
    ("append:jsync:2", "append:jsync"),  # a record written, not fsynced
    ("append:write:1", "append:write"),  # a new journal half written (a temporary file)
    ("append:renamed:1", "append:renamed"),  # a new journal in place, folder not fsynced
    ("merge:write:1", "merge:write"),  # the journal's segment half written
    ("merge:renamed:1", "merge:renamed"),  # that segment live, the journal not removed
]


def test_a_journaling_writer_killed_at_each_step_loses_no_acknowledged_event(tmp_path):
    path, key = make_ledger(tmp_path)
    acks: dict[int, str] = {}
    for i, (trap, where) in enumerate(TRAPS):
        before = check(path, acks).events
        out = finish(start(path, key, "--journal", "--journal-events", "4", "--count", "9",
                           "--prefix", f"k{i}", "--die-at", trap, "--seed", str(i)))  # fmt: skip
        acks.update(out.acks)
        c = check(path, acks)
        assert out.returncode == -9 and out.trap == where, (trap, out.stderr)
        assert c.ok, (trap, c.verdict)
        assert c.missing == [] and c.changed == [], trap
        assert 0 <= c.events - before - len(out.acks) <= 1, trap
    out = finish(start(path, key, "--journal", "--count", "3", "--prefix", "last"))
    acks.update(out.acks)
    c = check(path, acks)
    assert out.done and c.ok and c.missing == [] and c.temporaries == 0


def test_journaling_writers_killed_at_random_instants_lose_nothing(tmp_path):
    rng = random.Random(11)
    path, key = make_ledger(tmp_path)
    acks: dict[int, str] = {}
    for i in range(6):
        proc = start(path, key, "--journal", "--journal-events", "8", "--count", "100000",
                     "--batch", rng.choice(["1", "1", "3"]), "--prefix", f"r{i}")  # fmt: skip
        out = finish(proc, kill_at_random(proc, rng, within=1.0))
        acks.update(out.acks)
        c = check(path, acks)
        assert c.ok, c.verdict
        assert c.missing == [] and c.changed == []
    assert len(acks) >= 6  # (the writers got going before they were killed)


def test_a_journal_record_is_all_or_nothing():
    """Any cut of a journal keeps exactly the records that are whole."""
    from ledger import SigningKey
    from ledger import events as E
    from ledger.writer import _Columns

    key = SigningKey.generate()
    records, rows = [J.header()], []
    prev = "0" * 64
    for seq in range(5):
        cols = _Columns()
        ev = E.Event(seq, 1_700_000_000_000_000 + seq, "t.example/j", E.APPROVE, "a",
                     key.key_id, {"env": "qa"}, prev, "m", 1)  # fmt: skip
        prev = cols.add(ev, key).hex()
        t = cols.table()
        rows.append(t)
        records.append(J.record(t))
    data = b"".join(records)
    ends = [sum(len(r) for r in records[: i + 1]) for i in range(len(records))]
    for cut in range(len(data) + 1):
        c = J.parse(data[:cut])
        whole = sum(1 for e in ends[1:] if e <= cut)
        assert c.table.num_rows == whole, cut
        assert c.valid == (ends[whole] if cut >= ends[0] else 0)
        if whole:
            assert c.table.equals(pa.concat_tables(rows[:whole]))
