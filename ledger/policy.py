"""Governance policy: the policy document, its rules and break-glass grants (pure, no I/O).

A policy is recorded in the ledger by a ``policy_set`` event and is in force from that
event on. Before an event is appended, :func:`enforce` evaluates the rules of the policy
in force against the :class:`~ledger.state.State` the write path already rebuilt (the one
definition of versions, approvals, deployments and keys) and refuses the event if a rule
is broken, unless an unused ``break_glass`` grant names this action and that rule; the
grant's seq is then written into the event's payload (``"break_glass": [seq]``), which
consumes it. :func:`audit` replays a whole ledger and reports every event that breaks the
policy in force at its time, and every override.

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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from . import events as E
from .errors import InputError, RuleViolation

if TYPE_CHECKING:  # pragma: no cover
    from .state import State

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
        return ev.action == self.action and (self.env is None or _env(ev) == self.env)

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
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
            raise InputError(f"{name}: not valid YAML: {first}") from None
        if doc is None:
            doc = {}
    elif lower.endswith(".json"):
        try:
            doc = json.loads(text)
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
        value: float | None = None
        if m:
            try:
                value = float(m[3])
            except ValueError:
                value = None
        if m is None or value is None or not math.isfinite(value):
            raise self.fail(
                f"{where}: {_show(spec)} is not METRIC OP NUMBER"
                " (e.g. 'auc >= 0.8'; OP is one of >=, >, <=, <, ==)"
            )
        num: int | float = int(value) if value.is_integer() and abs(value) < 2**53 else value
        return Threshold(m[1], m[2], num)

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
            if action not in E.ENV_ACTIONS:
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
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


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
        return f"{self.action}{ref}{_env_phrase(self.action, self.env)}"

    def matches(self, ev: E.Event) -> bool:
        return (
            ev.action == self.action
            and (self.model is None or ev.model == self.model)
            and (self.version is None or ev.version == self.version)
            and (self.env is None or _env(ev) == self.env)
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
    if action in E.MODEL_ACTIONS:
        if model is None or (version is None and action != E.REGISTER):
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
    if action in E.ENV_ACTIONS:
        if env is None:
            raise InputError(f"break-glass for {action} needs --env")
        payload["env"] = E.check_env(env)
    elif env is not None:
        raise InputError(f"{action} events have no environment; drop --env")
    return payload


def grant_from_event(ev: E.Event) -> Grant:
    """The grant a ``break_glass`` event records; raises InputError if malformed."""
    p = ev.payload
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


# --- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Violation:
    """One broken rule: which, why, and what would satisfy it."""

    rule: str
    message: str
    #: seq of the break-glass grant the event cites for this rule, if any
    covered_by: int | None = None

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


def evaluate(state: State, policy: Policy, ev: E.Event) -> list[Violation]:
    """The rules of ``policy`` that ``ev`` would break, given ``state`` (the events before
    it). Lifecycle errors (unknown version, wrong seq…) are ``State.check``'s business."""
    out: list[Violation] = []
    a = ev.action
    v = state.versions.get((ev.model, ev.version)) if a in E.MODEL_ACTIONS else None  # type: ignore[arg-type]
    if a == E.REGISTER:
        out += _register_metadata(policy, ev)
    elif a == E.APPROVE and v is not None:
        if policy.registrant_may_not_approve and ev.actor == v.registrant:
            out.append(
                Violation(
                    SEPARATION,
                    f"{ev.actor} registered {v.ref} and may not approve it;"
                    " a different approver must approve it",
                )
            )
    elif a == E.DEPLOY and v is not None:
        env = _env(ev)
        out += _approvals(policy, v, env, ev)
        if policy.approver_may_not_deploy:
            mine = [ap for ap in v.approvals.get(env, []) if ap.actor == ev.actor]
            if mine:
                out.append(
                    Violation(
                        SEPARATION,
                        f"{ev.actor} approved {v.ref} for {env} (seq {mine[0].seq}) and may not"
                        " also deploy it there; a deployer who did not approve it must deploy it",
                    )
                )
        chain = policy.promotion_order
        if env in chain and chain.index(env) > 0 and len(chain) >= 2:
            before = chain[chain.index(env) - 1]
            if before not in v.deployed_to:
                out.append(
                    Violation(
                        PROMOTION,
                        f"{v.ref} must be deployed to {before} before {env}"
                        f" (order {' -> '.join(chain)}); deploy it to {before} first",
                    )
                )
    out += _signers(state, policy, ev)
    return out


def _approvals(policy: Policy, v: Any, env: str, ev: E.Event) -> list[Violation]:
    need = policy.approvals_required.get(env, 0)
    if not need:
        return []
    days = policy.approval_max_age_days
    cutoff = ev.ts - days * DAY_US if days else None
    counted: list[str] = []
    notes: list[str] = []
    for ap in v.approvals.get(env, []):
        if ap.actor in counted:
            continue
        if policy.registrant_may_not_approve and ap.actor == v.registrant:
            notes.append(f"{ap.actor}'s own approval (seq {ap.seq}) does not count")
        elif cutoff is not None and ap.ts < cutoff:
            notes.append(f"{ap.actor}'s approval (seq {ap.seq}) is older than {days} days")
        else:
            counted.append(ap.actor)
    if len(counted) >= need:
        return []
    has = f"{len(counted)} ({', '.join(counted)})" if counted else "none"
    more = need - len(counted)
    note = "".join(f"; {n}" for n in dict.fromkeys(notes))
    return [
        Violation(
            APPROVALS,
            f"deploying {v.ref} to {env} needs approvals from {need} distinct approvers for"
            f" {env}, it has {has}{note}; get {more} more approval{'s' if more > 1 else ''}"
            f" for {env}",
        )
    ]


def _register_metadata(policy: Policy, ev: E.Event) -> list[Violation]:
    p, ref = ev.payload, f"{ev.model}:{ev.version}"
    out = []

    def miss(msg: str) -> None:
        out.append(Violation(METADATA, f"registering {ref} needs {msg}"))

    art = p.get("artifact")
    if policy.artifact_digest and not (
        isinstance(art, dict) and isinstance(art.get("digest"), str)
    ):
        miss("an artifact digest (--artifact PATH or --artifact-digest sha256:HEX)")
    if policy.datasets_with_digest:
        ds = p.get("datasets")
        n = (
            sum(1 for d in ds if isinstance(d, dict) and isinstance(d.get("digest"), str))
            if isinstance(ds, list)
            else 0
        )
        if n < policy.datasets_with_digest:
            want = policy.datasets_with_digest
            miss(
                f"at least {want} dataset{'s' if want > 1 else ''} with a digest"
                f" (--dataset NAME=URI@sha256:HEX), it has {n}"
            )
    code = p.get("code")
    if policy.code_commit and not (isinstance(code, dict) and isinstance(code.get("commit"), str)):
        miss("a code commit (--code REPO@COMMIT)")
    tags = p.get("tags") if isinstance(p.get("tags"), dict) else {}
    missing = [t for t in policy.tags if t not in tags or tags[t] in ("", None)]
    if missing:
        s = "s" if len(missing) > 1 else ""
        miss(f"the tag{s} {', '.join(missing)} (--tag NAME=VALUE)")
    metrics = p.get("metrics") if isinstance(p.get("metrics"), dict) else {}
    for t in policy.metrics:
        got = metrics.get(t.metric)
        if not t.holds(got):
            has = "none" if got is None else f"{t.metric}={got}"
            miss(f"metric {t} (--metric {t.metric}=VALUE), it has {has}")
    return out


def _signers(state: State, policy: Policy, ev: E.Event) -> list[Violation]:
    out = []
    what = f"{ev.action}{_env_phrase(ev.action, _env(ev))}"
    for r in policy.signers:
        if not r.applies(ev):
            continue
        if r.actors is not None and ev.actor not in r.actors:
            out.append(
                Violation(SIGNERS, f"only {', '.join(r.actors)} may {what}; {ev.actor} may not")
            )
        if r.keys is not None and ev.key_id not in r.keys:
            out.append(
                Violation(
                    SIGNERS,
                    f"only the keys {', '.join(r.keys)} may {what}; key {ev.key_id}"
                    f" ({ev.actor}) is not one of them",
                )
            )
        if r.roles is not None:
            rec = state.keys.get(ev.key_id)
            held = rec.roles if rec is not None else frozenset()
            lacking = [role for role in r.roles if role not in held]
            if lacking:
                out.append(
                    Violation(
                        SIGNERS,
                        f"{what} needs a key holding the role{'s' if len(r.roles) > 1 else ''}"
                        f" {', '.join(r.roles)}; {ev.actor}'s key {ev.key_id} lacks"
                        f" {', '.join(lacking)}",
                    )
                )
    return out


def _env(ev: E.Event) -> str | None:
    env = ev.payload.get("env") if ev.action in E.ENV_ACTIONS else None
    return env if isinstance(env, str) else None


def _env_phrase(action: str, env: str | None) -> str:
    if env is None:
        return ""
    return {E.APPROVE: " for ", E.DEPLOY: " to ", E.UNDEPLOY: " from "}.get(action, " in ") + env


def check(state: State, ev: E.Event) -> list[Violation]:
    """Every violation of the policy in force by ``ev``; those the event's cited
    break-glass grants cover carry ``covered_by``. Citing a grant that does not exist, is
    used, or names another action is itself a violation (rule ``break_glass``)."""
    cited = ev.payload.get("break_glass") if isinstance(ev.payload, dict) else None
    if state.policy is None and cited is None:
        return []
    raw = evaluate(state, state.policy, ev) if state.policy is not None else []
    out: list[Violation] = []
    by_rule: dict[str, int] = {}
    if cited is not None:
        if type(cited) is not list or any(type(s) is not int for s in cited):
            out.append(
                Violation(BREAK_GLASS_RULE, "payload 'break_glass' must be a list of grant seqs")
            )
            cited = []
        for s in cited:
            g = state.grants.get(s)
            if g is None or not g.matches(ev):
                out.append(
                    Violation(
                        BREAK_GLASS_RULE,
                        f"seq {s} is not an unused break-glass grant for this {ev.action}",
                    )
                )
            else:
                by_rule.setdefault(g.rule, g.seq)
    out += [replace(v, covered_by=by_rule.get(v.rule)) for v in raw]
    return out


def enforce(state: State, ev: E.Event) -> E.Event:
    """The write path's gate: return ``ev`` if the policy in force allows it, else ``ev``
    citing the unused break-glass grants that cover every broken rule; raise
    RuleViolation (nothing is written) if some broken rule has no grant."""
    open_ = [v for v in check(state, ev) if v.covered_by is None]
    if not open_:
        return ev
    rules = {v.rule for v in open_}
    picked: dict[str, int] = {}
    for g in sorted(state.grants.values(), key=lambda g: g.seq):
        if g.rule in rules and g.rule not in picked and g.matches(ev):
            picked[g.rule] = g.seq
    left = [v for v in open_ if v.rule not in picked]
    if left:
        at = (
            f"the policy set at seq {state.policy_seq}"
            if state.policy_seq is not None
            else "policy"
        )
        raise RuleViolation(
            f"refused by {at}: " + "; ".join(str(v) for v in left), kind="policy_violation"
        )
    cited = ev.payload.get("break_glass") or []
    payload = dict(ev.payload) | {"break_glass": sorted({*cited, *picked.values()})}
    return replace(ev, payload=payload)


# --- audit -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """An event that broke the policy in force at its time."""

    seq: int
    ts: int
    action: str
    ref: str | None
    env: str | None
    actor: str
    policy_seq: int | None
    rule: str
    message: str
    covered_by: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": E.format_ts(self.ts),
            "action": self.action,
            "ref": self.ref,
            "env": self.env,
            "actor": self.actor,
            "policy_seq": self.policy_seq,
            "rule": self.rule,
            "message": self.message,
            "covered_by": self.covered_by,
        }


@dataclass
class Override:
    """A break-glass grant and the event that used it (None while unused)."""

    grant: Grant
    used_by: int | None = None

    def to_dict(self) -> dict[str, Any]:
        g = self.grant
        return {
            "seq": g.seq,
            "ts": E.format_ts(g.ts),
            "actor": g.actor,
            "action": g.action,
            "model": g.model,
            "version": g.version,
            "env": g.env,
            "rule": g.rule,
            "justification": g.justification,
            "used_by": self.used_by,
        }

    def __str__(self) -> str:
        g = self.grant
        used = f"used by seq {self.used_by}" if self.used_by is not None else "unused"
        return (
            f"break-glass seq {g.seq} by {g.actor}: {g.target} may bypass {g.rule}, {used};"
            f" justification: {g.justification}"
        )


@dataclass
class PolicyAudit:
    """Every event checked against the policy in force at its time."""

    events: int = 0
    policies: list[int] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)

    @property
    def open(self) -> list[Finding]:
        """Violations no break-glass grant covers."""
        return [f for f in self.findings if f.covered_by is None]

    @property
    def ok(self) -> bool:
        return not self.open

    def __bool__(self) -> bool:
        return self.ok

    def summary(self) -> str:
        pol = (
            f"policies set at seq {', '.join(map(str, self.policies))}"
            if self.policies
            else "no policy ever set"
        )
        n = len(self.open)
        head = (
            f"OK: policy: no violations in {self.events} events ({pol})"
            if self.ok
            else f"FAIL: policy: {n} violation{'s' if n > 1 else ''} not covered by a"
            f" break-glass override in {self.events} events ({pol})"
        )
        lines = [head]
        for f in self.findings:
            what = f"{f.action} {f.ref}" if f.ref else f.action
            what += _env_phrase(f.action, f.env)
            cover = (
                f" [overridden by break-glass seq {f.covered_by}]"
                if f.covered_by is not None
                else ""
            )
            lines.append(f"  seq {f.seq} {what} by {f.actor}{cover}: {f.rule}: {f.message}")
        lines += [f"  {o}" for o in self.overrides]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "events": self.events,
            "policies": self.policies,
            "violations": [f.to_dict() for f in self.findings],
            "overrides": [o.to_dict() for o in self.overrides],
        }


def audit(events: Iterable[E.Event]) -> PolicyAudit:
    """Replay ``events`` (a verified ledger, in seq order) and check each one against the
    policy in force just before it. Events before the first ``policy_set`` break nothing."""
    from .state import State

    state = State()
    report = PolicyAudit()
    overrides: dict[int, Override] = {}
    for ev in events:
        report.events += 1
        if ev.action not in E.ACTION_ROLE:
            continue
        for v in check(state, ev):
            report.findings.append(
                Finding(
                    ev.seq,
                    ev.ts,
                    ev.action,
                    f"{ev.model}:{ev.version}" if ev.model is not None else None,
                    _env(ev),
                    ev.actor,
                    state.policy_seq,
                    v.rule,
                    v.message,
                    v.covered_by,
                )
            )
        cited = ev.payload.get("break_glass")
        for s in cited if type(cited) is list else ():
            g = state.grants.get(s) if type(s) is int else None
            if g is not None and g.matches(ev) and s in overrides:
                overrides[s].used_by = ev.seq
        state.apply(ev)
        if ev.action == E.POLICY_SET:
            report.policies.append(ev.seq)
        elif ev.action == E.BREAK_GLASS:
            overrides[ev.seq] = Override(state.grants[ev.seq])
            report.overrides.append(overrides[ev.seq])
    return report


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
