"""The Spark driver process behind ``--engine spark`` (run by ledger/sparkquery.py).

``python -m ledger.sparkworker MASTER SCRATCH`` starts one Spark session and answers
requests, one JSON line each on standard input, with one JSON line on standard output:
``{"paths": [...], "views": [...], "sql": ..., "args": {...}, "out": FILE}`` registers
the segment files as ``_segments`` (the exact list it is given, never a glob), creates
the (already translated) views, runs the query with its named parameters and writes
the result as an Arrow IPC file to ``out``. The answer is ``{"ok": true}`` or
``{"ok": false, "error": "one line"}``.

Why a process of its own: pyspark probes for numpy and pandas as it starts (the test
suite forbids both in its own process), its JVM writes logs and scratch files (kept
in SCRATCH, a temporary folder the parent removes), and a crash or hang of the JVM
must not take the ``ledger`` command with it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any


def _session(master: str, scratch: str) -> Any:
    from pyspark.sql import SparkSession

    conf = {
        "spark.ui.enabled": "false",
        "spark.sql.session.timeZone": "UTC",  # (results carry UTC, as DuckDB's do)
        # Every scratch file under SCRATCH, none in the ledger or the working folder.
        "spark.sql.warehouse.dir": f"{scratch}/warehouse",
        "spark.local.dir": f"{scratch}/local",
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={scratch}/derby",
        "spark.sql.catalogImplementation": "in-memory",  # (no Hive metastore, no derby)
        # The sandbox: no `SELECT * FROM parquet.`/any/file`` in ad-hoc SQL.
        "spark.sql.runSQLOnFiles": "false",
        "spark.sql.legacy.sizeOfNull": "false",  # size(NULL) is NULL, as len(NULL) is
        "spark.sql.shuffle.partitions": "4",  # (the default 200 is for clusters)
        "spark.sql.adaptive.enabled": "true",
    }
    # LEDGER_SPARK_CONF="key=value;key=value" adds or overrides settings (executor memory
    # on a cluster, say); it cannot move the scratch folders out of SCRATCH.
    for item in os.environ.get("LEDGER_SPARK_CONF", "").split(";"):
        k, sep, v = item.partition("=")
        if sep and k.strip() and not k.strip().endswith((".dir", "extraJavaOptions")):
            conf[k.strip()] = v.strip()
    builder = SparkSession.builder.master(master).appName("ledger")
    for k, v in conf.items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _arg(v: Any) -> Any:
    """A parameter from JSON: ``{"ts": µs}`` is a timestamp (UTC)."""
    if isinstance(v, dict) and "ts" in v:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=v["ts"])
    return v


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    # Spark's messages are "[CLASS] text. SQLSTATE: …" plus a plan; keep the first line.
    first = text.splitlines()[0] if text else type(exc).__name__
    return first.split(" SQLSTATE:")[0]


def main(argv: list[str]) -> int:
    master, scratch = argv[0], argv[1]
    out = sys.stdout
    sys.stdout = sys.stderr  # (py4j and pyspark print; only answers go to the pipe)
    t0 = time.perf_counter()
    try:
        spark = _session(master, scratch)
        spark.sql("SELECT 1").collect()  # (a master that is not there fails here)
    except Exception as exc:
        out.write(json.dumps({"ok": False, "error": _one_line(exc)}) + "\n")
        out.flush()
        return 1
    out.write(json.dumps({"ok": True, "seconds": time.perf_counter() - t0}) + "\n")
    out.flush()
    import pyarrow as pa

    loaded: tuple[list[str], list[str]] | None = None
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if loaded != (req["paths"], req["views"]):
                spark.read.parquet(*req["paths"]).createOrReplaceTempView("_segments")
                for v in req["views"]:
                    spark.sql(v)
                loaded = (req["paths"], req["views"])
            args = {k: _arg(v) for k, v in req["args"].items()}
            table = spark.sql(req["sql"], args=args).toArrow()
            with pa.OSFile(req["out"], "wb") as f, pa.ipc.new_file(f, table.schema) as w:
                w.write_table(table)
            answer: dict[str, Any] = {"ok": True}
        except Exception as exc:
            loaded = None
            answer = {"ok": False, "error": _one_line(exc)}
        out.write(json.dumps(answer) + "\n")
        out.flush()
    spark.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover (run as a process)
    sys.exit(main(sys.argv[1:]))
