"""Signing a batch of events, on a second core when the batch is large.

Once an event's canonical bytes are known its signature depends on nothing else, so a
large ``append_many`` hands its DSSE messages, in chunks, to one helper process that
signs them while this process goes on canonicalising, hashing and checking the next
events. A thread would not help: libsodium releases the GIL, but a thread that needs the
GIL back after every 20 µs signature waits for the busy main thread's switch interval.

The helper is started once per process, on the first large batch, and reused; it holds
nothing between chunks (each chunk carries the 32-byte seed). If it cannot be started
or dies, the batch is signed here instead: the signatures are the same bytes either way,
because Ed25519 is deterministic. ``LEDGER_SIGN_WORKERS=0`` turns the helper off.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .keys import SigningKey

if TYPE_CHECKING:
    from concurrent.futures import Future

#: Batches smaller than this are signed in-process: starting the helper costs more.
PARALLEL_MIN = 2048
CHUNK = 1024

_pool: Any = None
_broken = False


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _sign_chunk(seed: bytes, messages: list[bytes]) -> bytes:
    """In the helper: the concatenated 64-byte signatures of ``messages``."""
    sign = SigningKey(seed).sign
    return b"".join([sign(m) for m in messages])


def _get_pool() -> Any:
    global _pool, _broken
    if _pool is None and not _broken:
        try:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: this process may run pyarrow's threads.
            _pool = ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn"))
            import atexit

            atexit.register(_shutdown)
        except (OSError, ImportError, ValueError):  # pragma: no cover - no processes here
            _broken = True
    return _pool


def _shutdown() -> None:
    """Stop the helper before the interpreter tears its modules down."""
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


def parallel_enabled(n: int) -> bool:
    """Whether a batch of ``n`` events is worth signing in the helper process."""
    if n < PARALLEL_MIN or _broken:
        return False
    workers = os.environ.get("LEDGER_SIGN_WORKERS")
    if workers is not None:
        return workers.strip() not in ("", "0")
    return _cores() >= 2


class BatchSigner:
    """Collects DSSE messages in order; ``signatures()`` returns their signatures."""

    def __init__(self, key: SigningKey, parallel: bool) -> None:
        self.key = key
        self.pending: list[bytes] = []
        self.parts: list[tuple[list[bytes], Future[bytes] | None]] = []
        self.pool = _get_pool() if parallel else None

    def add(self, message: bytes) -> None:
        self.pending.append(message)
        if len(self.pending) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        chunk, self.pending = self.pending, []
        if not chunk:
            return
        future = None
        if self.pool is not None:
            try:
                future = self.pool.submit(_sign_chunk, self.key.seed, chunk)
            except RuntimeError:  # the pool is broken or shut down
                self._give_up()
        self.parts.append((chunk, future))

    def _give_up(self) -> None:
        global _pool, _broken
        _pool, _broken, self.pool = None, True, None

    def signatures(self) -> list[bytes]:
        """Every signature, in the order the messages were added."""
        self._flush()
        sign = self.key.sign
        out: list[bytes] = []
        for chunk, future in self.parts:
            blob = None
            if future is not None:
                try:
                    blob = future.result()
                except Exception:  # the helper died: sign here instead, same bytes
                    self._give_up()
            if blob is None or len(blob) != 64 * len(chunk):
                out.extend(sign(m) for m in chunk)
            else:
                out.extend(blob[i : i + 64] for i in range(0, len(blob), 64))
        return out
