"""The store's read-back (ledger/mlflowread.py, model_from_session: a few prebuilt
queries) held to MLflow's own ORM objects for the same rows, on a registry built through
MLflow's SQLAlchemy store, for whole models and for every kind of scoped read."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from ledger.mlflowmap import STAGE_ENV, MModel, MVersion, restrict
from ledger.mlflowread import DELETED_STAGE, model_from_session, newest_source

pytest.importorskip("mlflow")


def _reference(session: Any, name: str) -> MModel | None:
    """The model as MLflow's ORM loads it, relationship by relationship (the slow way)."""
    from mlflow.store.model_registry.dbmodels.models import SqlRegisteredModel

    rm = session.query(SqlRegisteredModel).filter_by(name=name, workspace="default").first()
    if rm is None:
        return None
    out = MModel(
        name,
        tags={t.key: t.value or "" for t in rm.registered_model_tags},
        description=rm.description or None,
        aliases={a.alias: int(a.version) for a in rm.registered_model_aliases},
        creation_time=rm.creation_time,
    )
    for mv in rm.model_versions:
        deleted = mv.current_stage == DELETED_STAGE
        out.versions[int(mv.version)] = MVersion(
            int(mv.version),
            stage="None" if deleted else (mv.current_stage or "None"),
            tags={t.key: t.value or "" for t in mv.model_version_tags},
            description=mv.description or None,
            deleted=deleted,
            source=mv.source,
            storage_location=mv.storage_location,
            run_id=mv.run_id or None,
            run_link=mv.run_link or None,
            creation_time=mv.creation_time,
            user_id=mv.user_id,
        )
    return out


def _registry(db: Path, seed: int) -> Any:
    """An MLflow registry of three models changed at random through MLflow's store."""
    from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    rng = random.Random(seed)
    store = SqlAlchemyStore(f"sqlite:///{db}")
    store.create_registered_model("empty")
    store.create_registered_model("plain")
    store.create_model_version("plain", "s3://p/1")
    store.create_registered_model("fraud", [RegisteredModelTag("team", "risk")], "first")
    for i in range(40):
        live = [int(v.version) for v in store.search_model_versions("name='fraud'")]
        roll = rng.random()
        if roll < 0.3 or not live:
            store.create_model_version("fraud", f"s3://m/{i}", run_link=rng.choice([None, "l"]),
                                       description=rng.choice([None, "", f"v{i}"]))  # fmt: skip
            continue
        v = str(rng.choice(live))
        if roll < 0.5:
            store.set_model_version_tag("fraud", v, ModelVersionTag(rng.choice("abc"), str(i)))
        elif roll < 0.55:
            store.delete_model_version_tag("fraud", v, rng.choice("abc"))
        elif roll < 0.7:
            stage = rng.choice(["Staging", "Production", "Archived", "None"])
            archive = stage in STAGE_ENV and rng.random() < 0.3
            store.transition_model_version_stage("fraud", v, stage, archive)
        elif roll < 0.8:
            store.set_registered_model_alias("fraud", rng.choice(["champion", "next"]), v)
        elif roll < 0.85:
            store.update_model_version("fraud", v, f"about {i}")
        elif roll < 0.9:
            store.set_registered_model_tag("fraud", RegisteredModelTag(rng.choice("xy"), str(i)))
        else:
            store.delete_model_version("fraud", v)
    return store


@pytest.mark.parametrize("seed", range(4))
def test_the_read_back_is_mlflows_own_view_whole_and_scoped(tmp_path: Path, seed: int) -> None:
    import sqlalchemy as sa

    store = _registry(tmp_path / "mlflow.db", seed)
    rng = random.Random(seed)
    with sa.orm.Session(store.engine) as session:
        assert model_from_session(session, "absent") is None
        assert newest_source(session, "absent") is None
        for name in ("empty", "plain", "fraud"):
            full = _reference(session, name)
            assert full is not None
            assert model_from_session(session, name) == full
            top = max(full.versions, default=0)
            assert newest_source(session, name) == (full.versions[top].source if top else None)
            for _ in range(30):
                wanted = set(rng.sample(range(1, top + 3), min(top + 2, rng.randrange(4))))
                newer = rng.randrange(top + 2)
                known = None
                if rng.random() < 0.5:
                    known = MModel(name, tags={"k": "v"}, description="known", aliases={"a": 1})
                aliases = rng.random() < 0.5
                got = model_from_session(session, name, wanted, newer, known, aliases)
                want = MModel(name, tags=full.tags, description=full.description,
                              aliases=full.aliases, creation_time=full.creation_time)  # fmt: skip
                if known is not None:
                    want = MModel(name, tags=known.tags, description=known.description,
                                  aliases=full.aliases if aliases else known.aliases)  # fmt: skip
                scope = wanted | set(want.aliases.values())
                scope |= {n for n, v in full.versions.items() if n > newer or v.stage in STAGE_ENV}
                want.versions = full.versions
                assert got == restrict(want, scope), (wanted, newer, known, aliases)


def test_the_read_back_sees_its_own_sessions_uncommitted_changes(tmp_path: Path) -> None:
    import sqlalchemy as sa
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersionTag

    store = _registry(tmp_path / "mlflow.db", 0)
    with sa.orm.Session(store.engine) as session:
        before = model_from_session(session, "plain")
        assert before is not None and before.versions[1].tags == {}
        session.add(SqlModelVersionTag(name="plain", version=1, key="new", value="yes",
                                       workspace="default"))  # fmt: skip
        after = model_from_session(session, "plain", {1})
        assert after is not None and after.versions[1].tags == {"new": "yes"}
        session.rollback()
        again = model_from_session(session, "plain")
        assert again is not None and again.versions[1].tags == {}
