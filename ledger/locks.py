"""The two flock(2) locks of a ledger folder, as the :class:`~ledger.store.Store` holds them.

``.lock`` serialises writers: :class:`WriterLock`, re-entrant for the thread holding it,
waiting up to ``$LEDGER_LOCK_TIMEOUT`` seconds. ``.readers`` is the readers' gate:
:class:`ReadersGate`, held shared while any thread of a Store reads and tried
exclusively by a writer that would delete merged-away segments. The kernel releases a
flock when its holder dies, so a crashed process never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import InputError, StorageError, storage_error
from .segments import LOCK, READERS

#: Seconds a writer waits for the lock; $LEDGER_LOCK_TIMEOUT overrides it (read per lock).
LOCK_TIMEOUT = 60.0
#: Seconds a reader waits for a writer that is deleting merged-away segments (it holds
#: ``.readers`` for a few unlinks); after that the reader goes on unprotected and, should
#: a segment vanish, retries from a fresh listing as before.
READERS_TIMEOUT = 10.0


def lock_timeout() -> float:
    text = os.environ.get("LEDGER_LOCK_TIMEOUT")
    if text is None:
        return LOCK_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses NaN, which would wait forever
        raise InputError(f"LEDGER_LOCK_TIMEOUT must be a number of seconds, got {text[:40]!r}")
    return value


class WriterLock:
    """``ROOT/.lock`` held exclusively. Per thread: re-entrant for the thread holding it,
    while another thread sharing it must take the flock itself (it then waits), or two
    threads would write the same segment at once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._local = threading.local()

    @property
    def held(self) -> bool:
        """Whether this thread holds the lock."""
        return getattr(self._local, "fd", None) is not None

    @contextlib.contextmanager
    def hold(self, timeout: float | None = None) -> Iterator[bool]:
        """Hold the lock; yields True if this call took it, False if this thread held
        it already. Waits ``timeout`` seconds (default: :func:`lock_timeout`), then
        raises StorageError."""
        if self.held:
            yield False
            return
        timeout = lock_timeout() if timeout is None else timeout
        try:
            fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise storage_error(exc, f"open the lock file in {self.root}") from None
        deadline = time.monotonic() + timeout
        delay = 0.001
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise StorageError(
                            f"timed out after {timeout:g}s waiting for another writer to release"
                            f" {self.root / LOCK}"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            self._local.fd = fd
            try:
                yield True
            finally:
                self._local.fd = None
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class ReadersGate:
    """``ROOT/.readers``: shared by the threads of one Store while any of them reads
    (the first takes the flock, the last releases it), exclusive for a writer deleting
    what readers might have listed. Never a write for a reader: a folder without
    ``.readers`` (an older version's, or a read-only copy) is read unprotected."""

    def __init__(self, root: Path) -> None:
        self.path = root / READERS
        self._mutex = threading.Lock()
        self._count = 0
        self._fd: int | None = None

    @contextlib.contextmanager
    def shared(self, take: Callable[[], int | None]) -> Iterator[None]:
        """Hold the gate shared; ``take`` takes the flock for the first thread in (a
        descriptor, or None to read unprotected): :meth:`take_shared`, or a test's."""
        with self._mutex:
            if self._count == 0:
                self._fd = take()
            self._count += 1
        try:
            yield
        finally:
            with self._mutex:
                self._count -= 1
                if self._count == 0 and self._fd is not None:
                    os.close(self._fd)
                    self._fd = None

    def take_shared(self) -> int | None:
        """A descriptor of ``.readers`` flocked shared, or None (no such file, a writer
        deleting for longer than READERS_TIMEOUT, or a filesystem without flock)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        deadline = time.monotonic() + READERS_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.002)
            except OSError:  # a filesystem without flock: read unprotected
                os.close(fd)
                return None

    def exclusive(self) -> int | None:
        """``.readers`` held exclusively (no reader is reading), or None; closing the
        descriptor releases it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def ensure(self) -> None:
        """Create ``.readers`` if it is missing (a writer's job: readers never write)."""
        if not os.path.lexists(self.path):
            with contextlib.suppress(OSError):
                os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644))
