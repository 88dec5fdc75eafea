"""Break-glass grants (pure, no I/O): an admin's one-time permission, recorded by a
``break_glass`` event, for one action to bypass one rule of the policy in force.

What a grant *is* (its payload, checked here for the writer and for ``verify``); which
events it covers and spends is :mod:`ledger.policy`'s business, and the record of unused
grants is :class:`ledger.state.State`'s. :mod:`ledger.policydoc` re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import events as E
from .errors import InputError
from .policyterms import RULES, env_phrase, event_env


@dataclass(frozen=True)
class Grant:
    """An admin's one-time permission for one action to bypass one rule."""

    seq: int
    ts: int
    actor: str
    action: str
    rule: str
    justification: str
    model: str | None = None
    version: int | None = None
    env: str | None = None

    @property
    def target(self) -> str:
        """The action it permits, e.g. ``deploy fraud.detector.xgb:3 to production``."""
        ref = ""
        if self.model is not None:
            ref = f" {self.model}" + (f":{self.version}" if self.version is not None else "")
        return f"{self.action}{ref}{env_phrase(self.action, self.env)}"

    def matches(self, ev: E.Event) -> bool:
        return (
            ev.action == self.action
            and (self.model is None or ev.model == self.model)
            and (self.version is None or ev.version == self.version)
            and (self.env is None or event_env(ev) == self.env)
        )


def grant_payload(
    action: str,
    rule: str,
    justification: str,
    model: str | None = None,
    version: int | None = None,
    env: str | None = None,
) -> dict[str, Any]:
    """Validate and assemble a ``break_glass`` payload."""
    if action not in E.ACTION_ROLE or action in (E.GENESIS, E.BREAK_GLASS):
        acts = ", ".join(a for a in E.ACTION_ROLE if a not in (E.GENESIS, E.BREAK_GLASS))
        raise InputError(f"break-glass action must be one of {acts}, got {action!r}")
    if rule not in RULES:
        raise InputError(f"unknown rule {rule!r}; rules are {', '.join(RULES)}")
    if not isinstance(justification, str) or not justification.strip():
        raise InputError("break-glass needs a justification: say why the rule must be bypassed")
    E.check_text(justification, "justification")
    payload: dict[str, Any] = {"action": action, "justification": justification, "rule": rule}
    if action in E.MODEL_SCOPED:
        if model is None or (
            version is None and action not in (E.REGISTER, E.MODEL_CREATE, *E.META_ACTIONS)
        ):
            raise InputError(
                f"break-glass for {action} needs the model version it applies to (MODEL:VERSION)"
            )
        payload["model"] = E.check_model_name(model)
        if version is not None:
            if type(version) is not int or version < 1:
                raise InputError(f"version must be a positive integer, got {version!r}")
            payload["version"] = version
    elif model is not None or version is not None:
        raise InputError(f"{action} events name no model; give no MODEL:VERSION")
    if action in E.TARGET_ACTIONS:
        if env is None:
            what = "the alias as --env" if action in E.ALIAS_ACTIONS else "--env"
            raise InputError(f"break-glass for {action} needs {what}")
        payload["env"] = E.check_env(env)
    elif env is not None:
        raise InputError(f"{action} events have no environment; drop --env")
    return payload


def grant_from_event(ev: E.Event) -> Grant:
    """The grant a ``break_glass`` event records; raises InputError if malformed."""
    p: Any = ev.payload  # (any JSON: grant_payload checks each member)
    try:
        grant_payload(
            p.get("action"),
            p.get("rule"),
            p.get("justification"),
            p.get("model"),
            p.get("version"),
            p.get("env"),
        )
    except InputError as exc:
        raise InputError(f"break_glass payload: {exc}") from None
    return Grant(
        ev.seq,
        ev.ts,
        ev.actor,
        p["action"],
        p["rule"],
        p["justification"],
        p.get("model"),
        p.get("version"),
        p.get("env"),
    )


__all__ = ["Grant", "grant_from_event", "grant_payload"]
