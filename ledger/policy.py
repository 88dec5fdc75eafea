"""Governance rules: what the policy in force decides about an event (pure, no I/O).

Before an event is appended, :func:`enforce` evaluates the rules of the policy in force
(:mod:`ledger.policydoc`, the document) against the :class:`~ledger.state.State` the
write path already rebuilt (the one definition of versions, approvals, deployments and
keys) and refuses the event if a rule is broken, unless an unused ``break_glass`` grant
names this action and that rule; the grant's seq is then written into the event's
payload (``"break_glass": [seq]``), which consumes it. :func:`audit` replays a whole
ledger and reports every event that breaks the policy in force at its time, and every
override. The document's names are re-exported here, so ``ledger.policy`` is the one
import a caller needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast

from . import events as E
from .errors import RuleViolation
from .policydoc import (
    APPROVALS,
    BREAK_GLASS_RULE,
    CRITERIA,
    DAY_US,
    ENVIRONMENTS,
    METADATA,
    NAMING,
    POLICY_FORMAT,
    PROMOTION,
    RULES,
    SEPARATION,
    SIGNERS,
    Criterion,
    Grant,
    Policy,
    PolicyRecord,
    SignerRule,
    Threshold,
    env_phrase,
    event_env,
    grant_from_event,
    grant_payload,
    parse_policy,
    policy_from_payload,
    to_toml,
)
from .policyterms import closest
from .state import State

__all__ = [
    "APPROVALS", "BREAK_GLASS_RULE", "CRITERIA", "DAY_US", "ENVIRONMENTS", "METADATA",
    "NAMING", "POLICY_FORMAT", "PROMOTION", "RULES", "SEPARATION", "SIGNERS", "Criterion",
    "Finding", "Grant", "Override", "Policy", "PolicyAudit", "PolicyRecord", "SignerRule",
    "Threshold", "Violation", "audit", "check", "enforce", "evaluate", "grant_from_event",
    "grant_payload", "parse_policy", "policy_from_payload", "to_toml",
]  # fmt: skip

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
    v = state.versions.get((ev.model, ev.version)) if a in E.MODEL_SCOPED else None  # type: ignore[arg-type]
    if a in (E.APPROVE, E.DEPLOY) and policy.environments:
        out += _environments(policy, ev)
    if a == E.REGISTER:
        out += _register_metadata(policy, ev)
        out += _naming(policy, ev)
    elif a == E.APPROVE and v is not None:
        if policy.registrant_may_not_approve and ev.actor == v.registrant:
            out.append(
                Violation(
                    SEPARATION,
                    f"{ev.actor} registered {v.ref} and may not approve it;"
                    " a different approver must approve it",
                )
            )
    elif a == E.ALIAS_SET and v is not None:
        # An alias is governed as an environment of its name: the approvals for it, and
        # who approved the version for it may not also point it there.
        alias = cast(str, event_env(ev))
        out += _approvals(policy, v, alias, ev, f"pointing alias {alias} at {v.ref}")
        out += _approver_acts(policy, v, alias, ev, f"point alias {alias} at it")
    elif a == E.DEPLOY and v is not None:
        env = cast(str, event_env(ev))  # (a deploy names its environment: step() checked)
        out += _approvals(policy, v, env, ev, f"deploying {v.ref} to {env}")
        out += _approver_acts(policy, v, env, ev, "deploy it there")
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
        out += _criteria(state, policy, v, env)
    out += _signers(state, policy, ev)
    return out


def _approver_acts(policy: Policy, v: Any, env: str, ev: E.Event, act: str) -> list[Violation]:
    """approver_may_not_deploy: who approved ``v`` for ``env`` may not also ``act``."""
    if not policy.approver_may_not_deploy:
        return []
    mine = [ap for ap in v.approvals.get(env, []) if ap.actor == ev.actor]
    if not mine:
        return []
    return [
        Violation(
            SEPARATION,
            f"{ev.actor} approved {v.ref} for {env} (seq {mine[0].seq}) and may not also {act};"
            f" a deployer who did not approve it must {act.split(' it')[0]} it",
        )
    ]


def _approvals(policy: Policy, v: Any, env: str, ev: E.Event, doing: str) -> list[Violation]:
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
            f"{doing} needs approvals from {need} distinct approvers for"
            f" {env}, it has {has}{note}; get {more} more approval{'s' if more > 1 else ''}"
            f" for {env}",
        )
    ]


def _environments(policy: Policy, ev: E.Event) -> list[Violation]:
    # (an undeploy is not checked: it names an environment the version is live in, and
    # refusing it would trap a version deployed there before the policy named the list)
    env = event_env(ev)
    allowed = policy.environments
    if env is None or env in allowed:
        return []
    hint = closest(env, allowed)
    did = f"; did you mean {hint!r}?" if hint else ""
    return [
        Violation(
            ENVIRONMENTS,
            f"{ev.action}{env_phrase(ev.action, env)}: {env!r} is not one of the environments"
            f" the policy names ({', '.join(allowed)}){did}",
        )
    ]


def _naming(policy: Policy, ev: E.Event) -> list[Violation]:
    pat = policy.naming_model
    if pat is None or ev.model is None or pat.matches(ev.model):
        return []
    return [
        Violation(
            NAMING,
            f"the model name {ev.model!r} does not match the policy's naming pattern {pat}"
            " (naming.model); register it under a name that does",
        )
    ]


def _criteria(state: State, policy: Policy, v: Any, env: str) -> list[Violation]:
    out = []
    metrics = v.metrics or {}
    for c in policy.criteria.get(env, ()):
        got = metrics.get(c.metric)
        base_v, where = None, ""
        if c.baseline == "previous":
            base_v = state.versions.get((v.model, v.version - 1))
            where = "the previous version"
        elif c.baseline is not None:
            there = c.live_env or env
            n = state.live.get((v.model, there))
            base_v = state.versions.get((v.model, n)) if n is not None else None
            where = f"live in {there}"
        base = (base_v.metrics or {}).get(c.metric) if base_v is not None else None
        if c.holds(got, base):
            continue
        bound = c.bound(base)
        why = ""
        if base_v is not None and bound is not None:  # (else: an absolute bound)
            why = (
                f", i.e. {c.metric} {c.op} {bound:.12g}"
                f" ({base_v.ref}, {where}, has {c.metric}={base})"
            )
        has = "none" if got is None else f"{c.metric}={got}"
        out.append(
            Violation(
                CRITERIA,
                f"deploying {v.ref} to {env} needs {c}{why}; it has {has}",
            )
        )
    return out


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
    tags = p.get("tags")
    tags = tags if isinstance(tags, dict) else {}
    missing = [t for t in policy.tags if t not in tags or tags[t] in ("", None)]
    if missing:
        s = "s" if len(missing) > 1 else ""
        miss(f"the tag{s} {', '.join(missing)} (--tag NAME=VALUE)")
    for name, allowed in policy.tag_values.items():
        if name in tags and tags[name] not in allowed:
            miss(
                f"the tag {name} to be one of {', '.join(map(repr, allowed))}, it is {tags[name]!r}"
            )
    for name, pat in policy.tag_patterns.items():
        value = tags.get(name)
        if name in tags and not (isinstance(value, str) and pat.matches(value)):
            miss(f"the tag {name} to match {pat}, it is {value!r}")
    metrics = p.get("metrics")
    metrics = metrics if isinstance(metrics, dict) else {}
    for t in policy.metrics:
        got = metrics.get(t.metric)
        if not t.holds(got):
            has = "none" if got is None else f"{t.metric}={got}"
            miss(f"metric {t} (--metric {t.metric}=VALUE), it has {has}")
    return out


def _signers(state: State, policy: Policy, ev: E.Event) -> list[Violation]:
    out = []
    what = f"{ev.action}{env_phrase(ev.action, event_env(ev))}"
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
        n, covered = len(self.open), len(self.findings)
        if not self.ok:
            head = (
                f"FAIL: policy: {n} violation{'s' if n > 1 else ''} not covered by a"
                f" break-glass override in {self.events} events ({pol})"
            )
        elif covered:  # (never "no violations" above a list of them)
            head = (
                f"OK: policy: {covered} violation{'s' if covered > 1 else ''} in {self.events}"
                f" events, {'each ' if covered > 1 else ''}overridden by a break-glass grant"
                f" ({pol})"
            )
        else:
            head = f"OK: policy: no violations in {self.events} events ({pol})"
        lines = [head]
        for f in self.findings:
            what = f"{f.action} {f.ref}" if f.ref else f.action
            what += env_phrase(f.action, f.env)
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
                    event_env(ev),
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
