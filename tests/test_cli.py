"""The CLI end to end: exact output, exit codes, and untouched ledgers on bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import stat

import pytest

from ledger import Ledger

from .test_rules import snapshot

XGB = "fraud.detector.xgb"


def last_hash(path) -> str:
    return Ledger.open(path).events(columns=["hash"])["hash"][-1].as_py().hex()


def test_full_workflow(tmp_path, invoke, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke(["init", "reg", "--key", "admin.pem", "--actor", "admin"])
    assert r.exit_code == 0, r.output
    admin_id = Ledger.open("reg").keys()[0].key_id
    assert r.stdout.splitlines() == [
        f"generated key {admin_id} in admin.pem (public key in admin.pub)",
        f"created ledger {Ledger.open('reg').origin} in reg; admin admin key {admin_id}",
    ]
    assert stat.S_IMODE(os.stat("admin.pem").st_mode) == 0o600
    for name, roles in [("alice", "registrar"), ("bob", "approver"), ("carol", "deployer")]:
        r = invoke(["keys", "generate", f"{name}.pem"])
        assert r.exit_code == 0 and r.stdout.startswith("key ") and f"public {name}.pub" in r.stdout
        r = invoke(
            ["keys", "add", f"{name}.pub", "--actor", name, "--roles", roles],
            env={"LEDGER_PATH": "reg", "LEDGER_KEY": "admin.pem"},
        )
        assert r.exit_code == 0, r.output
        assert (
            r.stdout
            == f"key_add: seq {Ledger.open('reg').state().next_seq - 1}, hash {last_hash('reg')}\n"
        )

    (tmp_path / "model.bin").write_bytes(b"weights")
    env = {"LEDGER_PATH": "reg", "LEDGER_KEY": "alice.pem"}
    r = invoke(
        [
            "register",
            XGB,
            "--artifact",
            "model.bin",
            "--dataset",
            "train=s3://b/train.parquet@sha256:" + "ab" * 32,
            "--code",
            "https://git.example/repo@3f2a9c1",
            "--metric",
            "auc=0.91",
            "--tag",
            "team=risk",
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert r.stdout == f"register {XGB}:1: seq 4, hash {last_hash('reg')}\n"
    r = invoke(
        [
            "register",
            "fraud.detector.tiny",
            "--parent",
            f"{XGB}:1=distill",
            "--artifact-digest",
            "sha256:" + "cd" * 32,
        ],
        env=env,
    )
    assert r.stdout == f"register fraud.detector.tiny:1: seq 5, hash {last_hash('reg')}\n"

    r = invoke(
        [
            "approve",
            f"{XGB}:1",
            "--env",
            "production",
            "--comment",
            "passed bias review",
            "--ledger",
            "reg",
            "--key",
            "bob.pem",
        ]
    )
    assert r.stdout == f"approve {XGB}:1: seq 6, hash {last_hash('reg')}\n"
    r = invoke(
        ["deploy", f"{XGB}:1", "--env", "production"],
        env={"LEDGER_PATH": "reg", "LEDGER_KEY": "carol.pem"},
    )
    assert r.stdout == f"deploy {XGB}:1: seq 7, hash {last_hash('reg')}\n"
    r = invoke(
        ["undeploy", f"{XGB}:1", "--env", "production"],
        env={"LEDGER_PATH": "reg", "LEDGER_KEY": "carol.pem"},
    )
    assert r.exit_code == 0
    r = invoke(
        ["reject", "fraud.detector.tiny:1", "--comment", "too small"],
        env={"LEDGER_PATH": "reg", "LEDGER_KEY": "bob.pem"},
    )
    assert r.exit_code == 0
    r = invoke(["deprecate", f"{XGB}:1"], env=env)
    assert r.stdout == f"deprecate {XGB}:1: seq 10, hash {last_hash('reg')}\n"

    r = invoke(["verify", "--ledger", "reg"])
    assert (r.exit_code, r.stdout) == (0, f"OK: 11 events, head {last_hash('reg')}\n")

    r = invoke(["log", "--ledger", "reg", "--format", "json"])
    rows = json.loads(r.stdout)
    assert [e["action"] for e in rows] == ["genesis"] + ["key_add"] * 3 + [
        "register",
        "register",
        "approve",
        "deploy",
        "undeploy",
        "reject",
        "deprecate",
    ]
    assert rows[6]["payload"] == {"comment": "passed bias review", "env": "production"}
    assert rows[6]["actor"] == "bob"

    r = invoke(["log", "--ledger", "reg", "--model", XGB, "--format", "csv"])
    parsed = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [p["action"] for p in parsed] == [
        "register",
        "approve",
        "deploy",
        "undeploy",
        "deprecate",
    ]

    r = invoke(["log", "--ledger", "reg", "--limit", "2", "--format", "jsonl"])
    assert [json.loads(line)["seq"] for line in r.stdout.splitlines()] == [9, 10]

    r = invoke(["log", "--ledger", "reg", "--limit", "1"])
    assert "deprecate" in r.stdout and "fraud.detector.xgb:1" in r.stdout

    r = invoke(["keys", "list", "--ledger", "reg", "--format", "csv"])
    keys = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [(k["actor"], k["roles"]) for k in keys] == [
        ("admin", "admin"),
        ("alice", "registrar"),
        ("bob", "approver"),
        ("carol", "deployer"),
    ]
    bob = keys[2]["key_id"]
    r = invoke(["keys", "revoke", bob, "--reason", "left", "--ledger", "reg", "--key", "admin.pem"])
    assert r.exit_code == 0
    r = invoke(
        [
            "approve",
            "fraud.detector.tiny:1",
            "--env",
            "staging",
            "--ledger",
            "reg",
            "--key",
            "bob.pem",
        ]
    )
    assert r.exit_code == 5
    assert r.stderr == f"Error: key {bob} (bob) was revoked at seq 11\n"

    r = invoke(["compact", "--ledger", "reg"])
    assert r.stdout == "compacted 3 segments into 1\n"
    r = invoke(["verify", "--ledger", "reg", "--format", "json"])
    report = json.loads(r.stdout)
    assert report["ok"] is True and report["events"] == 12 and report["segments"] == 1


BAD = [
    # (name, args, actor, exit code, exact stderr)
    (
        "unknown_model",
        ["approve", "nope.model:1", "--env", "staging"],
        "bob",
        3,
        "Error: model nope.model is not registered\n",
    ),
    (
        "bad_ref",
        ["approve", "fraud.detector.xgb", "--env", "staging"],
        "bob",
        2,
        "Error: expected MODEL:VERSION (e.g. fraud.detector.xgb:4), got 'fraud.detector.xgb'\n",
    ),
    (
        "bad_version",
        ["approve", "fraud.detector.xgb:0", "--env", "staging"],
        "bob",
        2,
        "Error: expected MODEL:VERSION (e.g. fraud.detector.xgb:4), got 'fraud.detector.xgb:0'\n",
    ),
    (
        "rule",
        ["deploy", "fraud.detector.xgb:1", "--env", "production"],
        "carol",
        4,
        "Error: fraud.detector.xgb:1 is already deployed to production\n",
    ),
    ("role", ["deploy", "fraud.detector.xgb:1", "--env", "canary"], "bob", 5, None),
    (
        "bad_metric",
        ["register", "m.x", "--metric", "auc"],
        "alice",
        2,
        "Error: malformed --metric 'auc': expected NAME=NUMBER (e.g. auc=0.91)\n",
    ),
    (
        "bad_dataset",
        ["register", "m.x", "--dataset", "s3://bucket/x"],
        "alice",
        2,
        "Error: malformed --dataset 's3://bucket/x': expected NAME=URI[@sha256:HEX]\n",
    ),
    ("bad_parent", ["register", "m.x", "--parent", "fraud.detector.xgb:1"], "alice", 2, None),
    (
        "missing_artifact",
        ["register", "m.x", "--artifact", "/no/such/dir"],
        "alice",
        2,
        "Error: artifact /no/such/dir does not exist\n",
    ),
    (
        "unknown_parent",
        ["register", "m.x", "--parent", "m.base:1=finetune"],
        "alice",
        3,
        "Error: parent m.base:1 is not registered; parents must be registered first\n",
    ),
]


@pytest.mark.parametrize(("name", "args", "actor", "code", "stderr"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_leaves_ledger_untouched(history, invoke, name, args, actor, code, stderr):
    before = snapshot(history.path)
    r = invoke(args, env=history.env(actor))
    assert r.exit_code == code, r.output
    assert r.stdout == ""
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
    if stderr is not None:
        assert r.stderr == stderr
    assert snapshot(history.path) == before


def test_key_file_problems(history, invoke, tmp_path):
    before = snapshot(history.path)
    r = invoke(
        ["approve", "fraud.detector.xgb:1", "--env", "qa", "--key", str(tmp_path / "none.pem")],
        env=history.env(),
    )
    assert (r.exit_code, r.stderr) == (
        5,
        f"Error: key file {tmp_path / 'none.pem'} does not exist\n",
    )
    os.chmod(history.key_files["bob"], 0o640)
    r = invoke(["approve", "fraud.detector.xgb:1", "--env", "qa"], env=history.env("bob"))
    assert r.exit_code == 5
    assert r.stderr == (
        f"Error: key file {history.key_files['bob']} is readable by group or others (mode 0640);"
        f" run: chmod 600 {history.key_files['bob']}\n"
    )
    r = invoke(["approve", "fraud.detector.xgb:1", "--env", "qa", "--ledger", str(history.path)])
    assert r.exit_code == 2 and "Missing option '--key'" in r.stderr
    assert snapshot(history.path) == before


def test_encrypted_key_via_environment(history, invoke, tmp_path):
    r = invoke(
        ["keys", "generate", str(tmp_path / "enc.pem"), "--encrypt"],
        env={"LEDGER_PASSPHRASE": "s3cret"},
    )
    assert r.exit_code == 0
    r = invoke(
        ["keys", "add", str(tmp_path / "enc.pub"), "--actor", "erin", "--roles", "approver"],
        env=history.env("admin"),
    )
    assert r.exit_code == 0
    env = history.env() | {"LEDGER_KEY": str(tmp_path / "enc.pem")}
    r = invoke(
        ["approve", "fraud.detector.xgb:1", "--env", "qa"], env=env | {"LEDGER_PASSPHRASE": "wrong"}
    )
    assert (r.exit_code, r.stderr) == (
        5,
        f"Error: wrong passphrase for key file {tmp_path / 'enc.pem'}\n",
    )
    r = invoke(["approve", "fraud.detector.xgb:1", "--env", "qa"], env=env)
    assert (r.exit_code, r.stderr) == (
        5,
        f"Error: key file {tmp_path / 'enc.pem'} is encrypted; set LEDGER_PASSPHRASE (no terminal to ask)\n",
    )
    r = invoke(
        ["approve", "fraud.detector.xgb:1", "--env", "qa"],
        env=env | {"LEDGER_PASSPHRASE": "s3cret"},
    )
    assert r.exit_code == 0, r.stderr


def test_not_a_ledger(invoke, tmp_path):
    r = invoke(["verify", "--ledger", str(tmp_path)])
    assert (r.exit_code, r.stderr) == (
        3,
        f"Error: {tmp_path} is not a ledger: ledger.json is missing\n",
    )
    r = invoke(["log", "--ledger", str(tmp_path / "x")])
    assert (r.exit_code, r.stderr) == (
        3,
        f"Error: {tmp_path / 'x'} is not a ledger: no such folder\n",
    )


def test_init_refuses_existing(history, invoke):
    r = invoke(
        ["init", str(history.path), "--key", str(history.key_files["admin"]), "--actor", "admin"]
    )
    assert (r.exit_code, r.stderr) == (2, f"Error: {history.path} is already a ledger\n")


def test_demo_builds_and_verifies(invoke, tmp_path):
    r = invoke(["demo", str(tmp_path / "demo")])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert (
        lines[0]
        == f"Building a demo ledger in {tmp_path / 'demo'} (keys in {tmp_path / 'demo-keys'})"
    )
    assert any("dave's next approval was refused" in line for line in lines)
    led = Ledger.open(tmp_path / "demo")
    report = led.verify()
    assert report.ok and f"OK: {report.events} events, head {report.head}" in lines
    state = led.state()
    assert state.live[(XGB, "production")] == 1  # rolled back
    assert state.versions[(XGB, 2)].status == "rejected"
    assert any(not k.active for k in state.keys.values())
    r = invoke(["demo", str(tmp_path / "demo")])
    assert (r.exit_code, r.stderr) == (
        2,
        f"Error: {tmp_path / 'demo'} already exists; pass --force to rebuild the demo\n",
    )


def test_every_command_has_help(invoke):
    from ledger.cli import cli

    def walk(group, prefix):
        for name, cmd in group.commands.items():
            yield [*prefix, name], cmd
            if hasattr(cmd, "commands"):
                yield from walk(cmd, [*prefix, name])

    for path, cmd in walk(cli, []):
        assert cmd.help, f"ledger {' '.join(path)} has no help text"
        r = invoke([*path, "--help"])
        assert r.exit_code == 0
