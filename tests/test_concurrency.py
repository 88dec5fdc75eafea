"""Concurrent writers: real processes (and threads) appending at once, with and without a
compactor alongside, give one gap-free chain holding exactly the acknowledged events; a
writer that dies holding the lock lets the next one in, and only then."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ledger import Ledger
from tests.writer_process import check, finish, make_ledger, start, wait_for

WRITERS = 8


def _run_writers(path: Path, key: Path, events: int, compactor: bool) -> dict[int, str]:
    procs = [
        start(path, key, "--count", str(events), "--batch", str(1 + i % 3), "--prefix", f"p{i}")
        for i in range(WRITERS)
    ]
    comp = start(path, key, "--compact-only") if compactor else None
    outs = [finish(p) for p in procs]
    if comp is not None:
        comp.send_signal(signal.SIGKILL)  # a kill mid-compaction, as a bonus
        finish(comp)
    acks: dict[int, str] = {}
    for out in outs:
        assert out.done and out.returncode == 0, out.stderr
        assert not set(out.acks) & set(acks), "two writers were given the same seq"
        acks.update(out.acks)
    return acks


@pytest.mark.parametrize("compactor", [False, True], ids=["alone", "with-compactor"])
def test_eight_writers_make_one_chain(tmp_path: Path, compactor: bool) -> None:
    path, key = make_ledger(tmp_path)
    acks = _run_writers(path, key, events=6, compactor=compactor)
    c = check(path, acks)
    assert c.ok, c.verdict
    assert c.missing == [] and c.changed == []
    # Exactly the acknowledged events after the two set-up events: none lost, none extra.
    assert sorted(acks) == list(range(2, c.events))
    assert len(acks) == WRITERS * 6
    if compactor:
        assert len(Ledger.open(path).store.segments()) < len(acks)


def test_threads_sharing_one_ledger_take_turns(tmp_path: Path) -> None:
    """One Ledger object used by several threads: the lock is per thread, not per object."""
    from ledger import load_signing_key

    path, key_file = make_ledger(tmp_path)
    led, key = Ledger.open(path), load_signing_key(key_file)
    acks: dict[int, str] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(5):
                r = led.register(f"t{i}", key=key)
                acks[r.seq] = r.hash
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    c = check(path, acks)
    assert c.ok and c.missing == [] and c.changed == [] and sorted(acks) == list(range(2, 22))


def _cli(path: Path, key: Path, model: str, timeout: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "from ledger.cli import main; main()",
            "register",
            model,
            "--ledger",
            str(path),
            "--key",
            str(key),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LEDGER_LOCK_TIMEOUT": timeout},
    )


def test_lock_holder_death_lets_the_next_writer_in_only_then(tmp_path: Path) -> None:
    path, key = make_ledger(tmp_path)
    holder = start(path, key, "--hold-lock")
    try:
        early = wait_for(holder, "LOCKED")
    except BaseException:
        holder.kill()  # never leave a lock holder behind
        raise
    # While the holder lives (even frozen), nobody else gets in: no timeout-based stealing.
    r = _cli(path, key, "blocked", "0.5")
    assert (r.returncode, r.stdout) == (7, "")
    assert r.stderr == (
        f"Error: timed out after 0.5s waiting for another writer to release {path / '.lock'}\n"
    )
    holder.send_signal(signal.SIGSTOP)
    r = _cli(path, key, "blocked", "0.5")
    assert r.returncode == 7 and r.stderr.startswith("Error: timed out after 0.5s")
    holder.send_signal(signal.SIGKILL)
    out = finish(holder, early)
    assert out.locked and out.returncode == -9
    # The kernel released the flock with the process: the next writer gets in at once,
    # although the lock file is still there (it is never deleted, so never recreated).
    assert (path / ".lock").exists()
    r = _cli(path, key, "after", "10")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("register after:1: seq 2, hash ")
    assert Ledger.open(path).verify().ok


def test_flock_is_exclusive_across_processes(tmp_path: Path) -> None:
    """The primitive itself: a second open file description cannot take the lock."""
    import fcntl

    path, key = make_ledger(tmp_path)
    holder = start(path, key, "--hold-lock")
    try:
        early = wait_for(holder, "LOCKED")
    except BaseException:
        holder.kill()
        raise
    fd = os.open(path / ".lock", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        holder.send_signal(signal.SIGKILL)
        finish(holder, early)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free the moment the holder died
    finally:
        os.close(fd)


@pytest.mark.parametrize("value", ["abc", "nan"])
def test_bad_lock_timeout_is_a_clear_error(tmp_path: Path, value: str) -> None:
    path, key = make_ledger(tmp_path)
    r = _cli(path, key, "m", value)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"Error: LEDGER_LOCK_TIMEOUT must be a number of seconds, got {value!r}\n"
