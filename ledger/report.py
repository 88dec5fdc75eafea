"""The HTML audit report (``ledger report``, ``Ledger.report``): the facts gathered here,
the page written by :mod:`ledger.reporthtml`.

A report covers one version, or every version live in an environment at an instant. Its
facts come from one replay of the events it needs (every key and policy event and the
events of the models reported on, up to the instant, read column-wise as a write's
state is), through the same :class:`~ledger.state.State` and policy rules
(:func:`ledger.policy.check`) the write path and ``verify --policy`` apply; the lineage
from the family's rows in the index (:mod:`ledger.family`), as ``ledger lineage`` reads
it; the checkpoint from the stored ones that verify (:mod:`ledger.checkpoints`); and the
verification from the record ``verify`` keeps on this machine (:mod:`ledger.verified`),
after the reads, as every read is checked. Nothing is written anywhere but ``out``,
which is never inside a ledger folder (:mod:`ledger.outfile`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, cast

from . import events as E
from . import outfile, verified
from . import policy as P
from . import reporthtml as H
from . import reportsvg as S
from .errors import CorruptLedgerError, InputError, NotFoundError, UnverifiedError
from .family import Family, question_rows
from .inputs import check_seq, instant
from .opened import Opened
from .replay import typed_events
from .segments import STATE_COLUMNS
from .state import State
from .state import Version as StateVersion

Ref = tuple[str, int]


def make(
    led: Opened,
    ref: str | None = None,
    *,
    env: str | None = None,
    as_of: int | str | None = None,
    at_seq: int | None = None,
    out: str | os.PathLike[str] | None = None,
    now: int | None = None,
) -> str:
    """The report's HTML: of ``MODEL:VERSION`` ``ref``, or of every version live in
    ``env``, as the ledger stood at ``as_of`` / ``at_seq`` (default: now). With ``out``
    it is also written there, atomically. ``now`` (µs) fixes the generation time."""
    if (ref is None) == (env is None):
        raise InputError(
            "give MODEL:VERSION, or --all --env ENV for every version live in an environment"
            if ref is None
            else "give MODEL:VERSION or --all --env ENV, not both"
        )
    if as_of is not None and at_seq is not None:
        raise InputError("give --as-of or --at-seq, not both")
    if out is not None:
        outfile.check(out)  # (refused before any work)
    target = E.parse_model_ref(ref) if ref is not None else None
    if env is not None:
        E.check_env(env)
    count, head, _ = led.store.tail()
    upto, when = _cutoff(led, count, as_of, at_seq)
    live: list[tuple[str, int, int, int, str]] = []
    if target is not None:
        wanted = [target]
    else:
        live = _live(led, cast(str, env), upto)
        wanted = [(m, n) for m, n, *_ in live]
    versions = _Gather(led, wanted, upto).run()
    if target is not None and target not in versions:
        then = None
        if at_seq is not None:
            then = f"at seq {at_seq}"
        elif as_of is not None:
            then = f"as of {E.format_ts(cast(int, instant(as_of)))}"
        _not_found(led, target, then)
    from .checkpoints import stored

    cps = sorted(stored(led), key=lambda c: c.size)
    report = H.Report(
        origin=led.origin,
        events=count,
        head=head.hex(),
        generated=E.now_micros() if now is None else now,
        tool=f"ledger {_version()}",
        verification=_verification(led),
        versions=[_with_checkpoint(versions[w], cps) for w in wanted],
        as_of=when,
        env=env,
        live=live,
    )
    html = H.page(report)
    if out is not None:
        outfile.write_text(out, html)
    return html


def _version() -> str:
    """This package's version (from its metadata: ``ledger/__init__`` imports the facade)."""
    from importlib import metadata

    try:
        return metadata.version("ledger")
    except metadata.PackageNotFoundError:  # pragma: no cover (run from a bare checkout)
        return "(version unknown)"


def _cutoff(
    led: Opened, count: int, as_of: int | str | None, at_seq: int | None
) -> tuple[int, str | None]:
    """The last seq the report counts, and the instant in words (None: now)."""
    seq, at = check_seq(at_seq), instant(as_of)
    if seq is not None:
        if seq > count - 1:
            raise InputError(f"--at-seq {seq} is beyond the last event (seq {count - 1})")
        return seq, f"just after event seq {seq}"
    if at is not None:
        upto = led.store.last_seq_at(at)
        events = f"events up to seq {upto}" if upto >= 0 else "before the first event"
        return upto, f"{E.format_ts(at)} ({events})"
    return count - 1, None


def _not_found(led: Opened, target: Ref, then: str | None) -> None:
    """NotFoundError for a version the report could not find (now, or ``then``: "as of
    T", "at seq N")."""
    model, version = target
    table = led.store.read_where(["action", "model", "version"], frozenset(), {model})
    regs = [
        r["version"] for r in table.to_pylist() if r["action"] == E.REGISTER and r["model"] == model
    ]
    ref = f"{model}:{version}"
    if version in regs and then is not None:
        raise NotFoundError(f"{ref} was not registered yet {then}", kind="unknown_version")
    if not regs:
        raise NotFoundError(f"model {model} is not registered", kind="unknown_model")
    raise NotFoundError(
        f"{ref} is not registered (latest is {model}:{max(regs)})", kind="unknown_version"
    )


def _live(led: Opened, env: str, upto: int) -> list[tuple[str, int, int, int, str]]:
    """(model, version, since, deploy seq, deployed by) of each version live in ``env``
    just after event ``upto``, by model name."""
    cols = ["seq", "ts", "action", "model", "version", "actor", "payload"]
    table = led.store.read_where(cols, {E.DEPLOY, E.UNDEPLOY}, set(), before=upto + 1)
    last: dict[str, dict[str, Any]] = {}
    for r in table.to_pylist():
        if r["action"] in (E.DEPLOY, E.UNDEPLOY) and _env(r["payload"]) == env:
            last[r["model"]] = r  # (in seq order: the last one decides)
    return [
        (m, r["version"], _micros(r["ts"]), r["seq"], r["actor"])
        for m, r in sorted(last.items())
        if r["action"] == E.DEPLOY
    ]


def _env(payload: str) -> str | None:
    try:
        env = json.loads(payload).get("env")
    except (ValueError, AttributeError):
        raise CorruptLedgerError(
            "a deploy's payload column is not JSON; run ledger verify"
        ) from None
    return env if isinstance(env, str) else None


def _micros(ts: Any) -> int:
    """µs since the epoch of a timestamp read from Arrow (a datetime)."""
    if isinstance(ts, int):
        return ts
    from datetime import UTC, datetime

    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _verification(led: Opened) -> H.Verification:
    """The check every read makes, and the record it was made against; with
    ``require_verified``, UnverifiedError before anything is written."""
    problem = verified.check(led)
    if problem is not None and getattr(led, "require_verified", False):
        raise UnverifiedError(problem)
    rec = verified.summary(led)
    folder = verified.record_dir()
    return H.Verification(
        problem,
        None if rec is None else (str(rec.path), rec.written, rec.events, rec.head, rec.failed),
        None if folder is None else str(folder),
    )


def _with_checkpoint(v: H.Version, cps: list[Any]) -> H.Version:
    """``v`` with the newest stored checkpoint that covers its last event, if any."""
    covering = [c for c in cps if c.size > v.last_seq]
    if covering:
        c = covering[-1]
        name = c.path.name if c.path is not None else ""
        v.checkpoint = H.Checkpoint(c.size, c.root_b64, c.signer, c.signer_key_id, name)
    return v


# --- one replay for every version reported on ----------------------------------------------------


@dataclass
class _Open:
    """A deploy of a reported version while it is live."""

    version: int
    seq: int
    ts: int
    actor: str
    rollback: bool


@dataclass
class _Builder:
    """What is gathered about one version as the events go by."""

    ref: Ref
    events: list[H.Event] = field(default_factory=list)
    deployments: list[H.Deployment] = field(default_factory=list)
    checks: list[H.DeployCheck] = field(default_factory=list)
    grants: list[int] = field(default_factory=list)
    register: E.Event | None = None
    register_hash: str = ""


class _Gather:
    """One pass over the events the reported versions need, building their reports."""

    def __init__(self, led: Opened, wanted: list[Ref], upto: int) -> None:
        self.led, self.upto = led, upto
        self.builders = {w: _Builder(w) for w in wanted}
        self.models = {m for m, _ in wanted}
        self.state = State()
        self.policies: dict[int, H.Policy] = {}
        self.grants: dict[int, P.Grant] = {}
        self.used: dict[int, int] = {}
        #: (model, env) -> the reported version's deploy live there
        self.open: dict[tuple[str, str], _Open] = {}
        #: (model, env) -> the highest version ever deployed there (rollbacks)
        self.highest: dict[tuple[str, str], int] = {}
        self.family: Family | None = None

    def run(self) -> dict[Ref, H.Version]:
        if not self.builders or self.upto < 0:
            return {}
        actions = E.KEY_ACTIONS | E.POLICY_ACTIONS
        table = self.led.store.read_where(
            [*STATE_COLUMNS, "hash"], actions, self.models, before=self.upto + 1
        )
        hashes = [h.hex() for h in table["hash"].to_pylist()]
        for ev, h in zip(typed_events(table, self.led.origin), hashes, strict=True):
            try:
                self._event(ev, h)
            except KeyError:
                raise CorruptLedgerError(
                    f"seq {ev.seq}: the events do not replay; run ledger verify"
                ) from None
        return {ref: self._version(b) for ref, b in self.builders.items() if b.register}

    def _event(self, ev: E.Event, h: str) -> None:
        a, st = ev.action, self.state
        mine = self.builders.get((ev.model, ev.version))  # type: ignore[arg-type]
        if a not in E.ACTION_ROLE:  # a newer format's action: shown, changes nothing here
            if mine is not None:
                mine.events.append(self._row(ev, h, _json(ev.payload)))
            return
        flags: tuple[H.Flag, ...] = ()
        if mine is not None and a in E.MODEL_ACTIONS:
            flags = tuple(H.Flag(v.rule, v.message, v.covered_by) for v in P.check(st, ev))
            if a == E.DEPLOY:
                mine.checks.append(self._check(ev, flags))
        cited = ev.payload.get("break_glass")
        for s in cited if type(cited) is list else ():
            g = st.grants.get(s) if type(s) is int else None
            if g is not None and g.matches(ev):
                self.used[s] = ev.seq
        if a in (E.DEPLOY, E.UNDEPLOY) and ev.model in self.models:
            self._deployment(ev, mine)
        st.apply(ev)
        if a == E.POLICY_SET:
            pol = st.policy
            assert pol is not None  # (apply() just set it)
            desc = pol.description
            self.policies[ev.seq] = H.Policy(ev.seq, ev.ts, ev.actor, desc, tuple(pol.rules))
        elif a == E.BREAK_GLASS:
            g = st.grants[ev.seq]
            self.grants[ev.seq] = g
            for (m, n), b in self.builders.items():
                if g.model == m and g.version in (None, n):
                    b.grants.append(ev.seq)
                    b.events.append(
                        self._row(ev, h, f"{g.target} may bypass {g.rule}: {g.justification}")
                    )
        if mine is not None:
            if a == E.REGISTER:
                mine.register, mine.register_hash = ev, h
            mine.events.append(self._row(ev, h, _details(ev), flags))

    def _row(
        self, ev: E.Event, h: str, details: str | None, flags: tuple[H.Flag, ...] = ()
    ) -> H.Event:
        env = P.event_env(ev)
        return H.Event(ev.seq, ev.ts, ev.action, ev.actor, ev.key_id, h, env, None, details, flags)

    def _check(self, ev: E.Event, flags: tuple[H.Flag, ...]) -> H.DeployCheck:
        """The deploy ``ev`` against the policy in force before it."""
        st = self.state
        v = st.versions[(ev.model, ev.version)]  # type: ignore[index]
        env = P.event_env(ev) or ""
        pol = self.policies.get(st.policy_seq) if st.policy_seq is not None else None
        required = st.policy.approvals_required.get(env, 0) if st.policy is not None else 0
        counted = tally(st.policy, v, env, ev.ts)
        return H.DeployCheck(ev.seq, ev.ts, env, ev.actor, pol, required, tuple(counted), flags)

    def _deployment(self, ev: E.Event, mine: _Builder | None) -> None:
        """Open a reported version's deployment, or end the one this event ends."""
        model, version = cast(str, ev.model), cast(int, ev.version)  # (a model action)
        env = P.event_env(ev) or ""
        now = self.open.pop((model, env), None)
        if now is not None:
            how = (
                f"undeployed by {ev.actor}"
                if ev.action == E.UNDEPLOY
                else f"replaced by {model}:{version} (deployed by {ev.actor})"
            )
            b = self.builders[(model, now.version)]
            b.deployments.append(
                H.Deployment(env, now.seq, now.ts, now.actor, now.rollback, ev.seq, ev.ts, how)
            )
        if ev.action == E.DEPLOY:
            top = self.highest.get((model, env), 0)
            self.highest[(model, env)] = max(top, version)
            if mine is not None:
                self.open[(model, env)] = _Open(version, ev.seq, ev.ts, ev.actor, version < top)

    def _version(self, b: _Builder) -> H.Version:
        reg = b.register
        assert reg is not None
        st = self.state
        v = st.versions[b.ref]
        deployments = list(b.deployments)
        for (m, env), d in self.open.items():
            if (m, d.version) == b.ref:
                deployments.append(H.Deployment(env, d.seq, d.ts, d.actor, d.rollback))
        deployments.sort(key=lambda d: d.seq)
        events = [self._key_note(e) for e in sorted(b.events, key=lambda e: e.seq)]
        overrides = sorted(
            set(b.grants) | {s for s, by in self.used.items() if by in {e.seq for e in events}}
        )
        if self.family is None:  # (one index read for every version on the page)
            self.family = Family(self.led.store.bundles(), self.upto)
        nodes, edges = _lineage(self.family, f"{b.ref[0]}:{b.ref[1]}")
        return H.Version(
            model=v.model,
            version=v.version,
            status=v.status,
            live_in=tuple(sorted(v.live)),
            registrant=reg.actor,
            registered_ts=reg.ts,
            registered_seq=reg.seq,
            register_hash=b.register_hash,
            key_id=reg.key_id,
            payload=reg.payload,
            events=events,
            deployments=deployments,
            checks=b.checks,
            overrides=[self._override(s) for s in overrides if s in self.grants],
            nodes=nodes,
            edges=edges,
            last_seq=max(e.seq for e in events),
        )

    def _key_note(self, e: H.Event) -> H.Event:
        rec = self.state.keys.get(e.key_id)
        if rec is None or rec.revoked_seq is None:
            return e
        from dataclasses import replace

        return replace(e, key_note=f"{rec.actor}'s key, revoked at seq {rec.revoked_seq}")

    def _override(self, s: int) -> H.Override:
        g = self.grants[s]
        return H.Override(g.seq, g.ts, g.actor, g.target, g.rule, g.justification, self.used.get(s))


def tally(policy: P.Policy | None, v: StateVersion, env: str, at: int) -> list[H.Approval]:
    """The approvals of ``v`` for ``env`` before a deploy at ``at``, each with whether
    the approvals rule of ``policy`` counted it and why. The same counting as
    ``ledger.policy``'s approvals rule (held to it by tests/test_report.py)."""
    need = policy.approvals_required.get(env, 0) if policy is not None else 0
    days = policy.approval_max_age_days if policy is not None else None
    cutoff = at - days * P.DAY_US if days else None
    counted: set[str] = set()
    out = []
    for ap in v.approvals.get(env, []):
        counts: bool | None
        if policy is None:
            counts, why = None, "no policy was in force"
        elif not need:
            counts, why = None, f"the policy requires no approvals for {env}"
        elif ap.actor in counted:
            counts, why = False, f"{ap.actor} is counted once"
        elif policy.registrant_may_not_approve and ap.actor == v.registrant:
            counts, why = False, f"{ap.actor} registered {v.ref}: an own approval does not count"
        elif cutoff is not None and ap.ts < cutoff:
            counts, why = False, f"older than {days} days at the deploy"
        else:
            counted.add(ap.actor)
            counts, why = True, "a distinct approver"
        out.append(H.Approval(ap.actor, ap.seq, ap.ts, env, counts, why))
    return out


def _details(ev: E.Event) -> str | None:
    p = ev.payload
    if ev.action == E.REGISTER:
        return None  # (the facts show the registration)
    comment = p.get("comment")
    return comment if isinstance(comment, str) else None


def _json(payload: Any) -> str:
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 300 else text[:299] + "…"


# --- lineage ----------------------------------------------------------------------------------


def _lineage(fam: Family, ref: str) -> tuple[list[S.Node], list[S.Edge]]:
    """The version's ancestors and descendants (and the edges between them), as the
    family's index rows give them, as ``ledger lineage`` reads them."""
    from . import lineage as L
    from .compat import nodes, succ

    rows = {r["seq"]: r for d in ("up", "down") for r in question_rows(fam, ref, d)}
    g = L.build([rows[s] for s in sorted(rows)], graph=L.Adjacency())
    me = L.version_node(g, ref)
    keep = set(L.up(g, me)) | set(L.down(g, me))
    out = []
    for k in keep:
        d = nodes(g)[k]
        if d["kind"] == L.MODEL:
            digest = d.get("artifact_digest", "none recorded")
            label, box, detail = d["label"], "", f"{d['status']}; artifact {digest}"
        elif d["kind"] == L.DATASET:
            label, detail = d["uri"], d.get("digest", "no digest recorded")
            box = label.rstrip("/").rsplit("/", 1)[-1]
        else:
            label, detail = f"{d['repo']}@{d['commit']}", ""
            box = f"{d['repo'].rstrip('/').rsplit('/', 1)[-1]}@{d['commit'][:12]}"
        out.append(S.Node(k, d["kind"], label, detail, k == me, box))
    out.sort(key=lambda n: (n.kind, n.label))
    edges = []
    for u in sorted(keep):
        for w, keyed in succ(g)[u].items():
            if w in keep:
                for d in keyed.values():
                    if d["kind"] in L.LINEAGE_KINDS:
                        word = L.edge_word(d) + (f" as {d['name']}" if d.get("name") else "")
                        edges.append(S.Edge(w, u, word, d["kind"] == L.DERIVED_FROM))
    return out, edges
