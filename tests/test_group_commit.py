"""Group commit: many threads appending through one Ledger share segments and fsyncs,
each is acknowledged only once its events are durable, a refused batch fails alone and
is undone exactly (``State.savepoint``, held to a deep copy by Hypothesis)."""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import Draft, Ledger, LedgerError, RuleViolation, StorageError
from ledger import events as E
from ledger.state import State
from ledger.store import Store
from tests.test_state_plain import MODELS, _event, _start, steps
from tests.writer_process import check, make_ledger

THREADS = 16


def _hold_first_write(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[int]:
    """Make the first segment write wait, so that the other threads queue up behind it;
    returns the row count of every segment the writer appends."""
    rows: list[int] = []
    real = Store.append

    def append(self: Store, table: Any) -> Any:
        rows.append(table.num_rows)
        if len(rows) == 1:
            time.sleep(seconds)
        return real(self, table)

    monkeypatch.setattr(Store, "append", append)
    return rows


def _threads(n: int, work: Any) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread waits forever"
    return errors


def test_many_threads_are_committed_together_and_every_ack_is_durable(tmp_path, monkeypatch):
    from ledger import load_signing_key

    path, key_file = make_ledger(tmp_path)
    led, key = Ledger.open(path), load_signing_key(key_file)
    rows = _hold_first_write(monkeypatch, 0.3)
    acks: dict[int, str] = {}

    def work(i: int) -> None:
        for _ in range(10):
            r = led.register(f"t{i}", key=key)
            # Acknowledged means on disk: a fresh reader already sees it.
            assert Store(path).tail()[0] > r.seq
            acks[r.seq] = r.hash

    assert _threads(THREADS, work) == []
    c = check(path, acks)
    assert c.ok and c.missing == [] and c.changed == []
    assert sorted(acks) == list(range(2, 2 + THREADS * 10))
    assert sum(rows) == THREADS * 10
    assert max(rows) >= THREADS - 1  # those that waited behind the first write: one segment
    assert len(rows) < THREADS * 10


def test_a_refused_request_fails_alone(tmp_path, monkeypatch):
    """In one group: good single appends, a refused single, a batch refused half-way.
    The refused ones raise their own error; the rest land; the state kept for the next
    commit is as if the refused ones had never been tried."""
    from ledger import load_signing_key

    path, key_file = make_ledger(tmp_path)
    led, key = Ledger.open(path), load_signing_key(key_file)
    led.register("base", key=key)  # the writer now keeps its State between commits
    _hold_first_write(monkeypatch, 0.3)
    results: dict[int, Any] = {}

    def work(i: int) -> None:
        try:
            if i == 0:
                results[i] = led.register("first", key=key)  # the held write
            elif i % 4 == 1:  # a batch whose second draft breaks a rule
                drafts = [
                    Draft(E.REGISTER, {}, f"b{i}"),
                    Draft(E.REGISTER, {"parents": [{"model": "nope", "version": 1,
                                                    "relation": "finetune"}]}, f"b{i}"),
                ]  # fmt: skip
                results[i] = led.append_many(drafts, key)
            elif i % 4 == 2:  # a single refused draft
                results[i] = led.append(Draft(E.DEPRECATE, {}, "base", 7), key)
            else:
                results[i] = led.register(f"ok{i}", key=key)
        except LedgerError as exc:
            results[i] = exc

    def start(i: int) -> None:
        if i:
            time.sleep(0.05)  # behind the held write
        work(i)

    assert _threads(12, start) == []
    for i, r in results.items():
        if i and i % 4 in (1, 2):
            assert isinstance(r, LedgerError), (i, r)
        else:
            assert not isinstance(r, BaseException), (i, r)
    assert isinstance(results[1], LedgerError) and "parent nope:1" in str(results[1])
    assert isinstance(results[2], RuleViolation) or "not registered" in str(results[2])
    # The undone batch registered nothing: b1's first version is still version 1.
    assert led.register("b1", key=key).version == 1
    assert led.verify().ok
    assert Ledger.open(path).status(model="b1").num_rows == 1


def test_a_failed_write_fails_every_request_of_its_group(tmp_path, monkeypatch):
    from ledger import load_signing_key

    path, key_file = make_ledger(tmp_path)
    led, key = Ledger.open(path), load_signing_key(key_file)
    led.register("base", key=key)
    real = Store.append
    calls = []

    def append(self: Store, table: Any) -> Any:
        calls.append(table.num_rows)
        if len(calls) == 1:
            time.sleep(0.3)
            return real(self, table)
        raise StorageError("cannot write segment: no space left on device")

    monkeypatch.setattr(Store, "append", append)
    outcome: dict[int, Any] = {}

    def work(i: int) -> None:
        if i:
            time.sleep(0.05)
        try:
            outcome[i] = led.register(f"m{i}", key=key)
        except LedgerError as exc:
            outcome[i] = exc

    assert _threads(8, work) == []
    assert not isinstance(outcome[0], Exception)
    assert all(isinstance(outcome[i], StorageError) for i in range(1, 8))
    monkeypatch.undo()
    # Nothing of the failed group is on disk, and the writer goes on from the truth.
    assert led.verify().events == 4
    assert led.register("m1", key=key).seq == 4


# --- State.savepoint against a deep copy ----------------------------------------------------


def _dump(state: State) -> Any:
    return (
        {k: (r.actor, r.roles, r.revoked_seq, r.revoked_ts) for k, r in state.keys.items()},
        {
            k: (v.rejected_seq, v.deprecated_seq, v.approvals, v.live, v.deployed_to, v.tags)
            for k, v in state.versions.items()
        },
        dict(state.aliases),
        dict(state.model_tags),
        dict(state.latest),
        dict(state.live),
        (state.next_seq, state.last_ts, state.unknown_actions, state.policy_seq),
        sorted(state.grants),
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(steps, max_size=30), st.lists(steps, min_size=1, max_size=12))
def test_savepoint_restores_exactly_what_a_batch_changed(history, batch):
    state = _start()
    ts = state.next_seq

    def run(steps_: list[Any]) -> None:  # whatever of them the rules allow
        nonlocal ts
        for step in steps_:
            ts += max(0, step[-1])
            with contextlib.suppress(LedgerError):
                state.step(_event(state, state.next_seq, ts, step))

    run(history)
    before = copy.deepcopy(state)
    undo = state.savepoint(MODELS)
    run(batch)
    undo()
    assert _dump(state) == _dump(before)


def test_the_leader_stopped_mid_commit_releases_every_waiter(tmp_path: Path, monkeypatch):
    """A KeyboardInterrupt in the committing thread: the others get a clear error, not a
    wait that never ends."""
    from ledger import load_signing_key

    path, key_file = make_ledger(tmp_path)
    led, key = Ledger.open(path), load_signing_key(key_file)
    real = Store.append
    calls = []

    def append(self: Store, table: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.3)
            raise KeyboardInterrupt
        return real(self, table)

    monkeypatch.setattr(Store, "append", append)
    outcome: dict[int, Any] = {}

    def work(i: int) -> None:
        if i:
            time.sleep(0.05)
        try:
            outcome[i] = led.register(f"m{i}", key=key)
        except BaseException as exc:
            outcome[i] = exc

    assert _threads(5, work) == []
    assert isinstance(outcome[0], KeyboardInterrupt)
    # Those queued behind it were committed by the next leader, or told why not.
    for i in range(1, 5):
        assert not isinstance(outcome[i], BaseException) or isinstance(outcome[i], StorageError), (
            outcome[i]
        )
    assert led.verify().ok
