"""Key commands: generate, add, revoke, list."""

from __future__ import annotations

from pathlib import Path

import click

from .. import events as E
from ..output import render
from .core import _receipt
from .group import cli
from .options import format_option, key_option, ledger_option, load_key, passphrase, read_options
from .options import open_ledger as _open


@cli.group()
def keys() -> None:
    """Generate, register, revoke and list signing keys.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger keys list
      ledger keys generate frank.pem
    """


@keys.command("generate")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--encrypt", is_flag=True, help="Encrypt with a passphrase ($LEDGER_PASSPHRASE or prompt)."
)
def keys_generate(path: str, encrypt: bool) -> None:
    """Write a new Ed25519 private key to PATH (mode 0600) and its public key beside it,
    named PATH with its suffix replaced by .pub (frank.pem: frank.pub; frank: frank.pub).

    \b
    Examples:
      ledger keys generate frank.pem              # frank.pem (0600) and frank.pub
      ledger keys generate grace.pem --encrypt    # asks for a passphrase
    """
    from ..keys import SigningKey, write_key_files

    key = SigningKey.generate()
    pub = write_key_files(Path(path), key, passphrase(path, confirm=True) if encrypt else None)
    click.echo(f"key {key.key_id}: private {path}, public {pub}")


@keys.command("add")
@click.argument("public_key", type=click.Path(dir_okay=False))
@click.option("--actor", required=True, help="Name the key is bound to.")
@click.option("--roles", required=True, help=f"Comma separated: {', '.join(E.ROLES)}.")
@ledger_option
@key_option
def keys_add(public_key: str, actor: str, roles: str, ledger_path: str, key_path: str) -> None:
    """Register PUBLIC_KEY (a .pub file) for --actor with --roles (signed by an admin key).

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger keys generate frank.pem
      ledger keys add frank.pub --actor frank --roles approver --key demo-ledger-keys/admin.pem
    """
    from ..keys import load_public_key

    _receipt(
        _open(ledger_path).add_key(
            load_public_key(public_key), actor, roles, key=load_key(key_path)
        )
    )


@keys.command("revoke")
@click.argument("key_id")
@click.option("--reason", help="Why the key is revoked.")
@ledger_option
@key_option
def keys_revoke(key_id: str, reason: str | None, ledger_path: str, key_path: str) -> None:
    """Revoke KEY_ID (see ledger keys list): events it signs from now on are refused.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger keys revoke 101c1f11e9d699b5 --reason "left the company" --key demo-ledger-keys/admin.pem
    """
    _receipt(_open(ledger_path).revoke_key(key_id, key=load_key(key_path), reason=reason))


@keys.command("list")
@read_options
@format_option()
def keys_list(ledger_path: str, fmt: str, out_path: str | None) -> None:
    """List every key ever registered, with its roles and revocation.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger keys list
      ledger keys list --format json --out keys.json
    """
    rows = [
        {
            "key_id": k.key_id,
            "actor": k.actor,
            "roles": ",".join(sorted(k.roles)),
            "added_seq": k.added_seq,
            "added": E.format_ts(k.added_ts),
            "revoked_seq": k.revoked_seq,
            "revoked": E.format_ts(k.revoked_ts) if k.revoked_ts is not None else None,
        }
        for k in _open(ledger_path).keys()
    ]
    render(rows, list(rows[0]) if rows else ["key_id"], fmt, path=out_path, empty="No keys.")
