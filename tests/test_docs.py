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


def _conformance() -> list[tuple[str, str, list[str]]]:
    """FORMAT.md §15's rows: (number, kinds cell, test node ids)."""
    text = (ROOT / "docs" / "FORMAT.md").read_text()
    table = text[text.index("## 15. Conformance") :]
    short = {
        "T": "tests/test_tamper.py::test_attack_gets_its_verdict",
        "H": "tests/test_corruption.py::test_damaged_ledger_gets_a_precise_verdict",
    }
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 4 or not cells[0].isdigit():
            continue
        refs = re.findall(r"`([^`]+)`", cells[3])
        ids = [short[r[0]] + r[1:] if r[:2] in ("T[", "H[") else r for r in refs]
        rows.append((cells[0], cells[2], ids))
    return rows


def test_the_conformance_table_names_real_tests():
    """Every test FORMAT.md §15 names is collected by pytest (a parametrized test named
    without an id counts if it has any case), and every verdict kind of §14 has a row."""
    import subprocess
    import sys

    rows = _conformance()
    assert len(rows) >= 40
    ids = [i for _, _, refs in rows for i in refs]
    files = sorted({i.split("::")[0] for i in ids})
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:xdist", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    collected = set(out)
    missing = [i for i in ids if i not in collected and not any(c.startswith(i + "[") for c in out)]
    assert missing == []
    text = (ROOT / "docs" / "FORMAT.md").read_text()
    verdicts = text[text.index("## 14. Verification verdicts") : text.index("## 15.")]
    kinds = {k for line in verdicts.splitlines() if line.startswith("| `")
             for k in re.findall(r"`([a-z_]+)`", line.split("|")[1])}  # fmt: skip
    covered = {k for _, cell, _ in rows for k in re.findall(r"`([a-z_]+)`", cell)}
    assert kinds - covered == set()


def test_the_verdict_table_lists_every_kind_verify_gives():
    """The kinds `verify` can give (every ``fail("kind"`` and ``kind="…"`` in the code
    paths it runs) are the kinds FORMAT.md §14 lists."""
    code = "".join(
        (ROOT / "ledger" / f"{m}.py").read_text()
        for m in ("verify", "scan", "derived", "state", "payloads")
    )
    found = set(re.findall(r'fail\(\s*"([a-z_]+)"', code))
    found |= set(re.findall(r'kind="([a-z_]+)"', code)) - {"policy_violation"}
    found |= {"bad_payload"}  # (payloads.KIND)
    text = (ROOT / "docs" / "FORMAT.md").read_text()
    verdicts = text[text.index("## 14. Verification verdicts") : text.index("## 15.")]
    listed = {k for line in verdicts.splitlines() if line.startswith("| `")
              for k in re.findall(r"`([a-z_]+)`", line.split("|")[1])}  # fmt: skip
    assert found - listed == set()
