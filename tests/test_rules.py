"""Lifecycle and key-registry rules, enforced at append time with exact messages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ledger import Draft, InputError, KeyProblem, NotFoundError, RuleViolation, SigningKey
from ledger import events as E


def snapshot(path: Path) -> dict[str, str]:
    """Every file under ``path`` with the SHA-256 of its bytes (lock file excluded)."""
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


XGB = "fraud.detector.xgb"

CASES = [
    # (name, action(team) -> None, error type, exact message)
    (
        "approve_unknown_model",
        lambda t: t.ledger.approve("no.such.model", 1, "staging", key=t.keys["bob"]),
        NotFoundError,
        "model no.such.model is not registered",
    ),
    (
        "deploy_unknown_version",
        lambda t: t.ledger.deploy(XGB, 9, "staging", key=t.keys["carol"]),
        NotFoundError,
        f"{XGB}:9 is not registered (latest is {XGB}:1)",
    ),
    (
        "deploy_twice",
        lambda t: t.ledger.deploy(XGB, 1, "production", key=t.keys["carol"]),
        RuleViolation,
        f"{XGB}:1 is already deployed to production",
    ),
    (
        "undeploy_not_live",
        lambda t: t.ledger.undeploy(XGB, 1, "canary", key=t.keys["carol"]),
        RuleViolation,
        f"{XGB}:1 is not deployed to canary",
    ),
    (
        "unknown_parent",
        lambda t: t.ledger.register(
            "m.child", key=t.keys["alice"], parents=["m.parent:1=finetune"]
        ),
        NotFoundError,
        "parent m.parent:1 is not registered; parents must be registered first",
    ),
    (
        "registrar_cannot_approve",
        lambda t: t.ledger.approve(XGB, 1, "staging", key=t.keys["alice"]),
        KeyProblem,
        "key {alice} (alice) lacks the 'approver' role needed to approve",
    ),
    (
        "unregistered_key",
        lambda t: t.ledger.approve(XGB, 1, "staging", key=t.keys["stranger"]),
        KeyProblem,
        "key {stranger} is not registered in this ledger",
    ),
    (
        "bad_env",
        lambda t: t.ledger.approve(XGB, 1, "Prod!", key=t.keys["bob"]),
        InputError,
        "invalid environment name 'Prod!': lowercase letters, digits, '_' and '-', starting with a letter, at most 32 characters (e.g. production)",
    ),
    (
        "bad_model_name",
        lambda t: t.ledger.register("-bad", key=t.keys["alice"]),
        InputError,
        "invalid model name '-bad': use letters, digits, '.', '_' and '-', start and end with a letter or digit, at most 128 characters (e.g. fraud.detector.xgb)",
    ),
    (
        "revoke_unknown_key",
        lambda t: t.ledger.revoke_key("0123456789abcdef", key=t.keys["admin"]),
        NotFoundError,
        "key 0123456789abcdef is not registered",
    ),
    (
        "revoke_last_admin",
        lambda t: t.ledger.revoke_key(t.keys["admin"].key_id, key=t.keys["admin"]),
        RuleViolation,
        "cannot revoke key {admin}: it is the last admin key",
    ),
    (
        "add_key_twice",
        lambda t: t.ledger.add_key(
            t.keys["bob"].public_key, "bob2", "approver", key=t.keys["admin"]
        ),
        RuleViolation,
        "key {bob} is already registered (actor bob)",
    ),
    (
        "non_admin_adds_key",
        lambda t: t.ledger.add_key(
            SigningKey.generate().public_key, "eve", "admin", key=t.keys["alice"]
        ),
        KeyProblem,
        "key {alice} (alice) lacks the 'admin' role needed to key_add",
    ),
]


@pytest.mark.parametrize(("name", "act", "error", "message"), CASES, ids=[c[0] for c in CASES])
def test_refused_and_nothing_written(history, name, act, error, message):
    history.keys["stranger"] = SigningKey.generate()
    ids = {n: k.key_id for n, k in history.keys.items()}
    before = snapshot(history.path)
    with pytest.raises(error) as exc:
        act(history)
    assert str(exc.value) == message.format(**ids)
    assert snapshot(history.path) == before
    assert history.ledger.verify().ok


def test_rejected_and_deprecated_versions(history):
    led, k = history.ledger, history.keys
    led.register(XGB, key=k["alice"])
    led.reject(XGB, 2, key=k["bob"], comment="bias")
    with pytest.raises(
        RuleViolation, match=rf"^cannot deploy {XGB}:2: it was rejected at seq \d+$"
    ):
        led.deploy(XGB, 2, "staging", key=k["carol"])
    with pytest.raises(
        RuleViolation, match=rf"^cannot approve {XGB}:2: it was rejected at seq \d+$"
    ):
        led.approve(XGB, 2, "staging", key=k["bob"])
    with pytest.raises(RuleViolation, match=rf"^{XGB}:2 is already rejected \(seq \d+\)$"):
        led.reject(XGB, 2, key=k["bob"])
    led.deprecate("fraud.detector.base", 1, key=k["alice"])
    with pytest.raises(
        RuleViolation, match=r"^cannot deploy fraud.detector.base:1: it was deprecated at seq \d+$"
    ):
        led.deploy("fraud.detector.base", 1, "staging", key=k["carol"])
    with pytest.raises(
        RuleViolation, match=r"^fraud.detector.base:1 is already deprecated \(seq \d+\)$"
    ):
        led.deprecate("fraud.detector.base", 1, key=k["alice"])
    # The facade refuses to leave a deprecated version live (a zombie deployment) ...
    with pytest.raises(RuleViolation) as info:
        led.deprecate(XGB, 1, key=k["alice"])
    assert (info.value.kind, str(info.value)) == (
        "live_version",
        f"cannot deprecate {XGB}:1: it is live in production (deployed at seq 10), staging"
        " (deployed at seq 8); undeploy it first, or give --undeploy to record the undeploys"
        " with it",
    )
    # ... unless asked to undeploy it first, in the same atomic batch, signed by the one
    # key (which must then hold the deployer role too: alice's does not).
    with pytest.raises(KeyProblem, match="lacks the 'deployer' role needed to undeploy"):
        led.deprecate(XGB, 1, key=k["alice"], undeploy=True)
    ops = SigningKey(b"o" * 32)
    led.add_key(ops.public_key, "ops", "registrar,deployer", key=k["admin"])
    r = led.deprecate(XGB, 1, key=ops, undeploy=True)
    tail = led.history(XGB, 1).to_pylist()[-3:]
    assert [(e["action"], e["env"], e["actor"]) for e in tail] == [
        ("undeploy", "production", "ops"),
        ("undeploy", "staging", "ops"),
        ("deprecate", None, "ops"),
    ]
    assert r.action == "deprecate" and led.status(env="production").num_rows == 0
    # A raw draft may still record one as it happened (an importer's history), and the
    # format keeps it legal: verify accepts it, and the zombie can be undeployed.
    led.register(XGB, key=k["alice"])
    led.approve(XGB, 3, "staging", key=k["bob"])
    led.deploy(XGB, 3, "staging", key=k["carol"])
    led.append(Draft(E.DEPRECATE, {}, XGB, 3), k["alice"])
    led.undeploy(XGB, 3, "staging", key=k["carol"])
    assert led.verify().ok


def test_versions_are_assigned_per_model(team):
    led, k = team.ledger, team.keys
    assert [led.register("a.m", key=k["alice"]).version for _ in range(3)] == [1, 2, 3]
    assert led.register("b.m", key=k["alice"]).version == 1


def test_deploy_replaces_and_rollback(history):
    led, k = history.ledger, history.keys
    led.register(XGB, key=k["alice"])
    led.deploy(XGB, 2, "production", key=k["carol"])
    state = led.state()
    assert state.live[(XGB, "production")] == 2
    assert "production" not in state.versions[(XGB, 1)].live
    led.deploy(XGB, 1, "production", key=k["carol"])  # rollback
    assert led.state().live[(XGB, "production")] == 1


def test_revoked_key_refused(history):
    led, k = history.ledger, history.keys
    led.revoke_key(k["dave"].key_id, key=k["admin"], reason="left")
    with pytest.raises(KeyProblem) as exc:
        led.approve(XGB, 1, "staging", key=k["dave"])
    assert str(exc.value) == f"key {k['dave'].key_id} (dave) was revoked at seq 11"
    assert exc.value.kind == "revoked_key"


def test_actor_is_bound_to_key(history):
    events = history.ledger.events().to_pylist()
    by_key = {key.key_id: key.actor for key in history.ledger.keys()}
    assert all(by_key[e["key_id"]] == e["actor"] for e in events)


def test_append_many_is_all_or_nothing(history):
    led, k = history.ledger, history.keys
    before = snapshot(history.path)
    with pytest.raises(NotFoundError):
        led.append_many(
            [
                Draft("approve", {"env": "staging"}, XGB, 1),
                Draft("approve", {"env": "staging"}, XGB, 7),  # no such version
            ],
            k["bob"],
        )
    assert snapshot(history.path) == before


def test_importer_timestamps_must_not_go_backwards(history):
    led, k = history.ledger, history.keys
    with pytest.raises(InputError, match="events must not go back in time"):
        led.append_many([Draft("register", {}, "old.model", ts=1_000_000)], k["alice"])


def test_register_payload_shape(team, tmp_path):
    art = tmp_path / "model"
    (art / "sub").mkdir(parents=True)
    (art / "a.bin").write_bytes(b"a")
    (art / "sub" / "b.bin").write_bytes(b"b")
    led, k = team.ledger, team.keys
    led.register("fraud.base", key=k["alice"])
    led.register(
        "fraud.x",
        key=k["alice"],
        artifact=art,
        artifact_uri="s3://models/x/1",
        datasets=["train=s3://b/t.parquet@sha256:" + "ab" * 32, "eval=s3://b/e.parquet"],
        code="https://git.example/repo@3f2a9c1",
        parents=["fraud.base:1=finetune"],
        metrics=["auc=0.91", "n=3"],
        params=["lr=0.1"],
        tags=["team=risk"],
        metadata={"owner": {"team": "risk"}},
        description="xgb",
    )
    v = led.state().versions[("fraud.x", 1)]
    assert v.parents == [("fraud.base", 1, "finetune")]
    import json

    payload = json.loads(led.events(model="fraud.x")["payload"][0].as_py())
    a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    assert payload["artifact"]["digest"] == "sha256:" + hashlib.sha256(a + b).hexdigest()
    assert [r["name"] for r in payload["artifact"]["manifest"]["resources"]] == [
        "a.bin",
        "sub/b.bin",
    ]
    assert payload["datasets"][1] == {"name": "eval", "uri": "s3://b/e.parquet"}
    assert payload["code"] == {"repo": "https://git.example/repo", "commit": "3f2a9c1"}
    assert payload["metrics"] == {"auc": 0.91, "n": 3}
    assert payload["metadata"] == {"owner": {"team": "risk"}}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"datasets": ["train"]}, "malformed --dataset 'train': expected NAME=URI[@sha256:HEX]"),
        (
            {"datasets": ["t=s3://x@sha256:abc"]},
            "the digest must be sha256: and 64 lowercase hex digits",
        ),
        (
            {"code": "https://git.example/repo"},
            "malformed --code 'https://git.example/repo': expected REPOSITORY@COMMIT",
        ),
        (
            {"code": "https://git.example/repo@main"},
            "the commit must be 7 to 64 lowercase hex digits",
        ),
        (
            {"parents": ["fraud.base:1"]},
            "malformed --parent 'fraud.base:1': expected MODEL:VERSION=RELATION",
        ),
        (
            {"parents": ["fraud.base:x=finetune"]},
            "expected MODEL:VERSION (e.g. fraud.detector.xgb:4), got 'fraud.base:x'",
        ),
        (
            {"parents": ["fraud.base:1=copy"]},
            "unknown relation 'copy' in parent 'fraud.base:1=copy'",
        ),
        ({"metrics": ["auc=high"]}, "malformed --metric 'auc=high': 'high' is not a number"),
        ({"metrics": ["auc=nan"]}, "malformed --metric 'auc=nan': metrics must be finite numbers"),
        ({"artifact": "/definitely/not/here"}, "artifact /definitely/not/here does not exist"),
        ({"tags": ["a=1", "a=2"]}, "tag 'a' is given twice"),
    ],
)
def test_register_bad_input(team, kwargs, message):
    before = snapshot(team.path)
    with pytest.raises(InputError) as exc:
        team.ledger.register("fraud.x", key=team.keys["alice"], **kwargs)
    assert message in str(exc.value)
    assert snapshot(team.path) == before


def test_open_not_a_ledger(tmp_path):
    from ledger import Ledger

    with pytest.raises(NotFoundError, match="is not a ledger: no such folder"):
        Ledger.open(tmp_path / "nope")
    with pytest.raises(NotFoundError, match=r"is not a ledger: ledger\.json is missing"):
        Ledger.open(tmp_path)


def test_next_writer_removes_temporaries_of_killed_writers(history):
    """Temporaries of a killed segment, checkpoint or tree-cache write never stay behind."""
    root = history.path
    (root / "checkpoints").mkdir(exist_ok=True)
    (root / "tree").mkdir(exist_ok=True)
    leftovers = [
        root / "events" / ".tmp-999-000000000099-000000000099.parquet",
        root / "checkpoints" / ".tmp-999-000000000008-abc.checkpoint",
        root / "tree" / ".tmp-999-blocks",
    ]
    for p in leftovers:
        p.write_bytes(b"half written")
    assert history.ledger.verify().ok  # readers ignore them
    history.ledger.register("fraud.new", key=history.keys["alice"])
    assert [p for p in leftovers if p.exists()] == []
