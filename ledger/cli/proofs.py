"""Commands: checkpoint, prove, evidence and verify-evidence (issue 3)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import click

from ..errors import InputError
from . import cli
from .options import key_option, ledger_option, load_key, read_options, trusted_key_option
from .options import open_ledger as _open


def _write(path: str, data: bytes) -> None:
    from ..errors import StorageError

    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror}") from None


@cli.command()
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    help="Also write the signed checkpoint to this file (to keep as a trusted checkpoint).",
)
@ledger_option
@key_option
def checkpoint(out_path: str | None, ledger_path: str, key_path: str) -> None:
    """Verify the events since the last checkpoint, then sign and store a new one.

    The key must hold the 'checkpointer' role. Every checkpoint is kept in
    LEDGER/checkpoints/ in the C2SP tlog-checkpoint signed-note format."""
    cp = _open(ledger_path).checkpoint(load_key(key_path))
    if out_path:
        _write(out_path, cp.note.encode())
    click.echo(f"checkpoint: {cp.size} events, root {cp.root_b64}, signed by {cp.signer}")
    click.echo(f"stored in {cp.path}")


@cli.command()
@click.argument("seq", required=False, type=click.IntRange(min=0))
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(dir_okay=False),
    help="Checkpoint file to prove against (default: the latest stored checkpoint).",
)
@click.option(
    "--consistency",
    nargs=2,
    metavar="OLD NEW",
    type=click.Path(dir_okay=False),
    help="Prove that checkpoint NEW extends checkpoint OLD instead.",
)
@trusted_key_option
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write to this file.")
@read_options
def prove(
    seq: int | None,
    checkpoint_path: str | None,
    consistency: tuple[str, str] | None,
    trusted_keys: tuple[str, ...],
    out_path: str | None,
    ledger_path: str,
) -> None:
    """Print an inclusion proof of event SEQ, or a consistency proof (JSON)."""
    from ..keys import load_public_key

    trusted = [load_public_key(k) for k in trusted_keys]
    if consistency:
        if seq is not None or checkpoint_path:
            raise InputError("give SEQ [--checkpoint FILE] or --consistency OLD NEW, not both")
        doc = _open(ledger_path).prove_consistency(*consistency)
    elif seq is None:
        raise InputError("give the SEQ of an event, or --consistency OLD NEW")
    else:
        doc = _open(ledger_path).prove(seq, checkpoint_path, trusted)
    text = json.dumps(doc, indent=2) + "\n"
    if out_path:
        _write(out_path, text.encode())
    else:
        click.echo(text, nl=False)


@cli.command()
@click.argument("ref", metavar="MODEL:VERSION")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Bundle file to write (JSON).",
)
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(dir_okay=False),
    help="Checkpoint file to prove against (default: the latest stored checkpoint).",
)
@read_options
def evidence(ref: str, out_path: str, checkpoint_path: str | None, ledger_path: str) -> None:
    """Write an evidence bundle an auditor can check offline with verify-evidence."""
    from .. import events as E
    from ..evidence import dumps

    model, version = E.parse_model_ref(ref)
    bundle = _open(ledger_path).evidence(model, version, checkpoint_path)
    _write(out_path, dumps(bundle))
    size = bundle["checkpoint"].split("\n")[1]
    actions = [
        json.loads(base64.b64decode(e["envelope"]["payload"]))["action"] for e in bundle["events"]
    ]
    keys = sum(a in E.KEY_ACTIONS for a in actions)
    click.echo(
        f"wrote {out_path}: {len(actions) - keys} events of {ref} and {keys} key-registry"
        f" events, proved against the checkpoint of size {size}"
    )


@cli.command("verify-evidence")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--trusted-key",
    "trusted_keys",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="Public key file of the checkpoint signer you trust (repeatable).",
)
def verify_evidence(path: str, trusted_keys: tuple[str, ...]) -> None:
    """Check an evidence bundle offline; print what it proves (OK) or FAIL. Exit 0 / 1."""
    from ..evidence import verify_file
    from ..keys import load_public_key

    report = verify_file(path, [load_public_key(k) for k in trusted_keys])
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)
