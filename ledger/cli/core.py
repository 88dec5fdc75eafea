"""Core commands: init, approve / deploy / undeploy …, log, verify, compact, demo."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .. import events as E
from ..errors import CorruptLedgerError, InputError
from ..output import OutputFormat, render, render_arrow
from .group import cli
from .options import (
    format_option,
    key_option,
    ledger_option,
    load_key,
    load_verifier_keys,
    passphrase,
    point_in_time,
    read_options,
    trusted_key_option,
)
from .options import open_ledger as _open


def _ref(ref: str) -> tuple[str, int]:
    return E.parse_model_ref(ref)


def _receipt(r: Any) -> None:
    what = f"{r.action} {r.ref}" if r.ref else r.action
    click.echo(f"{what}: seq {r.seq}, hash {r.hash}")


# --- init and keys -------------------------------------------------------------------------


@cli.command()
@click.argument("path", type=click.Path(file_okay=False))
@click.option(
    "--key",
    "key_path",
    envvar="LEDGER_KEY",
    required=True,
    type=click.Path(),
    help="Admin private key; generated (mode 0600) if the file does not exist.",
)
@click.option("--actor", required=True, help="Name the admin key is bound to.")
@click.option(
    "--roles", default="admin", show_default=True, help="Roles of the admin key, comma separated."
)
@click.option("--origin", help="Ledger identity (default: ledger.local/<random>).")
@click.option("--encrypt", is_flag=True, help="Encrypt a generated key with a passphrase.")
def init(
    path: str, key_path: str, actor: str, roles: str, origin: str | None, encrypt: bool
) -> None:
    """Create a new ledger in PATH whose genesis event registers the admin key.

    \b
    Examples:
      ledger init reg --key admin.pem --actor admin    # writes admin.pem (0600) and admin.pub
      ledger init reg2 --key admin.pem --actor admin --origin example.com/models
    """
    from ..keys import SigningKey, discard_key_files, inside, write_key_files
    from ..ledger import Ledger

    if inside(key_path, path):
        raise InputError(
            f"--key {key_path} is inside the ledger folder {path}; private keys are never"
            " stored in a ledger: give a path outside it"
        )
    generate = not Path(key_path).exists()
    used: list[SigningKey] = []
    written: list[Path] = []

    def key() -> SigningKey:  # (called once the folder is known to be free)
        if not generate:
            used.append(load_key(key_path))
            return used[0]
        used.append(SigningKey.generate())
        pw = passphrase(key_path, confirm=True) if encrypt else None
        written.append(write_key_files(Path(key_path), used[0], pw))
        return used[0]

    try:
        led = Ledger.init(path, key, actor, roles, origin)
    except BaseException:
        if written:  # (a failed command leaves nothing behind: not the key it made either)
            discard_key_files(key_path)
        raise
    if written:
        click.echo(f"generated key {used[0].key_id} in {key_path} (public key in {written[0]})")
    click.echo(f"created ledger {led.origin} in {path}; admin {actor} key {used[0].key_id}")


# --- model actions -------------------------------------------------------------------------


def version_of(ref: str) -> tuple[str, int | str]:
    """MODEL:VERSION or MODEL@ALIAS -> (model, version or "@alias") for the facade."""
    model, version, alias = E.parse_version_ref(ref)
    return model, version if version is not None else f"@{alias}"


def _model_command(name: str, needs_env: bool, doc: str) -> None:
    @click.argument("ref", metavar="MODEL:VERSION|MODEL@ALIAS")
    @click.option("--comment", help="Recorded with the event.")
    @ledger_option
    @key_option
    def command(
        ref: str,
        comment: str | None,
        ledger_path: str,
        key_path: str,
        env: str | None = None,
        undeploy: bool = False,
    ) -> None:
        model, version = version_of(ref)
        led = _open(ledger_path)
        key = load_key(key_path)
        method = getattr(led, name)
        if needs_env:
            r = method(model, version, env, key=key, comment=comment)
        else:
            r = method(model, version, key=key, comment=comment, undeploy=undeploy)
        _receipt(r)

    command.__doc__ = doc
    if needs_env:
        command = click.option(
            "--env",
            required=True,
            help="Environment (or alias, for approve), e.g. staging or production.",
        )(command)
    else:
        command = click.option(
            "--undeploy",
            is_flag=True,
            help="Undeploy the version wherever it is live first (recorded as events);"
            " without it, a live version is refused.",
        )(command)
    cli.command(name)(command)


_model_command(
    "approve",
    True,
    """Approve MODEL:VERSION|MODEL@ALIAS (a version, or the one an alias names) for an
    environment, or for an alias.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger approve fraud.detector.xgb:3 --env staging --comment "offline eval ok" \\
          --key demo-ledger-keys/bob.pem
    """,
)
_model_command(
    "reject",
    False,
    """Reject MODEL:VERSION|MODEL@ALIAS: it can no longer be approved or deployed. A version
    live somewhere is refused, unless --undeploy.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger reject fraud.detector.xgb:3 --comment "bias regression" --key demo-ledger-keys/bob.pem
    """,
)
_model_command(
    "deploy",
    True,
    """Deploy MODEL:VERSION|MODEL@ALIAS to an environment (replacing the live one).

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger approve fraud.detector.xgb:3 --env staging --key demo-ledger-keys/bob.pem
      ledger deploy fraud.detector.xgb:3 --env staging --key demo-ledger-keys/carol.pem
    """,
)
_model_command(
    "undeploy",
    True,
    """Take MODEL:VERSION|MODEL@ALIAS out of an environment.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger undeploy fraud.detector.tiny:1 --env staging --key demo-ledger-keys/carol.pem
    """,
)
_model_command(
    "deprecate",
    False,
    """Deprecate MODEL:VERSION|MODEL@ALIAS: it can no longer be deployed. A version live
    somewhere is refused, unless --undeploy.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger deprecate fraud.detector.xgb:3 --comment "superseded" --key demo-ledger-keys/alice.pem
    """,
)


# --- reading, verifying, maintenance -------------------------------------------------------


def _payload(seq: int, text: str | None) -> dict[str, Any]:
    try:
        payload = json.loads(text) if text is not None else None
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise CorruptLedgerError(
            f"seq {seq}: the payload column is not a JSON object; run ledger verify"
        )
    return payload


def _details(payload: dict[str, Any]) -> str:
    parts = []
    for k in ("env", "comment", "reason", "key_id", "actor"):
        if k in payload:
            parts.append(f"{k}={payload[k]}")
    parents = payload.get("parents")
    if parents and isinstance(parents, list) and all(isinstance(p, dict) for p in parents):
        parts.append(
            "parents="
            + ",".join(f"{p.get('model')}:{p.get('version')}({p.get('relation')})" for p in parents)
        )
    return " ".join(parts)


@cli.command()
@click.option("--model", help="Only this model's events.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the last N events.")
@point_in_time
@read_options
@format_option()
def log(
    model: str | None,
    limit: int | None,
    as_of: str | None,
    at_seq: int | None,
    ledger_path: str,
    fmt: str,
    out_path: str | None,
) -> None:
    """Show events in order: all of them, one model's, or the last N (as of a past instant).

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger log --limit 5
      ledger log --model fraud.detector.xgb --as-of 2026-06-23 --format csv
    """
    if model is not None:
        E.check_model_name(model)
    if as_of is not None and at_seq is not None:
        raise InputError("give --as-of or --at-seq, not both")
    cut = as_of is not None or at_seq is not None
    table = _open(ledger_path).events(
        model=model,
        columns=["seq", "ts", "action", "model", "version", "actor", "key_id", "payload", "hash"],
        last=None if cut else limit,  # (the newest segments need not hold the last N as of T)
    )
    when = ""
    if cut:
        from ..lineage.graph import select

        instant = E.parse_instant(as_of) if as_of is not None else None
        when = f" as of {E.format_ts(instant)}" if instant is not None else f" at seq {at_seq}"
        table = select(table, instant, at_seq)
        if limit is not None:
            table = table.slice(max(0, table.num_rows - limit))
    rows = table.to_pylist()
    for r in rows:
        r["ts"] = r["ts"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        r["payload"] = _payload(r["seq"], r["payload"])
        r["hash"] = r["hash"].hex()
    empty = ("No events" if model is None else f"No events for {model}") + when + "."
    if fmt == OutputFormat.PARQUET.value:
        # Typed columns; the payload as its signed JSON text, the hash in hex as elsewhere.
        import pyarrow as pa

        hashes = pa.array([r["hash"] for r in rows], pa.string())
        table = table.set_column(table.schema.get_field_index("hash"), "hash", hashes)
        render_arrow(table, fmt, path=out_path)
        return
    if fmt == OutputFormat.TABLE.value:
        for r in rows:
            r["ref"] = f"{r['model']}:{r['version']}" if r["model"] else ""
            r["details"] = _details(r["payload"])
        cols = ["seq", "ts", "action", "ref", "actor", "key_id", "details"]
    else:
        cols = ["seq", "ts", "action", "model", "version", "actor", "key_id", "payload", "hash"]
    render(rows, cols, fmt, path=out_path, empty=empty)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: the OK or FAIL verdict; json: the whole report.",
)
@click.option(
    "--trusted",
    "trusted",
    type=click.Path(dir_okay=False),
    help="A checkpoint kept from earlier: the ledger must extend it (else rollback or fork).",
)
@click.option(
    "--since",
    "since",
    type=click.Path(dir_okay=False),
    help="A trusted checkpoint: check only the events after it, plus the consistency proof.",
)
@trusted_key_option
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    help="Worker processes checking signatures (default: every core).",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "dask"]),
    default="local",
    show_default=True,
    help="Where the signature and hash checks run: local worker processes, or Dask"
    " workers (pip install 'ledger[dask]'; same verdicts).",
)
@click.option(
    "--scheduler",
    metavar="tcp://HOST:PORT",
    help="With --engine dask: the scheduler of a running cluster, whose workers see this"
    " ledger at the same path (default: a LocalCluster of --jobs workers, for this run).",
)
@click.option(
    "--evidence-dir",
    default="ledger-evidence",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where --trusted writes the two conflicting checkpoints on a rollback or fork.",
)
@click.option(
    "--policy",
    "policy_audit",
    is_flag=True,
    help="Also check every event against the governance policy in force at its time.",
)
@ledger_option
def verify(
    fmt: str,
    trusted: str | None,
    since: str | None,
    trusted_keys: tuple[str, ...],
    jobs: int | None,
    engine: str,
    scheduler: str | None,
    evidence_dir: str,
    policy_audit: bool,
    ledger_path: str,
) -> None:
    """Check the whole chain; print OK or FAIL with the first bad event. Exit 0 / 1.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger verify
      ledger verify --policy --format json
    """
    led = _open(ledger_path)
    kw: dict[str, Any] = {
        "jobs": jobs,
        "engine": engine,
        "scheduler": scheduler,
        "trusted": trusted,
        "since": since,
        "trusted_keys": load_verifier_keys(trusted_keys),
    }
    if fmt == "text" and sys.stderr.isatty():
        report = _with_progress(lambda progress: led.verify(progress, **kw))
    else:
        report = led.verify(**kw)
    try:
        written = led.conflict_evidence(report, trusted or since, evidence_dir)
        not_written = None
    except InputError as exc:  # (an evidence folder inside the ledger: the verdict stands)
        written, not_written = [], str(exc)
    # --policy (issue 6): audit only a chain that verified.
    audit = led.policy_audit() if policy_audit and report.ok else None
    if fmt == "json":
        doc = report.to_dict() | ({"evidence": [str(p) for p in written]} if written else {})
        if not_written:
            doc["evidence_not_written"] = not_written
        if audit is not None:
            doc["policy"] = audit.to_dict()
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(report.summary())
        if written:
            click.echo(f"evidence: {', '.join(str(p) for p in written)}")
        if not_written:
            click.echo(f"evidence not written: {not_written} (--evidence-dir DIR)")
        if audit is not None:
            click.echo(audit.summary())
    if not report.ok or (audit is not None and not audit.ok):
        sys.exit(1)


def _with_progress(run: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("verifying", total=None)
        return run(progress=lambda done, total: bar.update(task, completed=done, total=total))


@cli.command()
@ledger_option
def compact(ledger_path: str) -> None:
    """Merge small segments into large ones; every event's bytes stay the same.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger compact
    """
    before, after = _open(ledger_path).compact()
    click.echo(f"compacted {before} segment{'' if before == 1 else 's'} into {after}")


@cli.command()
@click.argument("path", default="demo-ledger", type=click.Path(file_okay=False))
@click.option(
    "--force", is_flag=True, help="Replace PATH (and PATH-keys, PATH-artifacts) if they exist."
)
def demo(path: str, force: bool) -> None:
    """Build a small realistic ledger in PATH (keys in PATH-keys, model files and the
    policy file it sets in PATH-artifacts), checkpoint it and verify it.

    It is the same on every machine (fixed dates, 2 March to 15 September 2026; keys from
    published seeds): never use its keys for a real ledger.

    \b
    Examples:
      ledger demo
      ledger demo --force    # rebuild demo-ledger, demo-ledger-keys, demo-ledger-artifacts
    """
    from ..demo import run_demo

    run_demo(Path(path), force=force, echo=click.echo)
