"""A scripted model story shared by the evidence tests: xgb:1 registered, approved,
deployed to staging, deployed to production under a break-glass grant, replaced there
by xgb:2, undeployed from staging, rejected and deprecated; a checkpoint after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger import SigningKey
from ledger.keys import public_key_pem, write_key_files

XGB, BASE = "fraud.detector.xgb", "fraud.detector.base"
JUSTIFICATION = "INC-2291: fraud spike, hotfix approved by the CRO"


def scripted_story(team: Any, tmp_path: Path, invoke: Any) -> Any:
    """The scripted story of xgb:1 (seqs in comments), a checkpoint and its bundle."""
    t, led, k = team, team.ledger, team.keys
    t.keys["cp"] = SigningKey(b"c" * 32)
    t.key_files["cp"] = tmp_path / "keys" / "cp.pem"
    write_key_files(t.key_files["cp"], t.keys["cp"])
    led.add_key(t.keys["cp"].public_key, "cp", "checkpointer", key=k["admin"])  # 5
    led.register(BASE, key=k["alice"])  # 6
    led.register(XGB, key=k["alice"], parents=[f"{BASE}:1=finetune"])  # 7
    led.set_policy({"approvals": {"required": {"production": 1}}}, key=k["admin"])  # 8
    led.approve(XGB, 1, "staging", key=k["bob"])  # 9
    led.deploy(XGB, 1, "staging", key=k["carol"])  # 10
    led.break_glass("deploy", XGB, 1, "production", rule="approvals",
                    justification=JUSTIFICATION, key=k["admin"])  # 11  # fmt: skip
    led.deploy(XGB, 1, "production", key=k["carol"])  # 12, under grant 11
    led.register(XGB, key=k["alice"])  # 13
    led.approve(XGB, 2, "production", key=k["dave"])  # 14
    led.deploy(XGB, 2, "production", key=k["carol"])  # 15: ends xgb:1 in production
    led.undeploy(XGB, 1, "staging", key=k["carol"])  # 16
    led.reject(XGB, 1, key=k["bob"], comment="bias regression")  # 17
    led.deprecate(XGB, 1, key=k["alice"])  # 18
    led.approve(BASE, 1, "staging", key=k["bob"])  # 19: not in xgb:1's story
    r = invoke(["checkpoint"], env=t.env("cp"))
    assert r.exit_code == 0, r.stderr
    t.bundle = tmp_path / "xgb1.json"
    r = invoke(["evidence", f"{XGB}:1", "--out", str(t.bundle)], env=t.env())
    assert r.exit_code == 0, r.stderr
    t.cp_pub = tmp_path / "cp.pub"
    t.cp_pub.write_bytes(public_key_pem(t.keys["cp"].public_key))
    return t
