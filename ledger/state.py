"""The ledger's rules as a pure state machine: key registry and model lifecycle.

This is the single definition of what an event may do. The write path replays the
relevant events, calls ``State.step`` on the proposed event and appends only if it
passes; ``verify`` replays every event through the same ``step``. The DuckDB views in
``ledger/queries/`` rebuild the same state, and a property test checks they agree.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from . import events as E
from .errors import InputError, KeyProblem, NotFoundError, RuleViolation
from .keys import key_id as derive_key_id
from .payloads import KIND as BAD_PAYLOAD
from .payloads import check_event

if TYPE_CHECKING:  # ledger.policydoc is imported when a policy event is met (start-up time)
    from . import policydoc as P


@dataclass(slots=True)
class KeyRecord:
    key_id: str
    actor: str
    public_key: bytes
    roles: frozenset[str]
    added_seq: int
    added_ts: int
    revoked_seq: int | None = None
    revoked_ts: int | None = None

    @property
    def active(self) -> bool:
        return self.revoked_seq is None


@dataclass(slots=True)
class Approval:
    actor: str
    seq: int
    ts: int


@dataclass(slots=True)
class Version:
    model: str
    version: int
    registrant: str
    registered_seq: int
    registered_ts: int
    parents: list[tuple[str, int, str]]
    rejected_seq: int | None = None
    deprecated_seq: int | None = None
    approvals: dict[str, list[Approval]] = field(default_factory=dict)
    #: environment -> seq of the deploy event that made this version live there
    live: dict[str, int] = field(default_factory=dict)
    #: environment -> seq of this version's first deploy there (promotion order)
    deployed_to: dict[str, int] = field(default_factory=dict)
    #: the version's tags: its register's, then tag_set / tag_delete (replaced, never
    #: changed in place: it may be the register payload's own dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: the register payload's metrics (policy criteria compare versions by them)
    metrics: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"

    @property
    def status(self) -> str:
        if self.deprecated_seq is not None:
            return "deprecated"
        if self.rejected_seq is not None:
            return "rejected"
        if self.approvals:
            return "approved"
        return "registered"


def _need(payload: dict[str, Any], name: str, typ: type, what: str) -> Any:
    v = payload.get(name)
    if type(v) is not typ:
        raise InputError(f"{what} payload needs {name!r} as {typ.__name__}")
    return v


class State:
    """Keys and model versions as they stand after the events applied so far."""

    def __init__(self) -> None:
        self.keys: dict[str, KeyRecord] = {}
        self.versions: dict[tuple[str, int], Version] = {}
        self.latest: dict[str, int] = {}
        #: (model, environment) -> version live there now
        self.live: dict[tuple[str, str], int] = {}
        #: (model, alias) -> the version the alias names now
        self.aliases: dict[tuple[str, str], int] = {}
        #: model -> its model-level tags (tag_set / tag_delete without a version)
        self.model_tags: dict[str, dict[str, str]] = {}
        #: (model, version or None for the model) -> its description (register, describe)
        self.descriptions: dict[tuple[str, int | None], str] = {}
        self.next_seq = 0
        self.last_ts = 0
        self.unknown_actions = 0
        #: the governance policy in force (ledger/policydoc.py) and the seq that set it
        self.policy: P.Policy | None = None
        self.policy_seq: int | None = None
        #: unused break-glass grants by seq; an event citing one in its payload uses it
        self.grants: dict[int, P.Grant] = {}
        #: model and environment names that passed their pattern check (a pure function
        #: of the name): verify replays a million events over a few thousand names
        self._names_ok: set[str] = set()
        self._envs_ok: set[str] = set()

    # --- lookups --------------------------------------------------------------------
    def version(self, model: str, version: int) -> Version:
        v = self.versions.get((model, version))
        if v is None:
            if model not in self.latest:
                raise NotFoundError(f"model {model} is not registered", kind="unknown_model")
            raise NotFoundError(
                f"{model}:{version} is not registered (latest is {model}:{self.latest[model]})",
                kind="unknown_version",
            )
        return v

    def key(self, kid: str) -> KeyRecord:
        rec = self.keys.get(kid)
        if rec is None:
            raise KeyProblem(f"key {kid} is not registered in this ledger", kind="unknown_key")
        return rec

    def admin_keys(self) -> list[KeyRecord]:
        return [k for k in self.keys.values() if k.active and E.ADMIN in k.roles]

    # --- the rules ------------------------------------------------------------------
    def authorize(self, ev: E.Event) -> KeyRecord | None:
        """Check that the signing key may sign ``ev``; returns its record."""
        if ev.action == E.GENESIS:
            return None
        rec = self.keys.get(ev.key_id)
        if rec is None:
            rec = self.key(ev.key_id)  # raises unknown_key
        if rec.revoked_seq is not None:
            raise KeyProblem(
                f"key {rec.key_id} ({rec.actor}) was revoked at seq {rec.revoked_seq}",
                kind="revoked_key",
            )
        if ev.actor != rec.actor:
            raise KeyProblem(
                f"event names actor {ev.actor!r} but key {rec.key_id} belongs to {rec.actor!r}",
                kind="actor_mismatch",
            )
        role = E.ACTION_ROLE.get(ev.action)
        if role is not None and role not in rec.roles:
            raise KeyProblem(
                f"key {rec.key_id} ({rec.actor}) lacks the {role!r} role needed to {ev.action}",
                kind="missing_role",
            )
        return rec

    def pass_unknown(self, ev: E.Event) -> None:
        """Step over an event of a newer format's action (FORMAT.md §7.3): the chain, key
        and time checks hold for it, the role and the rules are the newer format's."""
        if ev.ts < self.last_ts:
            raise RuleViolation(
                f"timestamp {E.format_ts(ev.ts)} is earlier than the previous event's"
                f" {E.format_ts(self.last_ts)}",
                kind="timestamp_backwards",
            )
        self.unknown_actions += 1
        self.next_seq, self.last_ts = ev.seq + 1, ev.ts

    def check(self, ev: E.Event) -> None:
        """Raise if the lifecycle rules forbid ``ev`` in the current state."""
        a = ev.action
        if ev.seq != self.next_seq:
            raise RuleViolation(f"event seq {ev.seq} is not the next seq {self.next_seq}")
        if ev.ts < self.last_ts:
            raise RuleViolation(
                f"timestamp {E.format_ts(ev.ts)} is earlier than the previous event's"
                f" {E.format_ts(self.last_ts)}",
                kind="timestamp_backwards",
            )
        if (a == E.GENESIS) != (ev.seq == 0):
            raise RuleViolation("genesis must be the first event, and only the first")
        check_event(ev)  # the payload's members (FORMAT.md §4): bad_payload
        if a in E.MODEL_ACTIONS:
            if ev.model is None or ev.version is None:
                raise InputError(f"{a} event needs a model and a version")
            if type(ev.model) is not str or ev.model not in self._names_ok:
                self._names_ok.add(E.check_model_name(ev.model))
            if a in E.ENV_ACTIONS:
                env = ev.payload.get("env")
                if type(env) is not str or env not in self._envs_ok:
                    self._envs_ok.add(E.check_env(_need(ev.payload, "env", str, a)))
        if a in E.ALIAS_ACTIONS or a in E.META_ACTIONS:
            self._check_metadata(ev)
        elif a == E.MODEL_CREATE:
            model = cast(str, ev.model)
            if model in self.latest:
                n = self.latest[model]
                raise RuleViolation(
                    f"model {model} already exists"
                    + (f" (with {n} version{'s' if n != 1 else ''})" if n else "")
                )
        elif a == E.GENESIS or a == E.KEY_ADD:
            self._check_new_key(ev)
        elif a == E.KEY_REVOKE:
            kid = _need(ev.payload, "key_id", str, a)
            rec = self.keys.get(kid)
            if rec is None:
                raise NotFoundError(f"key {kid} is not registered", kind="unknown_key")
            if not rec.active:
                raise RuleViolation(
                    f"key {kid} ({rec.actor}) is already revoked at seq {rec.revoked_seq}"
                )
            if E.ADMIN in rec.roles and len(self.admin_keys()) == 1:
                raise RuleViolation(f"cannot revoke key {kid}: it is the last admin key")
        elif a == E.POLICY_SET:
            from .policydoc import policy_from_payload

            try:
                policy_from_payload(ev.payload)
            except InputError as exc:
                raise InputError(str(exc), kind=BAD_PAYLOAD) from None
        elif a == E.BREAK_GLASS:
            from .policydoc import grant_from_event

            try:
                grant_from_event(ev)
            except InputError as exc:
                raise InputError(str(exc), kind=BAD_PAYLOAD) from None
        elif a == E.REGISTER:
            expected = self.latest.get(ev.model, 0) + 1  # type: ignore[arg-type]
            if ev.version != expected:
                raise RuleViolation(
                    f"{ev.model}:{ev.version} registered out of order (next version is {expected})"
                )
            for pm, pv, _ in _parents(ev.payload):
                if (pm, pv) == (ev.model, ev.version):
                    raise RuleViolation(
                        f"{pm}:{pv} names itself as a parent; a version cannot be its own parent",
                        kind="self_parent",
                    )
                if (pm, pv) not in self.versions:
                    raise NotFoundError(
                        f"parent {pm}:{pv} is not registered; parents must be registered first",
                        kind="unknown_parent",
                    )
        elif a in E.MODEL_ACTIONS:
            v = self.versions.get((ev.model, ev.version))  # type: ignore[arg-type]
            if v is None:
                v = self.version(ev.model, ev.version)  # type: ignore[arg-type]  # raises
            env = ev.payload.get("env")
            if a in (E.APPROVE, E.DEPLOY):
                verb = "approve" if a == E.APPROVE else "deploy"
                if v.rejected_seq is not None:
                    raise RuleViolation(
                        f"cannot {verb} {v.ref}: it was rejected at seq {v.rejected_seq}"
                    )
                if v.deprecated_seq is not None:
                    raise RuleViolation(
                        f"cannot {verb} {v.ref}: it was deprecated at seq {v.deprecated_seq}"
                    )
                if a == E.DEPLOY and env in v.live:
                    raise RuleViolation(f"{v.ref} is already deployed to {env}")
            elif a == E.UNDEPLOY:
                if env not in v.live:
                    raise RuleViolation(f"{v.ref} is not deployed to {env}")
            elif a == E.REJECT:
                if v.rejected_seq is not None:
                    raise RuleViolation(f"{v.ref} is already rejected (seq {v.rejected_seq})")
                if v.deprecated_seq is not None:
                    raise RuleViolation(
                        f"cannot reject {v.ref}: it was deprecated at seq {v.deprecated_seq}"
                    )
            elif a == E.DEPRECATE and v.deprecated_seq is not None:
                raise RuleViolation(f"{v.ref} is already deprecated (seq {v.deprecated_seq})")

    def _check_metadata(self, ev: E.Event) -> None:
        """The rules of aliases, tags and descriptions (check_event checked the shapes)."""
        a, p, model = ev.action, ev.payload, cast(str, ev.model)
        if ev.version is None:  # a model-level tag or description
            if model not in self.latest:
                raise NotFoundError(f"model {model} is not registered", kind="unknown_model")
            tags = self.model_tags.get(model, {})
            where = model
        else:
            v = self.version(model, ev.version)  # raises unknown_model / unknown_version
            tags, where = v.tags, v.ref
            if a == E.ALIAS_SET:
                alias = p["alias"]
                for fate, seq in (("rejected", v.rejected_seq), ("deprecated", v.deprecated_seq)):
                    if seq is not None:
                        raise RuleViolation(
                            f"cannot point alias {alias} at {v.ref}: it was {fate} at seq {seq}"
                        )
                if self.aliases.get((model, alias)) == v.version:
                    raise RuleViolation(f"alias {alias} already points at {v.ref}")
            elif a == E.ALIAS_DELETE:
                alias = p["alias"]
                at = self.aliases.get((model, alias))
                if at is None:
                    raise NotFoundError(f"model {model} has no alias {alias}", kind="unknown_alias")
                if at != v.version:
                    raise RuleViolation(f"alias {alias} points at {model}:{at}, not {v.ref}")
        if a == E.TAG_DELETE:
            for k in p["keys"]:
                if k not in tags:
                    raise RuleViolation(f"tag {k} is not set on {where}")

    def _check_new_key(self, ev: E.Event) -> None:
        p = ev.payload
        kid = _need(p, "key_id", str, ev.action)
        actor = E.check_actor(_need(p, "actor", str, ev.action))
        roles = _need(p, "roles", list, ev.action)
        if not roles or any(type(r) is not str for r in roles):
            raise InputError(f"{ev.action} payload needs 'roles' as a non-empty list of strings")
        pub = _public_key(p)
        if derive_key_id(pub) != kid:
            raise InputError(
                f"{ev.action} payload: key_id {kid} does not match its public key", kind=BAD_PAYLOAD
            )
        if kid in self.keys:
            raise RuleViolation(f"key {kid} is already registered (actor {self.keys[kid].actor})")
        if ev.action == E.GENESIS and (kid != ev.key_id or actor != ev.actor):
            raise RuleViolation("genesis must be signed by the key it registers")
        if ev.action == E.GENESIS and E.ADMIN not in roles:
            raise RuleViolation("the genesis key must hold the admin role")

    def savepoint(self, models: Iterable[str]) -> Callable[[], None]:
        """Remember what events of ``models`` (and key, policy and grant events) can
        change; the returned function puts it back. A writer that groups several
        callers' batches into one commit undoes a refused batch with it, at the cost of
        those models' versions, not of the whole state."""
        scalars = (self.next_seq, self.last_ts, self.unknown_actions, self.policy, self.policy_seq)
        grants = dict(self.grants)
        keys = dict(self.keys)
        revoked = [(r, r.revoked_seq, r.revoked_ts) for r in keys.values()]
        saved: dict[str, tuple[int | None, list[tuple[Version, tuple[Any, ...]]]]] = {}
        for m in set(models):
            latest = self.latest.get(m)
            vs = [self.versions[(m, n)] for n in range(1, (latest or 0) + 1)]
            saved[m] = (latest, [(v, _version_fields(v)) for v in vs])
        aliases = {k: v for k, v in self.aliases.items() if k[0] in saved}
        model_tags = {m: self.model_tags[m] for m in saved if m in self.model_tags}
        descriptions = {k: v for k, v in self.descriptions.items() if k[0] in saved}

        def restore() -> None:
            (
                self.next_seq,
                self.last_ts,
                self.unknown_actions,
                self.policy,
                self.policy_seq,
            ) = scalars
            self.grants = dict(grants)
            self.keys = dict(keys)
            for rec, seq, ts in revoked:
                rec.revoked_seq, rec.revoked_ts = seq, ts
            for m, (latest, vs) in saved.items():
                for n in range((latest or 0) + 1, self.latest.get(m, 0) + 1):
                    v = self.versions.pop((m, n))
                    for env in v.live:
                        self.live.pop((m, env), None)
                if latest is None:
                    self.latest.pop(m, None)
                else:
                    self.latest[m] = latest
                for v, fields in vs:
                    for env in v.live:
                        self.live.pop((m, env), None)
                    (v.rejected_seq, v.deprecated_seq, approvals, live, deployed, v.tags) = fields
                    v.approvals = {env: list(a) for env, a in approvals.items()}
                    v.live, v.deployed_to = dict(live), dict(deployed)
                for v, _ in vs:
                    for env in v.live:
                        self.live[(m, env)] = v.version
                for k in [k for k in self.aliases if k[0] == m]:
                    del self.aliases[k]
                self.model_tags.pop(m, None)
                for dk in [dk for dk in self.descriptions if dk[0] == m]:
                    del self.descriptions[dk]
            self.aliases.update(aliases)
            self.model_tags.update(model_tags)
            self.descriptions.update(descriptions)

        return restore

    def step(self, ev: E.Event) -> KeyRecord | None:
        """Authorize, check and apply ``ev``; the state is unchanged if it raises."""
        if ev.action not in E.ACTION_ROLE:
            rec = self.authorize(ev)
            self.pass_unknown(ev)
            return rec
        rec = self.authorize(ev)
        self.check(ev)
        self.apply(ev)
        return rec

    def step_plain(
        self,
        seq: int,
        ts: int,
        action: str,
        actor: str,
        key_id: str,
        public_key: bytes | None,
        model: str,
        version: int,
        env: str,
    ) -> bool:
        """:meth:`step` for verify's commonest event, unpacked: an approve, deploy or
        undeploy whose payload is exactly ``{"env": env}``, signed with ``public_key``.

        Applies it and returns True when every rule plainly holds; returns False, the
        state untouched, when anything would need the full rules (which then name the
        problem). It accepts only what :meth:`step` accepts and changes the state exactly
        as :meth:`step` would (tests replay ledgers both ways), at about a third of the
        cost: no event object, no method calls, no error paths.
        """
        rec = self.keys.get(key_id)
        v = self.versions.get((model, version))
        if (
            rec is None
            or v is None
            or rec.revoked_seq is not None
            or rec.actor != actor
            or rec.public_key != public_key
            or E.ACTION_ROLE.get(action) not in rec.roles
            or seq != self.next_seq
            or seq == 0
            or ts < self.last_ts
            or model not in self._names_ok
            or env not in self._envs_ok
        ):
            return False
        if action == E.APPROVE:
            if v.rejected_seq is not None or v.deprecated_seq is not None:
                return False
            v.approvals.setdefault(env, []).append(Approval(actor, seq, ts))
        elif action == E.DEPLOY:
            if v.rejected_seq is not None or v.deprecated_seq is not None or env in v.live:
                return False
            prev = self.live.get((v.model, env))
            if prev is not None:
                self.versions[(v.model, prev)].live.pop(env, None)
            v.live[env] = seq
            v.deployed_to.setdefault(env, seq)
            self.live[(v.model, env)] = v.version
        elif action == E.UNDEPLOY:
            if env not in v.live:
                return False
            del v.live[env]
            del self.live[(v.model, env)]
        else:
            return False
        self.next_seq = seq + 1
        self.last_ts = ts
        return True

    def apply(self, ev: E.Event) -> None:
        """Update the state with an event already checked."""
        a, p = ev.action, ev.payload
        self.next_seq = ev.seq + 1
        self.last_ts = ev.ts
        if self.grants and type(p.get("break_glass")) is list:
            for s in p["break_glass"]:  # the event used these grants: they are spent
                if type(s) is int:
                    self.grants.pop(s, None)
        if a == E.GENESIS or a == E.KEY_ADD:
            self.keys[p["key_id"]] = KeyRecord(
                p["key_id"], p["actor"], _public_key(p), frozenset(p["roles"]), ev.seq, ev.ts
            )
        elif a == E.KEY_REVOKE:
            rec = self.keys[p["key_id"]]
            rec.revoked_seq, rec.revoked_ts = ev.seq, ev.ts
        elif a == E.REGISTER:
            # (step() checked that a model event names a model and a version)
            m, n = cast(str, ev.model), cast(int, ev.version)
            tags = p.get("tags")
            v = Version(
                m, n, ev.actor, ev.seq, ev.ts, _parents(p), tags=tags if type(tags) is dict else {}
            )
            if type(p.get("metrics")) is dict and p["metrics"]:
                v.metrics = p["metrics"]
            self.versions[(m, n)] = v
            self.latest[m] = n
            if type(p.get("description")) is str:
                self.descriptions[(m, n)] = p["description"]
        elif a == E.MODEL_CREATE:
            self.latest[cast(str, ev.model)] = 0
        elif a == E.DESCRIBE:
            self.descriptions[(cast(str, ev.model), ev.version)] = p["description"]
        elif a in E.ALIAS_ACTIONS:
            key = (cast(str, ev.model), p["alias"])
            if a == E.ALIAS_SET:
                self.aliases[key] = cast(int, ev.version)
            else:
                del self.aliases[key]
        elif a == E.TAG_SET or a == E.TAG_DELETE:
            m = cast(str, ev.model)
            target = self.versions[(m, ev.version)] if ev.version is not None else None
            old = target.tags if target is not None else self.model_tags.get(m, {})
            if a == E.TAG_SET:
                new = {**old, **p["tags"]}
            else:
                new = {k: v for k, v in old.items() if k not in p["keys"]}
            if target is not None:
                target.tags = new
            else:
                self.model_tags[m] = new
        elif a in E.MODEL_ACTIONS:
            v = self.versions[(ev.model, ev.version)]  # type: ignore[index]
            env: str = p.get("env")  # type: ignore[assignment]  # (step() checked it)
            if a == E.APPROVE:
                v.approvals.setdefault(env, []).append(Approval(ev.actor, ev.seq, ev.ts))
            elif a == E.DEPLOY:
                prev = self.live.get((v.model, env))
                if prev is not None:
                    self.versions[(v.model, prev)].live.pop(env, None)
                v.live[env] = ev.seq
                v.deployed_to.setdefault(env, ev.seq)
                self.live[(v.model, env)] = v.version
            elif a == E.UNDEPLOY:
                del v.live[env]
                del self.live[(v.model, env)]
            elif a == E.REJECT:
                v.rejected_seq = ev.seq
            elif a == E.DEPRECATE:
                v.deprecated_seq = ev.seq
        elif a == E.POLICY_SET:
            from .policydoc import policy_from_payload

            self.policy, self.policy_seq = policy_from_payload(p), ev.seq
        elif a == E.BREAK_GLASS:
            from .policydoc import grant_from_event

            self.grants[ev.seq] = grant_from_event(ev)


def _version_fields(v: Version) -> tuple[Any, ...]:
    return (
        v.rejected_seq,
        v.deprecated_seq,
        {env: list(a) for env, a in v.approvals.items()},
        dict(v.live),
        dict(v.deployed_to),
        v.tags,  # (replaced, never changed in place: the reference is the snapshot)
    )


def _public_key(payload: dict[str, Any]) -> bytes:
    try:
        raw = base64.b64decode(payload.get("public_key", ""), validate=True)
    except (binascii.Error, ValueError, TypeError):
        raw = b""
    if len(raw) != 32:
        raise InputError("key payload needs 'public_key' as base64 of 32 bytes", kind=BAD_PAYLOAD)
    return raw


def _parents(payload: dict[str, Any]) -> list[tuple[str, int, str]]:
    out = []
    parents = payload.get("parents", [])
    if type(parents) is not list:
        raise InputError("register payload: 'parents' must be a list")
    for p in parents:
        if (
            type(p) is not dict
            or type(p.get("model")) is not str
            or type(p.get("version")) is not int
            or type(p.get("relation")) is not str
        ):
            raise InputError("register payload: each parent needs model, version and relation")
        out.append((p["model"], p["version"], p["relation"]))
    return out
