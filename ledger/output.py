"""Rendering rows for people (rich tables) and programs (JSON, JSON Lines, CSV, Parquet)."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import IO, Any

from . import outfile
from .errors import InputError


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return str(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return v


def render(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str],
    fmt: OutputFormat | str = OutputFormat.TABLE,
    out: IO[str] | None = None,
    path: str | None = None,
    empty: str = "No rows.",
    title: str | None = None,
) -> None:
    """Write ``rows`` (dicts keyed by ``columns``) in ``fmt`` to ``out`` or ``path``."""
    fmt = OutputFormat(fmt)
    out = out or sys.stdout
    rows = list(rows)
    if fmt is OutputFormat.PARQUET:
        if not path:
            raise InputError("--format parquet needs --out FILE")
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
        with outfile.atomic(path, binary=True) as f:
            pq.write_table(table, f)
        return
    if path:  # (a table too: as plain text, without colour)
        with outfile.atomic(path) as f:
            render(rows, columns, fmt, f, None, empty, title)
        return
    if fmt is OutputFormat.JSON:
        json.dump(
            [{c: _jsonable(r.get(c)) for c in columns} for r in rows],
            out,
            ensure_ascii=False,
            indent=2,
        )
        out.write("\n")
    elif fmt is OutputFormat.JSONL:
        for r in rows:
            out.write(
                json.dumps({c: _jsonable(r.get(c)) for c in columns}, ensure_ascii=False) + "\n"
            )
    elif fmt is OutputFormat.CSV:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([_cell(_jsonable(r.get(c))) for c in columns])
        out.write(buf.getvalue())
    else:
        if not rows:
            out.write(empty + "\n")
            return
        if len(rows) > RICH_MAX_ROWS:
            cells = [[_cell(_jsonable(r.get(c))) for c in columns] for r in rows]
            _plain_table(columns, cells, out, title)
            return
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, show_lines=False, header_style="bold")
        for i, c in enumerate(columns):
            last = i == len(columns) - 1
            table.add_column(c, overflow="fold", no_wrap=not last)
        for r in rows:
            # Text, not markup: '[red]' in a comment is data, and control codes are dropped.
            table.add_row(*(Text(_cell(_jsonable(r.get(c)))) for c in columns))
        Console(file=out, width=max(100, min(200, _term_width())), soft_wrap=False).print(table)


def _term_width() -> int:
    import shutil

    return shutil.get_terminal_size((120, 40)).columns


def render_arrow(
    table: Any,
    fmt: OutputFormat | str = OutputFormat.TABLE,
    out: IO[str] | None = None,
    path: str | None = None,
    empty: str = "No rows.",
    title: str | None = None,
) -> None:
    """Like ``render`` for a pyarrow Table: parquet keeps the column types; the text
    formats print timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (the events' own form),
    and the table format joins lists of plain values with ", "."""
    fmt = OutputFormat(fmt)
    if fmt is OutputFormat.PARQUET:
        if not path:
            raise InputError("--format parquet needs --out FILE")
        import pyarrow.parquet as pq

        with outfile.atomic(path, binary=True) as f:
            pq.write_table(table, f)
        return
    if path:  # (every text format, the table too: plain text, without colour)
        with outfile.atomic(path) as f:
            render_arrow(table, fmt, f, None, empty, title)
        return
    rows = table.to_pylist()
    joined = fmt is OutputFormat.TABLE
    for r in rows:
        for k, v in r.items():
            r[k] = _text_value(v, joined)
    if fmt is not OutputFormat.TABLE or not rows:
        render(rows, table.column_names, fmt, out, path, empty, title)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Short values (numbers, names, timestamps) never wrap; long free text and digests
    # fold, so a wide table shrinks its prose instead of crushing its keys.
    cells = [[_cell(r.get(c)) for c in table.column_names] for r in rows]
    if len(cells) > RICH_MAX_ROWS:
        _plain_table(table.column_names, cells, out or sys.stdout, title)
        return
    rt = Table(title=title, header_style="bold")
    needed = 1
    for i, c in enumerate(table.column_names):
        longest = max(len(c), *(len(row[i]) for row in cells))
        short = longest <= 30
        rt.add_column(c, no_wrap=short, overflow="fold", min_width=longest if short else len(c))
        needed += 3 + (longest if short else max(len(c), 24))
    for row in cells:
        rt.add_row(*(Text(cell) for cell in row))
    # Never narrower than the short columns need: a wide table runs past the terminal
    # edge (like psql) rather than chopping seq numbers and timestamps.
    width = max(100, min(200, _term_width()), needed)
    Console(file=out or sys.stdout, width=width, soft_wrap=False).print(rt)


#: Above this many rows, rich's layout costs seconds; print plain aligned columns instead.
RICH_MAX_ROWS = 2000


#: What a plain table drops from a cell, as rich's Text does: control characters
#: (C0, DEL, C1: terminal escapes in a comment are data, not commands); tabs and line
#: breaks become spaces so that a row stays one line.
_CONTROLS = {c: None for c in [*range(0x20), *range(0x7F, 0xA0)]} | {
    0x09: " ",
    0x0A: " ",
    0x0D: " ",
}


def _plain_table(
    columns: Sequence[str], cells: list[list[str]], out: IO[str], title: str | None
) -> None:
    cells = [[v.translate(_CONTROLS) for v in row] for row in cells]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = [title.translate(_CONTROLS)] if title else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    out.write("\n".join(lines) + "\n")


def _text_value(v: Any, joined: bool) -> Any:
    if hasattr(v, "utcoffset") and hasattr(v, "microsecond"):
        return f"{v:%Y-%m-%dT%H:%M:%S}.{v.microsecond:06d}Z"
    if isinstance(v, list):
        items = [_text_value(x, False) for x in v]
        if joined and all(not isinstance(x, (dict, list)) for x in items):
            return ", ".join("" if x is None else str(x) for x in items)
        return items
    if isinstance(v, dict):
        return {k: _text_value(x, False) for k, x in v.items()}
    return v
