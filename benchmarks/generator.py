"""A seeded generator of synthetic but realistic ledgers, built through the public API.

``build(path, events=10_000, seed=0)`` creates a ledger in ``path`` that looks like a
year of a real ML organisation's registry, and returns the ledger, the signing keys and
a few facts the benchmarks need (a deep model for lineage, a time for as-of queries...).
The same arguments always give the same events (keys, payloads, timestamps; only the
random ``origin``-free parts — there are none — could differ), so figures are comparable
between runs.

The world it simulates
----------------------
* **People and keys** (roles in brackets): ``admin`` [admin]; eight data scientists
  ``alice`` … ``mallory`` [registrar], each owning the models of one or two teams; six
  reviewers ``bob``, ``dave``, ``olivia``, ``peggy``, ``trent``, ``victor`` [approver];
  three platform engineers ``carol``, ``sybil``, ``walter`` [deployer]. All keys are
  derived from the seed. Part-way through, ``dave`` leaves: his key is revoked and
  ``rupert`` [approver] joins; later ``carol`` rotates her key (new key added, old key
  revoked). ``keys`` holds every current key by name; ``revoked`` the two revoked ones
  (``dave`` and ``carol.old``).
* **Models** (``models``, default ``events // 100``) named ``<team>.<task>.<arch>-NNNNN``
  (e.g. ``fraud.detector.xgb-00042``), created steadily through the year. New versions
  go preferentially to older, popular models. About a third of new models derive from
  another model's version (``finetune``, ``distill``, ``quantize``, ``adapter``); later
  versions usually ``retrain`` from their previous version and sometimes ``merge`` in a
  version of another model, so lineage forms real families and long chains.
* **Register payloads**: an artifact digest and URI, two or three datasets of the
  team's current weekly snapshot (``NAME``, ``URI``, ``sha256`` digest — shared by all of
  that week's versions of the team), the code repository and a 40-hex commit, two or three
  metrics, hyper-parameters and tags (``team``, ``risk_tier``).
* **Lifecycle, one week at a time**, in phases (so that each signer's work forms a
  batch): registrations; staging review (8% rejected, else two approvals for ``staging``,
  one in five times a single one); deploys to ``staging``; 90% of the previous week's
  staged versions (the latest per model) go on: one approval for ``canary``, two for
  ``production`` and, 70% of the time, one for ``production-eu``, then deploys to each and
  an undeploy from ``canary``; about 6% of production deploys are rolled back (the
  previous production version is deployed again, the bad one is rejected and undeployed
  from wherever it is still live); old versions that are live nowhere are deprecated by
  their owner. The result averages about ten events per version.
* **Timestamps** are historical, as an importer would carry them (``Draft.ts``): the
  ledger starts on 2025-01-06 and each week's events are spread over that week.

Scales: ``small`` = 10k events (100 models, ~1k versions); ``full`` = 1M events (10k
models, ~100k versions). The ledger is compacted at the end (``compact=False`` to skip).

Run ``python -m benchmarks.generator PATH --events 10000 --seed 0`` to build one by hand.
"""

from __future__ import annotations

import base64
import hashlib
import random
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ledger import Ledger, SigningKey
from ledger import events as E
from ledger.keys import key_id

#: Arguments of ``build`` for each named scale.
SCALES: dict[str, dict[str, int]] = {
    "tiny": {"events": 400, "models": 8},
    "small": {"events": 10_000, "models": 100},
    "full": {"events": 1_000_000, "models": 10_000},
}

START = 1_736_121_600_000_000  # 2025-01-06T00:00:00Z, a Monday, in µs
WEEK = 7 * 86_400 * 1_000_000
ORIGIN = "bench.example/registry"

ADMIN = "admin"
REGISTRARS = ("alice", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory")
APPROVERS = ("bob", "dave", "olivia", "peggy", "trent", "victor")
DEPLOYERS = ("carol", "sybil", "walter")
LEAVER, JOINER = "dave", "rupert"  # dave's key is revoked; rupert joins as approver
ROTATOR = "carol"  # carol rotates her key: the old one ("carol.old") is revoked
#: What the simulated lifecycle averages once it runs steadily; sets versions per week.
EVENTS_PER_VERSION = 8.5
ENVS = ("staging", "canary", "production", "production-eu")

TEAMS = {
    "fraud": (("detector", "scorer"), ("xgb", "gbm", "tabnet")),
    "credit": (("risk", "limit"), ("gbm", "logreg", "xgb")),
    "churn": (("predictor",), ("gbm", "mlp")),
    "search": (("ranker", "retriever"), ("bert", "colbert", "lambdamart")),
    "ads": (("ctr", "bidder"), ("dcn", "deepfm", "gbm")),
    "vision": (("classifier", "detector"), ("vit", "resnet", "yolo")),
    "speech": (("asr", "tts"), ("conformer", "whisper")),
    "nlp": (("sentiment", "ner", "summarizer"), ("bert", "t5", "llama")),
    "recsys": (("candidates", "reranker"), ("two-tower", "dlrm")),
    "pricing": (("elasticity", "forecast"), ("gbm", "prophet")),
    "support": (("router", "intent"), ("distilbert", "llama")),
    "logistics": (("eta", "demand"), ("gbm", "tft")),
}
DATASETS = {  # dataset names each team trains on; train and holdout are always there
    "fraud": ("train", "holdout", "chargebacks"),
    "credit": ("train", "holdout", "bureau"),
    "search": ("train", "holdout", "clicks"),
    "ads": ("train", "holdout", "impressions"),
}
DERIVE = ("finetune", "distill", "quantize", "adapter")
METRICS = {
    "fraud": ("auc", "precision", "recall"),
    "credit": ("auc", "gini"),
    "search": ("ndcg", "mrr"),
    "ads": ("auc", "logloss"),
    "vision": ("top1", "map"),
    "speech": ("wer",),
    "nlp": ("f1", "rouge"),
}


class Built(NamedTuple):
    """What ``build`` returns: ``led, keys, facts = build(...)``."""

    ledger: Ledger
    #: every current signing key by person (``admin``, ``alice``, ``bob``, ``carol``...)
    keys: dict[str, SigningKey]
    facts: Facts


@dataclass
class Facts:
    """Numbers and handles the benchmarks use; all derived from the generated history."""

    events: int = 0
    models: int = 0
    versions: int = 0
    #: person -> role of every key in ``keys``
    roles: dict[str, str] = field(default_factory=dict)
    #: revoked keys by name: ``dave`` (left) and ``carol.old`` (rotated)
    revoked: dict[str, SigningKey] = field(default_factory=dict)
    #: the version with the longest ancestry (for lineage up), as (model, version)
    deepest: tuple[str, int] = ("", 0)
    ancestry_depth: int = 0
    #: the version with the most descendants (for lineage down / impact)
    widest: tuple[str, int] = ("", 0)
    descendants: int = 0
    #: a version live in production at the end, and its model
    live: tuple[str, int] = ("", 0)
    #: a timestamp half-way through the history (µs), for as-of queries
    mid_ts: int = 0
    first_ts: int = 0
    last_ts: int = 0
    #: a dataset digest used by many versions (for "which models used this dataset")
    dataset_digest: str = ""
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


# --- the simulated registry ------------------------------------------------------------


@dataclass
class _Version:
    model: _Model
    n: int
    rejected: bool = False
    deprecated: bool = False
    live: set[str] = field(default_factory=set)


@dataclass
class _Model:
    name: str
    team: str
    owner: str
    versions: list[_Version] = field(default_factory=list)
    live: dict[str, _Version] = field(default_factory=dict)
    prod_history: list[_Version] = field(default_factory=list)


def _key(seed: int, name: str) -> SigningKey:
    return SigningKey(hashlib.sha256(f"ledger-bench/{seed}/{name}".encode()).digest())


def _hex(rng: random.Random, n: int) -> str:
    return rng.getrandbits(4 * n).to_bytes((4 * n + 7) // 8, "big").hex()[-n:].rjust(n, "0")


def _key_payload(key: SigningKey, actor: str, role: str) -> dict[str, Any]:
    return {
        "actor": actor,
        "key_id": key_id(key.public_key),
        "public_key": base64.b64encode(key.public_key).decode(),
        "roles": [role],
    }


class _World:
    """Decides what happens; every decision updates the simulated state at once."""

    def __init__(self, seed: int, models: int, prefix: str = "") -> None:
        self.prefix = f"{prefix}." if prefix else ""
        self.rng = random.Random(seed)
        self.seed = seed
        self.n_models = models
        self.models: list[_Model] = []
        self.prior: list[_Version] = []  # versions registered before the current week
        self.staged: list[_Version] = []  # staged last week, headed for production
        self.approvers = [a for a in APPROVERS]
        self.counts: dict[str, int] = {}
        self.versions = 0
        self.week = 0
        team_names = list(TEAMS)
        self.owner = {t: REGISTRARS[i % len(REGISTRARS)] for i, t in enumerate(team_names)}
        self.snapshots: dict[str, list[dict[str, Any]]] = {}

    # --- helpers ---
    def _draft(self, out: list, signer: str, action: str, **kw: Any) -> None:
        out.append((signer, action, kw))
        self.counts[action] = self.counts.get(action, 0) + 1

    def _deployer(self, m: _Model) -> str:
        return DEPLOYERS[zlib.crc32(m.name.encode()) % len(DEPLOYERS)]

    def _datasets(self, team: str) -> list[dict[str, Any]]:
        snap = self.snapshots.get(team)
        if snap is None:
            day = time.strftime("%Y%m%d", time.gmtime((START + self.week * WEEK) // 1_000_000))
            snap = []
            for name in DATASETS.get(team, ("train", "holdout")):
                uri = f"s3://{team}-data/{name}/snapshot={day}.parquet"
                digest = hashlib.sha256(f"{self.seed}/{uri}".encode()).hexdigest()
                snap.append({"digest": f"sha256:{digest}", "name": name, "uri": uri})
            self.snapshots[team] = snap
        k = len(snap) if self.rng.random() < 0.3 else 2
        return snap[:k]

    def new_model(self) -> _Model:
        i = len(self.models)
        team = list(TEAMS)[i % len(TEAMS)] if i < len(TEAMS) else self.rng.choice(list(TEAMS))
        tasks, archs = TEAMS[team]
        name = f"{self.prefix}{team}.{self.rng.choice(tasks)}.{self.rng.choice(archs)}-{i:05d}"
        m = _Model(name, team, self.owner[team])
        self.models.append(m)
        return m

    def register(self, out: list, m: _Model) -> _Version:
        rng = self.rng
        v = _Version(m, len(m.versions) + 1)
        parents = []
        if v.n == 1:
            if self.prior and rng.random() < 0.35:
                p = self.prior[int(len(self.prior) * rng.random() ** 0.5)]
                parents.append(
                    {"model": p.model.name, "version": p.n, "relation": rng.choice(DERIVE)}
                )
        else:
            if rng.random() < 0.6:
                parents.append({"model": m.name, "version": v.n - 1, "relation": "retrain"})
            if self.prior and rng.random() < 0.1:
                p = self.prior[rng.randrange(len(self.prior))]
                if p.model is not m:
                    parents.append({"model": p.model.name, "version": p.n, "relation": "merge"})
        metrics = {
            name: round(rng.uniform(0.6, 0.99), 4) for name in METRICS.get(m.team, ("accuracy",))
        }
        payload = E.register_payload(
            artifact={
                "digest": "sha256:" + _hex(rng, 64),
                "uri": f"s3://models/{m.name}/{v.n}",
            },
            datasets=self._datasets(m.team),
            code={"repo": f"https://git.example/{m.team}/models", "commit": _hex(rng, 40)},
            parents=parents,
            metrics=metrics,
            params={
                "lr": str(rng.choice((0.01, 0.03, 0.05, 0.1))),
                "seed": str(rng.randrange(100)),
            },
            tags={"team": m.team, "risk_tier": "high" if m.team in ("fraud", "credit") else "low"},
        )
        self._draft(out, m.owner, E.REGISTER, payload=payload, model=m.name, version=v.n)
        m.versions.append(v)
        self.versions += 1
        return v

    def approve(self, out: list, v: _Version, env: str, k: int) -> None:
        for who in self.rng.sample(self.approvers, k):
            self._draft(out, who, E.APPROVE, payload={"env": env}, model=v.model.name, version=v.n)

    def deploy(self, out: list, v: _Version, env: str, comment: str | None = None) -> None:
        m = v.model
        payload: dict[str, Any] = {"env": env}
        if comment:
            payload["comment"] = comment
        self._draft(out, self._deployer(m), E.DEPLOY, payload=payload, model=m.name, version=v.n)
        old = m.live.get(env)
        if old is not None:
            old.live.discard(env)
        m.live[env] = v
        v.live.add(env)
        if env == "production":
            m.prod_history.append(v)

    def undeploy(self, out: list, v: _Version, env: str) -> None:
        m = v.model
        self._draft(
            out, self._deployer(m), E.UNDEPLOY, payload={"env": env}, model=m.name, version=v.n
        )
        v.live.discard(env)
        del m.live[env]

    def reject(self, out: list, v: _Version, comment: str) -> None:
        who = self.rng.choice(self.approvers)
        self._draft(
            out, who, E.REJECT, payload={"comment": comment}, model=v.model.name, version=v.n
        )
        v.rejected = True

    def deprecate(self, out: list, v: _Version) -> None:
        self._draft(
            out,
            v.model.owner,
            E.DEPRECATE,
            payload={"comment": "superseded"},
            model=v.model.name,
            version=v.n,
        )
        v.deprecated = True

    # --- one week -------------------------------------------------------------------
    def week_events(self, new_versions: int, new_models: int, admin: list) -> list:
        """All of one week's (signer, action, fields), phase by phase."""
        rng = self.rng
        self.snapshots = {}
        phases: list[list] = [admin]
        # 1. registrations
        reg: list = []
        fresh: list[_Version] = []
        for _ in range(new_models):
            if len(self.models) < self.n_models:
                fresh.append(self.register(reg, self.new_model()))
        while len(fresh) < new_versions and self.models:
            m = self.models[int(len(self.models) * rng.random() ** 1.6)]
            fresh.append(self.register(reg, m))
        phases.append(reg)
        # 2. staging review, 3. staging deploys
        review, stage = [], []
        staged = []
        for v in fresh:
            if rng.random() < 0.08:
                self.reject(review, v, "failed offline evaluation")
            else:
                self.approve(review, v, "staging", 2 if rng.random() < 0.8 else 1)
                self.deploy(stage, v, "staging")
                staged.append(v)
        phases += [review, stage]
        # 4. production review of last week's staged versions (latest per model), 5. deploys
        latest: dict[str, _Version] = {}
        for v in self.staged:
            if not v.rejected and not v.deprecated:
                latest[v.model.name] = v
        review, ship, go = [], [], []
        for v in latest.values():
            if rng.random() < 0.9:
                self.approve(review, v, "canary", 1)
                self.approve(review, v, "production", 2)
                envs = ["canary", "production"]
                if rng.random() < 0.7:
                    self.approve(review, v, "production-eu", 1)
                    envs.append("production-eu")
                go.append((v, envs))
        for v, envs in go:
            for env in envs:
                self.deploy(ship, v, env)
            self.undeploy(ship, v, "canary")  # canary is a stop on the way, not a home
        phases += [review, ship]
        # 6. incidents: roll back to the previous production version, reject, clean up
        rollback, rejects, cleanup = [], [], []
        for v, _ in go:
            m = v.model
            hist = [p for p in m.prod_history[:-1] if not p.rejected and not p.deprecated]
            if rng.random() < 0.06 and hist and hist[-1] is not v and m.live.get("production") is v:
                self.deploy(rollback, hist[-1], "production", "rollback: error rate up 4x")
                self.reject(rejects, v, "rolled back after incident")
                for env in sorted(v.live):
                    self.undeploy(cleanup, v, env)
        phases += [rollback, rejects, cleanup]
        # 7. owners deprecate old versions that are live nowhere
        dep: list = []
        touched = {v.model.name: v.model for v in fresh}
        for m in touched.values():
            for v in m.versions[:-3]:
                if not v.deprecated and not v.live and not v.rejected and rng.random() < 0.5:
                    self.deprecate(dep, v)
        phases.append(dep)
        self.prior.extend(fresh)
        self.staged = staged
        self.week += 1
        out = []
        for phase in phases:
            # Group each phase by signer (stable) so each signer's work is one batch;
            # within a model, one signer does a phase's work, so order is kept.
            order = {}
            for s, _, _ in phase:
                order.setdefault(s, len(order))
            out.extend(sorted(phase, key=lambda d: order[d[0]]))
        return out


def build(
    path: str | Path,
    events: int = 10_000,
    models: int | None = None,
    seed: int = 0,
    *,
    weeks: int | None = None,
    compact: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Built:
    """Build a ledger of about ``events`` events in the new folder ``path``.

    ``models`` defaults to ``events // 100``; ``weeks`` (the history's length) defaults
    to 52, fewer for small ledgers. The event count is exact; the number of versions
    follows from it (about one in ten events registers a version).
    ``progress(done, total)`` is called after each week. Returns ``Built(ledger, keys,
    facts)``.
    """
    t0 = time.perf_counter()
    models = max(1, models if models is not None else events // 100)
    weeks = weeks or max(4, min(52, events // 500))
    keys = {name: _key(seed, name) for name in (ADMIN, *REGISTRARS, *APPROVERS, *DEPLOYERS)}
    roles = {ADMIN: E.ADMIN}
    roles |= {n: E.REGISTRAR for n in REGISTRARS}
    roles |= {n: E.APPROVER for n in APPROVERS} | {n: E.DEPLOYER for n in DEPLOYERS}
    revoked: dict[str, SigningKey] = {}

    led = Ledger.init(path, keys[ADMIN], ADMIN, origin=ORIGIN, ts=START)
    world = _World(seed, models)
    written = 1
    admin: list = [
        (ADMIN, E.KEY_ADD, {"payload": _key_payload(keys[n], n, roles[n])})
        for n in (*REGISTRARS, *APPROVERS, *DEPLOYERS)
    ]
    leave_week, rotate_week = int(weeks * 0.6), int(weeks * 0.8)
    w = 0
    while written < events:
        if w == leave_week and weeks > 1:
            keys[JOINER] = _key(seed, JOINER)
            roles[JOINER] = E.APPROVER
            payload = _key_payload(keys[JOINER], JOINER, E.APPROVER)
            admin.append((ADMIN, E.KEY_ADD, {"payload": payload}))
            payload = {"key_id": keys[LEAVER].key_id, "reason": "left the company"}
            admin.append((ADMIN, E.KEY_REVOKE, {"payload": payload}))
            revoked[LEAVER] = keys.pop(LEAVER)
            del roles[LEAVER]
            world.approvers = [a for a in APPROVERS if a != LEAVER] + [JOINER]
        if w == rotate_week and weeks > 2:
            old = keys[ROTATOR]
            keys[ROTATOR] = _key(seed, ROTATOR + ".2")
            payload = _key_payload(keys[ROTATOR], ROTATOR, E.DEPLOYER)
            admin.append((ADMIN, E.KEY_ADD, {"payload": payload}))
            payload = {"key_id": old.key_id, "reason": "key rotation"}
            admin.append((ADMIN, E.KEY_REVOKE, {"payload": payload}))
            revoked[ROTATOR + ".old"] = old
        left = events - written
        weeks_left = max(1, weeks - w)
        want_versions = max(1, round(left / EVENTS_PER_VERSION / weeks_left))
        new_models = -(-(models - len(world.models)) // weeks_left)
        drafts = world.week_events(want_versions, new_models, admin)[:left]
        admin = []
        written += _append_week(led, keys, drafts, START + w * WEEK, world.rng)
        if compact:
            led.compact()  # as a long-lived ledger would be, so segments stay few
        if progress:
            progress(written, events)
        w += 1
    if compact:
        led.compact()
    facts = _facts(led, world, roles, revoked, written, time.perf_counter() - t0)
    return Built(led, dict(keys), facts)


def _append_week(
    led: Ledger, keys: dict[str, SigningKey], drafts: list, start: int, rng: random.Random
) -> int:
    """Give the week's drafts sorted timestamps and append them, one batch per signer run."""
    ts = sorted(start + rng.randrange(WEEK) for _ in drafts)
    i = 0
    while i < len(drafts):
        j = i
        signer = drafts[i][0]
        while j < len(drafts) and drafts[j][0] == signer:
            j += 1
        batch = [
            E.Draft(action, kw.get("payload", {}), kw.get("model"), kw.get("version"), ts[k])
            for k, (_, action, kw) in enumerate(drafts[i:j], start=i)
        ]
        led.append_many(batch, keys[signer])
        i = j
    return len(drafts)


def _facts(
    led: Ledger,
    world: _World,
    roles: dict[str, str],
    revoked: dict[str, SigningKey],
    written: int,
    seconds: float,
) -> Facts:
    f = Facts(events=written, models=len(world.models), versions=world.versions)
    f.roles, f.revoked, f.seconds = dict(roles), revoked, seconds
    f.counts = dict(sorted(world.counts.items()))
    ts = led.store.read(["ts"]).column("ts").cast("int64")
    f.first_ts, f.last_ts = ts[0].as_py(), ts[len(ts) - 1].as_py()
    f.mid_ts = ts[len(ts) // 2].as_py()
    # Lineage handles from the simulated families (the ledger holds the same edges).
    state = led.state()
    depth: dict[tuple[str, int], int] = {}
    down: dict[tuple[str, int], int] = {}
    for ref, v in sorted(state.versions.items(), key=lambda kv: kv[1].registered_seq):
        depth[ref] = 1 + max((depth.get((pm, pv), 0) for pm, pv, _ in v.parents), default=0)
        for pm, pv, _ in v.parents:
            down[(pm, pv)] = down.get((pm, pv), 0) + 1
    if depth:
        f.deepest = max(depth, key=lambda r: (depth[r], r))
        f.ancestry_depth = depth[f.deepest] - 1
    if down:
        f.widest = max(down, key=lambda r: (down[r], r))
        f.descendants = down[f.widest]
    for (model, env), n in sorted(state.live.items()):
        if env == "production":
            f.live = (model, n)
            break
    if world.models:
        f.dataset_digest = world_dataset_digest(world, world.models[0].team)
    return f


def world_dataset_digest(world: _World, team: str) -> str:
    """Digest of ``team``'s training set in the simulation's first week."""
    day = time.strftime("%Y%m%d", time.gmtime(START // 1_000_000))
    uri = f"s3://{team}-data/train/snapshot={day}.parquet"
    return "sha256:" + hashlib.sha256(f"{world.seed}/{uri}".encode()).hexdigest()


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--events", type=int, default=10_000)
    ap.add_argument("--models", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-compact", action="store_true")
    a = ap.parse_args(argv)
    built = build(a.path, a.events, a.models, a.seed, compact=not a.no_compact)
    f = built.facts
    print(
        f"built {a.path}: {f.events} events, {f.models} models, {f.versions} versions"
        f" in {f.seconds:.1f}s; {f.counts}"
    )


if __name__ == "__main__":
    main()
