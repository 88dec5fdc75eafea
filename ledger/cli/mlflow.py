"""Commands: import mlflow, mlflow diff (an MLflow registry against the ledger)."""

from __future__ import annotations

import sys
from typing import Any

import click

from ..output import render
from .group import cli
from .options import format_option, key_option, ledger_option, load_key
from .options import open_ledger as _open

_REGISTRY = click.option(
    "--registry-uri",
    required=True,
    envvar="MLFLOW_REGISTRY_URI",
    help="MLflow's registry: a database URI (sqlite:///mlflow.db, the store plugin's"
    " ledger+… URI) or a tracking server URL (or $MLFLOW_REGISTRY_URI).",
)
_TRACKING = click.option(
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="Where the versions' runs are (default: the registry URI; or $MLFLOW_TRACKING_URI).",
)


def _sync() -> Any:
    try:
        from .. import mlflowsync
    except ImportError as exc:
        from ..errors import InputError

        raise InputError(
            f"MLflow's client is not installed ({exc.name}): pip install 'ledger[mlflow]'"
        ) from None
    return mlflowsync


@cli.group("import")
def import_() -> None:
    """Record another registry's history in the ledger.

    \b
    Examples:
      ledger import mlflow --registry-uri sqlite:///mlflow.db --key importer.pem
    """


@import_.command("mlflow")
@_REGISTRY
@_TRACKING
@ledger_option
@key_option
def import_mlflow(
    registry_uri: str, tracking_uri: str | None, ledger_path: str, key_path: str
) -> None:
    """Bring the ledger to MLflow's registry: models, versions with their runs' metrics,
    params, git commit and datasets, stages, aliases, tags and descriptions, with MLflow's
    times, signed by --key (registrar and deployer roles) and marked as imported. Run
    again, it records only what changed since. Models the ledger cannot hold are listed
    and left out (exit 4).

    \b
    Examples:
      ledger import mlflow --registry-uri sqlite:///mlflow.db --key importer.pem
      ledger import mlflow --registry-uri http://127.0.0.1:5000 --key importer.pem
    """
    report = _sync().import_registry(
        _open(ledger_path), registry_uri, load_key(key_path), tracking_uri
    )
    models = "1 model" if report.models == 1 else f"{report.models} models"
    click.echo(
        f"Imported {report.events} events: {models} changed, {report.versions} versions registered."
    )
    for d in report.skipped:
        click.echo(f"Error: left out {d.model}: {d.unmappable}", err=True)
    if report.skipped:
        sys.exit(4)


@cli.group()
def mlflow() -> None:
    """Compare an MLflow registry with the ledger.

    \b
    Examples:
      ledger mlflow diff --registry-uri sqlite:///mlflow.db
    """


@mlflow.command("diff")
@_REGISTRY
@_TRACKING
@ledger_option
@format_option()
def mlflow_diff(
    registry_uri: str, tracking_uri: str | None, ledger_path: str, fmt: str, out_path: str | None
) -> None:
    """List every way the ledger differs from MLflow's registry now (a version, stage,
    alias, tag or description changed behind the ledger's back), and the writes the store
    committed whose events are not yet written. Exit 1 when there is any: for a cron job.

    \b
    Examples:
      ledger mlflow diff --registry-uri sqlite:///mlflow.db
      ledger mlflow diff --registry-uri sqlite:///mlflow.db --format json
    """
    report = _sync().diff(_open(ledger_path), registry_uri, tracking_uri)
    rows = [
        {
            "where": d.where,
            "what": d.what,
            "mlflow": d.mlflow,
            "ledger": d.ledger,
            "fix": (d.unmappable and f"cannot: {d.unmappable}")
            or ", ".join(x.action for x in d.drafts),
        }
        for d in report.differences
    ]
    rows += [
        {"where": p.model, "what": "pending write", "mlflow": p.method, "ledger": "not written",
         "fix": "the store writes it when it next starts"}
        for p in report.pending
    ]  # fmt: skip
    render(
        rows,
        ["where", "what", "mlflow", "ledger", "fix"],
        fmt,
        path=out_path,
        empty="No differences: the ledger agrees with MLflow.",
    )
    if report.pending_unknown:
        click.echo(f"Note: {report.pending_unknown}", err=True)
    if not report.clean:
        sys.exit(1)
