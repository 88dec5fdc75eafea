"""Commands: lineage, impact and graph exports (issue 5)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .. import events as E
from .. import outfile
from ..errors import InputError
from ..output import OutputFormat, render
from .group import cli
from .options import format_option, open_ledger, point_in_time, read_options

# Kept here rather than imported from ledger.export, which imports networkx (slow start-up).
EXPORT_FORMATS = ("graphml", "gexf", "json", "dot", "svg", "png", "mermaid", "prov-json", "prov-n")


def _graph(ledger_path: str, as_of: str | None, at_seq: int | None, **question: Any) -> Any:
    """The whole graph, or (given a question) the part of it that question reaches."""
    when = E.parse_instant(as_of) if as_of is not None else None
    led = open_ledger(ledger_path)
    if not question:
        return led.lineage_graph(as_of=when, at_seq=at_seq)
    return led.family_graph(as_of=when, at_seq=at_seq, **question)


@cli.command()
@click.argument("ref", metavar="MODEL:VERSION", required=False)
@click.option("--up", "up", is_flag=True, help="Ancestors (the default).")
@click.option("--down", "down", is_flag=True, help="Descendants and their deployments.")
@click.option("--all", "whole", is_flag=True, help="The whole ledger's graph (for exports).")
@click.option("--depth", type=click.IntRange(min=0), help="At most N hops from MODEL:VERSION.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tree", *EXPORT_FORMATS]),
    default="tree",
    show_default=True,
    help="tree for the terminal, or an export format.",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to this file (needed for svg and png).",
)
@point_in_time
@read_options
def lineage(
    ref: str | None,
    up: bool,
    down: bool,
    whole: bool,
    depth: int | None,
    fmt: str,
    out_path: str | None,
    as_of: str | None,
    at_seq: int | None,
    ledger_path: str,
) -> None:
    """Show MODEL:VERSION's family tree: --up to base models, datasets and commits, or
    --down to everything derived from it and where that is live. Exports the same
    subgraph (with actors and environments) with --format.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger lineage fraud.detector.tiny:1
      ledger lineage fraud.detector.base:1 --down --format mermaid
    """
    from .. import lineage as L
    from . import lineagetree

    if whole == (ref is not None):
        raise InputError("give MODEL:VERSION or --all (the whole graph), not both or neither")
    if up and down:
        raise InputError("give --up or --down, not both")
    direction = "down" if down else "up"
    if whole and fmt == "tree":
        raise InputError("--all needs an export --format (e.g. graphml); the tree needs a root")
    if fmt in ("svg", "png") and not out_path:
        raise InputError(f"--format {fmt} needs --out FILE")
    if whole:
        g = sub = _graph(ledger_path, as_of, at_seq)
    else:
        tree = fmt == "tree"  # (the tree needs no networkx graph: see lineage.Adjacency)
        g = _graph(ledger_path, as_of, at_seq, ref=ref, direction=direction, networkx=not tree)
        node = L.version_node(g, ref)  # type: ignore[arg-type]
        if tree:
            lineagetree.print_tree(lineagetree.tree(g, node, direction, depth), out_path)
            return
        walk = L.up if direction == "up" else L.down
        sub = L.context(g, walk(g, node, depth))
    from .. import export

    if out_path:
        export.write_file(sub, fmt, out_path)
        click.echo(
            f"wrote {fmt}: {sub.number_of_nodes()} nodes, {sub.number_of_edges()} edges to {out_path}"
        )
    else:
        export.write(sub, fmt, sys.stdout)


@cli.command()
@click.option("--dataset", metavar="URI_OR_DIGEST", help="A dataset's URI or sha256:HEX digest.")
@click.option("--model", "model_ref", metavar="MODEL:VERSION", help="A model version.")
@click.option("--commit", metavar="[REPO@]COMMIT", help="A code commit (7+ hex digits).")
@point_in_time
@read_options
@format_option()
def impact(
    dataset: str | None,
    model_ref: str | None,
    commit: str | None,
    as_of: str | None,
    at_seq: int | None,
    ledger_path: str,
    fmt: str,
    out_path: str | None,
) -> None:
    """List every model version downstream of a dataset, a model version or a commit,
    and every live deployment of those versions (json: both lists; jsonl, csv and parquet:
    the versions).

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger impact --dataset s3://risk-data/transactions-2026q1.parquet
      ledger impact --commit 9b1d4e7 --format csv
    """
    if sum(x is not None for x in (dataset, model_ref, commit)) != 1:
        raise InputError("give exactly one of --dataset, --model or --commit")
    when = E.parse_instant(as_of) if as_of is not None else None
    res = open_ledger(ledger_path).impact(
        dataset=dataset, model=model_ref, commit=commit, as_of=when, at_seq=at_seq
    )
    vcols = ["ref", "hops", "via", "status", "registered_seq", "live_in"]
    dcols = ["env", "ref", "since", "deploy_seq", "deployed_by"]
    if fmt == OutputFormat.JSON.value:
        doc = {
            "sources": [res.labels[s] if s.startswith("model:") else s for s in res.sources],
            "versions": res.versions,
            "deployments": res.deployments,
        }
        text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
        if out_path:
            outfile.write_text(out_path, text)
        else:
            click.echo(text, nl=False)
        return
    if fmt != OutputFormat.TABLE.value:
        render(res.versions, vcols, fmt, path=out_path)
        return
    what = "dataset" if dataset else "commit" if commit else "model"
    names = ", ".join(s.split(":", 1)[1] for s in res.sources)
    click.echo(
        f"Impact of {what} {names}: {len(res.versions)} version(s) downstream,"
        f" {len(res.deployments)} live deployment(s)"
    )
    render(res.versions, vcols, fmt, title="Versions downstream")
    render(
        res.deployments,
        dcols,
        fmt,
        title="Live deployments affected",
        empty="No live deployment is affected.",
    )
