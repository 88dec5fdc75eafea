"""The governance policy document and break-glass grants (pure, no I/O).

A ``policy_set`` event puts a policy in force; a ``break_glass`` event grants one use of
one action despite one rule. This module is what they *are* (parsing and checking a
policy, the grant an event records, a policy written back as TOML), below
:mod:`ledger.state`; what the rules *decide* is :mod:`ledger.policy`, above it.

The rules (section names of the policy document, and the names errors and break-glass use):

``approvals``             distinct approvers needed per environment before a deploy there;
                          approvals older than ``max_age_days`` do not count
``separation_of_duties``  the registrant may not approve; optionally an approver may not deploy
``register_metadata``     what a register must carry: artifact digest, datasets with digests,
                          code commit, named tags, metric thresholds such as ``auc >= 0.8``
``promotion_order``       a chain of environments: a version must have been deployed to the
                          previous one before the next
``signers``               which actors, keys or roles may sign an action (in an environment)
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import events as E
from .canonical import DuplicateKey, unique_keys_loader, unique_members
from .errors import InputError

#: Version of the policy document format written into ``policy_set`` payloads.
POLICY_FORMAT = 1

APPROVALS = "approvals"
SEPARATION = "separation_of_duties"
METADATA = "register_metadata"
PROMOTION = "promotion_order"
SIGNERS = "signers"
#: Every rule, in the order they are evaluated and reported.
RULES = (APPROVALS, SEPARATION, METADATA, PROMOTION, SIGNERS)
#: Not a rule of the document: an event citing a grant it may not use.
BREAK_GLASS_RULE = "break_glass"

_SETTINGS: dict[str, tuple[str, ...]] = {
    APPROVALS: ("required", "max_age_days"),
    SEPARATION: ("registrant_may_not_approve", "approver_may_not_deploy"),
    METADATA: ("artifact_digest", "datasets_with_digest", "code_commit", "tags", "metrics"),
    PROMOTION: ("environments",),
    SIGNERS: ("action", "env", "actors", "keys", "roles"),
}
_TOP = ("format", "description", *RULES)

DAY_US = 86_400 * 1_000_000
_OPS = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
}
_THRESHOLD_RE = re.compile(r"\s*([A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63})\s*(>=|<=|==|>|<)\s*(\S+)\s*")
_KEY_ID_RE = re.compile(r"[0-9a-f]{8,64}")


# --- the document --------------------------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """A metric bound such as ``auc >= 0.8``."""

    metric: str
    op: str
    value: int | float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {_num(self.value)}"

    def holds(self, value: Any) -> bool:
        return type(value) in (int, float) and _OPS[self.op](value, self.value)


@dataclass(frozen=True)
class SignerRule:
    """Who may sign ``action`` (in ``env``, or in any environment when None)."""

    action: str
    env: str | None = None
    actors: tuple[str, ...] | None = None
    keys: tuple[str, ...] | None = None
    roles: tuple[str, ...] | None = None

    def applies(self, ev: E.Event) -> bool:
        return ev.action == self.action and (self.env is None or event_env(ev) == self.env)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"action": self.action}
        for name in ("env", "actors", "keys", "roles"):
            v = getattr(self, name)
            if v is not None:
                d[name] = v if isinstance(v, str) else list(v)
        return d


@dataclass(frozen=True)
class Policy:
    """A validated policy document. Build one with :func:`parse_policy` or ``from_dict``."""

    description: str | None = None
    approvals_required: Mapping[str, int] = field(default_factory=dict)
    approval_max_age_days: int | None = None
    registrant_may_not_approve: bool = False
    approver_may_not_deploy: bool = False
    artifact_digest: bool = False
    datasets_with_digest: int = 0
    code_commit: bool = False
    tags: tuple[str, ...] = ()
    metrics: tuple[Threshold, ...] = ()
    promotion_order: tuple[str, ...] = ()
    signers: tuple[SignerRule, ...] = ()
    #: Sections of a newer format, kept so the document survives a round trip.
    unknown: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rules(self) -> list[str]:
        """The rules this policy switches on."""
        on = {
            APPROVALS: any(self.approvals_required.values()),
            SEPARATION: self.registrant_may_not_approve or self.approver_may_not_deploy,
            METADATA: bool(
                self.artifact_digest
                or self.datasets_with_digest
                or self.code_commit
                or self.tags
                or self.metrics
            ),
            PROMOTION: len(self.promotion_order) >= 2,
            SIGNERS: bool(self.signers),
        }
        return [r for r in RULES if on[r]]

    def to_dict(self) -> dict[str, Any]:
        """The normalized document, as recorded in the ``policy_set`` payload."""
        d: dict[str, Any] = {"format": POLICY_FORMAT}
        if self.description is not None:
            d["description"] = self.description
        if self.approvals_required or self.approval_max_age_days is not None:
            a: dict[str, Any] = {"required": dict(sorted(self.approvals_required.items()))}
            if self.approval_max_age_days is not None:
                a["max_age_days"] = self.approval_max_age_days
            d[APPROVALS] = a
        if self.registrant_may_not_approve or self.approver_may_not_deploy:
            d[SEPARATION] = {
                "approver_may_not_deploy": self.approver_may_not_deploy,
                "registrant_may_not_approve": self.registrant_may_not_approve,
            }
        m: dict[str, Any] = {}
        if self.artifact_digest:
            m["artifact_digest"] = True
        if self.datasets_with_digest:
            m["datasets_with_digest"] = self.datasets_with_digest
        if self.code_commit:
            m["code_commit"] = True
        if self.tags:
            m["tags"] = list(self.tags)
        if self.metrics:
            m["metrics"] = [str(t) for t in self.metrics]
        if m:
            d[METADATA] = m
        if self.promotion_order:
            d[PROMOTION] = {"environments": list(self.promotion_order)}
        if self.signers:
            d[SIGNERS] = [s.to_dict() for s in self.signers]
        return d | dict(self.unknown)

    @classmethod
    def from_dict(cls, doc: Any, *, strict: bool = True, source: str = "policy") -> Policy:
        """Validate a parsed document. ``strict`` refuses unknown rules and settings (a file
        a user wrote); replaying a ledger is lenient and keeps what a newer format added."""
        return _Parser(source, strict).policy(doc)


def parse_policy(text: str | bytes, name: str = "policy.toml") -> Policy:
    """Parse a policy file's text: TOML, or YAML (needs PyYAML) or JSON by ``name``'s suffix."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{name}: not UTF-8 text") from None
    lower = name.lower()
    if lower.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise InputError(
                f"{name}: reading YAML policies needs PyYAML (pip install pyyaml);"
                " or write the policy as TOML"
            ) from None
        try:
            doc = yaml.load(text, Loader=unique_keys_loader(yaml))
        except DuplicateKey as exc:
            raise InputError(f"{name}: not valid YAML: {exc}") from None
        except yaml.YAMLError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
            raise InputError(f"{name}: not valid YAML: {first}") from None
        if doc is None:
            doc = {}
    elif lower.endswith(".json"):
        try:
            doc = json.loads(text, object_pairs_hook=unique_members)
        except ValueError as exc:
            raise InputError(f"{name}: not valid JSON: {exc}") from None
    else:
        import tomllib

        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{name}: not valid TOML: {exc}") from None
    return Policy.from_dict(doc, source=name)


def policy_from_payload(payload: Any) -> Policy:
    """The policy recorded in a ``policy_set`` payload (lenient about newer sections)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("policy"), dict):
        raise InputError("policy_set payload needs 'policy' as an object")
    return Policy.from_dict(payload["policy"], strict=False, source="policy_set payload")


class _Parser:
    def __init__(self, source: str, strict: bool) -> None:
        self.source, self.strict = source, strict

    def fail(self, msg: str) -> InputError:
        return InputError(f"{self.source}: {msg}")

    def table(self, v: Any, where: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(f"{where} must be a table of settings, got {_show(v)}")
        return v

    def unknown(self, keys: Iterable[str], known: tuple[str, ...], where: str, what: str) -> None:
        for k in keys:
            if k in known:
                continue
            import difflib

            hint = difflib.get_close_matches(str(k), known, n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            name = f"{where}.{k}" if where else str(k)
            raise self.fail(f"unknown {what} {name!r}{did}; {what}s are {', '.join(known)}")

    def boolean(self, v: Any, where: str) -> bool:
        if type(v) is not bool:
            raise self.fail(f"{where} must be true or false, got {_show(v)}")
        return v

    def count(self, v: Any, where: str, low: int = 0) -> int:
        if type(v) is not int or v < low or v > 1000:
            raise self.fail(f"{where} must be a whole number from {low} to 1000, got {_show(v)}")
        return v

    def names(self, v: Any, where: str, check: Any, empty_ok: bool = False) -> tuple[str, ...]:
        if not isinstance(v, list) or (not v and not empty_ok):
            raise self.fail(f"{where} must be a non-empty list, got {_show(v)}")
        out = []
        for x in v:
            if not isinstance(x, str):
                raise self.fail(f"{where} must list strings, got {_show(x)}")
            try:
                check(x)
            except InputError as exc:
                raise self.fail(f"{where}: {exc}") from None
            if x in out:
                raise self.fail(f"{where} lists {x!r} twice")
            out.append(x)
        return tuple(out)

    def policy(self, doc: Any) -> Policy:
        doc = self.table(doc, "the policy")
        if self.strict:
            self.unknown(doc, _TOP, "", "rule")
        unknown = {k: v for k, v in doc.items() if k not in _TOP}
        fmt = doc.get("format", POLICY_FORMAT)
        if type(fmt) is not int or fmt < 1:
            raise self.fail(f"format must be a positive whole number, got {_show(fmt)}")
        if fmt > POLICY_FORMAT and self.strict:
            raise self.fail(f"format {fmt} is newer than this ledger understands ({POLICY_FORMAT})")
        kw: dict[str, Any] = {"unknown": unknown}
        desc = doc.get("description")
        if desc is not None:
            if not isinstance(desc, str):
                raise self.fail(f"description must be text, got {_show(desc)}")
            kw["description"] = E.check_text(desc, "description")
        if APPROVALS in doc:
            kw |= self.approvals(self.table(doc[APPROVALS], APPROVALS))
        if SEPARATION in doc:
            sec = self.table(doc[SEPARATION], SEPARATION)
            self.settings(sec, SEPARATION)
            for k in _SETTINGS[SEPARATION]:
                if k in sec:
                    kw[k] = self.boolean(sec[k], f"{SEPARATION}.{k}")
        if METADATA in doc:
            kw |= self.metadata(self.table(doc[METADATA], METADATA))
        if PROMOTION in doc:
            sec = self.table(doc[PROMOTION], PROMOTION)
            self.settings(sec, PROMOTION)
            if "environments" not in sec:
                raise self.fail(f'{PROMOTION} needs environments = ["staging", "production"]')
            envs = self.names(sec["environments"], f"{PROMOTION}.environments", E.check_env)
            if len(envs) < 2:
                raise self.fail(f"{PROMOTION}.environments needs at least two environments")
            kw["promotion_order"] = envs
        if SIGNERS in doc:
            rules = doc[SIGNERS]
            if isinstance(rules, dict):
                rules = [rules]
            if not isinstance(rules, list):
                raise self.fail(f"{SIGNERS} must be a list of tables ([[signers]] in TOML)")
            kw["signers"] = tuple(self.signer(r, f"{SIGNERS}[{i}]") for i, r in enumerate(rules))
        return Policy(**kw)

    def settings(self, sec: dict[str, Any], rule: str) -> None:
        if self.strict:
            self.unknown(sec, _SETTINGS[rule], rule, "setting")

    def approvals(self, sec: dict[str, Any]) -> dict[str, Any]:
        self.settings(sec, APPROVALS)
        req = self.table(sec.get("required", {}), f"{APPROVALS}.required")
        out: dict[str, int] = {}
        for env, n in req.items():
            where = f"{APPROVALS}.required.{env}"
            try:
                E.check_env(env)
            except InputError as exc:
                raise self.fail(f"{where}: {exc}") from None
            out[env] = self.count(n, where)
        kw: dict[str, Any] = {"approvals_required": out}
        if "max_age_days" in sec:
            kw["approval_max_age_days"] = self.count(
                sec["max_age_days"], f"{APPROVALS}.max_age_days", 1
            )
        return kw

    def metadata(self, sec: dict[str, Any]) -> dict[str, Any]:
        self.settings(sec, METADATA)
        kw: dict[str, Any] = {}
        for k in ("artifact_digest", "code_commit"):
            if k in sec:
                kw[k] = self.boolean(sec[k], f"{METADATA}.{k}")
        if "datasets_with_digest" in sec:
            kw["datasets_with_digest"] = self.count(
                sec["datasets_with_digest"], f"{METADATA}.datasets_with_digest"
            )
        if "tags" in sec:
            kw["tags"] = self.names(sec["tags"], f"{METADATA}.tags", _check_key_name)
        if "metrics" in sec:
            where = f"{METADATA}.metrics"
            specs = sec["metrics"]
            if not isinstance(specs, list) or not specs:
                raise self.fail(f'{where} must be a non-empty list such as ["auc >= 0.8"]')
            kw["metrics"] = tuple(self.threshold(s, where) for s in specs)
        return kw

    def threshold(self, spec: Any, where: str) -> Threshold:
        m = _THRESHOLD_RE.fullmatch(spec) if isinstance(spec, str) else None
        try:  # (an integer beyond ±(2^53−1) is refused in a new policy, read in a stored one)
            value = E.parse_number(m[3], exact=self.strict) if m else math.nan
        except ValueError:
            value = math.nan
        except InputError as exc:
            raise self.fail(f"{where}: {_show(spec)}: {exc}") from None
        if m is None or not math.isfinite(value):
            raise self.fail(
                f"{where}: {_show(spec)} is not METRIC OP NUMBER"
                " (e.g. 'auc >= 0.8'; OP is one of >=, >, <=, <, ==)"
            )
        exact = isinstance(value, float) and value.is_integer() and abs(value) < 2**53
        return Threshold(m[1], m[2], int(value) if exact else value)

    def signer(self, r: Any, where: str) -> SignerRule:
        r = self.table(r, where)
        if self.strict:
            self.unknown(r, _SETTINGS[SIGNERS], where, "setting")
        action = r.get("action")
        if action not in E.ACTION_ROLE or action == E.GENESIS:
            acts = ", ".join(a for a in E.ACTION_ROLE if a != E.GENESIS)
            raise self.fail(f"{where}.action must be one of {acts}, got {_show(action)}")
        env = r.get("env")
        if env is not None:
            if action not in E.TARGET_ACTIONS:
                raise self.fail(f"{where}.env: {action} events have no environment")
            try:
                E.check_env(env)
            except InputError as exc:
                raise self.fail(f"{where}.env: {exc}") from None
        sets = {}
        for k, check in (("actors", E.check_actor), ("keys", _check_key_id), ("roles", _role)):
            if k in r:
                sets[k] = self.names(r[k], f"{where}.{k}", check)
        if not sets:
            raise self.fail(f"{where} needs at least one of actors, keys or roles")
        return SignerRule(action, env, **sets)


def _check_key_name(name: str) -> str:
    if not E.KEYNAME_RE.fullmatch(name):
        raise InputError(f"{name!r} is not a valid tag name")
    return name


def _check_key_id(kid: str) -> str:
    if not _KEY_ID_RE.fullmatch(kid):
        raise InputError(f"{kid!r} is not a key id (lowercase hex, as `ledger keys list` shows)")
    return kid


def _role(role: str) -> str:
    E.check_roles([role])
    return role


def _show(v: Any) -> str:
    if isinstance(v, dict | list):
        return "a table" if isinstance(v, dict) else "a list"
    return ("true" if v else "false") if isinstance(v, bool) else repr(v)


def _num(v: int | float) -> str:
    return str(v) if type(v) is int else repr(v)


@dataclass(frozen=True)
class PolicyRecord:
    """A policy as recorded: the ``policy_set`` event that put it in force."""

    policy: Policy
    seq: int
    ts: int
    actor: str
    comment: str | None = None


def event_env(ev: E.Event) -> str | None:
    """The environment an approve, deploy or undeploy names, or the alias an alias_set
    or alias_delete names: policy treats an alias as an environment (None otherwise)."""
    if ev.action in E.ALIAS_ACTIONS:
        env = ev.payload.get("alias")
    else:
        env = ev.payload.get("env") if ev.action in E.ENV_ACTIONS else None
    return env if isinstance(env, str) else None


def env_phrase(action: str, env: str | None) -> str:
    """`` for ENV`` / `` to ENV`` / `` from ENV`` after an action, for messages."""
    if env is None:
        return ""
    if action in E.ALIAS_ACTIONS:
        return f" {env}"
    return {E.APPROVE: " for ", E.DEPLOY: " to ", E.UNDEPLOY: " from "}.get(action, " in ") + env


# --- break-glass grants ----------------------------------------------------------------------


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
        if model is None or (version is None and action not in (E.REGISTER, *E.META_ACTIONS)):
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


# --- rendering -------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def to_toml(doc: Mapping[str, Any]) -> str:
    """Render a policy document as TOML that :func:`parse_policy` reads back."""
    head, body = [], []
    for k, v in doc.items():
        if isinstance(v, dict):
            body.append(f"\n[{_toml_key(k)}]")
            body += [
                f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None
            ]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                body.append(f"\n[[{_toml_key(k)}]]")
                body += [
                    f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in x.items() if vv is not None
                ]
        elif v is not None:
            head.append(f"{_toml_key(k)} = {_toml_value(v)}")
    return "\n".join(head + body) + "\n"


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        inner = ", ".join(
            f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None
        )
        return "{ " + inner + " }" if inner else "{}"
    return json.dumps(str(v), ensure_ascii=False)
