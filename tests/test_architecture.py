"""The layers of docs/ARCHITECTURE.md hold in the code: every module is in the table,
every import (inside functions and under TYPE_CHECKING too) points to the same layer or
below, no modules import each other in a circle, and the pure ones do no I/O."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ledger"
IO_LIBRARIES = {"duckdb", "pyarrow", "click", "subprocess", "shutil", "tempfile"}
IO_CALLS = {"open", "read_bytes", "read_text", "write_bytes", "write_text", "unlink", "mkdir"}


def layers() -> tuple[dict[str, int], set[str]]:
    """module -> layer, and the pure modules, from the table in docs/ARCHITECTURE.md."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    table = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    out: dict[str, int] = {}
    pure: set[str] = set()
    for line in table.splitlines():
        m = re.fullmatch(r"\|\s*(\d+)\s*\|[^|]+\|([^|]+)\|([^|]*)\|", line.strip())
        if not m:
            continue
        for name in m[2].split(","):
            name = name.strip().replace("\\_", "_")
            assert name not in out, f"{name} is in two layers of docs/ARCHITECTURE.md"
            out[name] = int(m[1])
        pure |= {n.strip().replace("\\_", "_") for n in m[3].split(",") if n.strip()}
    assert out, "docs/ARCHITECTURE.md has no layer table"
    assert pure <= set(out), f"pure modules not in a layer: {sorted(pure - set(out))}"
    return out, pure


def modules() -> dict[str, Path]:
    """Module name as in the table (``cli/core``, ``__init__``) -> its file."""
    return {p.relative_to(PACKAGE).with_suffix("").as_posix(): p for p in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in the file."""
    known = modules()
    package = name.rpartition("/")[0] if not name.endswith("__init__") else name[:-9].rstrip("/")
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split("/") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = "/".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.split(".")[0] == "ledger":
                mod = "/".join(node.module.split(".")[1:])
            else:
                continue
            for alias in node.names:  # ``from . import scan`` names a module
                sub = f"{mod}/{alias.name}".lstrip("/")
                targets.append(sub if sub in known or f"{sub}/__init__" in known else mod)
        elif isinstance(node, ast.Import):
            targets = ["/".join(a.name.split(".")[1:]) for a in node.names
                       if a.name.split(".")[0] == "ledger"]  # fmt: skip
        for t in targets:
            t = t or "__init__"
            t = t if t in known else f"{t}/__init__"
            if t in known and t != name:
                out.add(t)
    return out


def test_every_module_has_a_layer():
    declared, _ = layers()
    missing = sorted(set(modules()) - set(declared))
    assert not missing, f"modules missing from docs/ARCHITECTURE.md's layer table: {missing}"
    gone = sorted(set(declared) - set(modules()))
    assert not gone, f"docs/ARCHITECTURE.md names modules that do not exist: {gone}"


def test_imports_point_down():
    declared, _ = layers()
    upward = [
        f"{name} (layer {declared[name]}) imports {dep} (layer {declared[dep]})"
        for name, path in modules().items()
        for dep in sorted(imports(name, path))
        if declared.get(dep, -1) > declared.get(name, 99)
    ]
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_no_import_cycles():
    graph = {name: imports(name, path) for name, path in modules().items()}
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycle = [*trail[trail.index(node) :], node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for dep in sorted(graph[node]):
            visit(dep, [*trail, node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


def test_pure_modules_do_no_io():
    _, pure = layers()
    found = []
    for name in sorted(pure):
        tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            mods: list[str] = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                mods = [node.module]
            found += [f"{name} imports {m}" for m in mods if m.split(".")[0] in IO_LIBRARIES]
            if isinstance(node, ast.Call):
                f = node.func
                called = f.id if isinstance(f, ast.Name) else getattr(f, "attr", "")
                if called in IO_CALLS:
                    found.append(f"{name} calls {called}() at line {node.lineno}")
    assert not found, "pure modules doing I/O:\n" + "\n".join(found)


def test_the_checker_sees_function_level_and_type_checking_imports(tmp_path):
    # (the test above is only as good as imports(): it must see all three kinds)
    p = tmp_path / "m.py"
    p.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import events as E\n"
        "if TYPE_CHECKING:\n    from .ledger import Ledger\n"
        "def f():\n    from .scan import verify_full\n    from .store import Store\n"
    )
    assert imports("state", p) == {"events", "ledger", "scan", "store"}
