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
