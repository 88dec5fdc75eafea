"""A real writer process for the crash and concurrency tests, and the harness around it.

Run as a script, it appends events to a ledger and prints one line per event *only after*
``append`` has returned (that is, after the segment is fsynced, renamed and the folder
fsynced)::

    READY <pid>
    ACK <seq> <sha256 of the event's canonical bytes, hex>
    ...
    DONE

Given ``--die-at POINT:N`` it kills itself with a real SIGKILL at the N-th time it reaches
POINT, so a test can hit an exact instant (mid-segment-write, just before or after the
rename, between the unlinks of a compaction, ...) as well as the random instants the
parent picks with its own ``kill``. Before dying it prints ``TRAP <phase>:<point>`` so the
parent knows where the kill landed. ``--hold-lock`` takes the writer lock, prints
``LOCKED`` and sleeps, to prove what happens when a lock holder dies.

The harness functions below (``start``, ``finish``, ``check``) are shared by the tests and
by ``benchmarks/torture.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Instants a writer can be told to die at (see ``_install_traps``).
POINTS = ("write", "fsync", "rename", "renamed", "unlink", "jwrite", "jsync")
#: Phases a point can be reached in: an append, the automatic merges after it, a
#: compaction, a checkpoint (if any).
PHASES = ("append", "merge", "compact", "checkpoint")

SCRIPT = Path(__file__).resolve()


# --- the writer --------------------------------------------------------------------------


def _die(where: str) -> None:
    print(f"TRAP {where}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


class _Phase:
    current = "append"


def _install_traps(point: str, nth: int, seed: int) -> None:
    """Make this process SIGKILL itself the ``nth`` time it reaches ``point``.

    ``point`` is ``[PHASE:]NAME``; with a phase, only occurrences inside that phase count.
    The hooks wrap the exact system calls the store makes, so the kill lands between two
    real steps of the on-disk protocol.
    """
    import ledger.store as store_mod

    phase, _, name = point.rpartition(":")
    if name not in POINTS:
        raise SystemExit(f"unknown trap point {name!r}; choose from {', '.join(POINTS)}")
    rng = random.Random(seed)
    seen = 0

    def hit(here: str) -> bool:
        nonlocal seen
        if here != name or (phase and phase != _Phase.current):
            return False
        seen += 1
        return seen == nth

    where = lambda: f"{_Phase.current}:{name}"  # noqa: E731

    class TrapFile(io.FileIO):
        """A file that dies after a random number of bytes of the N-th temporary file."""

        def __init__(self, path: Any, mode: str = "rb", *args: Any, **kwargs: Any) -> None:
            super().__init__(path, mode.replace("b", "") or "r")
            self._limit = -1
            self._done = 0
            if "w" in mode and Path(path).name.startswith(".tmp-") and hit("write"):
                # Segments of a few events are ~3-8 KB; a limit past the end dies at close.
                self._limit = rng.randrange(1, 3000)

        def write(self, b: Any) -> int:
            data = bytes(b)
            if self._limit >= 0 and self._done + len(data) >= self._limit:
                super().write(data[: max(0, self._limit - self._done)])
                _die(where())
            self._done += len(data)
            return super().write(data)

        def close(self) -> None:
            if self._limit >= 0 and not self.closed:
                _die(where())
            super().close()

    store_mod.open = TrapFile  # type: ignore[attr-defined]  # shadows the builtin there

    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(fd: int) -> None:
        import stat

        if stat.S_ISREG(os.fstat(fd).st_mode) and hit("fsync"):
            _die(where())
        real_fsync(fd)

    def renamer(real: Any) -> Any:
        def rename(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
            if hit("rename"):
                _die(where())
            real(src, dst, *a, **kw)
            if hit("renamed"):
                _die(where())

        return rename

    real_pwrite, real_fdatasync = os.pwrite, os.fdatasync

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        # A journal record half written (the journal is appended to with pwrite alone).
        if hit("jwrite"):
            real_pwrite(fd, data[: rng.randrange(1, len(data))], offset)
            _die(where())
        return real_pwrite(fd, data, offset)

    def fdatasync(fd: int) -> None:
        if hit("jsync"):  # a whole record written, not yet fsynced
            _die(where())
        real_fdatasync(fd)

    os.pwrite, os.fdatasync = pwrite, fdatasync
    os.fsync = fsync
    os.rename = renamer(real_rename)
    os.replace = renamer(real_replace)

    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if store_mod.SEGMENT_RE.fullmatch(self.name) and hit("unlink"):
            _die(where())
        real_unlink(self, missing_ok=missing_ok)

    Path.unlink = unlink  # type: ignore[method-assign]


def _in_phase(obj: Any, method: str, phase: str) -> None:
    real = getattr(obj, method)

    def wrapped(*a: Any, **kw: Any) -> Any:
        _Phase.current = phase
        try:
            return real(*a, **kw)
        finally:
            _Phase.current = "append"

    setattr(obj, method, wrapped)


def checkpoint(led: Any, key: Any) -> bool:
    """Write a checkpoint if this version of the ledger has them; True if it did."""
    fn = getattr(led, "checkpoint", None)
    if fn is None:
        return False
    try:
        fn(key=key)
    except TypeError:
        return False
    return True


def writer_main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ledger")
    ap.add_argument("key")
    ap.add_argument("--count", type=int, default=10, help="events to append")
    ap.add_argument("--prefix", default="w", help="model name prefix of this writer")
    ap.add_argument("--batch", type=int, default=1, help="events per append_many call")
    ap.add_argument("--models", type=int, default=3, help="distinct models per writer")
    ap.add_argument("--compact-every", type=int, default=0, help="compact after N appends")
    ap.add_argument("--checkpoint-every", type=int, default=0, help="checkpoint after N")
    ap.add_argument("--compact-only", action="store_true", help="only compact, in a loop")
    ap.add_argument("--die-at", help="[PHASE:]POINT:N - SIGKILL self there")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hold-lock", action="store_true", help="take the lock and sleep")
    ap.add_argument("--journal", action="store_true", help="append through the journal")
    ap.add_argument("--journal-events", type=int, help="move the journal to a segment at N")
    args = ap.parse_args(argv)

    from ledger import Draft, Ledger
    from ledger import events as E
    from ledger.keys import load_signing_key

    if args.die_at:
        point, _, nth = args.die_at.rpartition(":")
        _install_traps(point, int(nth), args.seed)
    if args.journal_events:
        import ledger.segments

        ledger.segments.JOURNAL_EVENTS = args.journal_events
    led = Ledger.open(args.ledger, journal=args.journal)
    key = load_signing_key(args.key)
    _in_phase(led.store, "compact", "compact")
    _in_phase(led.store, "maintain", "merge")  # the automatic merges after an append
    if hasattr(led, "checkpoint"):
        _in_phase(led, "checkpoint", "checkpoint")
    print(f"READY {os.getpid()}", flush=True)

    if args.hold_lock:
        with led.store.lock():
            print("LOCKED", flush=True)
            time.sleep(3600)
        return 0
    if args.compact_only:
        # A compactor running beside the writers, until the parent stops it.
        while True:
            led.compact()
            time.sleep(0.01)

    rng = random.Random(args.seed)
    done = appends = 0
    while done < args.count:
        n = min(args.batch, args.count - done)
        drafts = []
        for i in range(n):
            model = f"{args.prefix}-m{(done + i) % args.models}"
            meta = {"writer": args.prefix, "i": done + i, "note": "é✓\u2028" * rng.randrange(4)}
            payload = E.register_payload(metadata=meta, metrics={"auc": rng.random()})
            drafts.append(Draft(E.REGISTER, payload, model))
        receipts = led.append_many(drafts, key)
        # The acknowledgement: printed only once append_many has returned.
        sys.stdout.write("".join(f"ACK {r.seq} {r.hash}\n" for r in receipts))
        sys.stdout.flush()
        done += n
        appends += 1
        if args.compact_every and appends % args.compact_every == 0:
            led.compact()
        if args.checkpoint_every and appends % args.checkpoint_every == 0:
            checkpoint(led, key)
    print("DONE", flush=True)
    return 0


# --- the harness -------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one writer process said before it ended."""

    acks: dict[int, str] = field(default_factory=dict)
    trap: str | None = None
    done: bool = False
    returncode: int | None = None
    stderr: str = ""
    locked: bool = False


def start(
    ledger: Path, key: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start a writer process; its stdout is a pipe of READY/ACK/TRAP/DONE lines."""
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(ledger), str(key), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for(proc: subprocess.Popen[str], word: str, timeout: float = 60) -> list[str]:
    """Read lines until one starts with ``word``; returns the lines read (incl. it).

    Reads the pipe a byte at a time, so that nothing beyond that line is taken from it
    (a buffered read could swallow the next line and leave select() waiting forever).
    """
    import select

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines: list[str] = []
    line = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError(f"writer said no {word} within {timeout}s")
        byte = os.read(fd, 1)
        if not byte:
            raise EOFError(f"writer ended before {word}: {proc.wait()} {proc.stderr.read()}")
        if byte != b"\n":
            line += byte
            continue
        lines.append(line.decode())
        if line.startswith(word.encode()):
            return lines
        line = b""


def finish(proc: subprocess.Popen[str], early: Sequence[str] = (), timeout: float = 120) -> Outcome:
    """Wait for a writer to end and parse everything it printed."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise TimeoutError(f"writer did not finish in {timeout}s: {err}") from None
    res = Outcome(returncode=proc.returncode, stderr=err)
    for line in [*early, *out.splitlines()]:
        word, *rest = line.split()
        if word == "ACK":
            res.acks[int(rest[0])] = rest[1]
        elif word == "TRAP":
            res.trap = rest[0]
        elif word == "DONE":
            res.done = True
        elif word == "LOCKED":
            res.locked = True
    return res


@dataclass
class Check:
    """The state of a ledger after a run, checked against what writers acknowledged."""

    ok: bool
    events: int
    acked: int
    missing: list[int]
    changed: list[int]
    temporaries: int
    superseded: int
    verdict: str


def check(path: Path, acks: dict[int, str]) -> Check:
    """Verify the ledger and look up every acknowledged (seq, hash) in it."""
    from ledger import Ledger
    from ledger.store import Store

    led = Ledger.open(path)
    report = led.verify()
    table = led.events(columns=["seq", "hash", "canonical"])
    seqs = table.column("seq").to_pylist()
    hashes = [h.hex() for h in table.column("hash").to_pylist()]
    found = dict(zip(seqs, hashes, strict=True))
    import hashlib

    # Byte for byte: the stored canonical bytes must hash to what the writer was given.
    canon_ok = all(
        hashlib.sha256(c).hexdigest() == h
        for c, h in zip(table.column("canonical").to_pylist(), hashes, strict=True)
    )
    missing = sorted(s for s in acks if s not in found)
    changed = sorted(s for s, h in acks.items() if s in found and found[s] != h)
    layout = Store(path).layout()
    temporaries = sum(1 for p in (path / "events").iterdir() if p.name.startswith(".tmp-"))
    return Check(
        ok=report.ok and canon_ok and not layout.strays,
        events=len(seqs),
        acked=len(acks),
        missing=missing,
        changed=changed,
        temporaries=temporaries,
        superseded=len(layout.superseded),
        verdict=report.summary(),
    )


def make_ledger(root: Path) -> tuple[Path, Path]:
    """A fresh ledger in ``root/reg`` and the 0600 key file of its registrar."""
    from ledger import Ledger, SigningKey
    from ledger.keys import write_key_files

    admin, writer = SigningKey.generate(), SigningKey.generate()
    path = root / "reg"
    led = Ledger.init(path, admin, "admin", origin="test.example/torture")
    led.add_key(writer.public_key, "writer", "registrar,checkpointer", key=admin)
    key_file = root / "writer.pem"
    write_key_files(key_file, writer)
    return path, key_file


def kill_at_random(proc: subprocess.Popen[str], rng: random.Random, within: float) -> list[str]:
    """Let a writer start appending, then SIGKILL it after a random delay."""
    early = wait_for(proc, "READY")
    time.sleep(rng.uniform(0, within))
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGKILL)
    return early


if __name__ == "__main__":
    sys.exit(writer_main())
