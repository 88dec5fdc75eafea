"""Starting this package's helper processes without running the caller's script again.

``multiprocessing``'s spawn and forkserver start methods make each child import the
parent's ``__main__`` module again (by its file or module name) so that functions defined
there can be unpickled. For a user's importer or audit script that has no
``if __name__ == "__main__":`` guard, that means its top-level code, appends included,
runs once more in every helper. Our helpers run functions of this package only, so they
need nothing from ``__main__``: while they are started, :func:`main_module_hidden` hides
where it came from, and multiprocessing then leaves it alone.

A daemonic process (a ``multiprocessing.Pool`` worker, a prefork task runner) may not
start children at all; :func:`can_start_processes` tells, and the work is then done in
the calling process.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

_lock = threading.Lock()


@contextlib.contextmanager
def main_module_hidden() -> Iterator[None]:
    """Inside the block, processes started by ``multiprocessing`` (and a forkserver it
    starts) do not import the caller's ``__main__`` module."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    with _lock:
        saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
        main.__dict__.pop("__file__", None)
        main.__dict__["__spec__"] = None  # (``python -m pkg``: the child imports it by name)
        try:
            yield
        finally:
            main.__dict__.pop("__spec__", None)
            main.__dict__.update(saved)  # type: ignore[arg-type]


def can_start_processes() -> bool:
    """False in a daemonic ``multiprocessing`` process, which may not have children."""
    import multiprocessing as mp

    return not mp.current_process().daemon
