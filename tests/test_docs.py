"""README and CI stay true: the test command, every command documented, the pure core."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PURE = [
    "canonical", "events", "keys", "state", "verify", "merkle", "note", "policy", "errors",
    "compaction", "storymap",
]  # fmt: skip


def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_ci_runs_the_readme_test_command():
    first_block = re.search(r"```bash\n(.*?)```", readme(), re.S)[1].splitlines()
    assert len(first_block) == 2
    assert "ledger demo" in first_block[0]
    assert first_block[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_command_is_in_the_readme():
    from ledger.cli import cli

    text = readme()
    for name, cmd in cli.commands.items():
        assert f"ledger {name}" in text, f"ledger {name} is not documented in README.md"
        for sub in getattr(cmd, "commands", {}):
            assert f"ledger {name} {sub}" in text, f"ledger {name} {sub} is not in README.md"


def test_pure_core_does_no_io_imports():
    for name in PURE:
        path = ROOT / "ledger" / f"{name}.py"
        if not path.exists():
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
            for m in mods:
                assert m.split(".")[0] not in {"duckdb", "pyarrow", "click"}, (
                    f"{name}.py imports {m}"
                )
