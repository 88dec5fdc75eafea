"""The MLflow mapping (ledger/mlflowmap.py) held to its promise: apply the drafts of the
differences between an MLflow registry and the ledger, and the ledger then differs from
it in nothing, through any sequence of registry changes. Also the writer's planned
append (Writer.append_planned), which the MLflow store commits through."""

from __future__ import annotations

import copy
import random

import pytest

from ledger import events as E
from ledger.errors import RuleViolation
from ledger.keys import SigningKey
from ledger.mlflowmap import (
    STAGE_ENV,
    STAGE_TAG,
    MModel,
    MVersion,
    RunFacts,
    differences,
    drafts_of,
    ledger_models,
    restrict,
    scope,
    staged,
    unmappable,
)

M = "fraud.detector.xgb"


@pytest.fixture
def mlkey(team):
    key = SigningKey.generate()
    team.ledger.add_key(
        key.public_key, "mlflow-server", ["deployer", "registrar"], key=team.keys["admin"]
    )
    return key


def _run(mv: MVersion) -> RunFacts:
    return RunFacts(
        metrics={"auc": 0.91, "bad metric": 1.0, "loss": float("nan"), "rows": 1e17},
        params={"depth": "6"},
        tags={"mlflow.source.git.commit": "3f2a9c1", "mlflow.source.git.repoURL": "git@x:r"},
        datasets=[("train", "a1b2c3", "s3", "s3://b/train.parquet")],
    )


def _diffs(team, ml: MModel | None, name: str = M):
    led = ledger_models(team.ledger.state(), [name]).get(name)
    return differences(ml, led, run_facts=_run, comment="via MLflow", via={"user": "u"})


def _sync(team, key, ml: MModel | None, name: str = M) -> None:
    diffs = _diffs(team, ml, name)
    assert unmappable(diffs) is None, unmappable(diffs)
    drafts = drafts_of(diffs)
    if drafts:
        team.ledger.append_many(drafts, key, enforce_policy=False)
    assert _diffs(team, ml, name) == []


def test_a_new_registry_is_recorded_with_its_run_and_then_differs_in_nothing(team, mlkey):
    ml = MModel(M, tags={"team": "risk"}, description="fraud scores", aliases={"champion": 2})
    ml.versions[1] = MVersion(1, stage="Archived", source="s3://m/1", run_id="r1")
    ml.versions[2] = MVersion(2, stage="Production", tags={"owner": "ana"}, creation_time=1000)
    _sync(team, mlkey, ml)
    state = team.ledger.state()
    assert state.live[(M, "production")] == 2
    assert state.aliases[(M, "champion")] == 2
    assert state.versions[(M, 1)].tags == {STAGE_TAG: "Archived"}
    reg = next(e for e in team.ledger.events().to_pylist() if e["action"] == E.REGISTER)
    assert '"metrics":{"auc":0.91}' in reg["payload"]
    assert '"code":{"commit":"3f2a9c1","repo":"git@x:r"}' in reg["payload"]
    assert "metric 'bad metric': not a ledger metric name" in reg["payload"]
    assert "metric 'loss': nan is not a finite number" in reg["payload"]
    assert "metric 'rows': 1e+17 is a whole number beyond 2^53" in reg["payload"]
    assert team.ledger.verify().ok


def test_the_highest_version_in_a_stage_is_what_serves(team, mlkey):
    ml = MModel(M, versions={n: MVersion(n, stage="Production") for n in (1, 2)})
    _sync(team, mlkey, ml)
    assert team.ledger.state().live[(M, "production")] == 2
    ml.versions[2].stage = "Archived"  # models:/M/Production is version 1 again
    _sync(team, mlkey, ml)
    assert team.ledger.state().live[(M, "production")] == 1
    ml.versions[1].stage = "None"
    _sync(team, mlkey, ml)
    assert (M, "production") not in team.ledger.state().live


def test_a_deleted_model_cannot_come_back_with_new_versions(team, mlkey):
    ml = MModel(M, versions={1: MVersion(1, stage="Staging")}, aliases={"champion": 1})
    _sync(team, mlkey, ml)
    _sync(team, mlkey, None)
    state = team.ledger.state()
    assert state.versions[(M, 1)].deprecated_seq is not None
    assert (M, "staging") not in state.live
    again = _diffs(team, MModel(M))
    assert unmappable(again) is not None
    assert "cannot be used for a new model" in (unmappable(again).unmappable or "")


def test_names_the_ledger_cannot_hold_are_unmappable(team, mlkey):
    diffs = _diffs(team, MModel("My Model"), "My Model")
    assert diffs[0].unmappable is not None and "model name 'My Model'" in diffs[0].unmappable
    ml = MModel(M, versions={1: MVersion(1)}, aliases={"Champion": 1})
    assert "alias name 'Champion'" in (unmappable(_diffs(team, ml)).unmappable or "")


def test_a_long_tag_value_is_kept_as_its_digest(team, mlkey):
    ml = MModel(M, versions={1: MVersion(1, tags={"prompt": "x" * 5000})})
    _sync(team, mlkey, ml)
    assert team.ledger.state().versions[(M, 1)].tags["prompt"].startswith("sha256:")


def _mutate(rng: random.Random, ml: MModel) -> None:
    live = [n for n, v in ml.versions.items() if not v.deleted]
    choice = rng.randrange(8)
    if choice == 0 or not live:
        n = max(ml.versions, default=0) + 1
        ml.versions[n] = MVersion(n, stage=rng.choice(["None", "Staging"]))
    elif choice == 1:
        ml.versions[rng.choice(live)].stage = rng.choice(
            ["None", "Staging", "Production", "Archived"]
        )
    elif choice == 2:
        ml.aliases[rng.choice(["champion", "challenger"])] = rng.choice(live)
    elif choice == 3 and ml.aliases:
        del ml.aliases[rng.choice(sorted(ml.aliases))]
    elif choice == 4:
        ml.versions[rng.choice(live)].tags[rng.choice("abc")] = rng.choice(["1", "2"])
    elif choice == 5:
        target = ml if rng.random() < 0.5 else ml.versions[rng.choice(live)]
        target.tags.pop(rng.choice("abc"), None)
        target.description = rng.choice([None, "", "d1", "d2"])
    elif choice == 6 and len(live) > 1:
        n = rng.choice(live)
        ml.versions[n].deleted = True
        ml.aliases = {a: v for a, v in ml.aliases.items() if v != n}
    elif choice == 7:
        ml.tags[rng.choice("xy")] = rng.choice(["p", "q"])


def _assert_mirrors(ml: MModel, led: MModel) -> None:
    """The reference: what the ledger reads back is, field by field, MLflow's."""
    assert led.tags == ml.tags and (led.description or "") == (ml.description or "")
    assert led.aliases == ml.aliases
    for n, mv in ml.versions.items():
        lv = led.versions[n]
        assert lv.deleted == mv.deleted, n
        if not mv.deleted:
            assert (lv.stage, lv.tags, lv.description or "") == (
                mv.stage,
                mv.tags,
                mv.description or "",
            ), n


def _scoped(team, before: MModel, ml: MModel):
    """The differences as the store computes them, reading only the versions in scope:
    those the change touched, then what :func:`scope` adds, MLflow's newer versions
    and those in a serving stage (what its SQL selects)."""
    led = ledger_models(team.ledger.state(), [M]).get(M)
    touched = {n for n, v in ml.versions.items() if before.versions.get(n) != v}
    wanted = scope(led, ml.aliases, touched)
    latest = led.latest if led else 0
    wanted |= {n for n, v in ml.versions.items()
               if n > latest or (v.stage in STAGE_ENV and not v.deleted)}  # fmt: skip
    return differences(restrict(ml, wanted), restrict(led, wanted), run_facts=_run,
                       comment="via MLflow", via={"user": "u"}, versions=wanted)  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_any_sequence_of_registry_changes_is_mirrored_exactly(team, mlkey, seed):
    rng = random.Random(seed)
    ml = MModel(M)
    for _ in range(25):
        before = copy.deepcopy(ml)
        _mutate(rng, ml)
        # The scoped comparison (the store's fast path) is the whole one.
        assert _scoped(team, before, ml) == _diffs(team, ml)
        _sync(team, mlkey, copy.deepcopy(ml))
        state = team.ledger.state()
        _assert_mirrors(ml, ledger_models(state, [M])[M])
        _assert_partial_reads_are_whole_ones(rng, state)
        for env, stage in (("staging", "Staging"), ("production", "Production")):
            serving = [n for n, v in ml.versions.items() if v.stage == stage and not v.deleted]
            assert state.live.get((M, env)) == (max(serving) if serving else None)
    assert team.ledger.verify().ok


def _assert_partial_reads_are_whole_ones(rng: random.Random, state) -> None:
    """The store's reads of the ledger's side without every version (ledger_models with
    ``versions``, scope of a model without its versions and :func:`staged`) are the
    whole model's."""
    whole = ledger_models(state, [M])[M]
    bare = ledger_models(state, [M], versions=())[M]
    assert bare == restrict(whole, set())
    for _ in range(5):
        some = set(rng.sample(range(0, whole.latest + 3), rng.randrange(whole.latest + 3)))
        assert ledger_models(state, [M], versions=some)[M] == restrict(whole, some)
        touched = rng.sample(range(1, whole.latest + 2), min(2, whole.latest + 1))
        aliases = {"next": rng.randrange(1, whole.latest + 2)}
        assert scope(whole, aliases, touched) == scope(bare, aliases, touched) | staged(state, M)
    assert ledger_models(state, ["absent"], versions=()) == {} and staged(state, "absent") == set()


# --- Writer.append_planned -----------------------------------------------------------------
def test_a_planned_append_runs_its_hook_between_signing_and_writing(team):
    led, alice = team.ledger, team.keys["alice"]
    seen = []

    def before_write(receipts):
        seen.append([r.seq for r in receipts])
        assert led.store.tail()[0] == receipts[0].seq  # not written yet

    def plan(state):
        return [E.Draft(E.MODEL_CREATE, {}, "m.new"), E.Draft(E.REGISTER, {}, "m.new", 1)]

    receipts = led.append_planned({"m.new"}, plan, alice, before_write)
    assert seen == [[r.seq for r in receipts]] and len(receipts) == 2
    assert led.state().latest["m.new"] == 1


def test_a_refused_plan_or_hook_writes_nothing(team):
    led, alice = team.ledger, team.keys["alice"]
    before = led.store.tail()
    calls = []

    def twice(state):
        return [E.Draft(E.MODEL_CREATE, {}, "m.new"), E.Draft(E.MODEL_CREATE, {}, "m.new")]

    with pytest.raises(RuleViolation, match=r"model m\.new already exists"):
        led.append_planned({"m.new"}, twice, alice, calls.append)
    assert calls == [] and led.store.tail() == before

    def boom(receipts):
        raise RuntimeError("the other store could not commit")

    with pytest.raises(RuntimeError, match="could not commit"):
        led.append_planned({"m.new"}, lambda s: [E.Draft(E.MODEL_CREATE, {}, "m.new")], alice, boom)
    assert led.store.tail() == before
    # (and the writer is healthy afterwards)
    led.append_planned(
        {"m.new"}, lambda s: [E.Draft(E.MODEL_CREATE, {}, "m.new")], alice, calls.append
    )
    assert led.state().latest["m.new"] == 0 and len(calls) == 1
