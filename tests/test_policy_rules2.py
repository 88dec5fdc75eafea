"""Policy format 2 (docs/policy.md): allowed values and patterns per tag, a naming
pattern, the closed list of environments and promotion criteria against the live or
the previous version. Each refused at write time, overridable by break-glass, reported
by ``verify --policy`` and the SQL audit alike; format-1 documents mean what they meant."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import Ledger, SigningKey
from ledger import events as E
from ledger import policy as P
from ledger.errors import InputError, KeyProblem, NotFoundError, RuleViolation

XGB = "fraud.detector.xgb"

RICH_TOML = r"""
[register_metadata]
tags = ["ticket"]

[register_metadata.tag_values]
data_sensitivity = ["public", "internal", "confidential"]

[register_metadata.tag_patterns]
ticket = "^MRM-[0-9]+$"

[naming]
model = '^[a-z]+\.[a-z]+\.[a-z0-9]+$'   # (a TOML literal string: no escapes)

[environments]
allowed = ["staging", "production"]

[promotion_criteria.production]
metrics = ["auc >= live + 0.01", "auc >= live:staging", "f1 >= previous - 0.05"]
"""


def refused(fn, *args, **kw) -> str:
    with pytest.raises(RuleViolation) as exc:
        fn(*args, **kw)
    assert exc.value.exit_code == 4 and exc.value.kind == "policy_violation"
    return str(exc.value)


def at(seq: int) -> str:
    return f"refused by the policy set at seq {seq}: "


def sql_findings(led: Ledger, **params) -> list[tuple[int, str, int | None]]:
    from ledger import query

    table, _ = query.named(led.store, "policy-violations", params)
    return sorted((r["seq"], r["rule"], r["covered_by"]) for r in table.to_pylist())


def py_findings(led: Ledger) -> list[tuple[int, str, int | None]]:
    return sorted((f.seq, f.rule, f.covered_by) for f in led.policy_audit().findings)


# --- the document ------------------------------------------------------------------------


def test_a_format_2_policy_parses_round_trips_and_says_its_format():
    pol = P.parse_policy(RICH_TOML, "mrm.toml")
    assert pol.rules == ["register_metadata", "environments", "naming", "promotion_criteria"]
    assert pol.tag_values == {"data_sensitivity": ("public", "internal", "confidential")}
    assert str(pol.tag_patterns["ticket"]) == "^MRM-[0-9]+$"
    assert [str(c) for c in pol.criteria["production"]] == [
        "auc >= live + 0.01",
        "auc >= live:staging",
        "f1 >= previous - 0.05",
    ]
    doc = pol.to_dict()
    assert doc["format"] == 2
    assert P.parse_policy(P.to_toml(doc), "again.toml") == pol
    assert P.Policy.from_dict(json.loads(json.dumps(doc))) == pol
    assert "\n[promotion_criteria.production]\n" in P.to_toml(doc)
    # A document without a format-2 rule is written as format 1, as it always was.
    assert P.parse_policy("[approvals]\nrequired = { production = 1 }").to_dict()["format"] == 1


def test_criteria_are_parsed_strictly():
    c = P.parse_policy('[promotion_criteria.production]\nmetrics = ["auc>=live:staging-0.02"]')
    (crit,) = c.criteria["production"]
    assert (crit.metric, crit.op, crit.baseline, crit.offset) == (
        "auc",
        ">=",
        "live:staging",
        -0.02,
    )
    assert str(crit) == "auc >= live:staging - 0.02"
    (absolute,) = P.parse_policy(
        '[promotion_criteria.staging]\nmetrics = ["latency_ms <= 40"]'
    ).criteria["staging"]
    assert (absolute.baseline, absolute.offset, str(absolute)) == (None, 40, "latency_ms <= 40")


SYNTAX = (
    " is not METRIC OP NUMBER or METRIC OP BASELINE [+ NUMBER | - NUMBER], BASELINE one of"
    " live, live:ENV, previous (e.g. 'auc >= live + 0.01'; OP is one of >=, >, <=, <, ==)"
)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('[naming]\nmodel = "[a-z]+"',
         "p.toml: naming.model: pattern '[a-z]+' must be anchored: start with ^ and end with $"
         " (e.g. '^MRM-[0-9]+$')"),
        ('[naming]\nmodel = "^(a+?)$"',
         "p.toml: naming.model: pattern '^(a+?)$': '?' at position 4 repeats a repetition (lazy"
         " and possessive quantifiers are not part of the subset)"),
        ("[naming]\n", 'p.toml: naming needs model = "^PATTERN$", e.g. "^[a-z]+\\\\.[a-z]+$"'),
        ('[register_metadata.tag_patterns]\nticket = "^MRM-\\\\d+"',
         "p.toml: register_metadata.tag_patterns.ticket: pattern '^MRM-\\\\d+' must be anchored:"
         " start with ^ and end with $ (e.g. '^MRM-[0-9]+$')"),
        ("[register_metadata.tag_values]\ntier = []",
         "p.toml: register_metadata.tag_values.tier must be a non-empty list, got a list"),
        ('[register_metadata.tag_values]\ntier = ["a", "a"]',
         "p.toml: register_metadata.tag_values.tier lists 'a' twice"),
        ('[promotion_criteria.production]\nmetrics = ["auc >= live + -0.01"]',
         "p.toml: promotion_criteria.production.metrics: 'auc >= live + -0.01'" + SYNTAX),
        ('[promotion_criteria.production]\nmetrics = ["auc >= newest"]',
         "p.toml: promotion_criteria.production.metrics: 'auc >= newest'" + SYNTAX),
        ('[promotion_criteria.production]\nmetrics = ["auc >= live:Prod"]',
         "p.toml: promotion_criteria.production.metrics: 'auc >= live:Prod'" + SYNTAX),
        ("[promotion_criteria.production]\nmetrics = []",
         "p.toml: promotion_criteria.production.metrics must be a non-empty list such as"
         ' ["auc >= live + 0.01"]'),
        ('[promotion_criteria.production]\nmetric = ["auc >= live"]',
         "p.toml: unknown setting 'promotion_criteria.metric' (did you mean 'metrics'?);"
         " settings are metrics"),
        ('[environments]\nallowed = ["staging", "Prod"]',
         "p.toml: environments.allowed: invalid environment name 'Prod': lowercase letters,"
         " digits, '_' and '-', starting with a letter, at most 32 characters (e.g. production)"),
        ('[environments]\nallowed = ["staging", "production"]\n'
         "[approvals]\nrequired = { prod = 2 }",
         "p.toml: approvals.required names the environment 'prod', which is not one of"
         " environments.allowed (staging, production) (did you mean 'production'?)"),
        ('[environments]\nallowed = ["staging", "production"]\n'
         '[promotion_criteria.production]\nmetrics = ["auc >= live:stagin"]',
         "p.toml: promotion_criteria.production.metrics names the environment 'stagin', which"
         " is not one of environments.allowed (staging, production) (did you mean 'staging'?)"),
        ('format = 1\n[environments]\nallowed = ["production"]',
         "p.toml: rule 'environments' needs policy format 2, but the file says format = 1;"
         " write format = 2 (or leave the format out)"),
        ('format = 1\n[register_metadata]\ntag_values = { tier = ["a"] }',
         "p.toml: setting 'register_metadata.tag_values' needs policy format 2, but the file"
         " says format = 1; write format = 2 (or leave the format out)"),
        ("format = 3", "p.toml: format 3 is newer than this ledger understands (2)"),
    ],
)  # fmt: skip
def test_format_2_mistakes_are_named(text, error):
    with pytest.raises(InputError) as exc:
        P.parse_policy(text, "p.toml")
    assert str(exc.value) == error


def test_policy_set_and_show_a_format_2_policy(team, invoke, tmp_path):
    f = tmp_path / "mrm.toml"
    f.write_text(RICH_TOML)
    r = invoke(["policy", "set", str(f)], env=team.env("admin"))
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[-1] == (
        "rules switched on: register_metadata, environments, naming, promotion_criteria"
    )
    r = invoke(["policy", "show"], env=team.env())
    body = r.stdout.split("format = 2\n", 1)[1]
    assert body == (
        "\n[register_metadata]\n"
        'tags = ["ticket"]\n'
        'tag_values = { data_sensitivity = ["public", "internal", "confidential"] }\n'
        'tag_patterns = { ticket = "^MRM-[0-9]+$" }\n'
        "\n[environments]\n"
        'allowed = ["staging", "production"]\n'
        "\n[naming]\n"
        'model = "^[a-z]+\\\\.[a-z]+\\\\.[a-z0-9]+$"\n'
        "\n[promotion_criteria.production]\n"
        'metrics = ["auc >= live + 0.01", "auc >= live:staging", "f1 >= previous - 0.05"]\n'
    )
    shown = tmp_path / "shown.toml"
    shown.write_text(r.stdout)
    assert P.parse_policy(shown.read_text(), "shown.toml") == team.ledger.policy().policy


# --- each rule at write time ----------------------------------------------------------------


@pytest.fixture
def led(team):
    team.ledger.set_policy(P.parse_policy(RICH_TOML), key=team.keys["admin"])  # seq 5
    return team


def test_tag_values_and_patterns(led):
    ledger, k = led.ledger, led.keys
    msg = refused(
        ledger.register, XGB, key=k["alice"], tags=["ticket=INC-4", "data_sensitivity=secret"]
    )
    assert msg == at(5) + (
        "register_metadata: registering fraud.detector.xgb:1 needs the tag data_sensitivity"
        " to be one of 'public', 'internal', 'confidential', it is 'secret'; register_metadata:"
        " registering fraud.detector.xgb:1 needs the tag ticket to match ^MRM-[0-9]+$, it is"
        " 'INC-4'"
    )
    # An absent tag is the business of `tags` (required), not of its values.
    assert "needs the tag ticket (--tag NAME=VALUE)" in refused(
        ledger.register, XGB, key=k["alice"]
    )
    assert ledger.register(XGB, key=k["alice"], tags=["ticket=MRM-12"]).version == 1
    r = ledger.register(XGB, key=k["alice"], tags=["ticket=MRM-1", "data_sensitivity=internal"])
    assert r.version == 2
    ledger.break_glass(
        "register", XGB, rule="register_metadata", justification="MRM-3", key=k["admin"]
    )
    assert ledger.register(XGB, key=k["alice"], tags=["ticket=INC-4"]).version == 3


def test_naming(led):
    ledger, k = led.ledger, led.keys
    assert refused(ledger.register, "FraudXGB", key=k["alice"], tags=["ticket=MRM-1"]) == at(5) + (
        "naming: the model name 'FraudXGB' does not match the policy's naming pattern"
        " ^[a-z]+\\.[a-z]+\\.[a-z0-9]+$ (naming.model); register it under a name that does"
    )
    assert "naming" in refused(ledger.register, "fraud.xgb", key=k["alice"], tags=["ticket=MRM-1"])
    g = ledger.break_glass(
        "register", "FraudXGB", rule="naming", justification="legacy name, MRM-9", key=k["admin"]
    )
    r = ledger.register("FraudXGB", key=k["alice"], tags=["ticket=MRM-1"])
    payload = json.loads(ledger.events(columns=["payload"])["payload"][r.seq].as_py())
    assert payload["break_glass"] == [g.seq]


def test_environments_are_a_closed_list(led, invoke):
    ledger, k = led.ledger, led.keys
    ledger.register(XGB, key=k["alice"], tags=["ticket=MRM-1"])  # seq 6
    assert refused(ledger.approve, XGB, 1, "prod", key=k["bob"]) == at(5) + (
        "environments: approve for prod: 'prod' is not one of the environments the policy names"
        " (staging, production); did you mean 'production'?"
    )
    r = invoke(["deploy", f"{XGB}:1", "--env", "stagign"], env=led.env("carol"))
    assert (r.exit_code, r.stdout) == (4, "")
    assert r.stderr == (
        "Error: " + at(5) + "environments: deploy to stagign: 'stagign' is not one of the"
        " environments the policy names (staging, production); did you mean 'staging'?\n"
    )
    assert "did you mean" not in refused(ledger.deploy, XGB, 1, "qa", key=k["carol"])
    ledger.deploy(XGB, 1, "staging", key=k["carol"])
    ledger.break_glass(
        "deploy", XGB, 1, "canary", rule="environments", justification="INC-7", key=k["admin"]
    )
    ledger.deploy(XGB, 1, "canary", key=k["carol"])
    # An undeploy names an environment the version is live in: never refused by the list.
    ledger.undeploy(XGB, 1, "canary", key=k["carol"])


def test_promotion_criteria_against_live_and_previous(led):
    ledger, k = led.ledger, led.keys

    def reg(metrics):
        return ledger.register(XGB, key=k["alice"], tags=["ticket=MRM-1"], metrics=metrics)

    reg(["auc=0.90", "f1=0.80"])  # v1 (seq 6)
    # Nothing live in production or staging, no version 0: nothing to compare with.
    ledger.deploy(XGB, 1, "production", key=k["carol"])
    reg(["auc=0.905", "f1=0.70"])  # v2
    assert refused(ledger.deploy, XGB, 2, "production", key=k["carol"]) == at(5) + (
        "promotion_criteria: deploying fraud.detector.xgb:2 to production needs auc >= live +"
        " 0.01, i.e. auc >= 0.91 (fraud.detector.xgb:1, live in production, has auc=0.9); it"
        " has auc=0.905; promotion_criteria: deploying fraud.detector.xgb:2 to production"
        " needs f1 >= previous - 0.05, i.e. f1 >= 0.75 (fraud.detector.xgb:1, the previous"
        " version, has f1=0.8); it has f1=0.7"
    )
    ledger.deploy(XGB, 2, "staging", key=k["carol"])  # no criteria for staging
    reg(["auc=0.95", "f1=0.68"])  # v3: beats live, and v2 in staging; within 0.05 of v2's f1
    ledger.deploy(XGB, 3, "production", key=k["carol"])
    reg(["auc=0.99", "f1=0.7"])  # v4, to staging
    ledger.deploy(XGB, 4, "staging", key=k["carol"])
    reg(["auc=0.97", "f1=0.7"])  # v5: beats v3 (production) by 0.02, but not v4 (staging)
    assert refused(ledger.deploy, XGB, 5, "production", key=k["carol"]) == at(5) + (
        "promotion_criteria: deploying fraud.detector.xgb:5 to production needs auc >="
        " live:staging, i.e. auc >= 0.99 (fraud.detector.xgb:4, live in staging, has"
        " auc=0.99); it has auc=0.97"
    )
    assert py_findings(ledger) == []  # (every write was checked)


def test_nothing_to_compare_with_means_the_criterion_holds(led):
    ledger, k = led.ledger, led.keys
    ledger.register(XGB, key=k["alice"], tags=["ticket=MRM-1"])  # v1: no metrics at all
    ledger.deploy(XGB, 1, "production", key=k["carol"])  # nothing live, no previous version
    ledger.register(XGB, key=k["alice"], tags=["ticket=MRM-1"], metrics=["auc=0.5"])
    ledger.deploy(XGB, 2, "production", key=k["carol"])  # v1 has no auc, no f1: holds
    ledger.register(XGB, key=k["alice"], tags=["ticket=MRM-1"])  # v3 lacks auc, v2 has it
    assert refused(ledger.deploy, XGB, 3, "production", key=k["carol"]) == at(5) + (
        "promotion_criteria: deploying fraud.detector.xgb:3 to production needs auc >= live +"
        " 0.01, i.e. auc >= 0.51 (fraud.detector.xgb:2, live in production, has auc=0.5); it"
        " has none"
    )


def test_a_rollback_to_a_weaker_version_needs_a_grant(led):
    ledger, k = led.ledger, led.keys
    for auc in ("0.9", "0.95"):
        ledger.register(XGB, key=k["alice"], tags=["ticket=MRM-1"], metrics=[f"auc={auc}"])
    ledger.deploy(XGB, 1, "production", key=k["carol"])
    ledger.deploy(XGB, 2, "production", key=k["carol"])
    assert "needs auc >= live + 0.01" in refused(
        ledger.deploy, XGB, 1, "production", key=k["carol"]
    )
    g = ledger.break_glass(
        "deploy", XGB, 1, "production", rule="promotion_criteria", justification="INC-3: v2"
        " misbehaves", key=k["admin"],
    )  # fmt: skip
    ledger.deploy(XGB, 1, "production", key=k["carol"])
    audit = ledger.policy_audit()
    assert [(f.rule, f.covered_by) for f in audit.findings] == [("promotion_criteria", g.seq)]
    assert audit.ok


# --- format 1 keeps its meaning ---------------------------------------------------------


def test_a_stored_format_1_document_means_what_it_meant(team):
    """A format-1 document that holds sections a later format defines (written by other
    software, or by hand) was read as "kept and ignored": it still is, by both audits."""
    led, k = team.ledger, team.keys
    doc = {
        "format": 1,
        "environments": {"allowed": ["production"]},
        "naming": {"model": "^[a-z]+$"},
        "register_metadata": {"tags": ["team"], "tag_values": {"team": ["risk"]}},
    }
    led.append(E.Draft(E.POLICY_SET, {"policy": doc}), k["admin"])  # seq 5
    rec = led.policy()
    assert rec.policy.rules == ["register_metadata"]
    assert rec.policy.unknown == {"environments": doc["environments"], "naming": doc["naming"]}
    assert rec.policy.to_dict()["format"] == 1
    led.register(XGB, key=k["alice"], tags=["team=fraud"])  # not 'risk', not ^[a-z]+$
    led.deploy(XGB, 1, "prod", key=k["carol"])  # not in the list
    assert led.verify().ok
    assert py_findings(led) == [] and sql_findings(led) == []
    # Without a format, a stored document is format 1 too.
    led.append(E.Draft(E.POLICY_SET, {"policy": {"naming": {"model": "^x$"}}}), k["admin"])
    led.register(XGB, key=k["alice"], tags=["team=x"])
    assert py_findings(led) == [] and sql_findings(led) == []


# --- the audits ----------------------------------------------------------------------------


def imported(led: Ledger, key: SigningKey, *drafts: E.Draft) -> None:
    led.append_many(list(drafts), key, enforce_policy=False)


def test_verify_policy_and_sql_report_each_new_rule(led, invoke):
    ledger, k = led.ledger, led.keys
    reg = E.Draft(
        E.REGISTER,
        E.register_payload(tags=["ticket=X", "data_sensitivity=secret"], metrics=["auc=0.9"]),
        "BadName",
    )
    imported(ledger, k["alice"], reg)  # seq 6: naming + 2 x register_metadata
    ledger.register(XGB, key=k["alice"], tags=["ticket=MRM-1"], metrics=["auc=0.9"])  # 7
    ledger.register(XGB, key=k["alice"], tags=["ticket=MRM-2"], metrics=["auc=0.8"])  # 8
    ledger.deploy(XGB, 1, "production", key=k["carol"])  # 9
    imported(ledger, k["carol"], E.Draft(E.DEPLOY, {"env": "production"}, XGB, 2))  # 10
    imported(ledger, k["bob"], E.Draft(E.APPROVE, {"env": "prod"}, XGB, 2))  # 11
    expected = [
        (6, "naming", None),
        (6, "register_metadata", None),
        (6, "register_metadata", None),
        (10, "promotion_criteria", None),
        (11, "environments", None),
    ]
    assert py_findings(ledger) == expected
    assert sql_findings(ledger) == expected
    assert sql_findings(ledger, rule="promotion_criteria") == [expected[3]]
    r = invoke(["verify", "--policy"], env=led.env())
    assert r.exit_code == 1
    assert r.stdout.splitlines()[-6:] == [
        "FAIL: policy: 5 violations not covered by a break-glass override in 12 events"
        " (policies set at seq 5)",
        "  seq 6 register BadName:1 by alice: register_metadata: registering BadName:1 needs the"
        " tag data_sensitivity to be one of 'public', 'internal', 'confidential', it is 'secret'",
        "  seq 6 register BadName:1 by alice: register_metadata: registering BadName:1 needs the"
        " tag ticket to match ^MRM-[0-9]+$, it is 'X'",
        "  seq 6 register BadName:1 by alice: naming: the model name 'BadName' does not match the"
        " policy's naming pattern ^[a-z]+\\.[a-z]+\\.[a-z0-9]+$ (naming.model); register it"
        " under a name that does",
        "  seq 10 deploy fraud.detector.xgb:2 to production by carol: promotion_criteria:"
        " deploying fraud.detector.xgb:2 to production needs auc >= live + 0.01, i.e. auc >="
        " 0.91 (fraud.detector.xgb:1, live in production, has auc=0.9); it has auc=0.8",
        "  seq 11 approve fraud.detector.xgb:2 for prod by bob: environments: approve for prod:"
        " 'prod' is not one of the environments the policy names (staging, production); did"
        " you mean 'production'?",
    ]


ENVS = ("staging", "production", "production", "prod")


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(
                ("ship", "register", "approve", "deploy", "deploy", "undeploy", "grant")
            ),
            st.sampled_from(ENVS),
            st.sampled_from((None, 0.7, 0.8, 0.805, 0.9)),
            st.sampled_from(("MRM-1", "X-1", None)),
            st.booleans(),
            st.integers(0, 2),
        ),
        min_size=4,
        max_size=16,
    ),
    name=st.sampled_from((XGB, XGB, "Fraud")),
)
def test_sql_and_python_audits_agree_on_format_2_histories(tmp_path_factory, steps, name):
    """Random histories under a format-2 policy, some enforced, some imported unchecked."""
    pytest.importorskip("duckdb")
    keys = {n: SigningKey.generate() for n in ("admin", "alice", "bob", "carol")}
    led = Ledger.init(tmp_path_factory.mktemp("l") / "reg", keys["admin"], "admin")
    for n, r in (("alice", "registrar"), ("bob", "approver"), ("carol", "deployer")):
        led.add_key(keys[n].public_key, n, r, key=keys["admin"])
    led.set_policy(P.parse_policy(RICH_TOML), key=keys["admin"])
    if name == XGB:  # a version live in production to compare with
        led.register(name, key=keys["alice"], metrics=["auc=0.9", "f1=0.9"], tags=["ticket=MRM-1"])
        led.deploy(name, 1, "production", key=keys["carol"])
    version = 1
    for action, env, auc, ticket, enforce, back in steps:
        target = max(version - back, 1)  # (an older version too: rollbacks)
        if action == "grant":
            for rule in ("environments", "promotion_criteria"):
                with contextlib.suppress(RuleViolation, InputError):  # (rule may be off)
                    led.break_glass(
                        "deploy", name, target, env, rule=rule, justification="t",
                        key=keys["admin"],
                    )  # fmt: skip
            continue
        if action == "ship":  # a new version, at once deployed to production
            drafts = [
                E.Draft(E.REGISTER, E.register_payload(metrics=[f"auc={auc or 0.5}"]), name),
                E.Draft(E.DEPLOY, {"env": "production"}, name, version + 1),
            ]
            for draft, signer in zip(drafts, ("alice", "carol"), strict=True):
                try:
                    led.append_many([draft], keys[signer], enforce_policy=enforce)
                except (RuleViolation, KeyProblem, InputError, NotFoundError):
                    break
                version += draft.action == E.REGISTER
            continue
        if action == "register":
            payload = E.register_payload(
                metrics=[f"auc={auc}", f"f1={auc}"] if auc is not None else [],
                tags=[f"ticket={ticket}"] if ticket else [],
            )
            draft, signer = E.Draft(E.REGISTER, payload, name), "alice"
        else:
            draft = E.Draft(action, {"env": env}, name, target)
            signer = "bob" if action == "approve" else "carol"
        try:
            r = led.append_many([draft], keys[signer], enforce_policy=enforce)[0]
        except (RuleViolation, KeyProblem, InputError, NotFoundError):
            continue
        if action == "register":
            version = r.version
    found = py_findings(led)
    for rule in sorted({f[1] for f in found}):
        event(f"found {rule}")
    assert sql_findings(led) == found
