"""Aliases, tags, descriptions and the end of a version's life, from the CLI and the API
(issue 17): each a signed event under the same rules, roles and policy as the others.

The ``history`` ledger: fraud.detector.base:1 and fraud.detector.xgb:1, xgb:1 live in
staging and production (seq 0..10; see tests/conftest.py)."""

from __future__ import annotations

import re

import pytest

from ledger import NotFoundError, RuleViolation
from ledger import events as E

XGB = "fraud.detector.xgb"


def receipt(text: str) -> str:
    """A receipt line without its hash: ``alias_set fraud.detector.xgb:1: seq 11``."""
    return re.sub(r", hash [0-9a-f]{64}$", "", text.strip())


def test_an_alias_is_set_moved_read_and_deleted(history, invoke):
    t = history
    led = t.ledger
    r = invoke(["alias", "set", f"{XGB}:1", "champion"], env=t.env("carol"))
    assert (r.exit_code, receipt(r.stdout)) == (0, f"alias_set {XGB}:1: seq 11")
    led.register(XGB, key=t.keys["alice"])  # xgb:2, seq 12
    r = invoke(["alias", "set", f"{XGB}:2", "champion"], env=t.env("carol"))
    assert (r.exit_code, receipt(r.stdout)) == (0, f"alias_set {XGB}:2: seq 13")
    r = invoke(["alias", "set", f"{XGB}@champion", "previous"], env=t.env("carol"))
    assert (r.exit_code, receipt(r.stdout)) == (0, f"alias_set {XGB}:2: seq 14")
    r = invoke(["alias", "list", XGB, "--format", "csv"], env=t.env())
    assert r.exit_code == 0
    assert [line.split(",")[:2] for line in r.stdout.splitlines()] == [
        ["alias", "version"],
        ["champion", "2"],
        ["previous", "2"],
    ]
    # As of seq 11, champion named version 1, and status MODEL@champion says so.
    assert led.aliases(XGB, at_seq=11).to_pylist()[0]["version"] == 1
    assert led.status(XGB, version="@champion", at_seq=11)["version"].to_pylist() == [1]
    assert led.status(XGB)["aliases"].to_pylist() == [[], ["champion", "previous"]]
    r = invoke(["alias", "delete", XGB, "previous"], env=t.env("carol"))
    assert (r.exit_code, receipt(r.stdout)) == (0, f"alias_delete {XGB}:2: seq 15")
    rows = led.sql(
        "SELECT seq, action, alias, version, previous_version FROM alias_log ORDER BY seq"
    )
    assert rows.to_pylist() == [
        {"seq": 11, "action": "alias_set", "alias": "champion", "version": 1,
         "previous_version": None},
        {"seq": 13, "action": "alias_set", "alias": "champion", "version": 2,
         "previous_version": 1},
        {"seq": 14, "action": "alias_set", "alias": "previous", "version": 2,
         "previous_version": None},
        {"seq": 15, "action": "alias_delete", "alias": "previous", "version": 2,
         "previous_version": 2},
    ]  # fmt: skip
    assert led.verify().ok


@pytest.mark.parametrize(
    ("args", "who", "code", "message"),
    [
        (["alias", "delete", XGB, "champion"], "carol", 3,
         f"model {XGB} has no alias champion"),
        (["alias", "set", f"{XGB}:1", "latest"], "carol", 2,
         "invalid alias 'latest': lowercase letters, digits, '_' and '-', starting with a"
         " letter, at most 32 characters, not 'latest' (e.g. champion)"),
        (["alias", "set", f"{XGB}:1", "champion"], "alice", 5,
         "key {alice} (alice) lacks the 'deployer' role needed to alias_set"),
        (["alias", "set", f"{XGB}:9", "champion"], "carol", 3,
         f"{XGB}:9 is not registered (latest is {XGB}:1)"),
        (["deploy", f"{XGB}@champion", "--env", "staging"], "carol", 3,
         f"model {XGB} has no alias champion"),
        (["tag", "delete", f"{XGB}:1", "owner"], "alice", 4,
         f"tag owner is not set on {XGB}:1"),
        (["tag", "set", "m.ghost", "owner=x"], "alice", 3, "model m.ghost is not registered"),
        (["tag", "set", f"{XGB}:1", "owner"], "alice", 2,
         "malformed --tag 'owner': expected KEY=VALUE"),
        (["status", f"{XGB}@champion"], None, 3, f"model {XGB} has no alias champion"),
    ],
    ids=["delete_missing", "latest", "wrong_role", "unknown_version", "deploy_missing_alias",
         "untag_unset", "tag_unknown_model", "tag_malformed", "status_missing_alias"],
)  # fmt: skip
def test_bad_requests_are_one_line_and_write_nothing(history, invoke, args, who, code, message):
    t = history
    before = t.ledger.store.tail()
    r = invoke(args, env=t.env(who))
    ids = {name: k.key_id for name, k in t.keys.items()}
    assert (r.exit_code, r.stderr) == (code, f"Error: {message.format(**ids)}\n")
    assert t.ledger.store.tail() == before


def test_tags_and_descriptions_of_a_version_and_of_the_model(history, invoke):
    t = history
    led = t.ledger
    for args in (
        ["tag", "set", f"{XGB}:1", "validation=passed", "owner=risk"],
        ["tag", "set", XGB, "domain=fraud"],
        ["tag", "delete", f"{XGB}:1", "owner"],
        ["describe", XGB, "card-fraud scorer"],
        ["describe", f"{XGB}:1", "first release"],
    ):
        r = invoke(args, env=t.env("alice"))
        assert r.exit_code == 0, r.output
    state = led.state(models={XGB})
    assert state.versions[(XGB, 1)].tags == {"validation": "passed"}
    assert state.model_tags[XGB] == {"domain": "fraud"}
    events = led.events(model=XGB).to_pylist()[-5:]
    assert [(e["action"], e["version"]) for e in events] == [
        ("tag_set", 1), ("tag_set", None), ("tag_delete", 1), ("describe", None), ("describe", 1),
    ]  # fmt: skip
    history_rows = led.history(XGB).to_pylist()
    assert [r["action"] for r in history_rows][-5:] == [e["action"] for e in events]
    assert led.verify().ok


def test_policy_governs_an_alias_as_an_environment(history, invoke):
    t = history
    led, k = t.ledger, t.keys
    led.set_policy(
        {"approvals": {"required": {"champion": 2}},
         "separation_of_duties": {"approver_may_not_deploy": True}},
        key=k["admin"],
    )  # fmt: skip
    r = invoke(["alias", "set", f"{XGB}:1", "champion"], env=t.env("carol"))
    assert (r.exit_code, r.stderr) == (
        4,
        "Error: refused by the policy set at seq 11: approvals: pointing alias champion at"
        f" {XGB}:1 needs approvals from 2 distinct approvers for champion, it has none; get 2"
        " more approvals for champion\n",
    )
    led.approve(XGB, 1, "champion", key=k["bob"])
    led.approve(XGB, 1, "champion", key=k["dave"])
    r = invoke(["alias", "set", f"{XGB}:1", "champion"], env=t.env("carol"))
    assert r.exit_code == 0, r.output
    assert led.policy_audit().ok


def test_a_live_version_is_not_rejected_unless_undeployed_first(history, invoke):
    t = history
    r = invoke(["reject", f"{XGB}:1", "--comment", "bias"], env=t.env("bob"))
    assert (r.exit_code, r.stderr) == (
        4,
        f"Error: cannot reject {XGB}:1: it is live in production (deployed at seq 10), staging"
        " (deployed at seq 8); undeploy it first, or give --undeploy to record the undeploys"
        " with it\n",
    )
    # bob approves but may not undeploy: the batch is refused whole, nothing is written.
    before = t.ledger.store.tail()
    r = invoke(["reject", f"{XGB}:1", "--undeploy"], env=t.env("bob"))
    assert r.exit_code == 5 and "lacks the 'deployer' role needed to undeploy" in r.stderr
    assert t.ledger.store.tail() == before


def test_the_api_takes_an_alias_wherever_it_takes_a_version(history):
    t = history
    led, k = t.ledger, t.keys
    led.set_alias(XGB, 1, "champion", key=k["carol"])
    led.approve(XGB, "@champion", "canary", key=k["bob"])
    r = led.deploy(XGB, "@champion", "canary", key=k["carol"])
    assert (r.model, r.version) == (XGB, 1)
    assert led.history(XGB, "@champion").to_pylist()[-1]["action"] == E.DEPLOY
    with pytest.raises(NotFoundError, match="has no alias nope"):
        led.deploy(XGB, "@nope", "canary", key=k["carol"])
    with pytest.raises(RuleViolation, match="already points"):
        led.set_alias(XGB, "@champion", "champion", key=k["carol"])
    assert led.verify().ok
