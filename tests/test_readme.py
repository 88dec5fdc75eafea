"""README.md is true to the code: its command lines name real commands and options, its
pasted output is what the demo prints, and what it says every command takes holds."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import click
import pyarrow.parquet as pq
import pytest

from ledger.cli import cli
from ledger.demo import run_demo
from ledger.output import OutputFormat

ROOT = Path(__file__).resolve().parents[1]


def commands(group: click.Group = cli, prefix: tuple[str, ...] = ()):
    """(path, command) for every command and subcommand, groups included."""
    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*prefix, name))


def option(cmd: click.Command, name: str) -> click.Option | None:
    return next((p for p in cmd.params if isinstance(p, click.Option) and name in p.opts), None)


#: The commands that print rows (README: "take --format table|json|jsonl|csv|parquet").
ROW_COMMANDS = {
    ("status",): [],
    ("history",): ["fraud.detector.xgb"],
    ("log",): [],
    ("impact",): ["--dataset", "s3://risk-data/transactions-2026q1.parquet"],
    ("query",): ["production-history", "--param", "model=fraud.detector.xgb"],
    ("sql",): ["SELECT model, version FROM model_versions"],
    ("queries",): [],
    ("keys", "list"): [],
}

#: The commands that answer as of a past instant (README: "--as-of T … --at-seq N").
POINT_IN_TIME = {
    ("status",),
    ("history",),
    ("log",),
    ("impact",),
    ("query",),
    ("sql",),
    ("lineage",),
    ("policy", "show"),
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo ledger (read only: tests that write copy it)."""
    path = tmp_path_factory.mktemp("readme") / "demo-ledger"
    run_demo(path, echo=lambda _line: None)
    return path


def test_every_command_that_prints_rows_takes_every_format_and_out():
    found = set()
    for path, cmd in commands():
        fmt = option(cmd, "--format")
        if fmt is not None and "table" in getattr(fmt.type, "choices", ()):
            found.add(path)
            assert list(fmt.type.choices) == [f.value for f in OutputFormat], path
            assert option(cmd, "--out") is not None, path
    assert found == set(ROW_COMMANDS)


def test_the_point_in_time_commands_take_as_of_and_at_seq():
    found = {path for path, cmd in commands() if option(cmd, "--as-of")}
    assert found == POINT_IN_TIME
    for path, cmd in commands():
        assert (option(cmd, "--at-seq") is not None) == (path in POINT_IN_TIME), path


@pytest.mark.parametrize("path", sorted(ROW_COMMANDS), ids=" ".join)
def test_every_row_command_writes_parquet(path, demo, invoke, tmp_path):
    out = tmp_path / "rows.parquet"
    args = [*path, *ROW_COMMANDS[path], "--format", "parquet", "--out", str(out)]
    if path != ("queries",):
        args += ["--ledger", str(demo)]
    r = invoke(args)
    assert (r.exit_code, r.stdout) == (0, ""), r.output
    assert pq.read_table(out).num_rows > 0


def test_log_as_of_and_at_seq(demo, invoke):
    def seqs(*args: str) -> list[str]:
        r = invoke(["log", "--ledger", str(demo), "--format", "csv", *args])
        assert r.exit_code == 0, r.output
        return [row["seq"] for row in csv.DictReader(io.StringIO(r.stdout))]

    assert seqs("--as-of", "2026-03-03") == [str(n) for n in range(9)]
    assert seqs("--as-of", "2026-03-03", "--limit", "2") == ["7", "8"]
    assert seqs("--at-seq", "3", "--model", "fraud.detector.xgb") == []
    assert seqs("--at-seq", "8", "--model", "fraud.detector.xgb") == ["8"]
    assert seqs("--limit", "1") == ["29"]
    r = invoke(["log", "--ledger", str(demo), "--as-of", "2026-01-01"])
    assert (r.exit_code, r.stdout) == (0, "No events as of 2026-01-01T00:00:00.000000Z.\n")
    r = invoke(["log", "--ledger", str(demo), "--as-of", "2026-03-03", "--at-seq", "3"])
    assert (r.exit_code, r.stderr) == (2, "Error: give --as-of or --at-seq, not both\n")


def test_log_parquet_keeps_the_types_and_the_signed_payload(demo, invoke, tmp_path):
    out = tmp_path / "log.parquet"
    r = invoke(["log", "--ledger", str(demo), "--format", "parquet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    table = pq.read_table(out)
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    first = table.slice(0, 1).to_pylist()[0]
    assert first["payload"].startswith('{"actor":"admin","format":"ledger/1"')
    r = invoke(["log", "--ledger", str(demo), "--format", "json", "--limit", "1"])
    assert table["hash"][-1].as_py() == json.loads(r.stdout)[0]["hash"]
