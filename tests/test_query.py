"""Views, point-in-time answers, the audit query library and the CLI commands of issue 4.

The ``audit`` fixture is a scripted, realistic history with fixed timestamps; every
expected answer below was worked out by hand from the timeline in its docstring.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import ledger.events as E
from ledger import Draft, Ledger, SigningKey
from ledger.actions import key_payload as _key_payload
from ledger.errors import InputError, NotFoundError
from ledger.query import QUERIES_DIR, load_queries, parse_instant
from ledger.state import State

D11 = "sha256:" + "11" * 32
D22 = "sha256:" + "22" * 32
D33 = "sha256:" + "33" * 32

KEYS = {
    "alice": "registrar",
    "erin": "registrar,approver",
    "bob": "approver",
    "dave": "approver",
    "carol": "deployer",
    "frank": "approver,deployer",
}


def ts(text: str) -> int:
    return parse_instant(text)


class Script:
    def __init__(self, led: Ledger, keys: dict[str, SigningKey]) -> None:
        self.led, self.keys = led, keys

    def __call__(self, who: str, action: str, when: str, model=None, version=None, **payload):
        return self.led.append(Draft(action, payload, model, version, ts=ts(when)), self.keys[who])

    def register(self, who, when, model, *, art=None, datasets=(), code=None, parents=()):
        payload = E.register_payload(
            artifact={"digest": art} if art else None,
            datasets=datasets,
            code=code,
            parents=parents,
        )
        return self.led.append(Draft(E.REGISTER, payload, model, ts=ts(when)), self.keys[who])


def build_audit(path: Path) -> tuple[Ledger, dict[str, SigningKey]]:
    """The scripted history (seq, time in 2026 UTC, who, what):

    0  01-05 09:00 admin genesis              1-6 01-05 09:01..09:06 admin adds alice, erin,
                                                  bob, dave, carol, frank (roles in KEYS)
    7  01-10 10:00 alice register fraud.base:1  artifact, dataset train@11, code
    8  01-12 10:00 alice register fraud.xgb:1   parent base:1 finetune; NO dataset
    9  01-15 10:00 bob   approve fraud.xgb:1 staging
    10 01-15 11:00 carol deploy  fraud.xgb:1 staging
    11 01-20 10:00 dave  approve fraud.xgb:1 production
    12 01-20 11:00 carol deploy  fraud.xgb:1 production
    13 02-01 10:00 alice register fraud.xgb:2   parent xgb:1 retrain, dataset train2@22
    14 02-03 10:00 dave  approve fraud.xgb:2 staging
    15 02-10 10:00 frank approve fraud.xgb:2 production   } same timestamp,
    16 02-10 10:00 frank deploy  fraud.xgb:2 production   } one append_many
    17 02-15 10:00 erin  register churn.gbm:1   dataset pii@33; no artifact, no code
    18 02-16 10:00 erin  approve churn.gbm:1 production  (approves her own model)
    19 02-17 10:00 carol deploy  churn.gbm:1 production
    20 02-20 10:00 carol deploy  fraud.xgb:1 production  "rollback"
    21 02-20 10:05 bob   reject  fraud.xgb:2
    22 03-01 08:00 admin key_revoke dave "left the company"
    23 03-01 12:00 carol deploy  churn.gbm:1 staging  (never approved for staging)
    24 03-05 10:00 alice deprecate fraud.base:1
    25 03-10 10:00 alice register fraud.tiny:1  parent xgb:1 distill, dataset train@11
    26 03-10 10:00 bob   approve fraud.tiny:1 staging  (same ts as 25, another signer)
    27 03-12 10:00 erin  deprecate churn.gbm:1 (still live in production and staging)
    28 03-20 10:00 carol undeploy fraud.xgb:1 staging
    """
    keys = {name: SigningKey.generate() for name in ["admin", *KEYS]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(E, "now_micros", lambda: ts("2026-01-05T09:00:00Z"))
        led = Ledger.init(path, keys["admin"], "admin", origin="test.example/audit")
    s = Script(led, keys)
    for i, (name, roles) in enumerate(KEYS.items(), start=1):
        payload = _key_payload(keys[name].public_key, name, E.check_roles(roles))
        s("admin", E.KEY_ADD, f"2026-01-05T09:0{i}:00Z", **payload)
    s.register(
        "alice",
        "2026-01-10T10:00Z",
        "fraud.base",
        art="sha256:" + "aa" * 32,
        datasets=[f"train=s3://data/train.parquet@{D11}"],
        code="https://git.example/fraud@3f2a9c1",
    )
    s.register(
        "alice",
        "2026-01-12T10:00Z",
        "fraud.xgb",
        art="sha256:" + "bb" * 32,
        code="https://git.example/fraud@abc1234",
        parents=["fraud.base:1=finetune"],
    )
    s("bob", E.APPROVE, "2026-01-15T10:00Z", "fraud.xgb", 1, env="staging")
    s("carol", E.DEPLOY, "2026-01-15T11:00Z", "fraud.xgb", 1, env="staging")
    s("dave", E.APPROVE, "2026-01-20T10:00Z", "fraud.xgb", 1, env="production", comment="ok")
    s("carol", E.DEPLOY, "2026-01-20T11:00Z", "fraud.xgb", 1, env="production")
    s.register(
        "alice",
        "2026-02-01T10:00Z",
        "fraud.xgb",
        art="sha256:" + "cc" * 32,
        datasets=[f"train2=s3://data/train2.parquet@{D22}"],
        code="https://git.example/fraud@def5678",
        parents=["fraud.xgb:1=retrain"],
    )
    s("dave", E.APPROVE, "2026-02-03T10:00Z", "fraud.xgb", 2, env="staging")
    t = ts("2026-02-10T10:00Z")
    led.append_many(
        [
            Draft(E.APPROVE, {"env": "production"}, "fraud.xgb", 2, ts=t),
            Draft(E.DEPLOY, {"env": "production"}, "fraud.xgb", 2, ts=t),
        ],
        keys["frank"],
    )
    s.register("erin", "2026-02-15T10:00Z", "churn.gbm", datasets=[f"pii=s3://data/pii.csv@{D33}"])
    s("erin", E.APPROVE, "2026-02-16T10:00Z", "churn.gbm", 1, env="production")
    s("carol", E.DEPLOY, "2026-02-17T10:00Z", "churn.gbm", 1, env="production")
    s("carol", E.DEPLOY, "2026-02-20T10:00Z", "fraud.xgb", 1, env="production", comment="rollback")
    s("bob", E.REJECT, "2026-02-20T10:05Z", "fraud.xgb", 2)
    s(
        "admin",
        E.KEY_REVOKE,
        "2026-03-01T08:00Z",
        key_id=keys["dave"].key_id,
        reason="left the company",
    )
    s("carol", E.DEPLOY, "2026-03-01T12:00Z", "churn.gbm", 1, env="staging")
    s("alice", E.DEPRECATE, "2026-03-05T10:00Z", "fraud.base", 1)
    s.register(
        "alice",
        "2026-03-10T10:00Z",
        "fraud.tiny",
        art="sha256:" + "dd" * 32,
        datasets=[f"train=s3://data/train.parquet@{D11}"],
        code="https://git.example/fraud@0a1b2c3",
        parents=["fraud.xgb:1=distill"],
    )
    s("bob", E.APPROVE, "2026-03-10T10:00Z", "fraud.tiny", 1, env="staging")
    s("erin", E.DEPRECATE, "2026-03-12T10:00Z", "churn.gbm", 1)
    s("carol", E.UNDEPLOY, "2026-03-20T10:00Z", "fraud.xgb", 1, env="staging")
    return led, keys


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    led, keys = build_audit(tmp_path_factory.mktemp("audit") / "reg")
    assert led.verify().ok
    led.keys_by_name = keys  # type: ignore[attr-defined]
    return led


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    """A ledger holding only its genesis event."""
    return Ledger.init(tmp_path_factory.mktemp("empty") / "reg", SigningKey.generate(), "admin")


def rows(table) -> list[dict]:
    """Arrow rows with timestamps in the events' text form, for readable expectations."""
    out = table.to_pylist()
    for r in out:
        for k, v in r.items():
            if hasattr(v, "microsecond"):
                r[k] = E.format_ts(int(v.timestamp()) * 1_000_000 + v.microsecond)
    return out


def T(text: str) -> str:
    return E.format_ts(ts(text))


# --- the library ---------------------------------------------------------------------------

REQUIRED = {
    "production-history": {"model": "fraud.xgb"},
    "dataset-exposure": {"dataset": D11},
    "live-by-package": {"package": "numpy"},
}


def test_library_has_the_issue_queries_with_headers() -> None:
    qs = load_queries()
    assert sorted(qs) == [
        "actor-activity",
        "alias-moves",  # issue 17
        "break-glass",  # issue 6
        "dataset-exposure",
        "live-by-package",  # issue 17
        "missing-metadata",
        "policy-violations",  # issue 6
        "production-history",
        "revoked-key-signatures",
        "self-approval",
        "stale-approvals",
        "unapproved-deployments",
        "zombie-deployments",
    ]
    for q in qs.values():
        first = q.path.read_text().splitlines()[0]
        assert first == f"-- name: {q.name}"
        assert q.description and q.description.endswith(".")
        assert all(p.doc for p in q.params)


@pytest.mark.parametrize("name", sorted(load_queries()))
def test_every_query_runs_on_an_empty_ledger(empty: Ledger, name: str) -> None:
    table = empty.query(name, REQUIRED.get(name))
    assert table.num_rows == (1 if name == "actor-activity" else 0)  # genesis is by admin
    assert empty.query(name, REQUIRED.get(name), at_seq=0).num_rows == table.num_rows
    assert empty.query(name, REQUIRED.get(name), as_of="2000-01-01").num_rows == 0


def test_unapproved_deployments(audit: Ledger) -> None:
    assert rows(audit.query("unapproved-deployments")) == [
        {
            "seq": 23,
            "ts": T("2026-03-01T12:00Z"),
            "ref": "churn.gbm:1",
            "env": "staging",
            "deployed_by": "carol",
            "comment": None,
        }
    ]
    assert audit.query("unapproved-deployments", {"env": "production"}).num_rows == 0
    assert audit.query("unapproved-deployments", at_seq=22).num_rows == 0


def test_self_approval(audit: Ledger) -> None:
    got = [
        (r["seq"], r["violation"], r["ref"], r["env"], r["actor"], r["conflicting_seq"])
        for r in rows(audit.query("self-approval"))
    ]
    assert got == [
        (16, "deployer approved it", "fraud.xgb:2", "production", "frank", 15),
        (18, "approver is registrant", "churn.gbm:1", "production", "erin", 17),
    ]
    assert audit.query("self-approval", {"env": "staging"}).num_rows == 0
    assert [r["seq"] for r in rows(audit.query("self-approval", at_seq=17))] == [16]


def test_revoked_key_signatures(audit: Ledger) -> None:
    got = [
        (r["seq"], r["action"], r["ref"], r["actor"], r["finding"], r["revoked_seq"], r["reason"])
        for r in rows(audit.query("revoked-key-signatures"))
    ]
    assert got == [
        (11, "approve", "fraud.xgb:1", "dave", "key revoked later", 22, "left the company"),
        (14, "approve", "fraud.xgb:2", "dave", "key revoked later", 22, "left the company"),
    ]
    assert audit.query("revoked-key-signatures", {"actions": "deploy"}).num_rows == 0
    # Before the revocation no key was revoked.
    assert audit.query("revoked-key-signatures", as_of="2026-03-01T07:59:59Z").num_rows == 0


def test_revoked_key_signatures_finds_events_signed_after_revocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    led, keys = build_audit(tmp_path / "reg")
    # Forge what the write path refuses: an approval by dave's revoked key.
    monkeypatch.setattr(State, "authorize", lambda self, ev: None)
    led.append(Draft(E.APPROVE, {"env": "staging"}, "fraud.tiny", 1), keys["dave"])
    monkeypatch.undo()
    assert not led.verify().ok
    got = [(r["seq"], r["finding"]) for r in rows(led.query("revoked-key-signatures"))]
    assert got == [
        (11, "key revoked later"),
        (14, "key revoked later"),
        (29, "signed after revocation"),
    ]


def test_production_history(audit: Ledger) -> None:
    assert rows(audit.query("production-history", {"model": "fraud.xgb"})) == [
        {
            "version": 1,
            "deployed_at": T("2026-01-20T11:00Z"),
            "until": T("2026-02-10T10:00Z"),
            "deployed_by": "carol",
            "approved_by": ["dave"],
            "rollback": False,
            "ended": "replaced by fraud.xgb:2",
            "comment": None,
        },
        {
            "version": 2,
            "deployed_at": T("2026-02-10T10:00Z"),
            "until": T("2026-02-20T10:00Z"),
            "deployed_by": "frank",
            "approved_by": ["frank"],
            "rollback": False,
            "ended": "replaced by fraud.xgb:1",
            "comment": None,
        },
        {
            "version": 1,
            "deployed_at": T("2026-02-20T10:00Z"),
            "until": None,
            "deployed_by": "carol",
            "approved_by": ["dave"],
            "rollback": True,
            "ended": "still live",
            "comment": "rollback",
        },
    ]
    staging = rows(audit.query("production-history", {"model": "fraud.xgb", "env": "staging"}))
    assert [(r["version"], r["until"], r["approved_by"], r["ended"]) for r in staging] == [
        (1, T("2026-03-20T10:00Z"), ["bob"], "undeployed")
    ]
    # As it stood on 2026-02-15: version 2 was live, nothing had ended it yet.
    mid = rows(audit.query("production-history", {"model": "fraud.xgb"}, as_of="2026-02-15"))
    assert [(r["version"], r["ended"]) for r in mid] == [
        (1, "replaced by fraud.xgb:2"),
        (2, "still live"),
    ]


def test_dataset_exposure(audit: Ledger) -> None:
    assert rows(audit.query("dataset-exposure", {"dataset": D11})) == [
        {
            "ref": "fraud.xgb:1",
            "env": "production",
            "since": T("2026-02-20T10:00Z"),
            "deployed_by": "carol",
            "trained_on_via": "fraud.base:1",
            "generations": 1,
            "dataset": "train",
            "uri": "s3://data/train.parquet",
            "digest": D11,
        }
    ]
    by_name = rows(audit.query("dataset-exposure", {"dataset": "pii"}))
    assert [(r["ref"], r["trained_on_via"], r["generations"]) for r in by_name] == [
        ("churn.gbm:1", "churn.gbm:1", 0)
    ]
    # Staging now: churn.gbm:1 only; before the undeploy (seq 27) fraud.xgb:1 was there.
    assert audit.query("dataset-exposure", {"dataset": D11, "env": "staging"}).num_rows == 0
    old = rows(audit.query("dataset-exposure", {"dataset": D11, "env": "staging"}, at_seq=27))
    assert [r["ref"] for r in old] == ["fraud.xgb:1"]
    assert audit.query("dataset-exposure", {"dataset": D22}).num_rows == 0


def test_missing_metadata(audit: Ledger) -> None:
    got = [(r["ref"], r["env"], r["missing"]) for r in rows(audit.query("missing-metadata"))]
    assert got == [
        ("churn.gbm:1", "production", "code commit, artifact digest"),
        ("churn.gbm:1", "staging", "code commit, artifact digest"),
        ("fraud.xgb:1", "production", "dataset"),
    ]
    assert [r["ref"] for r in rows(audit.query("missing-metadata", {"env": "staging"}))] == [
        "churn.gbm:1"
    ]


def test_stale_approvals(audit: Ledger) -> None:
    end = "2026-03-31T00:00:00Z"
    assert audit.query("stale-approvals", as_of=end).num_rows == 0
    assert rows(audit.query("stale-approvals", {"days": "14"}, as_of=end)) == [
        {
            "seq": 26,
            "approved_at": T("2026-03-10T10:00Z"),
            "ref": "fraud.tiny:1",
            "env": "staging",
            "approved_by": "bob",
            "age_days": 20,
        }
    ]
    # On 2026-02-09, xgb:2's staging approval was 6 days old and not yet rejected.
    got = rows(audit.query("stale-approvals", {"days": 5}, as_of="2026-02-09"))
    assert [(r["seq"], r["ref"], r["env"], r["age_days"]) for r in got] == [
        (14, "fraud.xgb:2", "staging", 5)
    ]


def test_zombie_deployments(audit: Ledger) -> None:
    assert rows(audit.query("zombie-deployments")) == [
        {
            "ref": "churn.gbm:1",
            "env": "production",
            "since": T("2026-02-17T10:00Z"),
            "deployed_by": "carol",
            "status": "deprecated",
            "retired_at": T("2026-03-12T10:00Z"),
        },
        {
            "ref": "churn.gbm:1",
            "env": "staging",
            "since": T("2026-03-01T12:00Z"),
            "deployed_by": "carol",
            "status": "deprecated",
            "retired_at": T("2026-03-12T10:00Z"),
        },
    ]
    assert audit.query("zombie-deployments", at_seq=26).num_rows == 0


def test_actor_activity(audit: Ledger) -> None:
    window = {"start": "2026-02-01", "end": "2026-03-01"}
    got = {
        r["actor"]: (r["events"], r["registered"], r["approved"], r["deployed"], r["rejected"])
        for r in rows(audit.query("actor-activity", window))
    }
    assert got == {
        "alice": (1, 1, 0, 0, 0),
        "bob": (1, 0, 0, 0, 1),
        "carol": (2, 0, 0, 2, 0),
        "dave": (1, 0, 1, 0, 0),
        "erin": (2, 1, 1, 0, 0),
        "frank": (2, 0, 1, 1, 0),
    }
    admin = rows(audit.query("actor-activity", {"actor": "admin"}))
    assert [(r["events"], r["key_events"], r["first"], r["last"]) for r in admin] == [
        (8, 8, T("2026-01-05T09:00Z"), T("2026-03-01T08:00Z"))
    ]


# --- state views and point in time -----------------------------------------------------------


def test_status_per_model(audit: Ledger) -> None:
    assert rows(audit.status()) == [
        {"model": "churn.gbm", "versions": 1, "latest": 1, "latest_status": "deprecated",
         "live": "production=1 staging=1"},
        {"model": "fraud.base", "versions": 1, "latest": 1, "latest_status": "deprecated",
         "live": ""},
        {"model": "fraud.tiny", "versions": 1, "latest": 1, "latest_status": "approved",
         "live": ""},
        {"model": "fraud.xgb", "versions": 2, "latest": 2, "latest_status": "rejected",
         "live": "production=1"},
    ]  # fmt: skip


def test_status_of_one_model(audit: Ledger) -> None:
    got = [
        (r["version"], r["status"], r["approved_for"], r["live_in"], r["registered_by"])
        for r in rows(audit.status("fraud.xgb"))
    ]
    assert got == [
        (1, "approved", ["production", "staging"], ["production"], "alice"),
        (2, "rejected", ["production", "staging"], [], "alice"),
    ]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"as_of": "2026-01-20T10:59:59.999999Z"}, []),
        ({"as_of": "2026-01-20T11:00:00Z"}, [("fraud.xgb", 1, "carol", ["dave"])]),
        ({"as_of": "2026-02-10T09:59:59.999999Z"}, [("fraud.xgb", 1, "carol", ["dave"])]),
        # Seqs 15 (approve) and 16 (deploy) share 2026-02-10T10:00:00Z: --as-of includes
        # both; --at-seq 15 stands between them.
        ({"as_of": "2026-02-10T10:00:00Z"}, [("fraud.xgb", 2, "frank", ["frank"])]),
        ({"at_seq": 15}, [("fraud.xgb", 1, "carol", ["dave"])]),
        ({"at_seq": 16}, [("fraud.xgb", 2, "frank", ["frank"])]),
        ({"as_of": "2026-02-10T11:00:00+01:00"}, [("fraud.xgb", 2, "frank", ["frank"])]),
        ({"as_of": "2026-02-10T10:00:00+01:00"}, [("fraud.xgb", 1, "carol", ["dave"])]),
        (
            {"as_of": "2026-03-01"},
            [("churn.gbm", 1, "carol", ["erin"]), ("fraud.xgb", 1, "carol", ["dave"])],
        ),
        ({"at_seq": 0}, []),
    ],
)
def test_what_was_in_production(audit: Ledger, when: dict, expected: list) -> None:
    got = [
        (r["model"], r["version"], r["deployed_by"], r["approved_by"])
        for r in rows(audit.status(env="production", **when))
    ]
    assert got == expected


def test_same_timestamp_at_seq_agrees_with_state_replay(audit: Ledger) -> None:
    for seq in (14, 15, 16, 25, 26):
        state = audit.state(at_seq=seq)
        live = {
            (r["model"], r["env"]): r["version"]
            for r in rows(audit.sql("SELECT * FROM live", at_seq=seq))
        }
        assert live == state.live


def test_views_answer_as_of(audit: Ledger) -> None:
    q = "SELECT count(*) AS n, max(seq) AS last FROM events"
    assert rows(audit.sql(q)) == [{"n": 29, "last": 28}]
    assert rows(audit.sql(q, as_of="2026-02-10T10:00:00Z")) == [{"n": 17, "last": 16}]
    assert rows(audit.sql(q, at_seq=15)) == [{"n": 16, "last": 15}]
    assert rows(audit.sql(q, as_of="1999-12-31")) == [{"n": 0, "last": None}]
    keys = rows(audit.sql("SELECT actor, active FROM keys ORDER BY added_seq", at_seq=22))
    assert [(k["actor"], k["active"]) for k in keys][4] == ("dave", False)
    keys = rows(audit.sql("SELECT actor, active FROM keys ORDER BY added_seq", at_seq=21))
    assert [(k["actor"], k["active"]) for k in keys][4] == ("dave", True)
    assert rows(audit.sql("SELECT seq, ts FROM as_of", at_seq=16)) == [
        {"seq": 16, "ts": T("2026-02-10T10:00Z")}
    ]


def test_deployments_view_marks_rollbacks(audit: Ledger) -> None:
    got = rows(
        audit.sql(
            "SELECT seq, action, version, replaced_version, rollback, live FROM deployments"
            " WHERE model = 'fraud.xgb' AND env = 'production' ORDER BY seq"
        )
    )
    assert [tuple(r.values()) for r in got] == [
        (12, "deploy", 1, None, False, False),
        (16, "deploy", 2, 1, False, False),
        (20, "deploy", 1, 2, True, True),
    ]


def test_lineage_and_registrations_views(audit: Ledger) -> None:
    got = rows(audit.sql("SELECT ref, parent_ref, relation FROM lineage ORDER BY ref"))
    assert [tuple(r.values()) for r in got] == [
        ("fraud.tiny:1", "fraud.xgb:1", "distill"),
        ("fraud.xgb:1", "fraud.base:1", "finetune"),
        ("fraud.xgb:2", "fraud.xgb:1", "retrain"),
    ]
    reg = rows(audit.sql("SELECT code_commit, artifact_digest FROM registrations WHERE seq = 7"))
    assert reg == [{"code_commit": "3f2a9c1", "artifact_digest": "sha256:" + "aa" * 32}]


def test_history(audit: Ledger) -> None:
    got = [(r["seq"], r["action"], r["version"], r["env"], r["actor"]) for r in
           rows(audit.history("fraud.xgb", 2))]  # fmt: skip
    assert got == [
        (13, "register", 2, None, "alice"),
        (14, "approve", 2, "staging", "dave"),
        (15, "approve", 2, "production", "frank"),
        (16, "deploy", 2, "production", "frank"),
        (21, "reject", 2, None, "bob"),
    ]
    assert audit.history("fraud.xgb", as_of="2026-01-13").num_rows == 1


def test_segments_are_read_by_exact_list_not_glob(audit: Ledger) -> None:
    # A temporary and a superseded leftover in events/ must not be read.
    events = audit.path / "events"
    segs = audit.store.segments()
    junk = events / ".tmp-999-000000000000-000000000003.parquet"
    junk.write_bytes(segs[0].path.read_bytes())
    leftover = events / "000000000001-000000000001.parquet"
    leftover.write_bytes(segs[1].path.read_bytes()) if segs[0].last == 0 else None
    try:
        assert rows(audit.sql("SELECT count(*) AS n FROM events")) == [{"n": 29}]
    finally:
        junk.unlink()
        if leftover.exists() and leftover not in [s.path for s in segs]:
            leftover.unlink()


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda L: L.query("nope"), NotFoundError, "unknown query 'nope'"),
        (
            lambda L: L.query("production-history"),
            InputError,
            "query production-history needs --param model=… (text): The model, e.g. fraud.detector.xgb.",
        ),
        (
            lambda L: L.query("zombie-deployments", {"model": "x"}),
            InputError,
            "query zombie-deployments has no parameter 'model' (parameters: env)",
        ),
        (
            lambda L: L.query("stale-approvals", {"days": "soon"}),
            InputError,
            "parameter days of query stale-approvals must be an integer, got 'soon'",
        ),
        (lambda L: L.sql("SELEC 1"), InputError, "bad SQL: Parser Error: syntax error"),
        (lambda L: L.sql("SELECT nope FROM events"), InputError, "SQL failed: Binder Error"),
        (lambda L: L.sql("SELECT 1; SELECT 2"), InputError, "give exactly one SQL statement"),
        (
            lambda L: L.sql("COPY events TO '/tmp/x.csv'"),
            InputError,
            "only SELECT statements are allowed (got COPY)",
        ),
        (lambda L: L.status(as_of="yesterday"), InputError, "invalid --as-of timestamp"),
        (lambda L: L.status(as_of="2026-02-30"), InputError, "invalid --as-of timestamp"),
        (lambda L: L.status(at_seq=29), InputError, "--at-seq 29 is beyond the last event"),
        (lambda L: L.status(at_seq=-1), InputError, "--at-seq must be a seq number >= 0"),
        (
            lambda L: L.status(as_of="2026-01-01", at_seq=1),
            InputError,
            "give --as-of or --at-seq, not both",
        ),
        (lambda L: L.status("bad name!"), InputError, "invalid model name"),
    ],
)
def test_errors(audit: Ledger, call, error, message: str) -> None:
    with pytest.raises(error) as info:
        call(audit)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01", "2026-03-01T00:00:00.000000Z"),
        ("2026-03-01T09:00", "2026-03-01T09:00:00.000000Z"),
        ("2026-03-01 09:00:05", "2026-03-01T09:00:05.000000Z"),
        ("2026-03-01T09:00:05.5Z", "2026-03-01T09:00:05.500000Z"),
        ("2026-03-01T09:00:05.123456Z", "2026-03-01T09:00:05.123456Z"),
        ("2026-03-01T10:00:00+01:00", "2026-03-01T09:00:00.000000Z"),
        ("2026-03-01T08:30:00-00:30", "2026-03-01T09:00:00.000000Z"),
    ],
)
def test_parse_instant(text: str, expected: str) -> None:
    assert E.format_ts(parse_instant(text)) == expected


# --- CLI ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(audit: Ledger) -> dict[str, str]:
    return {"LEDGER_PATH": str(audit.path), "COLUMNS": "120"}


def test_cli_status_in_production_as_of(invoke, env) -> None:
    r = invoke(["status", "--env", "production", "--as-of", "2026-02-15", "--format", "csv"], env)
    assert (r.exit_code, r.stderr) == (0, "")
    assert r.stdout == (
        "model,version,env,since,deployed_by,approved_by,rollback\n"
        'fraud.xgb,2,production,2026-02-10T10:00:00.000000Z,frank,"[""frank""]",False\n'
    )


def test_cli_status_table(invoke, env) -> None:
    r = invoke(["status", "--at-seq", "12"], env)
    assert (r.exit_code, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    assert lines[0].strip() == "at seq 12"
    header = [c.strip() for c in lines[2].split("┃")[1:-1]]
    assert header == ["model", "versions", "latest", "latest_status", "live"]
    body = [[c.strip() for c in ln.split("│")[1:-1]] for ln in lines if ln.startswith("│")]
    assert body == [
        ["fraud.base", "1", "1", "registered", ""],
        ["fraud.xgb", "1", "1", "approved", "production=1 staging=1"],
    ]


def test_cli_empty_results_say_so(invoke, env) -> None:
    r = invoke(["status", "--env", "production", "--as-of", "2026-01-01"], env)
    assert (r.exit_code, r.stdout) == (
        0,
        "Nothing is live in production as of 2026-01-01T00:00:00.000000Z.\n",
    )
    r = invoke(["query", "zombie-deployments", "--at-seq", "26"], env)
    assert (r.exit_code, r.stdout) == (0, "No rows for zombie-deployments at seq 26.\n")
    r = invoke(["history", "nope.model"], env)  # (never registered: exit 3, issue 16)
    assert (r.exit_code, r.stderr) == (3, "Error: model nope.model is not registered\n")
    r = invoke(["sql", "SELECT * FROM live WHERE env = 'qa'"], env)
    assert (r.exit_code, r.stdout) == (0, "No rows.\n")
    r = invoke(["status", "fraud.tiny", "--at-seq", "24"], env)
    assert (r.exit_code, r.stdout) == (0, "No versions of fraud.tiny at seq 24.\n")


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        (["query", "nope"], 3, "Error: unknown query 'nope'; `ledger queries` lists them"),
        (
            ["query", "production-history"],
            2,
            "Error: query production-history needs --param model=… (text)",
        ),
        (
            ["query", "zombie-deployments", "--param", "colour=red"],
            2,
            "Error: query zombie-deployments has no parameter 'colour' (parameters: env)",
        ),
        (
            ["query", "zombie-deployments", "--param", "env"],
            2,
            "Error: malformed --param 'env': expected NAME=VALUE",
        ),
        (["sql", "SELECT FROM WHERE"], 2, "Error: bad SQL: Parser Error"),
        (["sql", "SELECT * FROM nothing"], 2, "Error: SQL failed: Catalog Error"),
        (["status", "--as-of", "last tuesday"], 2, "Error: invalid --as-of timestamp"),
        (["history", "fraud.xgb:0"], 2, "Error: expected MODEL:VERSION"),
        (["status", "--as-of", "2026-01-01", "--at-seq", "3"], 2, "Error: give --as-of"),
        (["status", "--format", "parquet"], 2, "Error: --format parquet needs --out FILE"),
    ],
)
def test_cli_errors_are_one_line(invoke, env, args, code, stderr) -> None:
    r = invoke(args, env)
    assert r.exit_code == code
    assert r.stdout == ""
    assert r.stderr.startswith(stderr)
    assert r.stderr.count("\n") == 1


def test_cli_query_json_and_history_jsonl(invoke, env) -> None:
    r = invoke(["query", "self-approval", "--param", "env=production", "--format", "json"], env)
    assert r.exit_code == 0
    assert json.loads(r.stdout) == [
        {"seq": 16, "ts": "2026-02-10T10:00:00.000000Z", "violation": "deployer approved it",
         "ref": "fraud.xgb:2", "env": "production", "actor": "frank", "conflicting_seq": 15},
        {"seq": 18, "ts": "2026-02-16T10:00:00.000000Z", "violation": "approver is registrant",
         "ref": "churn.gbm:1", "env": "production", "actor": "erin", "conflicting_seq": 17},
    ]  # fmt: skip
    r = invoke(["history", "fraud.xgb:2", "--as-of", "2026-02-05", "--format", "jsonl"], env)
    assert r.exit_code == 0
    assert [json.loads(ln)["action"] for ln in r.stdout.splitlines()] == ["register", "approve"]


def test_cli_parquet_out_keeps_types(invoke, env, tmp_path: Path) -> None:
    out = tmp_path / "live.parquet"
    r = invoke(["sql", "SELECT * FROM live", "--format", "parquet", "--out", str(out)], env)
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "")
    t = pq.read_table(out)
    assert t.num_rows == 3
    assert str(t.schema.field("since").type) == "timestamp[us, tz=UTC]"
    assert str(t.schema.field("approved_by").type) == "list<element: string>"


def test_cli_queries_lists_them(invoke) -> None:
    r = invoke(["queries", "--format", "csv"])
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert lines[0] == "name,params,description"
    assert [ln.split(",")[0] for ln in lines[1:]] == sorted(load_queries())
    history = next(ln for ln in lines if ln.startswith("production-history,"))
    assert history.startswith('production-history,model env=production,"Every version')


def test_queries_folder_is_next_to_the_package() -> None:
    assert QUERIES_DIR.is_dir() and any(QUERIES_DIR.glob("*.sql"))


def test_large_tables_print_as_plain_aligned_columns() -> None:
    import io

    import pyarrow as pa

    from ledger.output import RICH_MAX_ROWS, render_arrow

    n = RICH_MAX_ROWS + 1
    table = pa.table({"model": [f"m{i}" for i in range(n)], "live": ["production=1"] * n})
    buf = io.StringIO()
    render_arrow(table, "table", out=buf, title="as of 2026-03-01T00:00:00.000000Z")
    lines = buf.getvalue().splitlines()
    assert lines[:4] == [
        "as of 2026-03-01T00:00:00.000000Z",
        "model  live",
        "-----  ------------",
        "m0     production=1",
    ]
    assert len(lines) == n + 3


def test_large_row_tables_are_plain_and_drop_control_characters() -> None:
    """``render`` (``ledger log``) above RICH_MAX_ROWS: plain columns, and a comment's
    terminal escapes or line breaks cannot reach the terminal or split a row."""
    import io

    from ledger.output import RICH_MAX_ROWS, render

    n = RICH_MAX_ROWS + 1
    rows = [{"seq": i, "details": "ok"} for i in range(n)]
    rows[1]["details"] = "evil\x1b[2J\x07 line\nbreak\tand\x9bC1"
    buf = io.StringIO()
    render(rows, ["seq", "details"], "table", out=buf)
    lines = buf.getvalue().splitlines()
    assert lines[:4] == [
        "seq   details",
        "----  ------------------------",
        "0     ok",
        "1     evil[2J line break andC1",
    ]
    assert len(lines) == n + 2


@pytest.mark.parametrize(
    ("args", "code", "out"),
    [
        (["status", "fraud.nope"], 3, "Error: model fraud.nope is not registered\n"),
        (["history", "fraud.nope"], 3, "Error: model fraud.nope is not registered\n"),
        (["status", "fraud.tiny:9"], 3, "Error: fraud.tiny:9 is not registered (latest is fraud.tiny:1)\n"),
        (["history", "fraud.tiny:9"], 3, "Error: fraud.tiny:9 is not registered (latest is fraud.tiny:1)\n"),
        (["status", "fraud.nope", "--env", "production"], 3, "Error: model fraud.nope is not registered\n"),
    ],
    ids=["status_unknown_model", "history_unknown_model", "status_unknown_version",
         "history_unknown_version", "status_env_unknown_model"],
)  # fmt: skip
def test_an_unknown_model_or_version_is_exit_3_everywhere(invoke, env, args, code, out) -> None:
    r = invoke(args, env)
    assert (r.exit_code, r.stdout, r.stderr) == (code, "", out)


def test_status_takes_model_colon_version_as_history_does(invoke, env) -> None:
    r = invoke(["status", "fraud.xgb:2", "--format", "csv"], env)
    assert r.exit_code == 0, r.stderr
    rows = r.stdout.splitlines()
    assert len(rows) == 2 and rows[1].startswith("2,")
    full = invoke(["status", "fraud.xgb", "--format", "csv"], env).stdout.splitlines()
    assert rows[1] in full and len(full) > 2
