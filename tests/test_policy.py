"""Governance policy: parsing, every rule accepting and refusing, as-of, break-glass, audit."""

from __future__ import annotations

import contextlib
import json
import sys

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import Ledger, SigningKey
from ledger import events as E
from ledger import policy as P
from ledger.errors import InputError, KeyProblem, RuleViolation
from ledger.keys import write_key_files

XGB = "fraud.detector.xgb"
DIGEST = "sha256:" + "ab" * 32
DATA = "train=s3://b/train.parquet@sha256:" + "11" * 32
DAY = P.DAY_US

FULL_TOML = """\
description = "Model risk policy MRM-7"

[approvals]
required = { staging = 1, production = 2 }
max_age_days = 30

[separation_of_duties]
registrant_may_not_approve = true
approver_may_not_deploy = true

[register_metadata]
artifact_digest = true
datasets_with_digest = 1
code_commit = true
tags = ["risk_tier"]
metrics = ["auc >= 0.8"]

[promotion_order]
environments = ["staging", "production"]

[[signers]]
action = "deploy"
env = "production"
actors = ["carol"]
"""


def head(led: Ledger) -> tuple[int, str]:
    """Event count and head hash: unchanged after a refused write."""
    table = led.events(columns=["hash"])
    return table.num_rows, table["hash"][-1].as_py().hex()


@pytest.fixture
def gov(team):
    """``team`` plus erin (registrar+approver), frank (approver+deployer), walter
    (deployer), and fraud.detector.xgb:1 registered by alice with full metadata."""
    led, k = team.ledger, team.keys
    for name, roles in (
        ("erin", "registrar,approver"),
        ("frank", "approver,deployer"),
        ("walter", "deployer"),
    ):
        k[name] = SigningKey.generate()
        team.key_files[name] = team.path.parent / "keys" / f"{name}.pem"
        write_key_files(team.key_files[name], k[name])
        led.add_key(k[name].public_key, name, roles, key=k["admin"])
    register(led, k["alice"])
    return team


def register(led: Ledger, key: SigningKey, model: str = XGB, **kw):
    args = dict(
        artifact={"digest": DIGEST},
        datasets=[DATA],
        code="https://git.example/repo@3f2a9c1",
        metrics=["auc=0.91"],
        tags=["risk_tier=high"],
    )
    return led.register(model, key=key, **(args | kw))


def refused(fn, *args, **kw) -> str:
    with pytest.raises(RuleViolation) as exc:
        fn(*args, **kw)
    assert exc.value.exit_code == 4
    return str(exc.value)


# --- the policy document ----------------------------------------------------------------------


def test_full_policy_parses_and_round_trips_through_toml():
    pol = P.parse_policy(FULL_TOML, "mrm.toml")
    assert pol.rules == list(P.RULES[:5])  # (format 1: the rules FULL_TOML switches on)
    assert pol.approvals_required == {"staging": 1, "production": 2}
    assert pol.approval_max_age_days == 30
    assert [str(t) for t in pol.metrics] == ["auc >= 0.8"]
    assert pol.signers == (P.SignerRule("deploy", "production", actors=("carol",)),)
    again = P.parse_policy(P.to_toml(pol.to_dict()), "again.toml")
    assert again == pol
    assert P.Policy.from_dict(json.loads(json.dumps(pol.to_dict()))) == pol


def test_yaml_and_json_policies():
    yaml_text = "approvals:\n  required:\n    production: 2\npromotion_order:\n  environments: [staging, production]\n"
    pol = P.parse_policy(yaml_text, "p.yaml")
    assert pol.rules == ["approvals", "promotion_order"]
    assert P.parse_policy(json.dumps(pol.to_dict()), "p.json") == pol
    assert P.parse_policy("", "empty.toml").rules == []


def test_yaml_without_pyyaml_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(InputError) as exc:
        P.parse_policy("approvals: {}", "p.yml")
    assert str(exc.value) == (
        "p.yml: reading YAML policies needs PyYAML (pip install pyyaml); or write the policy"
        " as TOML"
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "[aprovals]\nrequired = { production = 2 }",
            "p.toml: unknown rule 'aprovals' (did you mean 'approvals'?); rules are format,"
            " description, approvals, separation_of_duties, register_metadata, promotion_order,"
            " signers, environments, naming, promotion_criteria",
        ),
        (
            "[register_metadata]\nartefact_digest = true",
            "p.toml: unknown setting 'register_metadata.artefact_digest' (did you mean"
            " 'artifact_digest'?); settings are artifact_digest, datasets_with_digest,"
            " code_commit, tags, metrics, tag_values, tag_patterns",
        ),
        (
            "[approvals]\nrequired = { production = -1 }",
            "p.toml: approvals.required.production must be a whole number from 0 to 1000, got -1",
        ),
        (
            "[approvals]\nrequired = { Production = 2 }",
            "p.toml: approvals.required.Production: invalid environment name 'Production':"
            " lowercase letters, digits, '_' and '-', starting with a letter, at most 32"
            " characters (e.g. production)",
        ),
        (
            "[approvals]\nmax_age_days = 0",
            "p.toml: approvals.max_age_days must be a whole number from 1 to 1000, got 0",
        ),
        (
            '[register_metadata]\nmetrics = ["auc => 0.8"]',
            "p.toml: register_metadata.metrics: 'auc => 0.8' is not METRIC OP NUMBER"
            " (e.g. 'auc >= 0.8'; OP is one of >=, >, <=, <, ==)",
        ),
        (
            "[register_metadata]\ncode_commit = 1",
            "p.toml: register_metadata.code_commit must be true or false, got 1",
        ),
        (
            '[promotion_order]\nenvironments = ["production"]',
            "p.toml: promotion_order.environments needs at least two environments",
        ),
        (
            '[[signers]]\naction = "deploy"\nenv = "production"',
            "p.toml: signers[0] needs at least one of actors, keys or roles",
        ),
        (
            '[[signers]]\naction = "ship"\nactors = ["carol"]',
            "p.toml: signers[0].action must be one of "
            + ", ".join(a for a in E.ACTION_ROLE if a != "genesis")
            + ", got 'ship'",
        ),
        (
            '[[signers]]\naction = "deploy"\nroles = ["boss"]',
            "p.toml: signers[0].roles: unknown role 'boss'; roles are " + ", ".join(E.ROLES),
        ),
        ("approvals = 3", "p.toml: approvals must be a table of settings, got 3"),
    ],
)
def test_policy_file_mistakes_are_named(text, error):
    with pytest.raises(InputError) as exc:
        P.parse_policy(text, "p.toml")
    assert str(exc.value) == error


def test_bad_toml_syntax():
    with pytest.raises(InputError, match=r"^p\.toml: not valid TOML: "):
        P.parse_policy("[approvals\n", "p.toml")


def test_a_newer_policy_in_the_ledger_is_kept_not_refused():
    pol = P.policy_from_payload({"policy": {"format": 3, "approvals": {}, "quorum": {"n": 3}}})
    assert pol.unknown == {"quorum": {"n": 3}}
    assert pol.to_dict()["quorum"] == {"n": 3}
    assert pol.to_dict()["format"] == 3  # (kept: the document is a newer format's)


# --- the rules, each accepting and refusing ---------------------------------------------------


def test_approvals_count_distinct_approvers(gov):
    led, k = gov.ledger, gov.keys
    led.set_policy({"approvals": {"required": {"production": 2}}}, key=k["admin"])
    led.approve(XGB, 1, "production", key=k["bob"])
    led.approve(XGB, 1, "production", key=k["bob"], comment="again")
    before = head(led)
    assert refused(led.deploy, XGB, 1, "production", key=k["carol"]) == (
        "refused by the policy set at seq 9: approvals: deploying fraud.detector.xgb:1 to"
        " production needs approvals from 2 distinct approvers for production, it has 1"
        " (bob); get 1 more approval for production"
    )
    assert head(led) == before
    led.deploy(XGB, 1, "staging", key=k["carol"])  # no approvals required there
    led.approve(XGB, 1, "production", key=k["dave"])
    assert led.deploy(XGB, 1, "production", key=k["carol"]).seq == 14


def test_approvals_expire(gov):
    led, k = gov.ledger, gov.keys
    led.set_policy(
        {"approvals": {"required": {"production": 2}, "max_age_days": 30}}, key=k["admin"]
    )
    led.approve(XGB, 1, "production", key=k["bob"])
    r = led.approve(XGB, 1, "production", key=k["dave"])
    t0 = E.parse_ts(r.ts)
    late = E.Draft(E.DEPLOY, {"env": "production"}, XGB, 1, ts=t0 + 31 * DAY)
    assert refused(led.append, late, k["carol"]) == (
        "refused by the policy set at seq 9: approvals: deploying fraud.detector.xgb:1 to"
        " production needs approvals from 2 distinct approvers for production, it has none;"
        " bob's approval (seq 10) is older than 30 days; dave's approval (seq 11) is older"
        " than 30 days; get 2 more approvals for production"
    )
    in_time = E.Draft(E.DEPLOY, {"env": "production"}, XGB, 1, ts=t0 + 29 * DAY)
    assert led.append(in_time, k["carol"]).seq == 12


def test_registrant_may_not_approve(gov):
    led, k = gov.ledger, gov.keys
    led.set_policy(
        {
            "separation_of_duties": {"registrant_may_not_approve": True},
            "approvals": {"required": {"production": 1}},
        },
        key=k["admin"],
    )
    register(led, k["erin"], "fraud.detector.tiny")
    assert refused(led.approve, "fraud.detector.tiny", 1, "production", key=k["erin"]) == (
        "refused by the policy set at seq 9: separation_of_duties: erin registered"
        " fraud.detector.tiny:1 and may not approve it; a different approver must approve it"
    )
    led.approve("fraud.detector.tiny", 1, "production", key=k["bob"])
    led.deploy("fraud.detector.tiny", 1, "production", key=k["carol"])


def test_approver_may_not_deploy(gov):
    led, k = gov.ledger, gov.keys
    led.set_policy({"separation_of_duties": {"approver_may_not_deploy": True}}, key=k["admin"])
    led.approve(XGB, 1, "staging", key=k["frank"])
    assert refused(led.deploy, XGB, 1, "staging", key=k["frank"]) == (
        "refused by the policy set at seq 9: separation_of_duties: frank approved"
        " fraud.detector.xgb:1 for staging (seq 10) and may not also deploy it there; a"
        " deployer who did not approve it must deploy it"
    )
    led.deploy(XGB, 1, "staging", key=k["carol"])
    led.undeploy(XGB, 1, "staging", key=k["carol"])
    led.deploy(XGB, 1, "production", key=k["frank"])  # he approved staging only


def test_register_metadata(gov):
    led, k = gov.ledger, gov.keys
    led.set_policy(P.parse_policy(FULL_TOML), key=k["admin"])
    before = head(led)
    msg = refused(led.register, XGB, key=k["alice"], metrics=["auc=0.75"], datasets=["x=s3://x"])
    assert msg == (
        "refused by the policy set at seq 9: register_metadata: registering"
        " fraud.detector.xgb:2 needs an artifact digest (--artifact PATH or --artifact-digest"
        " sha256:HEX); register_metadata: registering fraud.detector.xgb:2 needs at least 1"
        " dataset with a digest (--dataset NAME=URI@sha256:HEX), it has 0;"
        " register_metadata: registering fraud.detector.xgb:2 needs a code commit (--code"
        " REPO@COMMIT); register_metadata: registering fraud.detector.xgb:2 needs the tag"
        " risk_tier (--tag NAME=VALUE); register_metadata: registering fraud.detector.xgb:2"
        " needs metric auc >= 0.8 (--metric auc=VALUE), it has auc=0.75"
    )
    assert head(led) == before
    assert "it has none" in refused(register, led, k["alice"], metrics=["f1=0.9"])
    assert register(led, k["alice"]).ref == f"{XGB}:2"


def test_promotion_order(gov):
    led, k = gov.ledger, gov.keys
    led.set_policy(
        {"promotion_order": {"environments": ["dev", "staging", "production"]}}, key=k["admin"]
    )
    assert refused(led.deploy, XGB, 1, "production", key=k["carol"]) == (
        "refused by the policy set at seq 9: promotion_order: fraud.detector.xgb:1 must be"
        " deployed to staging before production (order dev -> staging -> production); deploy"
        " it to staging first"
    )
    assert "deployed to dev before staging" in refused(
        led.deploy, XGB, 1, "staging", key=k["carol"]
    )
    led.deploy(XGB, 1, "dev", key=k["carol"])
    led.deploy(XGB, 1, "staging", key=k["carol"])
    led.undeploy(XGB, 1, "staging", key=k["carol"])  # having been there is enough
    led.deploy(XGB, 1, "production", key=k["carol"])
    led.deploy(XGB, 1, "canary", key=k["carol"])  # not in the chain: unrestricted


def test_signers_by_actor_key_and_role(gov):
    led, k = gov.ledger, gov.keys
    doc = {
        "signers": [
            {"action": "deploy", "env": "production", "actors": ["carol", "walter"]},
            {"action": "deploy", "env": "production", "keys": [k["carol"].key_id]},
            {"action": "approve", "roles": ["approver", "deployer"]},
        ]
    }
    led.set_policy(doc, key=k["admin"])
    assert refused(led.deploy, XGB, 1, "production", key=k["frank"]) == (
        "refused by the policy set at seq 9: signers: only carol, walter may deploy to"
        " production; frank may not; signers: only the keys"
        f" {k['carol'].key_id} may deploy to production; key {k['frank'].key_id} (frank) is"
        " not one of them"
    )
    assert refused(led.deploy, XGB, 1, "production", key=k["walter"]).endswith(
        f"key {k['walter'].key_id} (walter) is not one of them"
    )
    assert refused(led.approve, XGB, 1, "staging", key=k["bob"]) == (
        "refused by the policy set at seq 9: signers: approve for staging needs a key holding"
        f" the roles approver, deployer; bob's key {k['bob'].key_id} lacks deployer"
    )
    led.approve(XGB, 1, "staging", key=k["frank"])
    led.deploy(XGB, 1, "production", key=k["carol"])
    led.deploy(XGB, 1, "staging", key=k["walter"])  # the env-specific rules stop at production


def test_key_and_lifecycle_errors_come_before_the_policy(gov):
    led, k = gov.ledger, gov.keys
    led.set_policy({"approvals": {"required": {"production": 2}}}, key=k["admin"])
    with pytest.raises(KeyProblem, match="lacks the 'deployer' role"):
        led.deploy(XGB, 1, "production", key=k["bob"])
    led.reject(XGB, 1, key=k["bob"])
    assert refused(led.deploy, XGB, 1, "production", key=k["carol"]) == (
        "cannot deploy fraud.detector.xgb:1: it was rejected at seq 10"
    )


def test_policy_set_needs_an_admin(gov):
    with pytest.raises(KeyProblem, match="lacks the 'admin' role needed to policy_set"):
        gov.ledger.set_policy({}, key=gov.keys["alice"])


# --- policy over time -------------------------------------------------------------------------


def test_policy_changes_apply_from_their_seq(gov):
    led, k = gov.ledger, gov.keys
    assert led.policy() is None
    p1 = led.set_policy({"approvals": {"required": {"production": 1}}}, key=k["admin"])
    led.approve(XGB, 1, "production", key=k["bob"])
    p2 = led.set_policy(
        {"approvals": {"required": {"production": 2}}}, key=k["admin"], comment="MRM-7 v2"
    )
    assert "needs approvals from 2 distinct" in refused(
        led.deploy, XGB, 1, "production", key=k["carol"]
    )
    assert led.policy(at_seq=p1.seq - 1) is None
    rec = led.policy(at_seq=p2.seq - 1)
    assert (rec.seq, rec.actor, rec.policy.approvals_required) == (
        p1.seq,
        "admin",
        {"production": 1},
    )
    now = led.policy()
    assert (now.seq, now.comment, now.policy.approvals_required) == (
        p2.seq,
        "MRM-7 v2",
        {"production": 2},
    )
    assert led.policy(as_of=E.parse_ts(p1.ts)).seq == p1.seq
    assert led.policy(as_of=p1.ts).seq == p1.seq
    assert led.policy(as_of="2000-01-01") is None
    led.set_policy({}, key=k["admin"])  # an empty policy switches every rule off
    led.deploy(XGB, 1, "production", key=k["carol"])
    with pytest.raises(InputError, match="give --as-of or --at-seq, not both"):
        led.policy(as_of="2000-01-01", at_seq=1)


# --- break-glass ------------------------------------------------------------------------------


def test_break_glass_lets_one_action_bypass_one_rule_once(gov):
    led, k = gov.ledger, gov.keys
    led.set_policy(
        {
            "approvals": {"required": {"production": 2}},
            "promotion_order": {"environments": ["staging", "production"]},
        },
        key=k["admin"],
    )
    g = led.break_glass(
        "deploy",
        XGB,
        1,
        "production",
        rule="approvals",
        justification="INC-4711: fraud spike, hotfix",
        key=k["admin"],
    )
    # The grant covers approvals only: promotion order still refuses.
    assert refused(led.deploy, XGB, 1, "production", key=k["carol"]) == (
        "refused by the policy set at seq 9: promotion_order: fraud.detector.xgb:1 must be"
        " deployed to staging before production (order staging -> production); deploy it to"
        " staging first"
    )
    led.deploy(XGB, 1, "staging", key=k["carol"])
    r = led.deploy(XGB, 1, "production", key=k["carol"])
    payload = json.loads(led.events(columns=["payload"])["payload"][r.seq].as_py())
    assert payload == {"break_glass": [g.seq], "env": "production"}
    assert led.state().grants == {}
    # Used up: the same action needs approvals again.
    led.undeploy(XGB, 1, "production", key=k["carol"])
    assert "approvals: deploying" in refused(led.deploy, XGB, 1, "production", key=k["carol"])
    # An event that needs no override does not spend a grant.
    g2 = led.break_glass(
        "deploy", XGB, 1, "staging", rule="approvals", justification="x", key=k["admin"]
    )
    led.undeploy(XGB, 1, "staging", key=k["carol"])
    led.deploy(XGB, 1, "staging", key=k["carol"])
    assert list(led.state().grants) == [g2.seq]


def test_break_glass_mistakes(gov):
    led, k = gov.ledger, gov.keys
    bg = led.break_glass
    assert refused(
        bg, "deploy", XGB, 1, "production", rule="approvals", justification="x", key=k["admin"]
    ) == ("no policy is in force, so there is no rule to bypass")
    led.set_policy({"approvals": {"required": {"production": 2}}}, key=k["admin"])
    assert refused(
        bg, "deploy", XGB, 1, "production", rule="signers", justification="x", key=k["admin"]
    ) == (
        "the policy in force (seq 9) does not switch on rule signers (its rules: approvals);"
        " there is nothing to bypass"
    )
    cases = [
        (("deploy", XGB, 1, "production"), "aprovals", "x", "unknown rule 'aprovals'; rules are"),
        (("deploy", XGB, 1, "production"), "approvals", "  ", "break-glass needs a justification"),
        (("deploy", XGB, 1, None), "approvals", "x", "break-glass for deploy needs --env"),
        (("deploy", None, None, "production"), "approvals", "x", "needs the model version"),
        (("key_add", XGB, 1, None), "signers", "x", "key_add events name no model"),
        (("ship", XGB, 1, None), "signers", "x", "break-glass action must be one of"),
    ]
    for args, rule, why, error in cases:
        with pytest.raises(InputError, match=error):
            bg(*args, rule=rule, justification=why, key=k["admin"])
    with pytest.raises(KeyProblem, match="lacks the 'admin' role needed to break_glass"):
        bg("deploy", XGB, 1, "production", rule="approvals", justification="x", key=k["carol"])


def test_citing_a_grant_that_does_not_apply_is_refused(gov):
    led, k = gov.ledger, gov.keys
    led.set_policy({"approvals": {"required": {"production": 1}}}, key=k["admin"])
    g = led.break_glass(
        "deploy", XGB, 1, "staging", rule="approvals", justification="x", key=k["admin"]
    )
    draft = E.Draft(E.DEPLOY, {"env": "production", "break_glass": [g.seq]}, XGB, 1)
    assert refused(led.append, draft, k["carol"]) == (
        "refused by the policy set at seq 9: break_glass: seq 10 is not an unused break-glass"
        " grant for this deploy; approvals: deploying fraud.detector.xgb:1 to production"
        " needs approvals from 1 distinct approvers for production, it has none; get 1 more"
        " approval for production"
    )


# --- the audit: verify --policy and the SQL query ---------------------------------------------


def build_audit_ledger(team):
    """History with violations written before any policy, the policy, then imported events
    that break it (written with enforce_policy=False), and one break-glass override."""
    led, k = team.ledger, team.keys
    led.register(XGB, key=k["alice"])  # no metadata at all
    led.deploy(XGB, 1, "production", key=k["carol"])  # no approval, no staging
    led.set_policy(P.parse_policy(FULL_TOML), key=k["admin"])  # seq 7
    imported = [
        E.Draft(E.REGISTER, {"metrics": {"auc": 0.7}, "tags": {}}, XGB, 2),
        E.Draft(E.APPROVE, {"env": "production"}, XGB, 2),
        E.Draft(E.DEPLOY, {"env": "production"}, XGB, 2),
    ]
    led.append_many(imported[:1], k["alice"], enforce_policy=False)  # seq 8
    led.append_many(imported[1:2], k["bob"], enforce_policy=False)  # seq 9
    led.append_many(imported[2:], k["carol"], enforce_policy=False)  # seq 10
    register(led, k["alice"], "fraud.detector.tiny")  # seq 11, complies
    led.break_glass(  # seq 12
        "deploy",
        "fraud.detector.tiny",
        1,
        "staging",
        rule="approvals",
        justification="INC-9: hotfix",
        key=k["admin"],
    )
    led.deploy("fraud.detector.tiny", 1, "staging", key=k["carol"])  # seq 13, overridden
    return led


def test_policy_audit_judges_each_event_by_the_policy_of_its_time(team):
    led = build_audit_ledger(team)
    assert led.verify().ok  # plain verify: policies are not lifecycle rules
    audit = led.policy_audit()
    assert not audit.ok
    assert [(f.seq, f.rule, f.covered_by) for f in audit.findings] == [
        (8, "register_metadata", None),
        (8, "register_metadata", None),
        (8, "register_metadata", None),
        (8, "register_metadata", None),
        (8, "register_metadata", None),
        (10, "approvals", None),
        (10, "promotion_order", None),
        (13, "approvals", 12),
    ]
    assert audit.summary().splitlines()[0] == (
        "FAIL: policy: 7 violations not covered by a break-glass override in 14 events"
        " (policies set at seq 7)"
    )
    assert audit.summary().splitlines()[-2:] == [
        "  seq 13 deploy fraud.detector.tiny:1 to staging by carol [overridden by break-glass"
        " seq 12]: approvals: deploying fraud.detector.tiny:1 to staging needs approvals from"
        " 1 distinct approvers for staging, it has none; get 1 more approval for staging",
        "  break-glass seq 12 by admin: deploy fraud.detector.tiny:1 to staging may bypass"
        " approvals, used by seq 13; justification: INC-9: hotfix",
    ]
    d = audit.to_dict()
    assert d["ok"] is False and d["overrides"][0]["used_by"] == 13


def test_verify_policy_command(team, invoke):
    led, k = team.ledger, team.keys
    led.register(XGB, key=k["alice"])
    led.approve(XGB, 1, "production", key=k["bob"])
    led.deploy(XGB, 1, "production", key=k["carol"])  # 1 approval: fine, no policy yet
    led.set_policy({"approvals": {"required": {"production": 2}}}, key=k["admin"])
    r = invoke(["verify", "--policy"], env=team.env())
    assert r.exit_code == 0, r.output
    assert (
        r.stdout.splitlines()[-1] == "OK: policy: no violations in 9 events (policies set at seq 8)"
    )
    led.append(E.Draft(E.UNDEPLOY, {"env": "production"}, XGB, 1), k["carol"])
    led.append_many(
        [E.Draft(E.DEPLOY, {"env": "production"}, XGB, 1)], k["carol"], enforce_policy=False
    )
    r = invoke(["verify", "--policy"], env=team.env())
    assert r.exit_code == 1
    assert r.stdout.splitlines()[-2:] == [
        "FAIL: policy: 1 violation not covered by a break-glass override in 11 events"
        " (policies set at seq 8)",
        "  seq 10 deploy fraud.detector.xgb:1 to production by carol: approvals: deploying"
        " fraud.detector.xgb:1 to production needs approvals from 2 distinct approvers for"
        " production, it has 1 (bob); get 1 more approval for production",
    ]
    r = invoke(["verify", "--policy", "--format", "json"], env=team.env())
    assert r.exit_code == 1
    assert json.loads(r.stdout)["policy"]["violations"][0]["seq"] == 10
    assert invoke(["verify"], env=team.env()).exit_code == 0


def sql_findings(led, **params):
    from ledger import query

    table, _ = query.named(led.store, "policy-violations", params)
    return [(r["seq"], r["rule"], r["covered_by"]) for r in table.to_pylist()]


def test_sql_audit_agrees_with_the_python_audit(team):
    pytest.importorskip("duckdb")
    led = build_audit_ledger(team)
    py = sorted((f.seq, f.rule, f.covered_by) for f in led.policy_audit().findings)
    assert sorted(sql_findings(led)) == py
    assert sql_findings(led, open=1) == [f for f in py if f[2] is None]
    assert sql_findings(led, rule="approvals") == [(10, "approvals", None), (13, "approvals", 12)]
    from ledger import query

    table, _ = query.named(led.store, "break-glass")
    rows = table.to_pylist()
    assert [(r["seq"], r["ref"], r["env"], r["rule"], r["used_by_seq"]) for r in rows] == [
        (12, "fraud.detector.tiny:1", "staging", "approvals", 13)
    ]
    assert rows[0]["justification"] == "INC-9: hotfix"


ACTORS = ("alice", "erin", "bob", "dave", "frank", "carol", "walter")
#: Weighted towards what makes deploys happen (and need overrides).
STEPS = (
    "register", "approve", "approve", "deploy", "deploy", "deploy", "undeploy", "grant", "alias",
)  # fmt: skip
#: Mostly keys that hold the step's role, so fewer steps are lost to key errors.
SIGNER = {
    "approve": dict(
        zip(ACTORS, ("bob", "erin", "bob", "dave", "frank", "bob", "dave"), strict=True)
    ),
    "deploy": dict(
        zip(ACTORS, ("carol", "carol", "walter", "carol", "frank", "carol", "walter"), strict=True)
    ),
}


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    policy=st.fixed_dictionaries(
        {
            "approvals": st.fixed_dictionaries(
                {"required": st.fixed_dictionaries({"production": st.integers(0, 2)})}
            ),
            "separation_of_duties": st.fixed_dictionaries(
                {
                    "registrant_may_not_approve": st.booleans(),
                    "approver_may_not_deploy": st.booleans(),
                }
            ),
            "register_metadata": st.fixed_dictionaries(
                {"metrics": st.just(["auc >= 0.8"]), "tags": st.just(["risk_tier"])}
            ),
            "promotion_order": st.just({"environments": ["staging", "production"]}),
            "signers": st.just([{"action": "deploy", "env": "production", "actors": ["carol"]}]),
        }
    ),
    steps=st.lists(
        st.tuples(
            st.sampled_from(STEPS),
            st.sampled_from(ACTORS),
            st.sampled_from(["staging", "production"]),
            st.booleans(),
            st.booleans(),
            st.sampled_from(P.RULES),
        ),
        min_size=4,
        max_size=14,
    ),
)
def test_sql_and_python_audits_agree_on_random_histories(gov_factory, policy, steps):
    """Random histories under a random policy, some events enforced (citing break-glass
    grants when they need them), some imported unchecked: both audits agree."""
    pytest.importorskip("duckdb")
    led, k = gov_factory()
    led.set_policy(policy, key=k["admin"])
    version, checked = 1, set()
    for action, actor, env, good, enforce, rule in steps:
        if action == "grant":  # the next deploy there may bypass one rule, or every rule
            for r in P.RULES if good else [rule]:
                with contextlib.suppress(RuleViolation):  # the rule may not be switched on
                    led.break_glass(
                        "deploy", XGB, version, env, rule=r, justification="t", key=k["admin"]
                    )
            continue
        if action == "register":
            payload = E.register_payload(
                metrics=["auc=0.9" if good else "auc=0.5"], tags=["risk_tier=low"] if good else []
            )
            draft = E.Draft(E.REGISTER, payload, XGB)
        elif action == "alias":  # (an alias named like the environment: governed as it)
            draft = E.Draft(E.ALIAS_SET, {"alias": env}, XGB, version)
            actor = SIGNER["deploy"][actor]
        else:
            draft = E.Draft(action, {"env": env}, XGB, version)
            actor = SIGNER["approve" if action == "approve" else "deploy"][actor]
        try:
            r = led.append_many([draft], k[actor], enforce_policy=enforce)[0]
        except (RuleViolation, KeyProblem):
            continue  # lifecycle, key or (enforced) policy rules
        if enforce:
            checked.add(r.seq)
        if action == "register" and good:
            version = r.version
    py = sorted((f.seq, f.rule, f.covered_by) for f in led.policy_audit().findings)
    # What the write path let through, the audit never finds open.
    assert not [f for f in py if f[0] in checked and f[2] is None]
    event(f"break-glass used: {any(c is not None for _, _, c in py)}")
    assert sorted(sql_findings(led)) == py


@pytest.fixture
def gov_factory(tmp_path):
    """Fresh governed ledgers for each Hypothesis example (keys generated once)."""
    keys = {n: SigningKey.generate() for n in ("admin", *ACTORS)}
    roles = {
        "alice": "registrar",
        "erin": "registrar,approver",
        "bob": "approver",
        "dave": "approver",
        "frank": "approver,deployer",
        "carol": "deployer",
        "walter": "deployer",
    }
    count = iter(range(10_000))

    def make():
        led = Ledger.init(
            tmp_path / f"l{next(count)}", keys["admin"], "admin", origin="t.example/g"
        )
        for name, r in roles.items():
            led.add_key(keys[name].public_key, name, r, key=keys["admin"])
        led.register(XGB, key=keys["alice"], metrics=["auc=0.9"], tags=["risk_tier=low"])
        return led, keys

    return make


# --- the CLI ----------------------------------------------------------------------------------


def test_policy_cli(gov, invoke, tmp_path):
    f = tmp_path / "mrm.toml"
    f.write_text(FULL_TOML)
    env = gov.env("admin")
    r = invoke(["policy", "show"], env=env)
    assert (r.exit_code, r.stdout) == (0, "No policy in force.\n")
    r = invoke(["policy", "show", "--format", "json"], env=env)
    assert (r.exit_code, r.stdout) == (0, "null\n")
    r = invoke(["policy", "set", str(f), "--comment", "MRM-7"], env=env)
    assert r.exit_code == 0, r.output
    h = gov.ledger.events(columns=["hash"])["hash"][-1].as_py().hex()
    assert r.stdout == (
        f"policy_set: seq 9, hash {h}\n"
        "rules switched on: approvals, separation_of_duties, register_metadata,"
        " promotion_order, signers\n"
    )
    rec = gov.ledger.policy()
    r = invoke(["policy", "show"], env=env)
    assert r.exit_code == 0
    assert r.stdout == (
        f"# policy set at seq 9 ({E.format_ts(rec.ts)}) by admin\n"
        "# comment: MRM-7\n"
        "# rules switched on: approvals, separation_of_duties, register_metadata,"
        " promotion_order, signers\n"
        "format = 1\n"
        'description = "Model risk policy MRM-7"\n'
        "\n[approvals]\n"
        "required = { production = 2, staging = 1 }\n"
        "max_age_days = 30\n"
        "\n[separation_of_duties]\n"
        "approver_may_not_deploy = true\n"
        "registrant_may_not_approve = true\n"
        "\n[register_metadata]\n"
        "artifact_digest = true\n"
        "datasets_with_digest = 1\n"
        "code_commit = true\n"
        'tags = ["risk_tier"]\n'
        'metrics = ["auc >= 0.8"]\n'
        "\n[promotion_order]\n"
        'environments = ["staging", "production"]\n'
        "\n[[signers]]\n"
        'action = "deploy"\n'
        'env = "production"\n'
        'actors = ["carol"]\n'
    )
    shown = tmp_path / "shown.toml"
    shown.write_text(r.stdout)
    assert P.parse_policy(shown.read_text(), "shown.toml") == rec.policy
    r = invoke(["policy", "show", "--at-seq", "8"], env=env)
    assert (r.exit_code, r.stdout) == (0, "No policy in force at seq 8.\n")
    r = invoke(["policy", "show", "--format", "json"], env=env)
    assert json.loads(r.stdout)["rules"][0] == "approvals"

    # A refusal and a break-glass, end to end.
    r = invoke(["deploy", f"{XGB}:1", "--env", "production"], env=gov.env("carol"))
    assert r.exit_code == 4 and r.stdout == ""
    assert r.stderr.startswith("Error: refused by the policy set at seq 9: approvals: ")
    r = invoke(
        [
            "break-glass",
            "deploy",
            f"{XGB}:1",
            "--env",
            "staging",
            "--rule",
            "approvals",
            "--justification",
            "INC-1",
        ],
        env=env,
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("break_glass: seq 10, hash ")
    r = invoke(["deploy", f"{XGB}:1", "--env", "staging"], env=gov.env("carol"))
    assert r.exit_code == 0, r.output
    r = invoke(
        ["break-glass", "deploy", f"{XGB}:1", "--env", "staging", "--rule", "approvals"],
        env=env,
    )
    assert r.exit_code == 2 and "Missing option '--justification'" in r.stderr


def test_policy_set_cli_errors(gov, invoke, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[aprovals]\n")
    before = head(gov.ledger)
    r = invoke(["policy", "set", str(bad)], env=gov.env("admin"))
    assert r.exit_code == 2
    assert r.stderr == (
        "Error: bad.toml: unknown rule 'aprovals' (did you mean 'approvals'?); rules are"
        " format, description, approvals, separation_of_duties, register_metadata,"
        " promotion_order, signers, environments, naming, promotion_criteria\n"
    )
    r = invoke(["policy", "set", str(tmp_path / "none.toml")], env=gov.env("admin"))
    assert r.exit_code == 2
    assert (
        r.stderr
        == f"Error: cannot read policy file {tmp_path / 'none.toml'}: No such file or directory\n"
    )
    good = tmp_path / "p.toml"
    good.write_text("[approvals]\nrequired = { production = 2 }\n")
    r = invoke(["policy", "set", str(good)], env=gov.env("carol"))
    assert r.exit_code == 5 and "lacks the 'admin' role needed to policy_set" in r.stderr
    assert head(gov.ledger) == before


def test_audit_uses_the_policy_in_force_at_each_event(team):
    led, k = team.ledger, team.keys
    led.register(XGB, key=k["alice"])  # seq 5
    led.approve(XGB, 1, "production", key=k["bob"])  # 6
    p1 = led.set_policy({"approvals": {"required": {"production": 1}}}, key=k["admin"])  # 7
    led.deploy(XGB, 1, "production", key=k["carol"])  # 8: fine under p1
    led.undeploy(XGB, 1, "production", key=k["carol"])  # 9
    p2 = led.set_policy({"approvals": {"required": {"production": 2}}}, key=k["admin"])  # 10
    draft = E.Draft(E.DEPLOY, {"env": "production"}, XGB, 1)
    led.append_many([draft], k["carol"], enforce_policy=False)  # 11: breaks p2
    audit = led.policy_audit()
    assert [(f.seq, f.rule, f.policy_seq) for f in audit.findings] == [(11, "approvals", p2.seq)]
    assert audit.policies == [p1.seq, p2.seq]
    pytest.importorskip("duckdb")
    assert sql_findings(led) == [(11, "approvals", None)]
    assert sql_findings(led, open=1) == [(11, "approvals", None)]


DUPLICATED = [
    ("json_member_twice", "p.json",
     '{"approvals": {"required": {"production": 2}}, "approvals": {"required": {}}}',
     "Error: p.json: not valid JSON: duplicate member 'approvals' in an object\n"),
    ("json_nested_member_twice", "p.json",
     '{"approvals": {"required": {"production": 2, "production": 0}}}',
     "Error: p.json: not valid JSON: duplicate member 'production' in an object\n"),
    ("yaml_key_twice", "p.yaml",
     "approvals:\n  required:\n    production: 2\napprovals:\n  required: {}\n",
     "Error: p.yaml: not valid YAML: duplicate key 'approvals' at line 4\n"),
    ("toml_table_twice", "p.toml",
     "[approvals.required]\nproduction = 2\n[approvals.required]\nproduction = 0\n",
     None),  # (tomllib refuses it itself)
]  # fmt: skip


@pytest.mark.parametrize(("attack", "name", "text", "error"), DUPLICATED,
                         ids=[d[0] for d in DUPLICATED])  # fmt: skip
def test_a_key_given_twice_is_refused_not_last_one_wins(
    gov, invoke, tmp_path, attack, name, text, error
):
    """A reader of the file sees a two-approver rule; "last one wins" would enforce none."""
    path = tmp_path / name
    path.write_text(text)
    before = head(gov.ledger)
    r = invoke(["policy", "set", str(path)], env=gov.env("admin"))
    assert r.exit_code == 2, r.stderr
    if error is not None:
        assert r.stderr == error
    else:
        assert r.stderr.startswith(f"Error: {name}: not valid TOML:") and r.stderr.count("\n") == 1
    assert head(gov.ledger) == before
