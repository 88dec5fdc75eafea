"""Options and helpers shared by the command modules."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from ..errors import KeyProblem
from ..output import OutputFormat

F = Callable[..., Any]


def ledger_option(f: F) -> F:
    return click.option(
        "--ledger",
        "ledger_path",
        envvar="LEDGER_PATH",
        default=".",
        show_default="$LEDGER_PATH or .",
        type=click.Path(file_okay=False),
        help="Ledger folder.",
    )(f)


def key_option(f: F) -> F:
    return click.option(
        "--key",
        "key_path",
        envvar="LEDGER_KEY",
        required=True,
        type=click.Path(),  # (a folder is a key problem, exit 5, which load_key reports)
        help="Private key file that signs the event (or $LEDGER_KEY).",
    )(f)


def open_ledger(path: str) -> Any:
    """Open the ledger at ``path`` (imported late: the facade pulls in pyarrow), with
    ``--require-verified`` if the command was given it."""
    from ..ledger import Ledger

    ctx = click.get_current_context(silent=True)
    required = ctx is not None and ctx.meta.get(_REQUIRE, False)
    return Ledger.open(path, require_verified=True if required else None)


_REQUIRE = "ledger.require_verified"


def read_options(f: F) -> F:
    """--ledger, plus --require-verified: what every command that reads events takes."""

    def remember(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
        if value:
            ctx.meta[_REQUIRE] = True

    f = click.option(
        "--require-verified",
        is_flag=True,
        expose_value=False,
        callback=remember,
        help="Fail (exit 1) instead of warning when the answer would include events that"
        " ledger verify has not accepted on this machine (or $LEDGER_REQUIRE_VERIFIED=1).",
    )(f)
    return ledger_option(f)


def point_in_time(f: F) -> F:
    """The shared --as-of / --at-seq pair; the library checks and parses the values."""
    f = click.option(
        "--at-seq",
        type=int,
        metavar="N",
        help="Answer as the ledger stood just after event N.",
    )(f)
    return click.option(
        "--as-of",
        metavar="TIMESTAMP",
        help="Answer as the ledger stood at this instant: every event with ts <= TIMESTAMP"
        " (e.g. 2026-03-01T09:00:00Z; a date alone is 00:00; no zone means UTC).",
    )(f)


#: What a checkpoint signer's key may be given as (--trusted-key, verify-checkpoint --key).
VERIFIER_KEY_HELP = (
    "a public key file (PEM) or a C2SP verifier key (name+keyid+base64), itself or in a file"
)


def trusted_key_option(f: F) -> F:
    return click.option(
        "--trusted-key",
        "trusted_keys",
        multiple=True,
        metavar="KEY",
        help="Key of a checkpoint signer to trust besides the ledger's checkpointers:"
        f" {VERIFIER_KEY_HELP} (repeatable).",
    )(f)


def load_verifier_keys(specs: tuple[str, ...]) -> list[Any]:
    """The keys given to --trusted-key or --key, each a ``keys.VerifierKey``."""
    from ..keys import load_verifier_key

    return [load_verifier_key(s) for s in specs]


def format_option(
    *choices: OutputFormat, default: OutputFormat = OutputFormat.TABLE
) -> Callable[[F], F]:
    """The one --format/--out pair every command that prints rows shares."""
    names = [c.value for c in (choices or tuple(OutputFormat))]

    def deco(f: F) -> F:
        f = click.option(
            "--out",
            "out_path",
            type=click.Path(dir_okay=False, writable=True),
            help="Write to this file instead of standard output (needed for parquet).",
        )(f)
        return click.option(
            "--format",
            "fmt",
            type=click.Choice(names),
            default=default.value,
            show_default=True,
            help="Output format.",
        )(f)

    return deco


def passphrase(path: str, confirm: bool = False) -> str | None:
    """The passphrase from $LEDGER_PASSPHRASE, else a prompt if a terminal is attached."""
    env = os.environ.get("LEDGER_PASSPHRASE")
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise KeyProblem(
            f"key file {path} is encrypted; set LEDGER_PASSPHRASE (no terminal to ask)"
        )
    return click.prompt(f"Passphrase for {path}", hide_input=True, confirmation_prompt=confirm)


def load_key(path: str) -> Any:
    from ..keys import is_encrypted_key_file, load_signing_key

    pw = passphrase(path) if is_encrypted_key_file(path) else None
    return load_signing_key(path, pw)
