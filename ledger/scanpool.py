"""Where verify's per-run checks run: inline, in local worker processes (a forkserver
pool), or in a :class:`RunPool` such as a Dask cluster (:mod:`ledger.scandask`). The
results come back in task order; the chain, the rules and the verdict stay with
:mod:`ledger.scan`."""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from typing import Any, Protocol

from .procs import can_start_processes, main_module_hidden
from .scanworkers import Task, _init, check_run
from .verify import Clean

#: Below this many rows the workers' start-up costs more than they save.
PARALLEL_MIN_ROWS = 50_000


class RunPool(Protocol):
    """Somewhere other than local worker processes to run the per-run checks (e.g.
    :class:`ledger.scandask.DaskPool`, a Dask cluster). Only the per-run checks go
    there; the chain across runs, the rules and the verdict stay in this process."""

    def checks(
        self, tasks: Sequence[Task], origin: str, keys: dict[str, bytes]
    ) -> Generator[Clean, None, None]:
        """:func:`~ledger.scanworkers.check_task` of each task, in task order, started
        when called; closing the generator gives up the tasks not yet done."""
        ...


def _results(
    tasks: list[Task],
    origin: str,
    keys: dict[str, bytes],
    jobs: int,
    pool: RunPool | None = None,
) -> Generator[Any, None, None]:
    """None, then the worker results in task order; with ``pool``, the results it gives
    (whatever the size: it was asked for); else inline when one job, one task or few
    rows suffice, or in a daemonic process (which may not start any). The first
    ``next()`` starts the workers, so that they start up while the main process reads
    its first segment.

    Workers come from a forkserver, not a fork of this process: this process has run
    pyarrow's thread pools, and a fork taken while another thread holds a lock can
    deadlock the child. A worker that dies (e.g. out of memory) breaks the pool instead
    of hanging it, and its tasks are then checked inline: same verdicts, just slower.
    Closing the iterator (at the first problem) cancels the tasks not yet started.
    """
    _init(origin, keys)
    if pool is not None:
        remote = pool.checks(tasks, origin, keys)
        try:
            yield None
            yield from remote
        finally:
            remote.close()
        return
    if (
        jobs <= 1
        or len(tasks) <= 1
        or sum(t[3] - t[4] for t in tasks) < PARALLEL_MIN_ROWS
        or not can_start_processes()
    ):
        yield None
        for t in tasks:
            yield check_run(t)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    done = 0
    primed = False
    executor = None
    try:
        executor = ProcessPoolExecutor(
            jobs,
            mp_context=mp.get_context("forkserver"),
            initializer=_init,
            initargs=(origin, keys),
        )
        # The first task is checked here while the workers start up (a second or so of
        # interpreter and import time during which this process would only wait).
        with main_module_hidden():  # (the workers start on the first submission)
            results = executor.map(check_run, tasks[1:], chunksize=1)
        primed = True
        yield None
        yield check_run(tasks[0])
        done += 1
        for result in results:
            yield result
            done += 1
    except (BrokenProcessPool, OSError):
        if not primed:
            yield None
        for t in tasks[done:]:
            yield check_run(t)
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
