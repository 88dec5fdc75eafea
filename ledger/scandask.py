"""Verification on a Dask cluster: the per-run checks of :mod:`ledger.scan` in Dask workers.

``ledger verify --engine dask`` hands the same tasks the local verifier gives its worker
processes (one Parquet row group each) to the workers of a Dask ``distributed`` cluster,
and each worker runs the same check, :func:`ledger.scanworkers.check_task`. Everything
else stays in this process, the leader, exactly as in a local verify: the layout, the
chain across runs, the key registry, the rules, time, the first problem and its order.
So the verdicts are the local verifier's by construction; tests/test_verify_dask.py runs
the whole tamper table through a cluster to hold them to it.

Without a scheduler address a ``LocalCluster`` of worker processes on 127.0.0.1 is
started for the run and closed after it. With one, a ``Client`` connects to it (within
:data:`CONNECT_TIMEOUT` seconds, else an :class:`~ledger.errors.EngineError`). Workers
open segment files by path: with a remote scheduler they must see the ledger folder at
the same absolute path as the leader (a shared filesystem), and have this package
installed. A worker that cannot open a segment the leader can is an error naming the
worker's host, never a silently slower run.

``distributed`` is imported only inside :func:`dask_pool`: a ledger command that does not
ask for the engine never pays for it (0.4 s), and it needs neither numpy nor pandas in
this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import EngineError, InputError
from .procs import can_start_processes, main_module_hidden
from .scanworkers import Task, check_task
from .verify import Clean

#: Seconds to wait for a scheduler to answer before giving up.
CONNECT_TIMEOUT = 5.0
#: Seconds the cluster may have no worker at all, tasks waiting, before giving up
#: (a LocalCluster's nanny restarts a dead worker within a second or two).
NO_WORKERS_TIMEOUT = 60.0
#: How often, waiting for a result, the leader checks that the cluster is still there.
POLL = 1.0

ENGINES = ("local", "dask")

_HINT = "pip install 'ledger[dask]'"


@dataclass(frozen=True)
class Unopened:
    """What a worker returns instead of a :class:`~ledger.verify.Clean` when it cannot
    open the segment file: its host and the operating system's reason."""

    host: str
    reason: str


def check_on_worker(task: Task, origin: str, keys: dict[str, bytes]) -> Clean | Unopened:
    """The task a Dask worker runs: :func:`~ledger.scanworkers.check_task`, after
    opening the file, so that a worker that does not see the ledger says so (the check
    itself leaves anything odd to the leader's reference checks)."""
    try:
        with open(task[0], "rb"):
            pass
    except OSError as exc:
        return Unopened(socket.gethostname(), exc.strerror or str(exc))
    return check_task(task, origin, keys)


class DaskPool:
    """A :class:`ledger.scan.RunPool` on a ``distributed.Client``: the per-run checks
    as Dask tasks, their results in task order."""

    def __init__(self, client: Any, where: str) -> None:
        self.client = client
        #: the scheduler's address, for messages
        self.where = where
        # One warm-up task per worker, started now, held until the pool goes: the first
        # checks then find the imports done.
        self._warming = [
            client.submit(_warm, pure=False, workers=[w], allow_other_workers=False)
            for w in client.nthreads()
        ]

    def checks(
        self, tasks: Sequence[Task], origin: str, keys: dict[str, bytes]
    ) -> Generator[Clean, None, None]:
        """Submit every task now (earlier runs first: the leader consumes them in order)
        and give their results in task order."""
        futures = [
            self.client.submit(
                check_on_worker,
                # (absolute: a worker's working directory is not the leader's)
                (os.path.abspath(t[0]), *t[1:]),
                origin,
                keys,
                pure=False,
                priority=len(tasks) - i,
            )
            for i, t in enumerate(tasks)
        ]
        return self._gather(tasks, futures)

    def _gather(self, tasks: Sequence[Task], futures: list[Any]) -> Generator[Clean, None, None]:
        try:
            for i, task in enumerate(tasks):
                out = self._result(futures[i])
                futures[i] = None  # (its leaf hashes can go once the leader has them)
                if isinstance(out, Unopened):
                    if not os.path.exists(task[0]):
                        # Gone for the leader too (a compaction ran): its own reading
                        # names it as the local verifier would, or starts over.
                        out = Clean(0, "", b"")
                    else:
                        raise EngineError(
                            f"a Dask worker on {out.host} cannot open"
                            f" {os.path.abspath(task[0])}: {out.reason}; the workers must see"
                            " the ledger at the same path as this process (a shared"
                            " filesystem)"
                        )
                yield out
        finally:
            with contextlib.suppress(Exception):
                self.client.cancel([f for f in futures if f is not None])

    def _result(self, future: Any) -> Clean | Unopened:
        """The future's result, or an EngineError when the cluster gives up on it, loses
        its scheduler, or has had no worker for :data:`NO_WORKERS_TIMEOUT` seconds."""
        from distributed.scheduler import KilledWorker
        from distributed.utils import CancelledError

        alone_since: float | None = None
        while True:
            try:
                out: Clean | Unopened = future.result(timeout=POLL)
                return out
            except TimeoutError:
                pass
            except KilledWorker as exc:
                raise EngineError(
                    f"Dask workers of the cluster at {self.where} died running a check"
                    f" ({exc}); see the workers' logs (out of memory?)"
                ) from None
            except CancelledError:
                raise EngineError(
                    f"the Dask scheduler at {self.where} cancelled the checks (restarted,"
                    " or the connection was lost)"
                ) from None
            except ModuleNotFoundError as exc:
                raise EngineError(
                    f"a Dask worker of the cluster at {self.where} cannot run the checks"
                    f" ({exc}): install this package, at the same version, where the workers"
                    " run"
                ) from None
            except Exception as exc:  # raised on a worker: the check itself never raises
                raise EngineError(
                    f"a Dask worker of the cluster at {self.where} failed:"
                    f" {type(exc).__name__}: {exc}"
                ) from None
            if self.client.status != "running":
                raise EngineError(f"lost the connection to the Dask scheduler at {self.where}")
            if self.client.nthreads():
                alone_since = None
            elif alone_since is None:
                alone_since = time.monotonic()
            elif time.monotonic() - alone_since > NO_WORKERS_TIMEOUT:
                raise EngineError(
                    f"the Dask cluster at {self.where} has had no workers for"
                    f" {NO_WORKERS_TIMEOUT:g} s"
                )


def _warm() -> None:
    """Run on every worker as the run starts: the imports and first uses a worker's
    first check would otherwise pay (1.5-2 s on a fresh worker here), done while the
    leader reads the layout and the key events."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from .compat import sodium

    sodium()
    pc.binary_join_element_wise(pa.array([b"a"]), pa.array([b"b"]), b"")


def _check_address(scheduler: str) -> None:
    """InputError for an address Dask cannot parse (distributed's Client, given one,
    raises and then hangs for 10 s closing itself at exit)."""
    from distributed.comm import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(scheduler)
        get_backend(scheme)
        if scheme in ("tcp", "tls"):
            parse_host_port(location)
    except ValueError as exc:
        raise InputError(
            f"--scheduler {scheduler!r} is not a scheduler address such as tcp://HOST:PORT: {exc}"
        ) from None


def check_choice(engine: str, scheduler: str | None, jobs: int | None) -> None:
    """InputError unless ``engine``, ``scheduler`` and ``jobs`` go together."""
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    if scheduler is not None and engine != "dask":
        raise InputError("--scheduler needs --engine dask")
    if scheduler is not None and jobs is not None:
        raise InputError(
            "--jobs sets the workers of a LocalCluster; a --scheduler's cluster has its own"
        )


@contextlib.contextmanager
def dask_pool(scheduler: str | None, workers: int) -> Iterator[DaskPool]:
    """A :class:`DaskPool` on the scheduler at ``scheduler``, or on a LocalCluster of
    ``workers`` single-threaded worker processes on 127.0.0.1 (closed at the end)."""
    try:
        import distributed
    except ImportError as exc:
        raise EngineError(f"--engine dask needs Dask's distributed: {_HINT}") from exc
    if scheduler is not None:
        _check_address(scheduler)
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            why = " ".join(str(exc).split()) or type(exc).__name__
            raise EngineError(f"cannot reach the Dask scheduler at {scheduler}: {why}") from None
        try:
            yield DaskPool(client, scheduler)
        finally:
            client.close()
        return
    if not can_start_processes():
        raise EngineError(
            "a daemonic process cannot start a LocalCluster's workers; give --scheduler"
        )
    try:
        cluster = local_cluster(workers)
    except (OSError, TimeoutError, RuntimeError) as exc:
        raise EngineError(f"cannot start a Dask LocalCluster: {exc}") from None
    try:
        client = distributed.Client(cluster, set_as_default=False)
        try:
            yield DaskPool(client, cluster.scheduler_address)
        finally:
            client.close()
    finally:
        cluster.close()


def local_cluster(workers: int) -> Any:
    """A ``distributed.LocalCluster`` of ``workers`` single-threaded worker processes on
    127.0.0.1 (the checks hold the GIL), spawned without re-running the caller's script
    (ledger/procs.py); no dashboard, no port on any outside interface."""
    import distributed

    with main_module_hidden():
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            # (its HTTP server, health and metrics only: any free port, loopback only)
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.ERROR,
        )


__all__ = ["DaskPool", "check_choice", "check_on_worker", "dask_pool", "local_cluster"]
