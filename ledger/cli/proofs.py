"""Commands: checkpoint, verify-checkpoint, prove, evidence and verify-evidence (issue 3)."""

from __future__ import annotations

import base64
import json
import sys

import click

from ..errors import InputError
from .group import cli
from .options import (
    VERIFIER_KEY_HELP,
    key_option,
    ledger_option,
    load_key,
    load_verifier_keys,
    read_options,
    trusted_key_option,
)
from .options import open_ledger as _open


def _write(path: str, data: bytes) -> None:
    from .. import outfile

    outfile.write_bytes(path, data)


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
    LEDGER/checkpoints/ in the C2SP tlog-checkpoint signed-note format.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger checkpoint --key demo-ledger-keys/notary.pem --out kept.checkpoint
      ledger verify --since kept.checkpoint
    """
    from .. import outfile

    led = _open(ledger_path)
    if out_path:
        outfile.check(out_path)  # (before anything is signed or stored)
    cp = led.checkpoint(load_key(key_path))
    if out_path:
        _write(out_path, cp.note.encode())
    click.echo(f"checkpoint: {cp.size} events, root {cp.root_b64}, signed by {cp.signer}")
    click.echo(f"stored in {cp.path}")


@cli.command("verify-checkpoint")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option(
    "--key",
    "keys",
    multiple=True,
    required=True,
    metavar="KEY",
    help=f"Key of a signer you trust: {VERIFIER_KEY_HELP} (repeatable).",
)
@click.option(
    "--min-signatures",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="K",
    help="How many of the given keys must have signed.",
)
@click.option("--origin", help="The origin (log or ledger name) the checkpoint must have.")
@click.option(
    "--ledger",
    "ledger_path",
    type=click.Path(file_okay=False),
    help="Also check that this ledger extends the checkpoint ($LEDGER_PATH is not used).",
)
def verify_checkpoint(
    path: str,
    keys: tuple[str, ...],
    min_signatures: int,
    origin: str | None,
    ledger_path: str | None,
) -> None:
    """Check the C2SP checkpoint in FILE, from anywhere: syntax, signatures (K of the
    given keys), origin, and with --ledger that the ledger extends it. Print OK or FAIL.
    Exit 0 / 1.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger checkpoint --key demo-ledger-keys/notary.pem --out kept.checkpoint
      ledger verify-checkpoint kept.checkpoint --key demo-ledger-keys/notary.pub --ledger demo-ledger
    """
    from ..checkpointcheck import verify_file

    result = verify_file(
        path,
        load_verifier_keys(keys),
        min_signatures=min_signatures,
        origin=origin,
        ledger=ledger_path,
    )
    click.echo(result.summary())
    if not result.ok:
        sys.exit(1)


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
    """Print an inclusion proof of event SEQ, or a consistency proof (JSON).

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger prove 12
      ledger prove 12 --out proof-12.json
    """
    trusted = load_verifier_keys(trusted_keys)
    if consistency:
        if seq is not None or checkpoint_path:
            raise InputError("give SEQ [--checkpoint FILE] or --consistency OLD NEW, not both")
        doc = _open(ledger_path).prove_consistency(*consistency, trusted)
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
@click.argument("ref", metavar="MODEL:VERSION | MODEL --env ENV")
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Bundle file to write (JSON).",
)
@click.option(
    "--env",
    help="Prove MODEL's whole deployment history in this environment instead (what was"
    " live there at any instant).",
)
@click.option(
    "--checkpoint",
    "checkpoint_path",
    type=click.Path(dir_okay=False),
    help="Checkpoint file to prove against (default: the latest stored checkpoint).",
)
@read_options
def evidence(
    ref: str, out_path: str, env: str | None, checkpoint_path: str | None, ledger_path: str
) -> None:
    """Write an evidence bundle of MODEL:VERSION (or of MODEL's deployments in --env) that
    an auditor can check offline with verify-evidence.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger evidence fraud.detector.xgb:1 --out xgb1.json
      ledger evidence fraud.detector.xgb --env production --out prod.json
    """
    from .. import events as E
    from ..evidence import dumps

    if env is not None:
        if ":" in ref:
            raise InputError(f"with --env, give a model name, not {ref!r} (MODEL --env ENV)")
        bundle = _open(ledger_path).deployment_evidence(ref, env, checkpoint_path)
        what = f"the complete deployment history of {ref} in {env}"
    else:
        model, version = E.parse_model_ref(ref)
        bundle = _open(ledger_path).evidence(model, version, checkpoint_path)
        what = f"the complete story of {ref}"
    _write(out_path, dumps(bundle))
    size = bundle["checkpoint"].split("\n")[1]
    events = [json.loads(base64.b64decode(e["envelope"]["payload"])) for e in bundle["events"]]
    keys = sum(e["action"] in E.KEY_ACTIONS for e in events)
    click.echo(
        f"wrote {out_path}: {what}, {len(events) - keys} events and the {keys} key-registry"
        f" events its signatures need, proved against the checkpoint of size {size}"
    )


@cli.command("verify-evidence")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option(
    "--trusted-key",
    "trusted_keys",
    multiple=True,
    metavar="KEY",
    help=f"Key of the checkpoint signer you trust: {VERIFIER_KEY_HELP} (repeatable).",
)
def verify_evidence(path: str, trusted_keys: tuple[str, ...]) -> None:
    """Check the evidence bundle in PATH offline; print what it proves (OK) or FAIL.
    Exit 0 / 1.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger evidence fraud.detector.xgb:1 --out xgb1.json
      ledger verify-evidence xgb1.json --trusted-key demo-ledger-keys/notary.pub
    """
    from ..evidencecheck import verify_file

    report = verify_file(path, load_verifier_keys(trusted_keys))
    click.echo(report.summary())
    if not report.ok:
        sys.exit(1)
