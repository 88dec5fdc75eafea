"""Deployment-history bundles: `ledger evidence MODEL --env ENV` proves everything that
was ever deployed to or undeployed from ENV for MODEL up to a checkpoint, so an auditor
can read what was live there at any instant, and nothing can be left out unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger import evidence
from tests.stories import JUSTIFICATION, XGB, scripted_story
from tests.test_story_evidence import (
    _doc,
    _seq,
    _ts,
    _verify,
    _write,
)


@pytest.fixture
def scripted(team, tmp_path, invoke):
    return scripted_story(team, tmp_path, invoke)


# xgb in production: policy 8 in force, grant 11, the deploy of v1 under it (12), the
# deploy of v2 that replaced it (15), and the key events of admin (genesis: the policy
# and the grant) and carol (key_add 3: the deploys).
PRODUCTION = [0, 3, 8, 11, 12, 15]
# xgb in staging: the deploy of v1 (10) and its undeploy (16), the policy and keys.
STAGING = [0, 3, 8, 10, 16]


@pytest.fixture
def history(scripted, invoke, tmp_path):
    t = scripted
    for env in ("production", "staging"):
        out = tmp_path / f"{env}.json"
        r = invoke(["evidence", XGB, "--env", env, "--out", str(out)], env=t.env())
        assert r.exit_code == 0, r.stderr
        setattr(t, env, out)
    return t


def test_the_history_proves_what_was_live_and_names_the_override(history, invoke):
    t = history
    doc = _doc(t.production)
    assert [_seq(e) for e in doc["events"]] == PRODUCTION
    assert [s for s, _ in doc["story"]["events"]] == PRODUCTION
    assert set(doc) == {"checkpoint", "env", "events", "format", "model", "origin",
                        "signer_keys", "story"}  # fmt: skip
    code, out = _verify(invoke, t, t.production)
    assert code == 0, out
    assert out.startswith(
        f"OK: {XGB} in production: version 1 deployed by carol at {_ts(t, 12)} under"
        f' break-glass grant seq 11: "{JUSTIFICATION}", version 2 deployed by carol at'
        f" {_ts(t, 15)} (replacing version 1); live in production at the checkpoint: version"
        " 2; the complete deployment history (4 events, policy seq 8 in force), all"
        " signatures valid, included in checkpoint of size 20 of"
    ), out


def test_an_undeploy_leaves_nothing_live(history, invoke):
    t = history
    assert [_seq(e) for e in _doc(t.staging)["events"]] == STAGING
    code, out = _verify(invoke, t, t.staging)
    assert code == 0, out
    assert (
        f"OK: {XGB} in staging: version 1 deployed by carol at {_ts(t, 10)}, version 1"
        f" undeployed by carol at {_ts(t, 16)}; nothing live in staging at the checkpoint;"
    ) in out


def test_what_was_live_at_any_instant(history):
    t = history
    v = evidence.check(t.production.read_bytes())
    assert v.live_at(_ts(t, 12)) == 1
    assert v.live_at(_ts(t, 15)) == 2
    assert v.live_at(_ts(t, 11)) is None  # (before the first deploy)
    assert [(s, until is None, ver) for s, _, until, ver in v.live] == [
        (12, False, 1),
        (15, True, 2),
    ]


# Each attack hides one event of the production history from the bundle.
HIDDEN = [
    ("replacement_hidden", 15),  # "v1 is still live"
    ("override_hidden", 11),  # v1 went live under break-glass
    ("policy_in_force_hidden", 8),
    ("first_deploy_hidden", 12),
]


@pytest.mark.parametrize(("attack", "seq"), HIDDEN, ids=[a[0] for a in HIDDEN])
@pytest.mark.parametrize("list_edited", [False, True], ids=["list_kept", "list_edited"])
def test_an_event_hidden_from_the_history_is_incomplete(history, invoke, attack, seq, list_edited):
    t = history
    doc = _doc(t.production)
    doc["events"] = [e for e in doc["events"] if _seq(e) != seq]
    if list_edited:  # (and the committed list edited to match: the map proof fails)
        doc["story"]["events"] = [x for x in doc["story"]["events"] if x[0] != seq]
    _write(t.production, doc)
    code, out = _verify(invoke, t, t.production)
    assert code == 1
    if list_edited:
        assert out == (
            f"FAIL: incomplete: the bundle's list of the deployment history of {XGB} in"
            " production is not the one the checkpoint's story map commits to (events"
            " removed from it or added)\n"
        )
    else:
        assert out == (
            f"FAIL: incomplete: seq {seq} of the deployment history of {XGB} in production"
            " missing from the bundle (events removed)\n"
        )


def test_another_environments_history_passed_off_as_production(history, invoke):
    t = history
    doc = _doc(t.staging)
    doc["env"] = "production"  # (the staging events, labelled production)
    _write(t.staging, doc)
    code, out = _verify(invoke, t, t.staging)
    assert code == 1
    assert out.startswith("FAIL: incomplete: the bundle's list of the deployment history")


def test_a_version_bundle_relabelled_as_a_history_is_refused(history, invoke, tmp_path):
    t = history
    doc = _doc(t.bundle)
    doc["env"] = "production"
    del doc["version"]
    path = tmp_path / "relabelled.json"
    _write(path, doc)
    code, out = _verify(invoke, t, path)
    assert code == 1
    assert out.startswith("FAIL: incomplete:")


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([f"{XGB}:1", "--env", "production"], 2,
         f"Error: with --env, give a model name, not '{XGB}:1' (MODEL --env ENV)"),
        ([XGB, "--env", "canary"], 3,
         f"Error: no version of {XGB} was ever deployed to canary in the checkpoint of size"
         " 20 signed by cp (key "),
        ([XGB, "--env", "Prod!"], 2, "Error: invalid environment"),
        (["no.such.model", "--env", "production"], 3,
         "Error: no version of no.such.model was ever deployed to production"),
    ],
    ids=["version_with_env", "never_deployed_there", "bad_env_name", "unknown_model"],
)  # fmt: skip
def test_bad_requests_are_clear_and_write_nothing(scripted, invoke, tmp_path, args, code, message):
    t = scripted
    before = _snapshot(t.ledger.path)
    out = tmp_path / "out.json"
    r = invoke(["evidence", *args, "--out", str(out)], env=t.env())
    assert r.exit_code == code, r.stderr
    assert r.stderr.startswith(message), r.stderr
    assert r.stderr.count("\n") == 1
    assert not out.exists()
    assert _snapshot(t.ledger.path) == before


def test_the_python_api_gives_the_same_bundle(history):
    t = history
    bundle = t.ledger.deployment_evidence(XGB, "production")
    assert evidence.dumps(bundle) == t.production.read_bytes()
    assert json.loads(t.production.read_bytes())["env"] == "production"


# --- checkpoints issued before deployment histories (ledger-story/1) -----------------------


def _legacy_checkpoint(t, forged: bool = False) -> str:
    """A checkpoint of the whole ledger committing, as checkpoints issued before
    deployment histories did, to the map of version keys only."""
    import base64

    from ledger import checkpoints as CS
    from ledger import note
    from ledger import storyread as S

    led, real = t.ledger, CS.latest(t.ledger)
    root = S.stories_at(led.store, [real.size], envs=False)[real.size]
    if forged:
        root = bytes(32)
    line = f"ledger-story/1 {base64.b64encode(root).decode()}"
    key = t.keys["cp"]
    body = note.format_checkpoint(led.origin, real.size, real.root, [line])
    return note.sign_note(body, led.origin, key.sign, key.public_key)


@pytest.mark.parametrize("forged", [False, True], ids=["honest", "forged"])
def test_verify_holds_a_legacy_checkpoint_to_the_version_only_map(scripted, invoke, forged):
    from ledger import checkpoint as C
    from ledger import checkpoints as CS

    t = scripted
    real = CS.latest(t.ledger)
    text = _legacy_checkpoint(t, forged)
    for p in (t.path / "checkpoints").iterdir():
        p.unlink()
    (t.path / "checkpoints" / C.file_name(20, real.root, text)).write_text(text)
    r = invoke(["verify", "--format", "json"], env=t.env())
    if not forged:
        assert r.exit_code == 0, r.stdout
        return
    assert r.exit_code == 1
    assert json.loads(r.stdout)["problems"][0]["kind"] == "story_map"


def test_a_legacy_checkpoint_proves_versions_but_not_histories(scripted, invoke, tmp_path):
    t = scripted
    old = tmp_path / "old.cp"
    old.write_text(_legacy_checkpoint(t))
    bundle = tmp_path / "v1.json"
    r = invoke(["evidence", f"{XGB}:1", "--out", str(bundle), "--checkpoint", str(old)],
               env=t.env())  # fmt: skip
    assert r.exit_code == 0, r.stderr
    code, out = _verify(invoke, t, bundle)
    assert code == 0 and "the complete story (10 events" in out, out
    r = invoke(["evidence", XGB, "--env", "production", "--out", str(tmp_path / "h.json"),
                "--checkpoint", str(old)], env=t.env())  # fmt: skip
    assert r.exit_code == 2
    assert r.stderr == (
        "Error: the checkpoint of size 20 signed by cp (key "
        f"{t.keys['cp'].key_id}) commits to a ledger-story/1 map, which has no deployment"
        " histories; issue a new checkpoint (ledger checkpoint) and build the bundle"
        " against that\n"
    )
