"""Signing a batch of events, on a second core when the batch is large.

Once an event's canonical bytes are known its signature depends on nothing else, so a
large ``append_many`` hands its DSSE messages, in chunks, to one helper process that
signs them while this process goes on canonicalising, hashing and checking the next
events. A thread would not help: libsodium releases the GIL, but a thread that needs the
GIL back after every 20 µs signature waits for the busy main thread's switch interval.

The helper is fed through a plain pipe that the main thread writes itself. (A
``ProcessPoolExecutor`` hands work over through two threads of this process, and each
of them waits up to a switch interval for the GIL, so a helper fed that way starves
between chunks.) At most ``IN_FLIGHT`` chunks are with the helper at a time; when the
batch is complete, this process signs the chunks the helper has not been given yet, from
the last one backwards, while the helper finishes the others: both cores work until the
end, whichever of the two is the faster. One batch at a time has the helper (a batch
that finds it busy, in another thread, signs in its own process); every answer carries
the id of its request and is taken for no other; and a batch that ends early (a refused
draft) takes back what the helper still owes it before anyone else may use it.

The helper is started once per process, on the first large batch, without re-importing
the caller's ``__main__`` (see ``procs.py``), and reused; it holds nothing between chunks
(each chunk carries the 32-byte seed). If it cannot be started or dies, the rest of the
batch is signed here: the signatures are the same bytes either way, because Ed25519 is
deterministic. ``LEDGER_SIGN_WORKERS=0`` turns the helper off.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pickle
import threading
from typing import Any

from .keys import SigningKey
from .procs import can_start_processes, main_module_hidden

#: Batches smaller than this are signed in-process: starting the helper costs more.
PARALLEL_MIN = 2048
#: Messages per chunk: ~3 ms of signing, so neither side waits long for the other.
CHUNK = 128
#: Chunks handed to the helper and not yet answered: enough that it never waits for
#: this process, few enough that little is left to wait for at the end. Its answers
#: (64 bytes a message) then always fit in the pipe: it never blocks writing them.
IN_FLIGHT = 3

_helper: _Helper | None = None
_broken = False
#: Held by the one batch that uses the helper: its answers come back in request order,
#: so two batches (threads appending to different ledgers) must never share it.
_in_use = threading.Lock()
#: Request ids, never reused in a process: an answer is taken only for its own request.
_ids = itertools.count(1)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _serve(requests: Any, answers: Any) -> None:
    """The helper's loop: a pickled ``(request id, seed, messages)`` in; out, the id
    (8 bytes, little-endian) followed by the messages' signatures."""
    while True:
        try:
            rid, seed, messages = pickle.loads(requests.recv_bytes())
        except (EOFError, OSError):  # the parent has gone
            return
        sign = SigningKey(seed).sign
        answers.send_bytes(b"".join([rid.to_bytes(8, "little"), *[sign(m) for m in messages]]))


class _Helper:
    """One signing process and the two pipes to it."""

    def __init__(self) -> None:
        import multiprocessing as mp

        # spawn, not fork: this process may run pyarrow's threads.
        ctx = mp.get_context("spawn")
        req_r, self.requests = ctx.Pipe(duplex=False)
        self.answers, ans_w = ctx.Pipe(duplex=False)
        _grow(self.requests)
        self.proc = ctx.Process(
            target=_serve, args=(req_r, ans_w), daemon=True, name="ledger-signer"
        )
        try:
            with main_module_hidden():
                self.proc.start()
        finally:
            req_r.close()
            ans_w.close()
        self.pid = os.getpid()

    def close(self) -> None:
        for conn in (self.requests, self.answers):
            with contextlib.suppress(OSError):
                conn.close()
        self.proc.join(timeout=5)
        if self.proc.is_alive():  # pragma: no cover - a helper that will not stop
            self.proc.kill()


def _grow(conn: Any) -> None:
    """Room for the chunks in flight in the request pipe (Linux allows 1 MiB unasked);
    elsewhere a full pipe just makes this process wait for the helper to read."""
    try:
        import fcntl

        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
    except (ImportError, AttributeError, OSError):  # pragma: no cover - not Linux
        pass


def _get_helper() -> _Helper | None:
    global _helper, _broken
    if _helper is not None and _helper.pid != os.getpid():
        _helper = None  # a forked child: the helper belongs to the parent
    if _helper is None and not _broken:
        try:
            _helper = _Helper()
            import atexit

            atexit.register(_shutdown)
        except (OSError, ImportError, ValueError, RuntimeError):  # pragma: no cover
            _broken = True
    return _helper


def _shutdown() -> None:
    """Stop the helper before the interpreter tears its modules down."""
    global _helper
    if _helper is not None and _helper.pid == os.getpid():
        _helper.close()
    _helper = None


def parallel_enabled(n: int) -> bool:
    """Whether a batch of ``n`` events is worth signing in the helper process."""
    if n < PARALLEL_MIN or _broken or not can_start_processes():
        return False
    workers = os.environ.get("LEDGER_SIGN_WORKERS")
    if workers is not None:
        return workers.strip() not in ("", "0")
    return _cores() >= 2


class BatchSigner:
    """Collects DSSE messages in order; ``signatures()`` returns their signatures.

    A batch has the helper to itself (another batch meanwhile signs in its own process)
    and checks that every answer carries the id of the request it is taken for. Call
    ``close()`` when done, also when the batch is abandoned: it takes back the answers
    still on their way, so that the next batch can never read them as its own.
    """

    def __init__(self, key: SigningKey, parallel: bool) -> None:
        self.key = key
        self.pending: list[bytes] = []
        self.chunks: list[list[bytes]] = []
        self.ids: list[int] = []  # request id of each chunk sent to the helper
        self.answers: list[bytes] = []  # the helper's answers, for chunks 0, 1, …
        self.sent = 0  # chunks 0 .. sent-1 went to the helper
        self.mine: dict[int, list[bytes]] = {}  # chunks signed here, by index
        self.helper: _Helper | None = None
        if parallel and _in_use.acquire(blocking=False):
            self.helper = _get_helper()
            if self.helper is None:
                _in_use.release()

    def add(self, message: bytes) -> None:
        self.pending.append(message)
        if len(self.pending) >= CHUNK:
            self.chunks.append(self.pending)
            self.pending = []
            self._pump()

    def _pump(self) -> None:
        """Take the answers that are ready and give the helper more, without waiting."""
        h = self.helper
        if h is None:
            return
        try:
            while len(self.answers) < self.sent and h.answers.poll():
                self.answers.append(h.answers.recv_bytes())
            while self.sent - len(self.answers) < IN_FLIGHT and self.sent < len(self.chunks):
                rid = next(_ids)
                blob = pickle.dumps((rid, self.key.seed, self.chunks[self.sent]), protocol=5)
                h.requests.send_bytes(blob)
                self.ids.append(rid)
                self.sent += 1
        except (OSError, EOFError, ValueError, pickle.PickleError):
            self._give_up()

    def _give_up(self) -> None:
        """The helper failed: sign everything it has not answered here, from now on."""
        global _helper, _broken
        if self.helper is not None:
            if _helper is self.helper:
                _helper, _broken = None, True
            self.helper.close()
            self._release()
        self.sent = len(self.answers)

    def _release(self) -> None:
        if self.helper is not None:
            self.helper = None
            _in_use.release()

    def _collect(self) -> None:
        """Wait for the answers to every chunk sent."""
        if self.helper is not None:
            try:
                while len(self.answers) < self.sent:
                    self.answers.append(self.helper.answers.recv_bytes())
            except (OSError, EOFError):
                self._give_up()

    def close(self) -> None:
        """Done with the helper: take back what it still owes, then let another batch
        have it. Safe to call more than once."""
        self._collect()
        self._release()

    def finish(self) -> None:
        """No more messages: sign here the chunks the helper has not been given, from the
        last one backwards, while it works through the others. After this the helper has
        at most ``IN_FLIGHT`` chunks left; ``signatures()`` waits for them."""
        if self.pending:
            self.chunks.append(self.pending)
            self.pending = []
        sign = self.key.sign
        last = len(self.chunks) - 1
        while self.helper is not None and last >= self.sent and last not in self.mine:
            self._pump()
            if last >= self.sent:
                self.mine[last] = [sign(m) for m in self.chunks[last]]
                last -= 1

    def signatures(self) -> list[bytes]:
        """Every signature, in the order the messages were added."""
        self.finish()
        self._collect()
        # (fewer answers than ids only if the helper died: those chunks are signed here)
        ids = zip(self.answers, self.ids, strict=False)
        if any(a[:8] != rid.to_bytes(8, "little") for a, rid in ids):
            self._give_up()  # out of step with its requests: never to be trusted again
        self._release()
        sign = self.key.sign
        mine = self.mine
        out: list[bytes] = []
        for i, chunk in enumerate(self.chunks):
            blob = self.answers[i] if i < len(self.answers) else b""
            if i in mine:
                out.extend(mine[i])
            elif len(blob) == 8 + 64 * len(chunk) and blob[:8] == self.ids[i].to_bytes(8, "little"):
                out.extend([blob[j : j + 64] for j in range(8, len(blob), 64)])
            else:  # never sent, or the helper died before answering: same bytes here
                out.extend([sign(m) for m in chunk])
        return out
