"""Registry metadata commands: alias set / delete / list, tag set / delete, describe."""

from __future__ import annotations

import click

from .. import events as E
from ..output import render_arrow
from .audit import _when
from .core import _receipt, version_of
from .group import cli
from .options import format_option, key_option, ledger_option, load_key, point_in_time, read_options
from .options import open_ledger as _open


def _target(ref: str) -> tuple[str, int | str | None]:
    """MODEL, MODEL:VERSION or MODEL@ALIAS -> (model, version, "@alias" or None)."""
    model, version, alias = E.parse_target(ref)
    return model, version if alias is None else f"@{alias}"


@cli.group()
def alias() -> None:
    """Name versions: champion, challenger … (MODEL@ALIAS works wherever MODEL:VERSION does).

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger alias list fraud.detector.xgb
      ledger alias set fraud.detector.tiny:1 champion --key demo-ledger-keys/carol.pem
    """


@alias.command("set")
@click.argument("ref", metavar="MODEL:VERSION|MODEL@ALIAS")
@click.argument("name")
@click.option("--comment", help="Recorded with the event.")
@ledger_option
@key_option
def alias_set(ref: str, name: str, comment: str | None, ledger_path: str, key_path: str) -> None:
    """Point alias NAME at MODEL:VERSION|MODEL@ALIAS (a version, or the one another alias
    names), moving it from any other version; a deployer's key. Policy governs an alias as
    an environment of its name (approvals, signers, separation of duties).

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger alias set fraud.detector.tiny:1 champion --key demo-ledger-keys/carol.pem
      ledger alias set fraud.detector.xgb@champion previous --key demo-ledger-keys/carol.pem
    """
    model, version = version_of(ref)
    led = _open(ledger_path)
    _receipt(led.set_alias(model, version, name, key=load_key(key_path), comment=comment))


@alias.command("delete")
@click.argument("model")
@click.argument("name")
@click.option("--comment", help="Recorded with the event.")
@ledger_option
@key_option
def alias_delete(
    model: str, name: str, comment: str | None, ledger_path: str, key_path: str
) -> None:
    """Remove alias NAME of MODEL (the event names the version it pointed at).

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger alias delete fraud.detector.xgb champion --key demo-ledger-keys/carol.pem
    """
    led = _open(ledger_path)
    _receipt(led.delete_alias(model, name, key=load_key(key_path), comment=comment))


@alias.command("list")
@click.argument("model")
@point_in_time
@read_options
@format_option()
def alias_list(
    model: str,
    as_of: str | None,
    at_seq: int | None,
    ledger_path: str,
    fmt: str,
    out_path: str | None,
) -> None:
    """Where each alias of MODEL points (now, or --as-of an instant).

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger alias list fraud.detector.xgb
      ledger alias list fraud.detector.xgb --as-of 2026-06-01
    """
    when = _when(as_of, at_seq)
    table = _open(ledger_path).aliases(model, as_of=as_of, at_seq=at_seq)
    render_arrow(
        table, fmt, path=out_path, empty=f"No aliases of {model}{when}.", title=when.strip() or None
    )


@cli.group()
def tag() -> None:
    """Set and delete tags of a version or a model, after registration (history kept).

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger tag set fraud.detector.xgb:3 validation=passed --key demo-ledger-keys/alice.pem
      ledger tag set fraud.detector.xgb owner=risk-team --key demo-ledger-keys/alice.pem
    """


@tag.command("set")
@click.argument("ref", metavar="MODEL[:VERSION|@ALIAS]")
@click.argument("tags", nargs=-1, required=True, metavar="KEY=VALUE...")
@ledger_option
@key_option
def tag_set(ref: str, tags: tuple[str, ...], ledger_path: str, key_path: str) -> None:
    """Set KEY=VALUE... tags on MODEL[:VERSION|@ALIAS]: a version (or the one an alias
    names), or the model itself; a registrar's key.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger tag set fraud.detector.xgb:3 validation=passed --key demo-ledger-keys/alice.pem
      ledger tag set fraud.detector.xgb owner=risk-team --key demo-ledger-keys/alice.pem
    """
    model, version = _target(ref)
    led = _open(ledger_path)
    _receipt(led.set_tags(model, version, tags=list(tags), key=load_key(key_path)))


@tag.command("delete")
@click.argument("ref", metavar="MODEL[:VERSION|@ALIAS]")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@ledger_option
@key_option
def tag_delete(ref: str, keys: tuple[str, ...], ledger_path: str, key_path: str) -> None:
    """Delete tags KEY... of MODEL[:VERSION|@ALIAS] (a version, or the model itself); each
    must be set.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger tag delete fraud.detector.xgb:1 team --key demo-ledger-keys/alice.pem
    """
    model, version = _target(ref)
    led = _open(ledger_path)
    _receipt(led.delete_tags(model, version, keys=list(keys), key=load_key(key_path)))


@cli.command()
@click.argument("ref", metavar="MODEL[:VERSION|@ALIAS]")
@click.argument("text")
@ledger_option
@key_option
def describe(ref: str, text: str, ledger_path: str, key_path: str) -> None:
    """Set the description TEXT of MODEL[:VERSION|@ALIAS] (a version, or the model
    itself); the history of descriptions is kept.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger describe fraud.detector.xgb "XGBoost fraud scorer" --key demo-ledger-keys/alice.pem
      ledger describe fraud.detector.xgb:3 "retrained on Q2" --key demo-ledger-keys/alice.pem
    """
    model, version = _target(ref)
    led = _open(ledger_path)
    _receipt(led.describe(model, version, text=text, key=load_key(key_path)))


@cli.command()
@click.argument("ref", metavar="MODEL[:VERSION|@ALIAS]")
@read_options
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="text: one screen; json: the whole document, each fact with its event's seq and hash.",
)  # fmt: skip
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write to FILE.")
def show(ref: str, ledger_path: str, fmt: str, out_path: str | None) -> None:
    """Everything about MODEL[:VERSION|@ALIAS]: metrics, params, tags, description,
    datasets, code, artifact, environment, parents and children, approvals (still
    counting?), deployments past and present, aliases, overrides; or, for MODEL alone, its
    own tags and description, aliases and versions.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger show fraud.detector.xgb:1
      ledger show fraud.detector.xgb@champion --format json
    """
    import json

    from ..outfile import write_text
    from ..show import render

    model, version = _target(ref)
    doc = _open(ledger_path).show(model, version)
    text = json.dumps(doc, indent=2, ensure_ascii=False) if fmt == "json" else render(doc)
    if out_path:
        write_text(out_path, text + "\n")
    else:
        click.echo(text)


@cli.command()
@click.option("--name", help="A model name or glob, e.g. 'fraud.*'.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE",
              help="A tag the version (or its model) has; repeatable, all must hold.")  # fmt: skip
@click.option("--registered-by", help="The actor who registered the version.")
@click.option("--since", help="Registered at or after this instant (e.g. 2026-03-01).")
@click.option("--until", help="Registered at or before this instant.")
@click.option("--live-in", help="Live in this environment now (or as of --as-of).")
@click.option("--alias", "alias_name", help="Named by this alias.")
@click.option("--metric", "metrics", multiple=True, metavar="NAME OP NUMBER",
              help="A metric bound, e.g. 'auc>=0.9'; repeatable, all must hold.")  # fmt: skip
@point_in_time
@read_options
@format_option()
def models(
    name: str | None,
    tags: tuple[str, ...],
    registered_by: str | None,
    since: str | None,
    until: str | None,
    live_in: str | None,
    alias_name: str | None,
    metrics: tuple[str, ...],
    as_of: str | None,
    at_seq: int | None,
    ledger_path: str,
    fmt: str,
    out_path: str | None,
) -> None:
    """Find versions by name, tag, registrant, date, environment, alias or metric.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger models --name 'fraud.*' --tag team=risk --metric 'auc>=0.9'
      ledger models --live-in production --as-of 2026-06-24
    """
    when = _when(as_of, at_seq)
    table = _open(ledger_path).models(
        name=name, tags=tags, registered_by=registered_by, since=since, until=until,
        live_in=live_in, alias=alias_name, metrics=metrics, as_of=as_of, at_seq=at_seq,
    )  # fmt: skip
    render_arrow(
        table, fmt, path=out_path, empty=f"No versions match{when}.", title=when.strip() or None
    )
