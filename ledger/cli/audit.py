"""Commands: status, history, queries, query and sql (issue 4).

Each is one library call (``Ledger.status`` … ``Ledger.sql``) plus rendering. All take
``--as-of TIMESTAMP`` or ``--at-seq N`` to answer as the ledger stood then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .. import events as E
from ..errors import InputError
from ..ledger import ENGINES
from ..output import render, render_arrow
from .group import cli
from .options import format_option, point_in_time, read_options
from .options import open_ledger as _open


def _when(as_of: str | None, at_seq: int | None) -> str:
    """' as of …' / ' at seq N' for messages, checking the timestamp early."""
    if as_of is not None and at_seq is not None:
        raise InputError("give --as-of or --at-seq, not both")
    if as_of is not None:
        return f" as of {E.format_ts(E.parse_instant(as_of))}"
    if at_seq is not None:
        return f" at seq {at_seq}"
    return ""


@cli.command()
@click.argument("ref", metavar="[MODEL[:VERSION|@ALIAS]]", required=False)
@click.option("--env", help="Only what is live in this environment, with who deployed it.")
@point_in_time
@read_options
@format_option()
def status(
    ref: str | None,
    env: str | None,
    as_of: str | None,
    at_seq: int | None,
    ledger_path: str,
    fmt: str,
    out_path: str | None,
) -> None:
    """Current state: every model; every version of MODEL (or one, MODEL[:VERSION|@ALIAS]:
    a version, or the one an alias named as of the read); or what is live in --env.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger status
      ledger status --env production --as-of 2026-06-24
    """
    when = _when(as_of, at_seq)
    model, version = (None, None) if ref is None else _ref(ref)
    table = _open(ledger_path).status(model, env, version=version, as_of=as_of, at_seq=at_seq)
    if env is not None:
        empty = f"Nothing is live in {env}" + (f" for {model}" if model else "")
    elif model is not None:
        empty = f"No versions of {model}"
    else:
        empty = "No models registered"
    render_arrow(table, fmt, path=out_path, empty=empty + when + ".", title=when.strip() or None)


@cli.command()
@click.argument("ref", metavar="MODEL[:VERSION|@ALIAS]")
@point_in_time
@read_options
@format_option()
def history(
    ref: str,
    as_of: str | None,
    at_seq: int | None,
    ledger_path: str,
    fmt: str,
    out_path: str | None,
) -> None:
    """Every event of MODEL (or of one version, MODEL[:VERSION|@ALIAS]), in order.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger history fraud.detector.xgb:2
      ledger history fraud.detector.xgb --at-seq 14 --format json
    """
    when = _when(as_of, at_seq)
    model, version = _ref(ref)
    table = _open(ledger_path).history(model, version, as_of=as_of, at_seq=at_seq)
    render_arrow(
        table, fmt, path=out_path, empty=f"No events for {ref}{when}.", title=when.strip() or None
    )


def _ref(ref: str) -> tuple[str, int | str | None]:
    """MODEL, MODEL:VERSION or MODEL@ALIAS (the version the alias names, as of the read)."""
    model, version, alias = E.parse_target(ref)
    return model, version if alias is None else f"@{alias}"


@cli.command("queries")
@format_option()
def queries_(fmt: str, out_path: str | None) -> None:
    """List the audit queries with their parameters and descriptions.

    \b
    Examples:
      ledger queries
      ledger queries --format csv
    """
    from ..query import load_queries

    rows = []
    for q in load_queries().values():
        params = []
        for p in q.params:
            if p.default is not None:
                params.append(f"{p.name}={p.default}")
            elif p.optional:
                params.append(f"[{p.name}]")
            else:
                params.append(p.name)
        rows.append({"name": q.name, "params": " ".join(params), "description": q.description})
    render(rows, ["name", "params", "description"], fmt, path=out_path, empty="No queries.")


def _params(specs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        k, sep, v = spec.partition("=")
        if not sep or not k:
            raise InputError(f"malformed --param {spec!r}: expected NAME=VALUE")
        if k in out:
            raise InputError(f"--param {k} is given twice")
        out[k] = v
    return out


def engine_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--engine duckdb|spark`` and ``--master URL`` (docs/scale.md, "Audits on Spark")."""
    f = click.option(
        "--master",
        metavar="URL",
        help="The Spark master for --engine spark (default local[2]; spark://HOST:PORT).",
    )(f)
    return click.option(
        "--engine",
        type=click.Choice(ENGINES),
        default="duckdb",
        show_default=True,
        help="Run on DuckDB, or translated to Spark SQL (needs pyspark and Java; ~18 s start).",
    )(f)


@cli.command()
@click.argument("name")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="A query parameter.")
@point_in_time
@engine_options
@read_options
@format_option()
def query(
    name: str,
    params: tuple[str, ...],
    as_of: str | None,
    at_seq: int | None,
    engine: str,
    master: str | None,
    ledger_path: str,
    fmt: str,
    out_path: str | None,
) -> None:
    """Run the audit query NAME (see `ledger queries`).

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger query self-approval
      ledger query production-history --param model=fraud.detector.xgb
    """
    when = _when(as_of, at_seq)
    if master is not None and engine != "spark":
        raise InputError("--master is for --engine spark")
    table = _open(ledger_path).query(
        name, _params(params), as_of=as_of, at_seq=at_seq, engine=engine, master=master
    )
    render_arrow(
        table, fmt, path=out_path, empty=f"No rows for {name}{when}.", title=when.strip() or None
    )


@cli.command()
@click.argument("text", metavar='"SELECT …"')
@point_in_time
@engine_options
@read_options
@format_option()
def sql(
    text: str,
    as_of: str | None,
    at_seq: int | None,
    engine: str,
    master: str | None,
    ledger_path: str,
    fmt: str,
    out_path: str | None,
) -> None:
    """Run one "SELECT …" against the views: events, model_versions, deployments, live,
    approvals, keys, registrations, lineage, datasets, deployment_log, as_of.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger sql "SELECT env, model, version FROM live ORDER BY env, model"
      ledger sql "SELECT actor, count(*) AS n FROM events GROUP BY actor" --format csv
    """
    when = _when(as_of, at_seq)
    if master is not None and engine != "spark":
        raise InputError("--master is for --engine spark")
    table = _open(ledger_path).sql(text, as_of=as_of, at_seq=at_seq, engine=engine, master=master)
    render_arrow(table, fmt, path=out_path, empty=f"No rows{when}.", title=when.strip() or None)
