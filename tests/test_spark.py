"""``--engine spark`` (issue 19, part 4): every view and named query gives on Spark SQL the
rows DuckDB gives, on three realistic ledgers (the demo, the benchmark generator's and
test_query's scripted audit history); the translation's fix-ups one by one; the CLI's
output and exit codes, errors included.

One Spark driver serves the whole module (about 18 s to start). Without Java (or
pyspark) the module is skipped on a developer machine only: with ``CI`` set it fails.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
from pathlib import Path

import pytest

from ledger import Ledger
from ledger import query as duck
from ledger.cli import cli
from ledger.demo import run_demo
from ledger.query import load_queries
from ledger.sparksql import UntranslatableError, translate
from ledger.views import VIEW_NAMES

_MISSING = [m for m in ("pyspark", "sqlglot") if importlib.util.find_spec(m) is None]
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    _MISSING.append("java")
if _MISSING and not os.environ.get("CI"):
    pytest.skip(
        f"--engine spark needs {', '.join(_MISSING)} (not on this machine; CI installs them)",
        allow_module_level=True,
    )

from ledger import sparkquery  # noqa: E402  (after the skip: it is fine without pyspark)


@pytest.fixture(scope="module")
def spark():
    """The module's one Spark driver (local[2]); stopped at the end."""
    engine = sparkquery.engine()
    yield engine
    sparkquery.stop()
    assert not engine.scratch.exists()


@pytest.fixture(scope="module")
def ledgers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Ledger]:
    from benchmarks import generator

    from .test_query import build_audit

    root = tmp_path_factory.mktemp("spark")
    return {
        "demo": run_demo(root / "demo" / "demo-ledger", echo=lambda _: None),
        "generated": generator.build(root / "gen", events=3000, seed=0).ledger,
        "audit": build_audit(root / "audit")[0],
    }


def _params(led: Ledger, name: str) -> dict[str, str]:
    """Values for the required parameters, picked so that the answer has rows."""

    def first(sql: str) -> str:
        return str(led.sql(sql).column(0)[0].as_py())

    if name == "production-history":
        return {
            "model": first(
                "SELECT model FROM deployment_log WHERE env = 'production'"
                " GROUP BY model ORDER BY count(*) DESC, model LIMIT 1"
            )
        }
    if name == "dataset-exposure":
        return {
            "dataset": first(
                "SELECT d.digest FROM live l JOIN lineage g USING (model, version)"
                " JOIN datasets d ON d.model = g.parent_model AND d.version = g.parent_version"
                " UNION ALL SELECT d.digest FROM live JOIN datasets d USING (model, version)"
                " LIMIT 1"
            )
        }
    if name == "live-by-package":
        return {"package": "numpy"}
    return {}


def _same(duck_table, spark_table, ordered: bool = True) -> None:
    assert spark_table.column_names == duck_table.column_names
    d, s = duck_table.to_pylist(), spark_table.to_pylist()
    if not ordered:  # (a view has no order of its own)
        d, s = sorted(d, key=repr), sorted(s, key=repr)
    assert s == d


LEDGERS = ("demo", "generated", "audit")


@pytest.mark.parametrize("led_name", LEDGERS)
@pytest.mark.parametrize("name", sorted(load_queries()))
def test_every_query_gives_duckdbs_rows(spark, ledgers, led_name: str, name: str) -> None:
    led = ledgers[led_name]
    params = _params(led, name)
    d = duck.named(led.store, name, params)[0]
    s = sparkquery.named(led.store, name, params)[0]
    _same(d, s)


# (views on two ledgers: the audit history's views are what its queries read, and each
# Spark call costs 2-3 s however small the ledger; the module must stay near 3 minutes)
@pytest.mark.parametrize("led_name", ("demo", "generated"))
@pytest.mark.parametrize("view", [v for v in VIEW_NAMES if v != "as_of"])
def test_every_view_gives_duckdbs_rows(spark, ledgers, led_name: str, view: str) -> None:
    led = ledgers[led_name]
    sql = f"SELECT * FROM {view}"
    _same(duck.adhoc(led.store, sql)[0], sparkquery.adhoc(led.store, sql)[0], ordered=False)


@pytest.mark.parametrize("cut", [{"at_seq": 20}, {"as_of": "2026-02-18T00:00:00Z"}])
def test_point_in_time_is_the_same_cut(spark, ledgers, cut) -> None:
    led = ledgers["audit"]
    for sql in ("SELECT * FROM as_of", "SELECT * FROM model_versions ORDER BY ref"):
        _same(duck.adhoc(led.store, sql, **cut)[0], sparkquery.adhoc(led.store, sql, **cut)[0])
    d = duck.named(led.store, "stale-approvals", {"days": "1"}, **cut)[0]
    _same(d, sparkquery.named(led.store, "stale-approvals", {"days": "1"}, **cut)[0])


# --- the CLI -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_cli_query_prints_what_duckdb_prints(spark, ledgers, invoke, fmt: str) -> None:
    led = ledgers["demo"]
    args = ["query", "production-history", "--param", "model=fraud.detector.xgb"]
    args += ["--ledger", str(led.path), "--format", fmt]
    env = {"COLUMNS": "200"}
    d = invoke(args, env)
    s = invoke([*args, "--engine", "spark"], env)
    assert (s.exit_code, s.stdout, s.stderr) == (0, d.stdout, d.stderr)
    assert d.exit_code == 0 and "still live" in d.stdout


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_cli_sql_on_spark(spark, ledgers, invoke) -> None:
    """(and Spark writes nothing in the ledger, nor in the working folder)"""
    led = ledgers["audit"]
    before = _files(led.path)
    text = "SELECT env, model, version FROM live ORDER BY env, model"
    r = invoke(["sql", text, "--engine", "spark", "--ledger", str(led.path), "--format", "csv"])
    assert _files(led.path) == before
    assert not {"spark-warehouse", "derby.log", "metastore_db"} & {
        p.name for p in Path.cwd().iterdir()
    }
    assert (r.exit_code, r.stdout) == (
        0,
        "env,model,version\nproduction,churn.gbm,1\nproduction,fraud.xgb,1\nstaging,churn.gbm,1\n",
    )


def test_cli_empty_answer_is_the_same_line(spark, ledgers, invoke) -> None:
    led = ledgers["demo"]
    args = ["query", "alias-moves", "--param", "model=nope", "--ledger", str(led.path)]
    r = invoke([*args, "--engine", "spark"])
    assert (r.exit_code, r.stdout) == (0, invoke(args).stdout)
    assert r.stdout == "No rows for alias-moves.\n"


def test_spark_reads_no_other_file(spark, ledgers, invoke, tmp_path: Path) -> None:
    """The sandbox's spirit: ad-hoc SQL may not read a file by path on Spark either."""
    secret = tmp_path / "secret.parquet"
    secret.write_bytes(Path(next(iter(ledgers["demo"].store.segments())).path).read_bytes())
    text = f"SELECT * FROM parquet.`{secret}`"
    r = invoke(["sql", text, "--engine", "spark", "--ledger", str(ledgers["demo"].path)])
    assert r.exit_code == 8 and r.stdout == ""
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1


def test_cli_only_select(spark, ledgers, invoke) -> None:
    args = ["sql", "DROP VIEW events", "--engine", "spark", "--ledger", str(ledgers["demo"].path)]
    r = invoke(args)
    assert (r.exit_code, r.stderr) == (2, "Error: only SELECT statements are allowed (got DROP)\n")


def test_cli_untranslatable_query(invoke, ledgers) -> None:
    text = "SELECT list(actor ORDER BY seq) FROM events"
    r = invoke(["sql", text, "--engine", "spark", "--ledger", str(ledgers["demo"].path)])
    assert r.exit_code == 8
    assert r.stderr == (
        "Error: ARRAY_AGG(actor ORDER BY seq): only list(x ORDER BY x) translates\n"
    )


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_cli_master_unreachable(invoke, ledgers) -> None:
    port = _closed_port()
    args = ["query", "self-approval", "--engine", "spark", "--master", f"spark://127.0.0.1:{port}"]
    r = invoke([*args, "--ledger", str(ledgers["demo"].path)])
    assert (r.exit_code, r.stdout) == (8, "")
    assert r.stderr == (
        f"Error: cannot reach the Spark master spark://127.0.0.1:{port}: Connection refused\n"
    )


def test_cli_master_needs_spark(invoke, ledgers) -> None:
    r = invoke(
        ["query", "self-approval", "--master", "local[1]", "--ledger", str(ledgers["demo"].path)]
    )
    assert (r.exit_code, r.stderr) == (2, "Error: --master is for --engine spark\n")


def test_cli_no_pyspark(invoke, ledgers, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        sparkquery.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "pyspark" else real(name, *a),
    )
    monkeypatch.setattr(sparkquery, "_engines", {})  # (not the module's running driver)
    r = invoke(
        ["query", "self-approval", "--engine", "spark", "--ledger", str(ledgers["demo"].path)]
    )
    assert (r.exit_code, r.stderr) == (
        8,
        "Error: --engine spark needs pyspark, which is not installed:"
        " pip install 'ledger[spark]'\n",
    )


def test_cli_no_java(invoke, ledgers, monkeypatch) -> None:
    monkeypatch.setattr(sparkquery.shutil, "which", lambda name: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(sparkquery, "_engines", {})
    r = invoke(
        ["query", "self-approval", "--engine", "spark", "--ledger", str(ledgers["demo"].path)]
    )
    assert (r.exit_code, r.stderr) == (
        8,
        "Error: --engine spark needs Java 17 or later, and none was found"
        " (install openjdk-17-jre-headless, or set JAVA_HOME)\n",
    )


def test_cli_unknown_engine(invoke, ledgers) -> None:
    r = invoke(
        ["query", "self-approval", "--engine", "trino", "--ledger", str(ledgers["demo"].path)]
    )
    assert r.exit_code == 2 and "trino" in r.stderr and r.stderr.count("\n") == 1


# --- the fix-ups, one by one (no Spark needed) --------------------------------------------


@pytest.mark.parametrize(
    ("duckdb", "spark"),
    [
        ("SELECT rollback FROM t", "SELECT `rollback` FROM t"),
        ("SELECT len(l) FROM t", "SELECT SIZE(l) FROM t"),
        (
            "WITH a AS MATERIALIZED (SELECT 1) SELECT * FROM a",
            "WITH a AS (SELECT 1) SELECT * FROM a",
        ),
        (
            "SELECT * FROM e ASOF JOIN p ON e.seq > p.s",
            "SELECT * FROM e JOIN (SELECT *, LEAD(s) OVER (ORDER BY s) AS __asof_next FROM p)"
            " AS p ON e.seq > p.s AND (p.__asof_next IS NULL OR e.seq <= p.__asof_next)",
        ),
        ("SELECT * FROM a SEMI JOIN b USING (x)", "SELECT * FROM a LEFT SEMI JOIN b USING (x)"),
        ("SELECT * FROM a ANTI JOIN b USING (x)", "SELECT * FROM a LEFT ANTI JOIN b USING (x)"),
        (
            "SELECT t.key, t.value ->> '$' FROM r, json_each(r.tags) t",
            "SELECT t.key, t.value FROM r LATERAL VIEW"
            " EXPLODE(FROM_JSON(r.tags, 'MAP<STRING, STRING>')) t AS key, value",
        ),
        ("SELECT TRY_CAST(j AS BIGINT[])", "SELECT FROM_JSON(j, 'ARRAY<BIGINT>')"),
        ("SELECT TRY_CAST(j AS JSON[])", "SELECT FROM_JSON(j, 'ARRAY<STRING>')"),
        (
            "SELECT regexp_extract(s, '(a)(b)', ['x', 'y'])",
            "SELECT NAMED_STRUCT('x', REGEXP_EXTRACT(s, '(a)(b)'), 'y',"
            " REGEXP_EXTRACT(s, '(a)(b)', 2))",
        ),
        (
            "SELECT m ->> ('$.\"' || k || '\".x')",
            "SELECT GET_JSON_OBJECT(m, ('$[\\'' || k || '\\'].x'))",
        ),
        ("SELECT list(a ORDER BY a)", "SELECT ARRAY_SORT(COLLECT_LIST(a))"),
        ("SELECT list(DISTINCT a ORDER BY a)", "SELECT ARRAY_SORT(COLLECT_LIST(DISTINCT a))"),
        ("SELECT list_has_all(a, b)", "SELECT SIZE(ARRAY_EXCEPT(b, a)) = 0"),
        ("SELECT list_position(a, x)", "SELECT NULLIF(ARRAY_POSITION(a, x), 0)"),
        ("SELECT a[i - 1]", "SELECT TRY_ELEMENT_AT(a, CAST(i - 1 AS INT))"),
        ("SELECT epoch(ts)", "SELECT UNIX_MICROS(ts) / 1000000.0"),
        ("SELECT ts - to_days(3)", "SELECT ts - MAKE_DT_INTERVAL(3)"),
        ("SELECT regexp_full_match(s, r)", "SELECT s RLIKE CONCAT('^(?:', r, ')\\\\z')"),
        (
            "SELECT json_array_length(j, '$.d')",
            "SELECT JSON_ARRAY_LENGTH(GET_JSON_OBJECT(j, '$.d'))",
        ),
        (
            "SELECT to_json(x)",
            "SELECT SUBSTRING(TO_JSON(NAMED_STRUCT('v', x)), 6,"
            " LENGTH(TO_JSON(NAMED_STRUCT('v', x))) - 6)",
        ),
        (
            "SELECT max(v) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) FROM t"
            " WINDOW w AS (PARTITION BY a ORDER BY s)",
            "SELECT MAX(v) OVER (PARTITION BY a ORDER BY s NULLS LAST ROWS BETWEEN UNBOUNDED"
            " PRECEDING AND 1 PRECEDING) FROM t WINDOW w AS (PARTITION BY a ORDER BY s NULLS LAST)",
        ),
        (
            "WITH RECURSIVE d(x) AS (SELECT 1 UNION SELECT x + 1 FROM d WHERE x < 3) SELECT * FROM d",
            "WITH RECURSIVE d__paths(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM d__paths"
            " WHERE x < 3), d AS (SELECT DISTINCT * FROM d__paths) SELECT * FROM d",
        ),
        (
            "SELECT a, (SELECT min(g) FROM v) AS c FROM f WHERE c IS NULL",
            "SELECT a, (SELECT MIN(g) FROM v) AS c FROM f WHERE ((SELECT MIN(g) FROM v)) IS NULL",
        ),
        # a column of the same name as an alias is the column (DuckDB's rule too)
        (
            "SELECT p ->> '$.a' AS action FROM e WHERE action = 'x'",
            "SELECT GET_JSON_OBJECT(p, '$.a') AS action FROM e WHERE action = 'x'",
        ),
        ("SELECT $name IS NULL", "SELECT :name IS NULL"),
    ],
)
def test_fix_up(duckdb: str, spark: str) -> None:
    assert translate(duckdb) == spark


def test_untranslatable_is_one_clear_error() -> None:
    with pytest.raises(UntranslatableError, match="only list"):
        translate("SELECT list(a ORDER BY b) FROM t")
    with pytest.raises(UntranslatableError, match="cannot parse"):
        translate("SELECT FROM WHERE (")
    with pytest.raises(UntranslatableError, match="ASOF JOIN condition"):
        translate("SELECT * FROM e ASOF JOIN p ON e.seq = p.s")


def test_cli_is_documented() -> None:
    """(test_docs checks every command; the options are in README.md and docs/scale.md)"""
    assert "--engine spark" in (Path(__file__).parents[1] / "README.md").read_text()
    assert cli.get_command(None, "query") is not None  # type: ignore[arg-type]
