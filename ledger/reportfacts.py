"""The facts an audit report states, as :mod:`ledger.report` gathers them and
:mod:`ledger.reporthtml` writes them (pure: plain dataclasses, times in µs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import reportsvg as S


@dataclass(frozen=True)
class Flag:
    """A rule of the policy in force that an event broke, and the grant covering it."""

    rule: str
    message: str
    covered_by: int | None = None


@dataclass(frozen=True)
class Event:
    """One row of a version's timeline."""

    seq: int
    ts: int
    action: str
    actor: str
    key_id: str
    hash: str
    env: str | None = None
    #: e.g. "revoked at seq 19" when the signing key was revoked later
    key_note: str | None = None
    details: str | None = None
    flags: tuple[Flag, ...] = ()


@dataclass(frozen=True)
class Deployment:
    """One deploy of the version and, if it is over, how it ended."""

    env: str
    seq: int
    ts: int
    actor: str
    rollback: bool = False
    ended_seq: int | None = None
    ended_ts: int | None = None
    #: "replaced by M:N (deployed by carol)" or "undeployed by carol"
    ended_how: str | None = None

    @property
    def live(self) -> bool:
        return self.ended_seq is None


@dataclass(frozen=True)
class Policy:
    """The policy in force at an event: the ``policy_set`` that put it there."""

    seq: int
    ts: int
    actor: str
    description: str | None
    rules: tuple[str, ...]


@dataclass(frozen=True)
class Approval:
    """An approval for the deploy's environment, and whether the policy counted it."""

    actor: str
    seq: int
    ts: int
    env: str
    #: None when nothing was counted (no policy in force, or none required for env)
    counts: bool | None
    why: str


@dataclass(frozen=True)
class DeployCheck:
    """One deploy held against the policy in force just before it."""

    seq: int
    ts: int
    env: str
    actor: str
    policy: Policy | None
    required: int
    approvals: tuple[Approval, ...]
    flags: tuple[Flag, ...]


@dataclass(frozen=True)
class Override:
    """A break-glass grant for this version, and the event that used it (None: unused)."""

    seq: int
    ts: int
    actor: str
    target: str
    rule: str
    justification: str
    used_by: int | None


@dataclass(frozen=True)
class Checkpoint:
    """The newest stored checkpoint covering the version's events."""

    size: int
    root: str  # base64, as in the note
    signer: str
    signer_key_id: str | None
    name: str


@dataclass(frozen=True)
class Verification:
    """What the report's reads were checked against: the record of ``verify`` on this
    machine (ledger/verified.py) and what the check of the reads said."""

    #: None: every event read is one verify accepted; else the check's one line
    problem: str | None
    #: the record: (path, written µs, events accepted, head hash, failure) or None
    record: tuple[str, int, int, str | None, str | None] | None
    record_dir: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class Version:
    """Everything the report says about one model version."""

    model: str
    version: int
    status: str
    live_in: tuple[str, ...]
    registrant: str
    registered_ts: int
    registered_seq: int
    register_hash: str
    key_id: str
    payload: Mapping[str, Any]
    events: list[Event] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    checks: list[DeployCheck] = field(default_factory=list)
    overrides: list[Override] = field(default_factory=list)
    nodes: list[S.Node] = field(default_factory=list)
    edges: list[S.Edge] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    #: the seq of the version's last event the report counts
    last_seq: int = 0

    @property
    def ref(self) -> str:
        return f"{self.model}:{self.version}"


@dataclass
class Report:
    """A whole page: one version, or every version live in an environment."""

    origin: str
    events: int  # in the ledger now
    head: str  # hash of its last event
    generated: int  # µs
    tool: str  # "ledger 0.1.0"
    verification: Verification
    versions: list[Version]
    #: the instant the report stands at ("2026-06-24T00:00:00.000000Z (seq 24)"), None: now
    as_of: str | None = None
    #: set for a report of an environment (--all --env)
    env: str | None = None
    #: (model, version, since µs, deploy seq, deployed by) of what is live in env
    live: list[tuple[str, int, int, int, str]] = field(default_factory=list)
