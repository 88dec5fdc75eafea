"""README and CI stay true: the test command, every command documented (the pure core:
tests/test_architecture.py)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
