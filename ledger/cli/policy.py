"""Commands: governance policy (issue 6): ``policy show``, ``policy set``, ``break-glass``."""

from __future__ import annotations

import json
from typing import Any

import click

from .. import events as E
from .group import cli
from .options import key_option, ledger_option, load_key, point_in_time, read_options
from .options import open_ledger as _open


def _receipt(r: Any) -> None:
    click.echo(f"{r.action}: seq {r.seq}, hash {r.hash}")


@cli.group()
def policy() -> None:
    """Show and set the governance policy checked whenever an event is written.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger policy show
      ledger policy set demo-ledger-artifacts/mrm.toml --comment "CHG-1042: yearly review" \\
          --key demo-ledger-keys/admin.pem
    """


@policy.command("show")
@point_in_time
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["toml", "json"]),
    default="toml",
    show_default=True,
    help="toml: a policy file that policy set takes back; json: with the event that set it.",
)
@read_options
def policy_show(as_of: str | None, at_seq: int | None, fmt: str, ledger_path: str) -> None:
    """Print the policy in force (now, or at a past instant) and the event that set it.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger policy show > mrm.toml
      ledger policy show --as-of 2026-08-01    # before the demo's policy
    """
    rec = _open(ledger_path).policy(as_of=as_of, at_seq=at_seq)
    if rec is None and fmt == "json":
        click.echo("null")
        return
    if rec is None:
        when = f" as of {as_of}" if as_of else f" at seq {at_seq}" if at_seq is not None else ""
        click.echo(f"No policy in force{when}.")
        return
    if fmt == "json":
        out = {
            "seq": rec.seq,
            "ts": E.format_ts(rec.ts),
            "set_by": rec.actor,
            "comment": rec.comment,
            "rules": rec.policy.rules,
            "policy": rec.policy.to_dict(),
        }
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    from ..policy import to_toml

    click.echo(f"# policy set at seq {rec.seq} ({E.format_ts(rec.ts)}) by {rec.actor}")
    if rec.comment:
        click.echo(f"# comment: {rec.comment}")
    click.echo(f"# rules switched on: {', '.join(rec.policy.rules) or 'none'}")
    click.echo(to_toml(rec.policy.to_dict()), nl=False)


@policy.command("set")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--comment", help="Recorded with the event, e.g. the change ticket.")
@ledger_option
@key_option
def policy_set(file: str, comment: str | None, ledger_path: str, key_path: str) -> None:
    """Put the policy in FILE (TOML; YAML or JSON by suffix) in force from now on.

    Signed by an admin key. Every later event is checked against it before it is
    written; earlier events are judged by the policy in force at their time.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger policy show > mrm.toml
      ledger policy set mrm.toml --comment "CHG-1042: yearly review" \\
          --key demo-ledger-keys/admin.pem
    """
    led = _open(ledger_path)
    r = led.set_policy(file, key=load_key(key_path), comment=comment)
    _receipt(r)
    rules = led.policy(at_seq=r.seq).policy.rules
    click.echo(f"rules switched on: {', '.join(rules) or 'none'}")


@cli.command("break-glass")
@click.argument("action")
@click.argument("ref", required=False, metavar="[MODEL:VERSION]")
@click.option("--env", help="Environment of an approve, deploy or undeploy.")
@click.option("--rule", required=True, help="The one policy rule the action may bypass.")
@click.option("--justification", required=True, help="Why: recorded and shown by every audit.")
@ledger_option
@key_option
def break_glass(
    action: str,
    ref: str | None,
    env: str | None,
    rule: str,
    justification: str,
    ledger_path: str,
    key_path: str,
) -> None:
    """Let one future ACTION (e.g. deploy MODEL:VERSION --env production) bypass one RULE.

    Signed by an admin key. The grant is used up by the first matching event that needs
    it; the grant and its use appear in `ledger verify --policy` and the audit queries.

    \b
    Examples (on the demo ledger: ledger demo; export LEDGER_PATH=demo-ledger):
      ledger break-glass deploy fraud.detector.xgb:3 --env production --rule approvals \\
          --justification "INC-2300: fraud ring active" \\
          --key demo-ledger-keys/admin.pem
    """
    model = version = None
    if ref is not None:
        if ":" in ref:
            model, version = E.parse_model_ref(ref)
        else:
            model = E.check_model_name(ref)
    r = _open(ledger_path).break_glass(
        action.replace("-", "_"),
        model,
        version,
        env,
        rule=rule,
        justification=justification,
        key=load_key(key_path),
    )
    _receipt(r)
