"""The governance policy document (pure, no I/O).

A ``policy_set`` event puts a policy in force. This module is what a policy *is*
(parsing and checking the document, and the document it normalizes to), below
:mod:`ledger.state`; what the rules *decide* is :mod:`ledger.policy`, above it. Its terms
(rule names, thresholds, criteria) are :mod:`ledger.policyterms`, break-glass grants
:mod:`ledger.grants`, the TOML rendering :mod:`ledger.policytoml`; this module
re-exports their names.

The rules (section names of the policy document, and the names errors and break-glass use):

``approvals``             distinct approvers needed per environment before a deploy there;
                          approvals older than ``max_age_days`` do not count
``separation_of_duties``  the registrant may not approve; optionally an approver may not deploy
``register_metadata``     what a register must carry: artifact digest, datasets with digests,
                          code commit, named tags, metric thresholds such as ``auc >= 0.8``;
                          (format 2) allowed values or a pattern per tag
``promotion_order``       a chain of environments: a version must have been deployed to the
                          previous one before the next
``signers``               which actors, keys or roles may sign an action (in an environment)
``environments``          (format 2) the closed list of environments approvals and deploys name
``naming``                (format 2) a pattern model names must match at register
``promotion_criteria``    (format 2) per environment, metric criteria a deploy there must
                          meet, absolute or against the live or the previous version

Format 1 is the first five rules. A document that uses no format-2 rule or setting is
written as format 1, so it means to older readers exactly what it means here; a stored
format-1 document is read by format 1's grammar (a section of a later format in it is
kept and ignored, as it always was).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import events as E
from .canonical import DuplicateKey, unique_keys_loader, unique_members
from .errors import InputError
from .grants import Grant, grant_from_event, grant_payload
from .pattern import Pattern, compile_pattern
from .policyterms import (
    APPROVALS,
    BREAK_GLASS_RULE,
    CRITERIA,
    ENVIRONMENTS,
    METADATA,
    NAMING,
    PROMOTION,
    RULES,
    SEPARATION,
    SIGNERS,
    Criterion,
    Threshold,
    closest,
    env_phrase,
    event_env,
    parse_criterion,
    parse_threshold,
)
from .policyterms import show as _show
from .policytoml import to_toml

__all__ = [
    "APPROVALS", "BREAK_GLASS_RULE", "CRITERIA", "DAY_US", "ENVIRONMENTS", "METADATA",
    "NAMING", "POLICY_FORMAT", "PROMOTION", "RULES", "SEPARATION", "SIGNERS", "Criterion",
    "Grant", "Policy", "PolicyRecord", "SignerRule", "Threshold", "env_phrase", "event_env",
    "grant_from_event", "grant_payload", "parse_policy", "policy_from_payload", "to_toml",
]  # fmt: skip

#: The newest policy document format this ledger understands (writers write the lowest
#: format that expresses the document: 1 unless it uses a format-2 rule or setting).
POLICY_FORMAT = 2
#: The rules and settings each format added.
_FORMAT_2_RULES = (ENVIRONMENTS, NAMING, CRITERIA)
_FORMAT_2_SETTINGS = ("tag_values", "tag_patterns")

_SETTINGS: dict[str, tuple[str, ...]] = {
    APPROVALS: ("required", "max_age_days"),
    SEPARATION: ("registrant_may_not_approve", "approver_may_not_deploy"),
    METADATA: (
        "artifact_digest",
        "datasets_with_digest",
        "code_commit",
        "tags",
        "metrics",
        *_FORMAT_2_SETTINGS,
    ),
    PROMOTION: ("environments",),
    SIGNERS: ("action", "env", "actors", "keys", "roles"),
    ENVIRONMENTS: ("allowed",),
    NAMING: ("model",),
    CRITERIA: ("metrics",),
}
_TOP = ("format", "description", *RULES)

DAY_US = 86_400 * 1_000_000
_KEY_ID_RE = re.compile(r"[0-9a-f]{8,64}")


# --- the document --------------------------------------------------------------------------


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
    # --- format 2
    #: tag name -> the values it may take / the pattern it must match (when present)
    tag_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tag_patterns: Mapping[str, Pattern] = field(default_factory=dict)
    #: the closed list of environments approvals and deploys may name
    environments: tuple[str, ...] = ()
    #: the pattern every registered model name must match
    naming_model: Pattern | None = None
    #: environment -> the criteria a deploy there must meet
    criteria: Mapping[str, tuple[Criterion, ...]] = field(default_factory=dict)
    #: Sections of a newer format, kept so the document survives a round trip.
    unknown: Mapping[str, Any] = field(default_factory=dict)
    #: the format a stored document declared, when newer than :data:`POLICY_FORMAT`
    newer_format: int | None = None

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
                or self.tag_values
                or self.tag_patterns
            ),
            PROMOTION: len(self.promotion_order) >= 2,
            SIGNERS: bool(self.signers),
            ENVIRONMENTS: bool(self.environments),
            NAMING: self.naming_model is not None,
            CRITERIA: any(self.criteria.values()),
        }
        return [r for r in RULES if on[r]]

    @property
    def format(self) -> int:
        """The format the document is written in: the lowest that expresses it."""
        if self.newer_format is not None:
            return self.newer_format
        v2 = self.tag_values or self.tag_patterns or self.environments or self.criteria
        return 2 if v2 or self.naming_model is not None else 1

    def to_dict(self) -> dict[str, Any]:
        """The normalized document, as recorded in the ``policy_set`` payload."""
        d: dict[str, Any] = {"format": self.format}
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
        if self.tag_values:
            m["tag_values"] = {k: list(v) for k, v in sorted(self.tag_values.items())}
        if self.tag_patterns:
            m["tag_patterns"] = {k: str(v) for k, v in sorted(self.tag_patterns.items())}
        if m:
            d[METADATA] = m
        if self.promotion_order:
            d[PROMOTION] = {"environments": list(self.promotion_order)}
        if self.signers:
            d[SIGNERS] = [s.to_dict() for s in self.signers]
        if self.environments:
            d[ENVIRONMENTS] = {"allowed": list(self.environments)}
        if self.naming_model is not None:
            d[NAMING] = {"model": str(self.naming_model)}
        if self.criteria:
            d[CRITERIA] = {
                env: {"metrics": [str(c) for c in cs]} for env, cs in sorted(self.criteria.items())
            }
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
        self.fmt = POLICY_FORMAT

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
            name = f"{where}.{k}" if where else str(k)
            raise self.fail(
                f"unknown {what} {name!r}{_did_you_mean(str(k), known)}; {what}s are"
                f" {', '.join(known)}"
            )

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

    def env(self, env: Any, where: str) -> str:
        try:
            return E.check_env(env)
        except InputError as exc:
            raise self.fail(f"{where}: {exc}") from None

    def pattern(self, v: Any, where: str) -> Pattern:
        try:
            return compile_pattern(v)
        except InputError as exc:
            raise self.fail(f"{where}: {exc}") from None

    def policy(self, doc: Any) -> Policy:
        doc = self.table(doc, "the policy")
        fmt = doc.get("format", POLICY_FORMAT if self.strict else 1)
        if type(fmt) is not int or fmt < 1:
            raise self.fail(f"format must be a positive whole number, got {_show(fmt)}")
        if fmt > POLICY_FORMAT and self.strict:
            raise self.fail(f"format {fmt} is newer than this ledger understands ({POLICY_FORMAT})")
        self.fmt = fmt
        top = _TOP if fmt >= 2 else tuple(k for k in _TOP if k not in _FORMAT_2_RULES)
        if self.strict:
            for k in doc:
                self.later_format(k in _FORMAT_2_RULES, k, "rule")
            self.unknown(doc, top, "", "rule")
        unknown = {k: v for k, v in doc.items() if k not in top}
        kw: dict[str, Any] = {"unknown": unknown}
        if fmt > POLICY_FORMAT:
            kw["newer_format"] = fmt
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
        if fmt >= 2:
            kw |= self.format_2(doc)
            if self.strict and kw.get("environments"):
                self.closed_list(kw)
        return Policy(**kw)

    def later_format(self, later: bool, name: str, what: str) -> None:
        """Refuse, in a file a user wrote, a format-2 rule or setting under ``format = 1``."""
        if later and self.fmt < 2:
            raise self.fail(
                f"{what} {name!r} needs policy format 2, but the file says format = {self.fmt};"
                " write format = 2 (or leave the format out)"
            )

    def settings(self, sec: dict[str, Any], rule: str) -> None:
        if self.strict:
            for k in sec:
                self.later_format(k in _FORMAT_2_SETTINGS, f"{rule}.{k}", "setting")
            self.unknown(sec, _SETTINGS[rule], rule, "setting")

    def approvals(self, sec: dict[str, Any]) -> dict[str, Any]:
        self.settings(sec, APPROVALS)
        req = self.table(sec.get("required", {}), f"{APPROVALS}.required")
        out: dict[str, int] = {}
        for env, n in req.items():
            where = f"{APPROVALS}.required.{env}"
            self.env(env, where)
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
            kw["metrics"] = tuple(self.term(parse_threshold, s, where) for s in specs)
        if self.fmt < 2:  # (format 1 has no other setting: a stored one ignores them)
            return kw
        if "tag_values" in sec:
            where = f"{METADATA}.tag_values"
            kw["tag_values"] = {
                _tag(self, t, where): self.names(vs, f"{where}.{t}", _value)
                for t, vs in self.table(sec["tag_values"], where).items()
            }
        if "tag_patterns" in sec:
            where = f"{METADATA}.tag_patterns"
            kw["tag_patterns"] = {
                _tag(self, t, where): self.pattern(p, f"{where}.{t}")
                for t, p in self.table(sec["tag_patterns"], where).items()
            }
        return kw

    def term(self, parse: Any, spec: Any, where: str) -> Any:
        try:  # (an integer beyond ±(2^53−1) is refused in a new policy, read in a stored one)
            return parse(spec, exact=self.strict)
        except InputError as exc:
            raise self.fail(f"{where}: {exc}") from None

    def format_2(self, doc: dict[str, Any]) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if ENVIRONMENTS in doc:
            sec = self.table(doc[ENVIRONMENTS], ENVIRONMENTS)
            self.settings(sec, ENVIRONMENTS)
            if "allowed" not in sec:
                raise self.fail(f'{ENVIRONMENTS} needs allowed = ["staging", "production"]')
            kw["environments"] = self.names(sec["allowed"], f"{ENVIRONMENTS}.allowed", E.check_env)
        if NAMING in doc:
            sec = self.table(doc[NAMING], NAMING)
            self.settings(sec, NAMING)
            if "model" not in sec:
                raise self.fail(f'{NAMING} needs model = "^PATTERN$", e.g. "^[a-z]+\\\\.[a-z]+$"')
            kw["naming_model"] = self.pattern(sec["model"], f"{NAMING}.model")
        if CRITERIA in doc:
            criteria: dict[str, tuple[Criterion, ...]] = {}
            for env, sec in self.table(doc[CRITERIA], CRITERIA).items():
                where = f"{CRITERIA}.{env}"
                self.env(env, where)
                sec = self.table(sec, where)
                self.settings(sec, CRITERIA)
                specs = sec.get("metrics")
                if not isinstance(specs, list) or not specs:
                    raise self.fail(
                        f'{where}.metrics must be a non-empty list such as ["auc >= live + 0.01"]'
                    )
                cs = tuple(self.term(parse_criterion, s, f"{where}.metrics") for s in specs)
                for c in cs:
                    if c.live_env is not None:
                        self.env(c.live_env, f"{where}.metrics: {str(c)!r}")
                criteria[env] = cs
            kw["criteria"] = criteria
        return kw

    def closed_list(self, kw: dict[str, Any]) -> None:
        """Every environment the document names is one of ``environments.allowed``."""
        allowed: tuple[str, ...] = kw["environments"]
        named = [(f"{APPROVALS}.required", e) for e in kw.get("approvals_required", {})]
        named += [(f"{PROMOTION}.environments", e) for e in kw.get("promotion_order", ())]
        named += [(f"{SIGNERS}[{i}].env", s.env) for i, s in enumerate(kw.get("signers", ()))]
        for env, cs in kw.get("criteria", {}).items():
            named.append((CRITERIA, env))
            named += [(f"{CRITERIA}.{env}.metrics", c.live_env) for c in cs]
        for where, env in named:
            if env is not None and env not in allowed:
                raise self.fail(
                    f"{where} names the environment {env!r}, which is not one of"
                    f" {ENVIRONMENTS}.allowed ({', '.join(allowed)})"
                    f"{_did_you_mean(env, allowed)}"
                )

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
            self.env(env, f"{where}.env")
        sets = {}
        for k, check in (("actors", E.check_actor), ("keys", _check_key_id), ("roles", _role)):
            if k in r:
                sets[k] = self.names(r[k], f"{where}.{k}", check)
        if not sets:
            raise self.fail(f"{where} needs at least one of actors, keys or roles")
        return SignerRule(action, env, **sets)


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    hint = closest(name, known)
    return f" (did you mean {hint!r}?)" if hint else ""


def _tag(p: _Parser, name: Any, where: str) -> str:
    if not isinstance(name, str) or not E.KEYNAME_RE.fullmatch(name):
        raise p.fail(f"{where}: {name!r} is not a valid tag name")
    return name


def _value(v: str) -> str:
    E.check_text(v, "a tag value")
    return v


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


@dataclass(frozen=True)
class PolicyRecord:
    """A policy as recorded: the ``policy_set`` event that put it in force."""

    policy: Policy
    seq: int
    ts: int
    actor: str
    comment: str | None = None
