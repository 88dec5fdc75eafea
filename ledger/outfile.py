"""Writing the files a user asks for (``--out``, ``--evidence-dir``): never inside a
ledger folder, and atomically.

Every ledger folder this process opens is *protected* (:func:`protect`, called when a
:class:`~ledger.store.Store` is made): an output path that resolves inside one (through
symbolic links too) is refused before anything is written, so a read command can never
overwrite a segment, the identity or a checkpoint. A file is written to a temporary file
beside its destination, flushed to disk and renamed over it: a failure, or an interrupt,
leaves the destination as it was and no partial file behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import InputError, storage_error

_PROTECTED: set[str] = set()


def protect(root: str | os.PathLike[str]) -> None:
    """Refuse output paths inside the folder ``root`` from now on (in this process)."""
    _PROTECTED.add(os.path.realpath(root))


def check(path: str | os.PathLike[str]) -> Path:
    """``path`` as given, if it lies outside every protected ledger folder; else
    InputError (exit 2)."""
    real = os.path.realpath(path)
    for root in _PROTECTED:
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            raise InputError(
                f"{os.fspath(path)} is inside the ledger folder {root}: a command's output is"
                " never written into a ledger; choose a path outside it"
            )
    return Path(path)


@contextlib.contextmanager
def atomic(path: str | os.PathLike[str], binary: bool = False) -> Iterator[IO[Any]]:
    """A file to write ``path``'s new content to: it replaces ``path`` only when the
    block ends without an error (fsync, then rename); otherwise nothing changes."""
    import tempfile  # (here, not at import: every CLI start imports this module)

    dest = check(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:
        raise storage_error(exc, f"write {os.fspath(path)}") from None
    done = False
    try:
        mode = "wb" if binary else "w"
        kwargs: dict[str, Any] = {} if binary else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dest)
        done = True
    except OSError as exc:
        raise storage_error(exc, f"write {os.fspath(path)}") from None
    finally:
        if not done:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic`)."""
    with atomic(path, binary=True) as f:
        f.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic(path) as f:
        f.write(text)


def folder(path: str | os.PathLike[str]) -> Path:
    """An output folder (``--evidence-dir``): checked as :func:`check`, then created."""
    d = check(path)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, f"create {os.fspath(path)}") from None
    return d


def _umask() -> int:
    """The process's umask, read without changing it (os.umask would race with other
    threads): mkstemp makes 0600 files, an output file gets the mode open() would give."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022
