"""``--engine spark``: the views and audit queries run by Spark SQL over the same segments.

The SQL is DuckDB's (ledger/views.py, ledger/queries/*.sql), translated by
ledger/sparksql.py. Everything around it is the DuckDB path's own: the point-in-time
cutoff and the completion of digest prefixes are worked out by a ``query.Session`` over
the same segment list, parameters are bound and typed by ``NamedQuery.bind``, and the
answer is an Arrow table for the same renderer. Only the views and the query run on
Spark, in a driver process of its own (ledger/sparkworker.py says why) that reads the
exact files ``Store.segments()`` lists.

One driver per ``ledger`` process and master, started on first use (about 18 s: a JVM
and a Spark session) and stopped when the process exits (or by :func:`stop`), so a
long-lived caller (a test module, a notebook) pays the start once. Its scratch files
(Spark's local dir, warehouse, logs) live in a temporary folder outside the ledger,
removed when it stops.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import pyarrow as pa

from .errors import EngineError
from .query import QUERIES_DIR, Cutoff, Session, adhoc_check, get_query
from .sparksql import statements, translate
from .store import Store
from .views import VIEWS

#: The master when none is given: two local cores (Spark's own default is all of them).
DEFAULT_MASTER = "local[2]"
#: How long a driver may take to start before it counts as unreachable (seconds).
START_TIMEOUT = float(os.environ.get("LEDGER_SPARK_TIMEOUT", "180"))


def _check_installed() -> None:
    for mod in ("pyspark", "sqlglot"):
        if importlib.util.find_spec(mod) is None:
            raise EngineError(
                f"--engine spark needs {mod}, which is not installed: pip install 'ledger[spark]'"
            )
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise EngineError(
            "--engine spark needs Java 17 or later, and none was found"
            " (install openjdk-17-jre-headless, or set JAVA_HOME)"
        )


def _check_master(master: str) -> None:
    """A ``spark://host:port`` master must at least accept a connection (Spark itself
    would retry for minutes before giving up)."""
    if not master.startswith("spark://"):
        return
    for hostport in master[len("spark://") :].split(","):
        url = urlparse(f"spark://{hostport}")
        try:
            with socket.create_connection((url.hostname or "", url.port or 7077), timeout=5):
                return
        except OSError as exc:
            last = exc
    raise EngineError(f"cannot reach the Spark master {master}: {last.strerror or last}")


class SparkEngine:
    """One Spark driver process (ledger/sparkworker.py) and the pipe to it."""

    def __init__(self, master: str = DEFAULT_MASTER) -> None:
        _check_installed()
        _check_master(master)
        self.master = master
        self.scratch = Path(tempfile.mkdtemp(prefix="ledger-spark-"))
        self._log = (self.scratch / "driver.log").open("wb")
        env = dict(os.environ, SPARK_LOCAL_DIRS=str(self.scratch / "local"))
        # The driver imports this very package, wherever it was imported from (it runs in
        # the scratch folder, so a relative PYTHONPATH would not find it).
        home = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (home, env.get("PYTHONPATH")) if p)
        t0 = time.perf_counter()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ledger.sparkworker", master, str(self.scratch)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            cwd=self.scratch,  # (derby.log, metastore_db and the like land here, if any)
            env=env,
        )
        answer = self._answer(START_TIMEOUT, "start")
        if not answer.get("ok"):
            self.stop()
            raise EngineError(f"Spark did not start on {master}: {answer.get('error')}")
        #: Seconds from launching the driver to its session answering a first query.
        self.start_seconds = time.perf_counter() - t0
        self._n = 0

    def _answer(self, timeout: float | None, what: str) -> dict[str, Any]:
        out: IO[bytes] | None = self._proc.stdout
        assert out is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(out, selectors.EVENT_READ)
        while not sel.select(timeout=1.0):
            if self._proc.poll() is not None:
                break
            if deadline is not None and time.monotonic() > deadline:
                self.stop()
                raise EngineError(
                    f"Spark ({self.master}) did not {what} within {timeout:.0f} s"
                    " (LEDGER_SPARK_TIMEOUT sets the limit)"
                )
        sel.close()
        line = out.readline()
        if not line:
            tail = self._log_tail()
            self.stop()
            raise EngineError(f"the Spark driver exited: {tail}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _log_tail(self) -> str:
        """The last meaningful line the driver logged (why it died)."""
        with contextlib.suppress(OSError):
            self._log.flush()
            lines = (self.scratch / "driver.log").read_text(errors="replace").splitlines()
            for ln in reversed(lines):
                if ln.strip() and not ln.startswith((" ", "\t")):
                    return ln.strip()[:300]
        return "no message"

    def run(
        self, paths: Sequence[str], views: Sequence[str], sql: str, args: Mapping[str, Any]
    ) -> pa.Table:
        """Run the Spark SQL ``sql`` with ``args`` over the views on ``paths``."""
        if self._proc.poll() is not None or self._proc.stdin is None:
            raise EngineError("the Spark driver is not running")
        self._n += 1
        out = self.scratch / f"result-{self._n}.arrow"
        req = {
            "paths": list(paths),
            "views": list(views),
            "sql": sql,
            "args": {k: _json_arg(v) for k, v in args.items()},
            "out": str(out),
        }
        self._proc.stdin.write((json.dumps(req) + "\n").encode())
        self._proc.stdin.flush()
        answer = self._answer(None, "answer")
        if not answer.get("ok"):
            raise EngineError(f"Spark: {answer.get('error')}")
        try:
            with pa.memory_map(str(out)) as src:
                table: pa.Table = pa.ipc.open_file(src).read_all()
            return table
        finally:
            out.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the driver and remove its scratch folder."""
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                if self._proc.stdin:
                    self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
        if _engines.get(self.master) is self:
            del _engines[self.master]


def _json_arg(v: Any) -> Any:
    if isinstance(v, datetime):
        delta = v.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        return {"ts": (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds}
    return v


_engines: dict[str, SparkEngine] = {}


def engine(master: str | None = None) -> SparkEngine:
    """This process's driver for ``master`` (local[2] by default), started if need be."""
    master = master or DEFAULT_MASTER
    if master not in _engines or _engines[master]._proc.poll() is not None:
        _engines[master] = SparkEngine(master)
    return _engines[master]


def stop() -> None:
    """Stop every driver this process started."""
    for e in list(_engines.values()):
        e.stop()


atexit.register(stop)


# --- the views and queries ---------------------------------------------------------------


def spark_views(cutoff: Cutoff, last: int) -> list[str]:
    """The views of ledger/views.py, translated, as ``CREATE TEMPORARY VIEW`` statements
    over ``_segments`` cut off as ``cutoff`` says (the same cut as the DuckDB session)."""
    source = (
        "_segments"
        if cutoff.seq is None
        else f"(SELECT * FROM _segments WHERE seq <= {cutoff.seq})"
    )
    as_of_ts = "now()" if cutoff.ts is None else f"make_timestamp({cutoff.ts}::BIGINT)::TIMESTAMPTZ"
    text = VIEWS.format(
        source=source, as_of_seq=last if cutoff.seq is None else cutoff.seq, as_of_ts=as_of_ts
    )
    out = []
    for st in statements(text):
        spark = translate(st)
        out.append(spark.replace("CREATE VIEW", "CREATE OR REPLACE TEMPORARY VIEW", 1))
    return out


def run(
    store: Store,
    sql: str,
    params: Mapping[str, Any] | None = None,
    as_of: int | str | None = None,
    at_seq: int | None = None,
    digests: Sequence[str] = (),
    master: str | None = None,
) -> tuple[pa.Table, Cutoff]:
    """Run the DuckDB SQL ``sql`` on Spark, as ``query.run`` runs it on DuckDB."""
    spark_sql = translate(sql)  # (before starting anything: a refusal is quick)
    with store.reading():
        session = Session(store, as_of, at_seq)
        try:
            args = session.complete_digests(params, digests) or {}
            # (absolute: the driver runs in its scratch folder)
            paths = [str(Path(s.path).resolve()) for s in session.segments]
            views = spark_views(session.cutoff, session.segments[-1].last)
        finally:
            session.close()
        table = engine(master).run(paths, views, spark_sql, args)
    return table, session.cutoff


def named(
    store: Store,
    name: str,
    params: Mapping[str, Any] | None = None,
    as_of: int | str | None = None,
    at_seq: int | None = None,
    master: str | None = None,
    folder: Path = QUERIES_DIR,
) -> tuple[pa.Table, Cutoff]:
    """Run the named audit query ``name`` on Spark (see ``query.named``)."""
    q = get_query(name, folder)
    return run(store, q.sql, q.bind(params), as_of, at_seq, q.digests, master)


def adhoc(
    store: Store,
    sql: str,
    as_of: int | str | None = None,
    at_seq: int | None = None,
    master: str | None = None,
) -> tuple[pa.Table, Cutoff]:
    """One ad-hoc SELECT (DuckDB SQL, checked as ``query.adhoc`` checks it) on Spark."""
    return run(store, adhoc_check(sql), None, as_of, at_seq, master=master)
