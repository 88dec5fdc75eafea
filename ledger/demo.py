"""``ledger demo``: a small but realistic registry history, built through the public API.

The demo is deterministic, so that README.md can paste its output (tests/test_readme.py
regenerates every pasted block and fails when one drifts):

- Every event carries a fixed past time, from 2 March 2026 (genesis) to 15 September
  2026 (the break-glass deploy), written the way an importer writes history
  (``Draft.ts``); times never go backwards. README.md names some of them.
- Every key is derived from a fixed, published seed (:func:`demo_key`), so key ids,
  hashes and signatures are the same on every machine. Anyone can rebuild these
  private keys: they are for the demo only and must never sign a real ledger.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from . import actions
from . import events as E
from .errors import InputError, LedgerError
from .keys import SigningKey, write_key_files
from .ledger import Ledger, Receipt
from .policydoc import Policy, to_toml

#: The demo's governance policy (the demo writes it to PATH-artifacts/mrm.toml too).
MRM_POLICY = {
    "description": "Fraud models: model risk management policy MRM-7",
    "approvals": {"required": {"staging": 1, "production": 2}, "max_age_days": 90},
    "separation_of_duties": {"registrant_may_not_approve": True, "approver_may_not_deploy": True},
    "register_metadata": {
        "artifact_digest": True,
        "datasets_with_digest": 1,
        "code_commit": True,
        "tags": ["risk_tier"],
        "metrics": ["auc >= 0.85"],
    },
    "promotion_order": {"environments": ["staging", "production"]},
    "signers": [{"action": "deploy", "env": "production", "actors": ["carol"]}],
}

ACTORS = {
    "admin": "admin",
    "alice": "registrar",  # data scientist
    "erin": "registrar",  # data scientist, distillation team
    "bob": "approver",  # model risk reviewer
    "dave": "approver",  # second reviewer, leaves the company
    "carol": "deployer",  # ML platform engineer
    "notary": "checkpointer",  # signs checkpoints for auditors
}

DEMO_ORIGIN = "demo.example/fraud-models"


def demo_key(name: str) -> SigningKey:
    """The demo key of ``name``: its seed is SHA-256 of ``ledger demo key/NAME``. Public
    knowledge, so that the demo's output is the same everywhere: for the demo only."""
    return SigningKey(hashlib.sha256(f"ledger demo key/{name}".encode()).digest())


def run_demo(path: Path, force: bool = False, echo: Callable[[str], None] = print) -> Ledger:
    """Build the demo ledger in ``path``, keys in ``path``-keys, artifacts in ``path``-artifacts."""
    keys_dir = path.with_name(path.name + "-keys")
    art_dir = path.with_name(path.name + "-artifacts")
    for p in (path, keys_dir, art_dir):
        if p.exists():
            if not force:
                raise InputError(f"{p} already exists; pass --force to rebuild the demo")
            shutil.rmtree(p)
    keys_dir.mkdir(parents=True, mode=0o700)
    keys = {}
    for name in ACTORS:
        keys[name] = demo_key(name)
        write_key_files(keys_dir / f"{name}.pem", keys[name])

    def step(text: str) -> None:
        echo(f"  {text}")

    def at(when: str) -> int:
        return E.parse_instant(when)

    echo(f"Building a demo ledger in {path} (keys in {keys_dir})")
    echo("  (demo keys come from published seeds: never use them for a real ledger)")
    led = Ledger.init(
        path, keys["admin"], "admin", origin=DEMO_ORIGIN, ts=at("2026-03-02T09:00:00Z")
    )

    def write(draft: E.Draft, when: str, signer: str) -> Receipt:
        # (the facade's write methods take no time: the demo writes its drafts as an
        # importer would, each at its place in the timeline, policy still enforced)
        return led.append(replace(draft, ts=at(when)), keys[signer])

    def act(action: str, ref: str, when: str, signer: str, **fields: str) -> Receipt:
        model, version = E.parse_model_ref(ref)
        return write(actions.model_action(action, model, version, **fields), when, signer)

    step("admin created the ledger (genesis, 2 March 2026)")
    for name, role in ACTORS.items():
        if name != "admin":
            write(
                actions.key_add(keys[name].public_key, name, role), "2026-03-02T09:05:00Z", "admin"
            )
    step(
        "admin registered keys: alice, erin (registrar), bob, dave (approver), carol (deployer),"
        " notary (checkpointer)"
    )

    base_dir = art_dir / "fraud-base"
    base_dir.mkdir(parents=True)
    (base_dir / "model.json").write_text('{"trees": 200, "depth": 6}\n')
    (base_dir / "weights.bin").write_bytes(bytes(range(256)) * 16)
    (art_dir / "mrm.toml").write_text(to_toml(Policy.from_dict(MRM_POLICY).to_dict()))
    train = "train=s3://risk-data/transactions-2026q1.parquet@sha256:" + "1f" * 32
    holdout = "holdout=s3://risk-data/holdout-2026q1.parquet@sha256:" + "2e" * 32
    base = write(
        actions.register(
            "fraud.detector.base",
            artifact=base_dir,
            artifact_uri="s3://models/fraud/base/1",
            datasets=[train, holdout],
            code="https://git.example/risk/fraud@3f2a9c1",
            metrics=["auc=0.88"],
            tags=["team=risk", "risk_tier=high"],
            description="gradient-boosted base model",
        ),
        "2026-03-02T10:00:00Z",
        "alice",
    )
    step(f"alice registered {base.ref} (artifact folder digested, 2 datasets, code commit)")
    xgb_file = art_dir / "fraud-xgb-1.bin"
    xgb_file.write_bytes(b"xgb-v1" * 1000)
    xgb1 = write(
        actions.register(
            "fraud.detector.xgb",
            artifact=xgb_file,
            datasets=[train],
            code="https://git.example/risk/fraud@9b1d4e7",
            parents=["fraud.detector.base:1=finetune"],
            metrics=["auc=0.91", "precision=0.83"],
            tags=["team=risk", "risk_tier=high"],
        ),
        "2026-03-02T14:00:00Z",
        "alice",
    )
    step(f"alice registered {xgb1.ref}, fine-tuned from {base.ref}")
    tiny = write(
        actions.register(
            "fraud.detector.tiny",
            artifact={"digest": "sha256:" + "7c" * 32},
            artifact_uri="s3://models/fraud/tiny/1",
            code="https://git.example/risk/distill@c0ffee1",
            parents=["fraud.detector.xgb:1=distill"],
            metrics=["auc=0.89"],
            tags=["team=edge"],
        ),
        "2026-03-03T09:30:00Z",
        "erin",
    )
    step(f"erin registered {tiny.ref}, distilled from {xgb1.ref}")

    xgb = "fraud.detector.xgb"
    act(
        E.APPROVE,
        f"{xgb}:1",
        "2026-03-03T11:00:00Z",
        "bob",
        env="staging",
        comment="offline eval ok",
    )
    act(E.DEPLOY, f"{xgb}:1", "2026-03-03T11:30:00Z", "carol", env="staging")
    act(
        E.APPROVE,
        f"{xgb}:1",
        "2026-03-04T10:00:00Z",
        "bob",
        env="production",
        comment="passed bias review",
    )
    act(E.DEPLOY, f"{xgb}:1", "2026-03-04T10:30:00Z", "carol", env="production")
    step(f"bob approved {xgb}:1 for staging and production; carol deployed it to both (March)")

    xgb2 = write(
        actions.register(
            xgb,
            artifact={"digest": "sha256:" + "5d" * 32},
            artifact_uri="s3://models/fraud/xgb/2",
            datasets=[train, "extra=s3://risk-data/chargebacks-2026q2.parquet@sha256:" + "3a" * 32],
            code="https://git.example/risk/fraud@a41c9e2",
            parents=["fraud.detector.base:1=retrain"],
            metrics=["auc=0.93", "precision=0.85"],
            tags=["team=risk", "risk_tier=high"],
        ),
        "2026-06-15T10:00:00Z",
        "alice",
    )
    act(E.APPROVE, f"{xgb}:2", "2026-06-16T11:00:00Z", "dave", env="staging")
    act(E.DEPLOY, f"{xgb}:2", "2026-06-16T11:30:00Z", "carol", env="staging")
    act(E.APPROVE, f"{xgb}:2", "2026-06-22T10:00:00Z", "bob", env="production")
    act(
        E.DEPLOY,
        f"{xgb}:2",
        "2026-06-22T10:30:00Z",
        "carol",
        env="production",
        comment="weekly release",
    )
    step(f"{xgb2.ref} registered, approved (dave: staging, bob: production) and deployed (June)")

    act(
        E.DEPLOY,
        f"{xgb}:1",
        "2026-06-25T08:00:00Z",
        "carol",
        env="production",
        comment="rollback: false positives up 4x",
    )
    act(E.REJECT, f"{xgb}:2", "2026-06-25T09:00:00Z", "bob", comment="false-positive regression")
    step(f"carol rolled production back to {xgb}:1; bob rejected {xgb}:2")

    write(
        actions.key_revoke(keys["dave"].key_id, "left the company"), "2026-07-01T09:00:00Z", "admin"
    )
    try:
        act(E.APPROVE, "fraud.detector.tiny:1", "2026-07-01T09:30:00Z", "dave", env="staging")
    except LedgerError as exc:
        step(f"admin revoked dave's key; dave's next approval was refused: {exc}")
    act(E.APPROVE, "fraud.detector.tiny:1", "2026-07-02T10:00:00Z", "bob", env="staging")
    act(E.DEPLOY, "fraud.detector.tiny:1", "2026-07-02T10:30:00Z", "carol", env="staging")
    act(
        E.DEPRECATE,
        "fraud.detector.base:1",
        "2026-07-02T15:00:00Z",
        "alice",
        comment="superseded by xgb",
    )
    step(
        "bob approved and carol deployed fraud.detector.tiny:1 to staging; alice deprecated the base"
    )

    # Governance (issue 6): from here on every event is checked against a recorded policy.
    write(
        actions.policy_set(MRM_POLICY, "MRM-7 v1, approved by the risk board"),
        "2026-09-01T09:00:00Z",
        "admin",
    )
    step(
        "admin set the model risk policy (ledger policy show): 1 approval for staging and 2 for"
        " production, no self-approval, required metadata and auc >= 0.85, staging before"
        " production, only carol deploys to production"
    )
    xgb3 = write(
        actions.register(
            xgb,
            artifact={"digest": "sha256:" + "6e" * 32},
            artifact_uri="s3://models/fraud/xgb/3",
            datasets=[
                train,
                "extra=s3://risk-data/chargebacks-2026q3.parquet@sha256:" + "4b" * 32,
            ],
            code="https://git.example/risk/fraud@e7d2b90",
            parents=["fraud.detector.xgb:1=retrain"],
            metrics=["auc=0.92", "precision=0.86"],
            tags=["team=risk", "risk_tier=high"],
        ),
        "2026-09-14T10:00:00Z",
        "alice",
    )
    step(f"alice registered {xgb3.ref} with everything the policy asks for")
    act(
        E.APPROVE,
        "fraud.detector.tiny:1",
        "2026-09-15T10:00:00Z",
        "bob",
        env="production",
        comment="edge rollout",
    )
    try:
        act(E.DEPLOY, "fraud.detector.tiny:1", "2026-09-15T10:30:00Z", "carol", env="production")
    except LedgerError as exc:
        step(
            f"bob approved fraud.detector.tiny:1 for production; carol's deploy was stopped: {exc}"
        )
    grant = write(
        actions.break_glass(
            "deploy",
            "fraud.detector.tiny",
            1,
            "production",
            "approvals",
            "INC-2291: edge fraud scoring is down; the second reviewer left the company",
        ),
        "2026-09-15T11:00:00Z",
        "admin",
    )
    act(
        E.DEPLOY,
        "fraud.detector.tiny:1",
        "2026-09-15T11:15:00Z",
        "carol",
        env="production",
        comment="INC-2291",
    )
    step(
        f"admin broke the glass (seq {grant.seq}: this one deploy may skip the approvals rule);"
        " carol deployed fraud.detector.tiny:1 to production citing it"
        " (ledger verify --policy lists both)"
    )

    write(actions.alias_set(xgb, 1, "champion"), "2026-09-16T09:00:00Z", "carol")
    write(actions.alias_set(xgb, 3, "challenger"), "2026-09-16T09:05:00Z", "carol")
    write(
        actions.describe(xgb, None, "XGBoost card-fraud scorer, fine-tuned from the base model"),
        "2026-09-16T09:10:00Z",
        "alice",
    )
    step(
        f"carol named {xgb}:1 champion and {xgb}:3 challenger (ledger alias list {xgb});"
        f" alice described {xgb}"
    )

    cp = led.checkpoint(keys["notary"])
    step(
        f"notary signed a checkpoint of all {cp.size} events"
        f" ({path.name}/checkpoints/{Path(cp.path).name}): ledger evidence works from here"
    )
    report = led.verify()
    echo(report.summary())
    echo(
        f"Try: ledger --help; ledger log --ledger {path};"
        f" ledger evidence {xgb}:1 --out xgb1.json --ledger {path}"
    )
    return led
