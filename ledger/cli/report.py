"""Command: report, the HTML audit report (issue 17)."""

from __future__ import annotations

import click

from ..errors import InputError
from .group import cli
from .options import open_ledger, point_in_time, read_options


@cli.command()
@click.argument("ref", metavar="MODEL:VERSION", required=False)
@click.option(
    "--all", "whole", is_flag=True, help="Every version live in --env (at --as-of/--at-seq)."
)
@click.option("--env", help="The environment whose live versions --all reports on.")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the page to this file (atomically; never inside a ledger) instead of"
    " standard output.",
)
@point_in_time
@read_options
def report(
    ref: str | None,
    whole: bool,
    env: str | None,
    out_path: str | None,
    as_of: str | None,
    at_seq: int | None,
    ledger_path: str,
) -> None:
    """Write a self-contained HTML audit report of MODEL:VERSION (its facts, timeline,
    deployments, approvals against the policy at each deploy, break-glass overrides,
    lineage, checkpoint and the verification it was built from), or with --all --env ENV
    of every version live in ENV at that instant. The page loads nothing: open it in any
    browser, print it, or archive it.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger report fraud.detector.tiny:1 --out tiny-1.html
      ledger report --all --env production --as-of 2026-06-24 --out production.html
    """
    if whole == (ref is not None):
        raise InputError("give MODEL:VERSION or --all --env ENV, not both or neither")
    if whole and env is None:
        raise InputError("--all needs --env ENV: the environment whose live versions to report")
    if env is not None and not whole:
        raise InputError("--env goes with --all (a report of MODEL:VERSION covers every env)")
    html = open_ledger(ledger_path).report(ref, env=env, as_of=as_of, at_seq=at_seq, out=out_path)
    if out_path is None:
        click.echo(html, nl=False)
    else:
        what = ref if ref is not None else f"every version live in {env}"
        click.echo(f"wrote {out_path}: the audit report of {what} ({len(html.encode()):,} bytes)")
