"""``ledger demo``: a small but realistic registry history, built through the public API."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from .errors import InputError, LedgerError
from .keys import SigningKey, write_key_files
from .ledger import Ledger

#: The demo's governance policy (what `ledger policy set mrm.toml` would record).
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
}


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
        keys[name] = SigningKey.generate()
        write_key_files(keys_dir / f"{name}.pem", keys[name])

    def step(text: str) -> None:
        echo(f"  {text}")

    echo(f"Building a demo ledger in {path} (keys in {keys_dir})")
    led = Ledger.init(path, keys["admin"], "admin", origin="demo.example/fraud-models")
    step("admin created the ledger (genesis)")
    for name, role in ACTORS.items():
        if name != "admin":
            led.add_key(keys[name].public_key, name, role, key=keys["admin"])
    step("admin registered keys: alice, erin (registrar), bob, dave (approver), carol (deployer)")

    base_dir = art_dir / "fraud-base"
    base_dir.mkdir(parents=True)
    (base_dir / "model.json").write_text('{"trees": 200, "depth": 6}\n')
    (base_dir / "weights.bin").write_bytes(bytes(range(256)) * 16)
    train = "train=s3://risk-data/transactions-2026q1.parquet@sha256:" + "1f" * 32
    holdout = "holdout=s3://risk-data/holdout-2026q1.parquet@sha256:" + "2e" * 32
    base = led.register(
        "fraud.detector.base",
        key=keys["alice"],
        artifact=base_dir,
        artifact_uri="s3://models/fraud/base/1",
        datasets=[train, holdout],
        code="https://git.example/risk/fraud@3f2a9c1",
        metrics=["auc=0.88"],
        tags=["team=risk", "risk_tier=high"],
        description="gradient-boosted base model",
    )
    step(f"alice registered {base.ref} (artifact folder digested, 2 datasets, code commit)")
    xgb_file = art_dir / "fraud-xgb-1.bin"
    xgb_file.write_bytes(b"xgb-v1" * 1000)
    xgb1 = led.register(
        "fraud.detector.xgb",
        key=keys["alice"],
        artifact=xgb_file,
        datasets=[train],
        code="https://git.example/risk/fraud@9b1d4e7",
        parents=["fraud.detector.base:1=finetune"],
        metrics=["auc=0.91", "precision=0.83"],
        tags=["team=risk", "risk_tier=high"],
    )
    step(f"alice registered {xgb1.ref}, fine-tuned from {base.ref}")
    tiny = led.register(
        "fraud.detector.tiny",
        key=keys["erin"],
        artifact={"digest": "sha256:" + "7c" * 32},
        artifact_uri="s3://models/fraud/tiny/1",
        code="https://git.example/risk/distill@c0ffee1",
        parents=["fraud.detector.xgb:1=distill"],
        metrics=["auc=0.89"],
        tags=["team=edge"],
    )
    step(f"erin registered {tiny.ref}, distilled from {xgb1.ref}")

    led.approve("fraud.detector.xgb", 1, "staging", key=keys["bob"], comment="offline eval ok")
    led.deploy("fraud.detector.xgb", 1, "staging", key=keys["carol"])
    led.approve(
        "fraud.detector.xgb", 1, "production", key=keys["bob"], comment="passed bias review"
    )
    led.deploy("fraud.detector.xgb", 1, "production", key=keys["carol"])
    step("bob approved fraud.detector.xgb:1 for staging and production; carol deployed it to both")

    xgb2 = led.register(
        "fraud.detector.xgb",
        key=keys["alice"],
        artifact={"digest": "sha256:" + "5d" * 32},
        artifact_uri="s3://models/fraud/xgb/2",
        datasets=[train, "extra=s3://risk-data/chargebacks-2026q2.parquet@sha256:" + "3a" * 32],
        code="https://git.example/risk/fraud@a41c9e2",
        parents=["fraud.detector.base:1=retrain"],
        metrics=["auc=0.93", "precision=0.85"],
        tags=["team=risk", "risk_tier=high"],
    )
    led.approve("fraud.detector.xgb", 2, "staging", key=keys["dave"])
    led.deploy("fraud.detector.xgb", 2, "staging", key=keys["carol"])
    led.approve("fraud.detector.xgb", 2, "production", key=keys["bob"])
    led.deploy("fraud.detector.xgb", 2, "production", key=keys["carol"], comment="weekly release")
    step(f"{xgb2.ref} registered, approved (dave: staging, bob: production) and deployed")

    led.deploy(
        "fraud.detector.xgb",
        1,
        "production",
        key=keys["carol"],
        comment="rollback: false positives up 4x",
    )
    led.reject("fraud.detector.xgb", 2, key=keys["bob"], comment="false-positive regression")
    step("carol rolled production back to fraud.detector.xgb:1; bob rejected fraud.detector.xgb:2")

    led.revoke_key(keys["dave"].key_id, key=keys["admin"], reason="left the company")
    try:
        led.approve("fraud.detector.tiny", 1, "staging", key=keys["dave"])
    except LedgerError as exc:
        step(f"admin revoked dave's key; dave's next approval was refused: {exc}")
    led.approve("fraud.detector.tiny", 1, "staging", key=keys["bob"])
    led.deploy("fraud.detector.tiny", 1, "staging", key=keys["carol"])
    led.deprecate("fraud.detector.base", 1, key=keys["alice"], comment="superseded by xgb")
    step(
        "bob approved and carol deployed fraud.detector.tiny:1 to staging; alice deprecated the base"
    )

    # Governance (issue 6): from here on every event is checked against a recorded policy.
    led.set_policy(MRM_POLICY, key=keys["admin"], comment="MRM-7 v1, approved by the risk board")
    step(
        "admin set the model risk policy (ledger policy show): 1 approval for staging and 2 for"
        " production, no self-approval, required metadata and auc >= 0.85, staging before"
        " production, only carol deploys to production"
    )
    xgb3 = led.register(
        "fraud.detector.xgb",
        key=keys["alice"],
        artifact={"digest": "sha256:" + "6e" * 32},
        artifact_uri="s3://models/fraud/xgb/3",
        datasets=[train, "extra=s3://risk-data/chargebacks-2026q3.parquet@sha256:" + "4b" * 32],
        code="https://git.example/risk/fraud@e7d2b90",
        parents=["fraud.detector.xgb:1=retrain"],
        metrics=["auc=0.92", "precision=0.86"],
        tags=["team=risk", "risk_tier=high"],
    )
    step(f"alice registered {xgb3.ref} with everything the policy asks for")
    led.approve("fraud.detector.tiny", 1, "production", key=keys["bob"], comment="edge rollout")
    try:
        led.deploy("fraud.detector.tiny", 1, "production", key=keys["carol"])
    except LedgerError as exc:
        step(
            f"bob approved fraud.detector.tiny:1 for production; carol's deploy was stopped: {exc}"
        )
    grant = led.break_glass(
        "deploy",
        "fraud.detector.tiny",
        1,
        "production",
        rule="approvals",
        justification="INC-2291: edge fraud scoring is down; the second reviewer left the company",
        key=keys["admin"],
    )
    led.deploy("fraud.detector.tiny", 1, "production", key=keys["carol"], comment="INC-2291")
    step(
        f"admin broke the glass (seq {grant.seq}: this one deploy may skip the approvals rule);"
        " carol deployed fraud.detector.tiny:1 to production citing it"
        " (ledger verify --policy lists both)"
    )

    report = led.verify()
    echo(report.summary())
    echo(f"Try: ledger --help; ledger log --ledger {path}; LEDGER_PATH={path} ledger verify")
    return led
