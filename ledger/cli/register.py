"""The register command: a new version, its provenance and its declared environment."""

from __future__ import annotations

from typing import Any

import click

from .. import events as E
from ..errors import InputError
from .core import _receipt as receipt
from .group import cli
from .options import key_option, ledger_option, load_key
from .options import open_ledger as _open


@cli.command()
@click.argument("model")
@click.option("--artifact", type=click.Path(), help="Local model file or folder to digest.")
@click.option("--artifact-uri", help="Where the artifact lives (recorded with its digest).")
@click.option("--artifact-digest", help="sha256:HEX of an artifact that is not local.")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    metavar="NAME=URI[@sha256:HEX]",
    help="Training data, with its digest if known (repeatable).",
)
@click.option("--code", metavar="REPO@COMMIT", help="Source repository and commit.")
@click.option(
    "--parent",
    "parents",
    multiple=True,
    metavar="MODEL:VERSION=RELATION",
    help=f"Parent model version; relation is one of {', '.join(E.RELATIONS)} (repeatable).",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="NAME=NUMBER",
    help="An evaluation metric, e.g. auc=0.91 (repeatable).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A training parameter, e.g. max_depth=8 (repeatable).",
)
@click.option(
    "--tag",
    "tags",
    multiple=True,
    metavar="NAME=VALUE",
    help="A tag, e.g. team=risk (repeatable; a policy may require some).",
)
@click.option("--meta", multiple=True, metavar="NAME=VALUE", help="Free metadata (repeatable).")
@click.option("--description", help="What this version is.")
@click.option(
    "--requirements",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A pip requirements file the model runs with (repeatable; -r includes are read).",
)
@click.option(
    "--conda",
    type=click.Path(dir_okay=False),
    help="A conda environment file (env.yaml) the model runs with.",
)
@click.option("--python", metavar="VERSION", help="The Python version it runs on, e.g. 3.11.")
@ledger_option
@key_option
def register(
    model: str,
    artifact: str | None,
    artifact_uri: str | None,
    artifact_digest: str | None,
    datasets: tuple[str, ...],
    code: str | None,
    parents: tuple[str, ...],
    metrics: tuple[str, ...],
    params: tuple[str, ...],
    tags: tuple[str, ...],
    meta: tuple[str, ...],
    description: str | None,
    requirements: tuple[str, ...],
    conda: str | None,
    python: str | None,
    ledger_path: str,
    key_path: str,
) -> None:
    """Register the next version of MODEL (the ledger numbers them 1, 2, 3 …).

    --requirements, --conda and --python record the environment the version runs in:
    each package as declared (name and version specifier) and each file's digest.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger register fraud.detector.xgb --artifact demo-ledger-artifacts/fraud-xgb-1.bin \\
          --dataset train=s3://risk-data/transactions-2026q1.parquet@sha256:1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f \\
          --code https://git.example/risk/fraud@5be2c1d --parent fraud.detector.xgb:3=finetune \\
          --metric auc=0.94 --param max_depth=8 --tag risk_tier=high --python 3.11 \\
          --key demo-ledger-keys/alice.pem
    """
    if artifact and artifact_digest:
        raise InputError("give --artifact or --artifact-digest, not both")
    art: Any = artifact
    if artifact_digest:
        art = {"digest": artifact_digest}
    metadata = E.parse_pairs(meta, "--meta") or None
    r = _open(ledger_path).register(
        model,
        key=load_key(key_path),
        artifact=art,
        artifact_uri=artifact_uri,
        datasets=datasets,
        code=code,
        parents=parents,
        metrics=metrics,
        params=params,
        tags=tags,
        metadata=metadata,
        description=description,
        requirements=requirements,
        conda=conda,
        python=python,
    )
    receipt(r)
