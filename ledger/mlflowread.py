"""MLflow's registry read into ledger/mlflowmap.py's terms: from the registry store's own
database session (the store plugin, inside its transaction) or through MLflow's client
(``ledger import mlflow``, ``ledger mlflow diff``). Needs MLflow (``ledger[mlflow]``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .mlflowmap import STAGE_ENV, MModel, MVersion, RunFacts

#: MLflow's stage for a deleted version whose row it keeps.
DELETED_STAGE = "Deleted_Internal"
_PAGE = 1000


def model_from_session(
    session: Any,
    name: str,
    versions: set[int] | None = None,
    newer_than: int = 0,
    known: MModel | None = None,
    aliases: bool = True,
) -> MModel | None:
    """Registered model ``name`` as ``session`` sees it (its own uncommitted changes
    included), deleted versions too; None if there is none. With ``versions``, only
    those versions, the ones its aliases name, those newer than ``newer_than`` and
    those in a serving stage (mlflowmap.scope). Five queries at most, whatever the
    number of versions (the ORM's relationships would load each version's tags alone).

    With ``known`` (the ledger's view of a model MLflow is known to have: a version
    write succeeded), the model's own description and tags, and unless ``aliases``
    its aliases, are taken from it instead of read: the parts the write cannot change."""
    import sqlalchemy as sa
    from mlflow.store.model_registry.dbmodels.models import (
        SqlModelVersion,
        SqlModelVersionTag,
        SqlRegisteredModel,
        SqlRegisteredModelAlias,
        SqlRegisteredModelTag,
    )

    session.flush()
    if known is not None:
        out = MModel(name, tags=dict(known.tags), description=known.description,
                     aliases=dict(known.aliases))  # fmt: skip
    else:
        rm = SqlRegisteredModel.__table__.c
        row = session.execute(
            sa.select(rm.description, rm.creation_time).where(rm.name == name)
        ).first()
        if row is None:
            return None
        out = MModel(name, description=row.description or None, creation_time=row.creation_time)
        t = SqlRegisteredModelTag.__table__.c
        out.tags = {k: v or "" for k, v in session.execute(
            sa.select(t.key, t.value).where(t.name == name))}  # fmt: skip
    if known is None or aliases:
        a = SqlRegisteredModelAlias.__table__.c
        out.aliases = {al: int(v) for al, v in session.execute(
            sa.select(a.alias, a.version).where(a.name == name))}  # fmt: skip
    mv = SqlModelVersion.__table__.c
    cols = (mv.version, mv.current_stage, mv.description, mv.source, mv.storage_location,
            mv.run_id, mv.run_link, mv.creation_time, mv.user_id)  # fmt: skip
    query = sa.select(*cols).where(mv.name == name)
    if versions is not None:
        wanted = sorted(versions | set(out.aliases.values()))
        query = query.where(sa.or_(
            mv.version.in_(wanted), mv.version > newer_than,
            mv.current_stage.in_(sorted(STAGE_ENV)),
        ))  # fmt: skip
    rows = session.execute(query).all()
    vt = SqlModelVersionTag.__table__.c
    tag_query = sa.select(vt.version, vt.key, vt.value).where(vt.name == name)
    if versions is not None:
        tag_query = tag_query.where(vt.version.in_([int(r.version) for r in rows]))
    tags: dict[int, dict[str, str]] = {}
    for v, k, value in session.execute(tag_query):
        tags.setdefault(int(v), {})[k] = value or ""
    for r in rows:
        deleted = r.current_stage == DELETED_STAGE
        out.versions[int(r.version)] = MVersion(
            int(r.version),
            stage="None" if deleted else (r.current_stage or "None"),
            tags=tags.get(int(r.version), {}),
            description=r.description or None,
            deleted=deleted,
            source=r.source,
            storage_location=r.storage_location,
            run_id=r.run_id or None,
            run_link=r.run_link or None,
            creation_time=r.creation_time,
            user_id=r.user_id,
        )
    return out


def newest_source(session: Any, name: str) -> str | None:
    """The source of model ``name``'s highest version, as ``session`` sees it."""
    import sqlalchemy as sa
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion

    session.flush()
    mv = SqlModelVersion.__table__.c
    return session.execute(
        sa.select(mv.source).where(mv.name == name).order_by(mv.version.desc()).limit(1)
    ).scalar()


def models_from_client(client: Any) -> dict[str, MModel]:
    """Every registered model MLflow's client lists, with its live (not deleted)
    versions: a version number it no longer lists was deleted."""
    out: dict[str, MModel] = {}
    token = None
    while True:
        page = client.search_registered_models(max_results=_PAGE, page_token=token)
        for rm in page:
            out[rm.name] = MModel(
                rm.name,
                tags=dict(rm.tags or {}),
                description=rm.description or None,
                aliases={a: int(v) for a, v in (rm.aliases or {}).items()},
                creation_time=rm.creation_timestamp,
            )
        token = page.token
        if not token:
            break
    token = None
    while True:
        vpage = client.search_model_versions(max_results=10 * _PAGE, page_token=token)
        for mv in vpage:
            m = out.get(mv.name)
            if m is None:  # (registered between the two listings)
                continue
            m.versions[int(mv.version)] = version_from_entity(mv)
        token = vpage.token
        if not token:
            break
    return out


def version_from_entity(mv: Any) -> MVersion:
    """An MLflow ``ModelVersion`` entity as an MVersion."""
    return MVersion(
        int(mv.version),
        stage=mv.current_stage or "None",
        tags=dict(mv.tags or {}),
        description=mv.description or None,
        source=mv.source,
        run_id=mv.run_id or None,
        run_link=mv.run_link or None,
        creation_time=mv.creation_timestamp,
        user_id=mv.user_id or None,
        model_id=getattr(mv, "model_id", None) or None,
    )


def run_facts(run: Any) -> RunFacts:
    """What an MLflow ``Run`` tells a register payload."""
    datasets = []
    for d in getattr(run.inputs, "dataset_inputs", None) or []:
        ds = d.dataset
        datasets.append((ds.name, ds.digest or None, ds.source_type or None, ds.source or None))
    return RunFacts(
        metrics=dict(run.data.metrics),
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        datasets=datasets,
    )


def runs_by_id(client: Any, run_ids: Iterable[str], batch: int = 100) -> dict[str, RunFacts]:
    """The facts of many runs, read ``batch`` at a time with ``search_runs`` (one
    ``get_run`` each would be a round trip per version)."""
    from mlflow.entities import ViewType

    wanted = sorted({r for r in run_ids if r})
    if not wanted:
        return {}
    experiments = [e.experiment_id for e in _all_experiments(client)]
    out: dict[str, RunFacts] = {}
    for i in range(0, len(wanted), batch):
        ids = ", ".join(f"'{r}'" for r in wanted[i : i + batch] if r.isalnum())
        if not ids:
            continue
        token = None
        while True:
            runs = client.search_runs(
                experiments,
                filter_string=f"attributes.run_id IN ({ids})",
                run_view_type=ViewType.ALL,
                max_results=batch,
                page_token=token,
            )
            for run in runs:
                out[run.info.run_id] = run_facts(run)
            token = runs.token
            if not token:
                break
    return out


def _all_experiments(client: Any) -> list[Any]:
    from mlflow.entities import ViewType

    out, token = [], None
    while True:
        page = client.search_experiments(
            view_type=ViewType.ALL, max_results=_PAGE, page_token=token
        )
        out.extend(page)
        token = page.token
        if not token:
            return out
