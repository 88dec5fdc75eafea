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


# --- show and models, on the demo ledger (deterministic: fixed keys and dates) ---------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from ledger.demo import run_demo

    path = tmp_path_factory.mktemp("registry") / "demo-ledger"
    run_demo(path, echo=lambda _line: None)
    return path


TINY = """\
fraud.detector.tiny:1  approved
  registered   by erin at 2026-03-03T09:30:00.000000Z  (seq 9, cb3504b3a68f3322…)
  artifact     sha256:7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c7c  s3://models/fraud/tiny/1
  code         https://git.example/risk/distill@c0ffee1
  metrics      auc=0.89
  tags         team=edge
  parent       fraud.detector.xgb:1 (distill)
  approved     for staging by bob at 2026-07-02T10:00:00.000000Z (seq 22; does not count: older than 90 days)
  approved     for production by bob at 2026-09-15T10:00:00.000000Z (seq 27; counts)
  deployed     to staging by carol at 2026-07-02T10:30:00.000000Z (seq 23): live
  deployed     to production by carol at 2026-09-15T11:15:00.000000Z (seq 29): live
  override     break-glass grant seq 28 (approvals): "INC-2291: edge fraud scoring is down; the second reviewer left the company", used by seq 29
  events       9 register, 22 approve, 23 deploy, 27 approve, 29 deploy
"""


def test_show_puts_a_version_on_one_screen(demo, invoke, monkeypatch):
    # (whether an approval still counts depends on today: the policy's max_age_days)
    monkeypatch.setattr(E, "now_micros", lambda: E.parse_instant("2026-10-01"))
    r = invoke(["show", "fraud.detector.tiny:1", "--ledger", str(demo)])
    assert (r.exit_code, r.stdout) == (0, TINY)


def test_show_json_names_the_event_each_fact_rests_on(demo, invoke):
    import json

    r = invoke(["show", f"{XGB}@champion", "--format", "json", "--ledger", str(demo)])
    doc = json.loads(r.stdout)
    assert (doc["version"], doc["aliases"], doc["status"]) == (1, ["champion"], "approved")
    assert doc["children"] == [
        {"model": "fraud.detector.tiny", "version": 1, "relation": "distill"},
        {"model": XGB, "version": 3, "relation": "retrain"},
    ]
    assert [(d["env"], d["deployed"]["seq"], d["live"]) for d in doc["deployments"]] == [
        ("staging", 11, False), ("production", 13, False), ("production", 19, True),
    ]  # fmt: skip
    assert doc["deployments"][1]["until"]["version"] == 2
    hashes = {e["seq"]: e["hash"] for e in doc["events"]}
    log = {e["seq"]: e["hash"] for e in json.loads(
        invoke(["log", "--format", "json", "--ledger", str(demo)]).stdout)}  # fmt: skip
    assert all(log[s] == h for s, h in hashes.items()) and doc["description"]["seq"] == 32
    r = invoke(["show", XGB, "--ledger", str(demo)])
    assert r.stdout.splitlines()[2:] == [
        "  aliases      challenger=3, champion=1",
        "  version 1    approved    seq 8  (live in production; alias champion)",
        "  version 2    rejected    seq 14  (live in staging)",
        "  version 3    registered  seq 26  (alias challenger)",
    ]
    r = invoke(["show", "fraud.detector.nope:1", "--ledger", str(demo)])
    assert (r.exit_code, r.stderr) == (3, "Error: model fraud.detector.nope is not registered\n")


@pytest.mark.parametrize(
    ("args", "rows"),
    [
        (["--name", "fraud.*", "--tag", "team=risk", "--metric", "auc>=0.9"],
         [f"{XGB},1", f"{XGB},2", f"{XGB},3"]),
        (["--metric", "auc>0.915", "--metric", "precision<0.86"], [f"{XGB},2"]),
        (["--live-in", "production"], ["fraud.detector.tiny,1", f"{XGB},1"]),
        (["--live-in", "production", "--as-of", "2026-06-24"], [f"{XGB},2"]),
        (["--alias", "challenger"], [f"{XGB},3"]),
        (["--registered-by", "erin"], ["fraud.detector.tiny,1"]),
        (["--since", "2026-06-01", "--until", "2026-06-30"], [f"{XGB},2"]),
        (["--name", "*.tiny", "--tag", "team=risk"], []),
    ],
    ids=["name_tag_metric", "two_metrics", "live", "live_as_of", "alias", "registrant",
         "dates", "nothing"],
)  # fmt: skip
def test_models_finds_versions_by_every_filter(demo, invoke, args, rows):
    r = invoke(["models", *args, "--format", "csv", "--ledger", str(demo)])
    assert r.exit_code == 0, r.output
    got = [",".join(line.split(",")[:2]) for line in r.stdout.splitlines()[1:]]
    assert got == rows


def test_models_refuses_a_malformed_filter(demo, invoke):
    r = invoke(["models", "--metric", "auc is high", "--ledger", str(demo)])
    assert (r.exit_code, r.stderr) == (
        2,
        "Error: malformed --metric 'auc is high': expected NAME OP NUMBER, e.g. 'auc>=0.9'"
        " (OP one of >=, <=, ==, !=, >, <)\n",
    )


def test_the_alias_moves_query(demo, invoke):
    r = invoke(["query", "alias-moves", "--param", f"model={XGB}", "--format", "csv",
                "--ledger", str(demo)])  # fmt: skip
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "seq,ts,model,alias,action,version,previous_version,actor,until,comment"
    assert [line.split(",")[:8] for line in lines[1:]] == [
        ["30", "2026-09-16T09:00:00.000000Z", XGB, "champion", "alias_set", "1", "", "carol"],
        ["31", "2026-09-16T09:05:00.000000Z", XGB, "challenger", "alias_set", "3", "", "carol"],
    ]
