"""A normal install ships everything: the wheel holds the audit queries and py.typed, and
the ``ledger`` it installs lists and runs them (issue 15: ``pip install .`` printed "No
queries.")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", ".venvs", "build", "results", "__pycache__", ".pytest_cache"}


def test_the_wheel_ships_the_queries_and_its_ledger_runs_them(tmp_path: Path) -> None:
    src = tmp_path / "src"  # (a copy: building writes build/ and *.egg-info beside it)
    shutil.copytree(
        ROOT, src, ignore=lambda d, names: [n for n in names if n in SKIP or "egg-info" in n]
    )
    out = tmp_path / "wheel"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = out.glob("ledger-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.split("/")[-1] for n in names if n.startswith("ledger/queries/"))
    assert shipped == sorted(p.name for p in (ROOT / "ledger" / "queries").glob("*.sql"))
    assert "ledger/py.typed" in names

    site = tmp_path / "site"  # the wheel's files alone, not this checkout, on the path
    zipfile.ZipFile(wheel).extractall(site)
    env = dict(os.environ, PYTHONPATH=str(site))
    run = [sys.executable, "-c", "import sys; from ledger.cli import main; main()"]
    where = subprocess.run(
        [sys.executable, "-c", "import ledger; print(ledger.__file__)"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert where.stdout.strip() == str(site / "ledger" / "__init__.py")
    r = subprocess.run([*run, "queries"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "unapproved-deployments" in r.stdout and "self-approval" in r.stdout
    demo = tmp_path / "demo"
    r = subprocess.run(
        [*run, "demo", str(demo)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [*run, "query", "self-approval", "--ledger", str(demo), "--format", "csv"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
