"""A ``ledger`` command in a fresh process, as a user runs it, and what it imported."""

from __future__ import annotations

import json
import subprocess
import sys

WATCHED = ("pyarrow.compute", "duckdb", "pandas")


def fresh_cli(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, bool]]:
    """Run ``ledger ARGS`` through its entry point in a new interpreter; return the
    process and, for each of WATCHED, whether the command imported it."""
    code = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: print('\\n' + json.dumps({{m: m in sys.modules for m in"
        f" {WATCHED!r}}})))\n"
        "from ledger.cli import main\n"
        f"sys.argv = ['ledger', *{list(args)!r}]\n"
        "main()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    body, _, last = out.stdout.rstrip("\n").rpartition("\n")
    out.stdout = body + "\n" if body else ""
    return out, json.loads(last)
