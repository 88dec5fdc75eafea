"""README.md is true to the code: its command lines name real commands and options, its
pasted output is what the demo prints, and what it says every command takes holds.

The pasted outputs of docs/queries.md and docs/lineage.md are held to the demo the same
way. When the demo or an output changes on purpose, ``python tests/test_readme.py``
rewrites them all from a fresh demo (then read the diff)."""

from __future__ import annotations

import contextlib
import csv
import difflib
import io
import json
import os
import re
import shlex
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from ledger.cli import cli
from ledger.demo import run_demo
from ledger.output import OutputFormat

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: The files whose pasted outputs are the demo's (``regenerate``).
PASTED = ["README.md", "docs/queries.md", "docs/lineage.md"]

#: A fenced block: its language and its body.
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


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
    ("alias", "list"): ["fraud.detector.xgb"],
    ("models",): [],
    ("mlflow", "diff"): ["--registry-uri", "sqlite:///mlflow.db"],
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
    ("alias", "list"),
    ("models",),
    ("report",),
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
    if path == ("mlflow", "diff"):
        pytest.skip("runs MLflow's client: tests/test_mlflow.py writes its JSON")
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
    assert seqs("--limit", "1") == ["32"]
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


# --- the command lines README.md shows ---------------------------------------------------


def bash_commands(text: str) -> Iterator[list[str]]:
    """The words of every ``ledger …`` command in the bash blocks: continuation lines
    joined, comments dropped, split at ``&&`` and ``;``, leading NAME=VALUE dropped."""
    for m in FENCE.finditer(text):
        if m.group(1) != "bash":
            continue
        for line in m.group(2).replace("\\\n", " ").splitlines():
            words: list[str] = []
            for w in [*shlex.split(line, comments=True), ";"]:
                if w in ("&&", ";") or w.endswith(";"):
                    if w.endswith(";") and w != ";":
                        words.append(w[:-1])
                    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                        words.pop(0)
                    if words and words[0] == "ledger":
                        yield words
                    words = []
                else:
                    words.append(w)


def inline_commands(text: str) -> Iterator[list[str]]:
    """The words of every inline ``ledger …`` code span outside the fenced blocks."""
    prose = FENCE.sub("", text)
    for span in re.findall(r"`(ledger [^`]+)`", prose):
        yield shlex.split(span.replace("\n", " "))


def problems(words: list[str]) -> list[str]:
    """What is wrong with one command line: an unknown command, an unknown option, or a
    --format value that is not one of the option's choices."""
    cmd: click.Command = cli
    rest = words[1:]
    while isinstance(cmd, click.Group) and rest and rest[0] in cmd.commands:
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    line = " ".join(words)
    if isinstance(cmd, click.Group) and rest and rest[0][0] not in "-|>":
        return [f"{line}: {rest[0]!r} is not a command of {cmd.name}"]
    found = []
    opts = {o: p for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
    for i, raw in enumerate(rest):
        if raw in (">", "|"):
            break
        w = raw.strip("[]")
        if not w.startswith("-") or w in ("-", "--help", "-h"):
            continue
        name, eq, value = w.partition("=")
        p = opts.get(name)
        if p is None:
            found.append(f"{line}: {name} is not an option of {cmd.name}")
            continue
        if not eq and i + 1 < len(rest):
            value = rest[i + 1].strip("[]")
        if isinstance(p.type, click.Choice) and not p.is_flag and value:
            for v in value.split("|"):
                if v not in p.type.choices and not re.fullmatch(r"[A-Z_]+|<.*>|…", v):
                    found.append(f"{line}: {name} {v} is not one of {list(p.type.choices)}")
    return found


def test_every_readme_command_line_is_a_real_command_with_real_options():
    text = README.read_text(encoding="utf-8")
    lines = [*bash_commands(text), *inline_commands(text)]
    assert len(lines) > 40  # (the parser found them)
    assert [p for words in lines for p in problems(words)] == []


def test_the_readme_checker_catches_what_drifted_before():
    """The claims this work removed from README.md, each caught."""
    assert problems(["ledger", "log", "--as-of", "2026-03-01"]) == []
    assert problems(["ledger", "verify", "--as-of", "T"]) == [
        "ledger verify --as-of T: --as-of is not an option of verify"
    ]
    choices = list(option(cli.commands["lineage"], "--format").type.choices)  # type: ignore[union-attr]
    assert problems(["ledger", "lineage", "--format", "tree|csv"]) == [
        f"ledger lineage --format tree|csv: --format csv is not one of {choices}"
    ]
    assert problems(["ledger", "keys", "lst"]) == [
        "ledger keys lst: 'lst' is not a command of keys"
    ]


def test_the_readme_lists_the_commands_each_option_family_belongs_to():
    prose = " ".join(FENCE.sub("", README.read_text(encoding="utf-8")).split())

    def listed(intro: str) -> set[tuple[str, ...]]:
        m = re.search(re.escape(intro) + r" \(([^)]*)\)", prose, re.I)
        assert m, intro
        return {tuple(c.split()) for c in re.findall(r"`([^`]+)`", m[1])}

    assert listed("the commands that print rows") == set(ROW_COMMANDS)
    assert listed("the commands that read history") == POINT_IN_TIME


# --- the output README.md pastes -----------------------------------------------------------


Run = Callable[[list[str], dict[str, str | None]], click.testing.Result]


def regenerate(text: str, run: Run) -> str:
    """``text`` with every pasted output made again, in order, as one shell session: in a
    ```console block each ``$ ledger …`` line is run and the lines after it are its
    output (``$ export NAME=VALUE`` sets a variable for the rest of the session); a
    ```mermaid block is the output of the ``ledger …`` code span just before it."""
    env: dict[str, str | None] = {"LEDGER_PATH": None, "LEDGER_KEY": None}
    out, pos = [], 0
    for m in FENCE.finditer(text):
        lang, body = m.group(1), m.group(2)
        if lang == "console":
            lines = []
            for line in body.splitlines():
                if not line.startswith("$ "):
                    continue
                lines.append(line)
                words = shlex.split(line[2:])
                if words[0] == "export":
                    name, _, value = words[1].partition("=")
                    env[name] = value
                    continue
                assert words[0] == "ledger", line
                # (without trailing blanks, which rich pads titles with and editors strip)
                lines.extend(x.rstrip() for x in run(words[1:], env).stdout.splitlines())
            new = "```console\n" + "".join(x + "\n" for x in lines) + "```\n"
        elif lang == "mermaid":
            before = text[: m.start()].rstrip().rsplit("\n\n", 1)[-1]
            (command,) = re.findall(r"`(ledger [^`]+)`", before)
            new = "```mermaid\n" + run(shlex.split(command)[1:], env).stdout + "```\n"
        else:
            continue
        out += [text[pos : m.start()], new]
        pos = m.end()
    return "".join([*out, text[pos:]])


@contextlib.contextmanager
def demo_session(folder: Path) -> Iterator[Run]:
    """Run commands as README.md's reader does: in a folder where ``ledger demo`` ran."""
    run_demo(folder / "demo-ledger", echo=lambda _line: None)
    runner = CliRunner()
    old = Path.cwd()
    os.chdir(folder)

    def run(args: list[str], env: dict[str, str | None]) -> click.testing.Result:
        r = runner.invoke(cli, args, env={**env, "COLUMNS": "120"})
        assert r.exit_code == 0, f"ledger {shlex.join(args)}: {r.output}"
        return r

    try:
        yield run
    finally:
        os.chdir(old)


@pytest.mark.parametrize("name", PASTED)
def test_the_pasted_outputs_are_what_the_demo_prints(name, tmp_path):
    text = (ROOT / name).read_text(encoding="utf-8")
    assert "```console\n$ " in text
    with demo_session(tmp_path) as run:
        fresh = regenerate(text, run)
    diff = "".join(difflib.unified_diff(text.splitlines(True), fresh.splitlines(True)))
    assert fresh == text, f"{name} drifted (python tests/test_readme.py rewrites it):\n{diff}"


def test_the_readme_pastes_the_mermaid_graph_and_the_demo_story():
    text = README.read_text(encoding="utf-8")
    assert "```mermaid\nflowchart TD\n" in text
    for command in ["ledger verify", "ledger status --env production --as-of 2026-06-24"]:
        assert f"\n$ {command}" in text


if __name__ == "__main__":  # rewrite the pasted outputs from a fresh demo
    for name in PASTED:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["LEDGER_VERIFIED_DIR"] = str(Path(tmp) / "verified")
            with demo_session(Path(tmp)) as run:
                text = regenerate((ROOT / name).read_text(encoding="utf-8"), run)
        (ROOT / name).write_text(text, encoding="utf-8")
    sys.exit(0)
