"""The CLI explains itself: every command's help ends with examples that run on the demo
ledger, every option has help, and shell completion works for bash, zsh and fish."""

from __future__ import annotations

import inspect
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest

from ledger.cli import USES_PANDAS, cli
from ledger.demo import run_demo

ROOT = Path(__file__).resolve().parents[1]

#: The two headers an example section may have. With the second, the examples assume
#: LEDGER_PATH=demo-ledger (and the test sets it); with the first, they assume nothing.
PLAIN = "Examples:"
ON_DEMO = "Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):"


def commands(group: click.Group = cli, prefix: tuple[str, ...] = ()):
    """(path, command) for the group itself, then every command and subcommand."""
    if not prefix:
        yield (), group
    for name, cmd in sorted(group.commands.items()):
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*prefix, name))


def examples(cmd: click.Command) -> tuple[str, list[str]]:
    """The header of ``cmd``'s example section and its command lines (continuations
    joined); AssertionError unless the help ends with one."""
    lines = inspect.cleandoc(cmd.help or "").splitlines()
    assert "\b" in lines, "no \\b paragraph"
    start = len(lines) - 1 - lines[::-1].index("\b")
    header, *body = lines[start + 1 :]
    assert header in (PLAIN, ON_DEMO), f"the last \\b paragraph starts with {header!r}"
    found: list[str] = []
    for line in body:
        assert line.startswith("  "), f"{line!r} is not indented like an example"
        if found and found[-1].endswith("\\"):
            found[-1] = found[-1][:-1] + line.strip()
        else:
            assert line.strip().startswith("ledger "), f"{line!r} is not a ledger command line"
            found.append(line.strip())
    return header, found


def name(path: tuple[str, ...]) -> str:
    return " ".join(("ledger", *path))


def lookup(path: tuple[str, ...]) -> click.Command:
    cmd: click.Command = cli
    for part in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[part]
    return cmd


PATHS = [path for path, _ in commands()]


def ids(path: tuple[str, ...]) -> str:
    return " ".join(path) or "ledger"


@pytest.mark.parametrize("path", PATHS, ids=ids)
def test_help_ends_with_examples_and_documents_every_parameter(path):
    cmd = lookup(path)
    _, lines = examples(cmd)
    assert 1 <= len(lines) <= 2, f"{name(path)}: {len(lines)} examples"
    own = [x for x in lines if x == name(path) or x.startswith(name(path) + " ")]
    assert own, f"no example of {name(path)} itself"
    for p in cmd.params:
        if isinstance(p, click.Option):
            assert p.help, f"{name(path)} {p.opts[0]} has no help"
        else:  # an argument: its name in the command's own words
            word = re.sub(r'[][" ]', " ", p.metavar or (p.name or "").upper()).split()[0]
            assert word in (cmd.help or ""), f"{name(path)}: {word} is not explained"


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding demo-ledger, demo-ledger-keys and demo-ledger-artifacts."""
    folder = tmp_path_factory.mktemp("demo-source")
    run_demo(folder / "demo-ledger", echo=lambda _line: None)
    return folder


def run_line(line: str, invoke) -> click.testing.Result:
    """Run one example command line in-process: ``ledger ARGS [> FILE]``."""
    words = shlex.split(line, comments=True)
    assert words[0] == "ledger"
    out = None
    if ">" in words:
        i = words.index(">")
        words, out = words[:i], words[i + 1]
    r = invoke(words[1:])
    if out is not None:
        Path(out).write_text(r.stdout)
    return r


@pytest.mark.parametrize("path", PATHS, ids=ids)
def test_every_example_runs(path, demo_source, runner, tmp_path, monkeypatch):
    """Each command's examples run in order, in a folder of their own holding a copy of
    the demo (an example may write), or an empty folder when the first builds the demo."""
    if path and path[0] in USES_PANDAS:
        pytest.skip("runs MLflow's client, which this process blocks: tests/test_mlflow.py")
    header, lines = examples(lookup(path))
    if not lines[0].startswith("ledger demo"):
        for part in ("demo-ledger", "demo-ledger-keys", "demo-ledger-artifacts"):
            shutil.copytree(demo_source / part, tmp_path / part)
    monkeypatch.chdir(tmp_path)
    env = {
        "LEDGER_PATH": "demo-ledger" if header == ON_DEMO else None,
        "LEDGER_KEY": None,
        "LEDGER_PASSPHRASE": "example passphrase",  # (for --encrypt: no terminal here)
    }

    def invoke(args: list[str]):
        return runner.invoke(cli, args, env=env, catch_exceptions=False)

    for line in lines:
        r = run_line(line, invoke)
        assert r.exit_code == 0, f"{line}\n{r.output}"
        assert "Error" not in r.stderr, f"{line}\n{r.stderr}"


def test_keys_generate_help_names_the_public_key_file_it_writes(invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    help_text = cli.commands["keys"].commands["generate"].help  # type: ignore[attr-defined]
    assert "PATH.pub" not in help_text  # (it never wrote PATH.pub: frank.pem.pub)
    assert "frank.pem: frank.pub; frank: frank.pub" in help_text
    for path, pub in [("frank.pem", "frank.pub"), ("grace", "grace.pub")]:
        r = invoke(["keys", "generate", path])
        assert r.exit_code == 0, r.output
        assert r.stdout.endswith(f"private {path}, public {pub}\n")
        assert (tmp_path / pub).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "frank.pem",
        "frank.pub",
        "grace",
        "grace.pub",
    ]


# --- shell completion (click's own, README.md "Shell completion") --------------------------

SHELLS = {
    "bash": "complete -o nosort -F _ledger_completion ledger",
    "zsh": "#compdef ledger",
    "fish": "complete --no-files --command ledger",
}


def test_the_console_script_is_ledger():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"ledger": "ledger.cli:main"}  # hence _LEDGER_COMPLETE


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_completion_scripts_for_each_shell(shell, runner):
    r = runner.invoke(cli, [], prog_name="ledger", env={"_LEDGER_COMPLETE": f"{shell}_source"})
    assert r.exit_code == 0, r.output
    assert SHELLS[shell] in r.stdout and "_LEDGER_COMPLETE" in r.stdout
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"_LEDGER_COMPLETE={shell}_source ledger" in readme


def test_completion_completes_commands_and_options(runner):
    def complete(words: str) -> list[str]:
        env = {
            "_LEDGER_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        r = runner.invoke(cli, [], prog_name="ledger", env=env)
        assert r.exit_code == 0, r.output
        return r.stdout.split()

    assert complete("ledger ke") == ["plain,keys"]
    assert complete("ledger keys ge") == ["plain,generate"]
    assert complete("ledger verify --po") == ["plain,--policy"]


def test_the_installed_entry_point_prints_the_bash_script():
    """Through ``main`` as the console script runs it (its prog name picks the variable)."""
    script = Path(sys.executable).with_name("ledger")
    run = [str(script)] if script.exists() else [sys.executable, "-c", "from ledger.cli import main; main()"]  # fmt: skip
    r = subprocess.run(
        run,
        capture_output=True,
        text=True,
        env=dict(os.environ, _LEDGER_COMPLETE="bash_source"),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert SHELLS["bash"] in r.stdout
