"""``ledger sql`` and the named queries read the ledger's views and nothing else.

One case per escape route: another file, the network, writing a file, another database,
an extension, a setting. Each must be a one-line ``Error:`` with exit 2, leave the ledger
byte-for-byte as it was and create nothing anywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import Ledger
from ledger.errors import InputError

REFUSED = "Error: SQL refused: it may read the ledger's views and nothing else"

ESCAPES = [
    # (attack, SQL, what the error names)
    ("read_csv_of_etc_passwd", "SELECT * FROM read_csv('/etc/passwd')", '"/etc/passwd"'),
    ("read_csv_file_url", "SELECT * FROM read_csv('file:///etc/passwd')", "/etc/passwd"),
    # (without file access DuckDB does not turn a quoted path into a file scan at all)
    (
        "bare_path_as_table",
        "SELECT * FROM '/etc/passwd'",
        "Table with name /etc/passwd does not exist",
    ),
    ("read_text_of_a_file", "SELECT * FROM read_text('/etc/hostname')", '"/etc/hostname"'),
    ("read_blob_of_a_file", "SELECT * FROM read_blob('/etc/hostname')", '"/etc/hostname"'),
    ("read_json_of_a_file", "SELECT * FROM read_json('/etc/hostname')", '"/etc/hostname"'),
    ("glob_lists_a_folder", "SELECT * FROM glob('/etc/*')", '"/etc/*"'),
    ("sniff_csv", "SELECT * FROM sniff_csv('/etc/passwd')", '"/etc/passwd"'),
    ("https_download", "SELECT * FROM read_parquet('https://example.com/x.parquet')", "https://"),
    ("s3_download", "SELECT * FROM read_parquet('s3://bucket/x.parquet')", "s3://"),
    ("query_runs_a_copy", "SELECT * FROM query('COPY (SELECT 1) TO ''/tmp/x.csv''')", ""),
    ("query_runs_an_attach", "SELECT * FROM query('ATTACH ''/tmp/other.db''')", ""),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(("attack", "sql", "names"), ESCAPES, ids=[e[0] for e in ESCAPES])
def test_sql_cannot_reach_outside_the_ledger(history, invoke, tmp_path: Path, attack, sql, names):
    before = _snapshot(history.path)
    r = invoke(["sql", sql], env=history.env())
    assert r.exit_code == 2, r.output
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1
    if attack.startswith("query_runs") or attack == "bare_path_as_table":
        # query() accepts a SELECT only: DuckDB refuses the statement itself.
        assert lines[0].startswith("Error: SQL failed: "), lines[0]
        assert names in lines[0]
    else:
        assert lines[0].startswith(REFUSED), lines[0]
        assert names in lines[0]
    assert _snapshot(history.path) == before
    assert not Path("/tmp/x.csv").exists() or attack != "query_runs_a_copy"


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("COPY events TO '/tmp/x.csv'", "COPY"),
        ("ATTACH '/tmp/other.db' AS other", "ATTACH"),
        ("INSTALL httpfs", "LOAD"),
        ("LOAD httpfs", "LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("RESET lock_configuration", "SET"),
        ("EXPORT DATABASE '/tmp/exported'", "EXPORT"),
        ("CREATE TABLE t AS SELECT 1", "CREATE"),
        ("PRAGMA enable_profiling", "PRAGMA"),
    ],
)
def test_statements_other_than_select_are_refused(history, invoke, sql, kind):
    before = _snapshot(history.path)
    r = invoke(["sql", sql], env=history.env())
    assert r.exit_code == 2
    assert r.stderr == f"Error: only SELECT statements are allowed (got {kind})\n"
    assert _snapshot(history.path) == before


def test_settings_cannot_be_changed_from_a_select(history):
    # A SELECT cannot run SET, but a table function could try: the configuration is locked.
    led: Ledger = history.ledger
    t = led.sql("SELECT current_setting('enable_external_access') AS ext,"
                " current_setting('lock_configuration') AS locked")  # fmt: skip
    assert t.to_pylist() == [{"ext": False, "locked": True}]


def test_the_views_still_answer(history, invoke):
    r = invoke(["sql", "SELECT count(*) AS n FROM events", "--format", "csv"], env=history.env())
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "n\n11\n"  # genesis, 4 keys, 6 history events


def test_named_queries_run_in_the_same_sandbox(history, monkeypatch):
    from ledger import query

    opened: list[object] = []
    real = query.sandboxed

    def spy(paths):
        con = real(paths)
        opened.append(con)
        return con

    monkeypatch.setattr(query, "sandboxed", spy)
    history.ledger.query("unapproved-deployments")
    assert opened, "the named query did not open a sandboxed connection"
    with pytest.raises(InputError, match="nothing else"):
        history.ledger.sql("SELECT * FROM read_csv('/etc/passwd')")
