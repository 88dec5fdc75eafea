"""MLflow's registry read into ledger/mlflowmap.py's terms: from the registry store's own
database session (the store plugin, inside its transaction) or through MLflow's client
(``ledger import mlflow``, ``ledger mlflow diff``). Needs MLflow (``ledger[mlflow]``)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from .mlflowmap import STAGE_ENV, MModel, MVersion, RunFacts

#: MLflow's stage for a deleted version whose row it keeps.
DELETED_STAGE = "Deleted_Internal"
#: MLflow's DEFAULT_WORKSPACE_NAME: every row's, in its single-tenant registry store.
DEFAULT_WORKSPACE = "default"
_PAGE = 1000


class _Reads:
    """The read-back's statements, built once (on first use: MLflow is imported late):
    SQLAlchemy then finds each one's compiled form by its cached key, and a write pays
    for the round trips only."""

    def __init__(self) -> None:
        import sqlalchemy as sa
        from mlflow.store.model_registry.dbmodels.models import (
            SqlModelVersion,
            SqlModelVersionTag,
            SqlRegisteredModel,
            SqlRegisteredModelAlias,
            SqlRegisteredModelTag,
        )

        # Each by workspace and name, as MLflow's own queries: the tables' keys begin
        # with the workspace (by name alone, SQLite would scan every model's rows).
        def model(c: Any) -> Any:
            return (c.workspace == sa.bindparam("workspace")) & (c.name == sa.bindparam("name"))

        rm, t = SqlRegisteredModel.__table__, SqlRegisteredModelTag.__table__
        # The model and its tags in one: a row per tag (one with NULLs when it has none).
        self.model = (
            sa.select(rm.c.description, rm.c.creation_time, t.c.key, t.c.value)
            .select_from(rm.outerjoin(t, (t.c.workspace == rm.c.workspace)
                                      & (t.c.name == rm.c.name)))
            .where(model(rm.c))
        )  # fmt: skip
        a = SqlRegisteredModelAlias.__table__.c
        self.aliases = sa.select(a.alias, a.version).where(model(a))
        mv, vt = SqlModelVersion.__table__, SqlModelVersionTag.__table__
        c = mv.c
        # The versions and their tags in one: a row per tag, as above.
        same = (vt.c.workspace == c.workspace) & (vt.c.name == c.name) & (vt.c.version == c.version)
        self.versions = (
            sa.select(c.version, c.current_stage, c.description, c.source, c.storage_location,
                      c.run_id, c.run_link, c.creation_time, c.user_id, vt.c.key, vt.c.value)
            .select_from(mv.outerjoin(vt, same))
            .where(model(c))
        )  # fmt: skip
        self.scoped = self.versions.where(
            sa.or_(
                c.version.in_(sa.bindparam("wanted", expanding=True)),
                c.version > sa.bindparam("newer_than"),
                c.current_stage.in_(sorted(STAGE_ENV)),
            )
        )
        self.newest = sa.select(c.source).where(model(c)).order_by(c.version.desc()).limit(1)


@functools.cache
def _reads() -> _Reads:
    return _Reads()


def model_from_session(
    session: Any,
    name: str,
    versions: set[int] | None = None,
    newer_than: int = 0,
    known: MModel | None = None,
    aliases: bool = True,
    workspace: str = DEFAULT_WORKSPACE,
) -> MModel | None:
    """Registered model ``name`` as ``session`` sees it (its own uncommitted changes
    included), deleted versions too; None if there is none. With ``versions``, only
    those versions, the ones its aliases name, those newer than ``newer_than`` and
    those in a serving stage (mlflowmap.scope). Three queries at most, whatever the
    number of versions (the ORM's relationships would load each version's tags alone).

    With ``known`` (the ledger's view of a model MLflow is known to have: a version
    write succeeded), the model's own description and tags, and unless ``aliases``
    its aliases, are taken from it instead of read: the parts the write cannot change.
    Rows of MLflow ``workspace`` only (the store's active one)."""
    q = _reads()
    session.flush()
    conn = session.connection()  # (the session's transaction, without the ORM's execute)
    key = {"workspace": workspace, "name": name}
    if known is not None:
        out = MModel(name, tags=dict(known.tags), description=known.description,
                     aliases=dict(known.aliases))  # fmt: skip
    else:
        rows = conn.execute(q.model, key).all()
        if not rows:
            return None
        description, created = rows[0][0], rows[0][1]
        out = MModel(name, description=description or None, creation_time=created)
        out.tags = {k: v or "" for _, _, k, v in rows if k is not None}
    if known is None or aliases:
        out.aliases = {al: int(v) for al, v in conn.execute(q.aliases, key)}
    if versions is None:
        rows = conn.execute(q.versions, key).all()
    else:
        wanted = sorted(versions | set(out.aliases.values()))
        rows = conn.execute(q.scoped, {**key, "wanted": wanted, "newer_than": newer_than}).all()
    for r in rows:
        n = int(r[0])
        mv = out.versions.get(n)
        if mv is None:
            stage = r[1]
            deleted = stage == DELETED_STAGE
            mv = out.versions[n] = MVersion(
                n,
                stage="None" if deleted else (stage or "None"),
                description=r[2] or None,
                deleted=deleted,
                source=r[3],
                storage_location=r[4],
                run_id=r[5] or None,
                run_link=r[6] or None,
                creation_time=r[7],
                user_id=r[8],
            )
        if r[9] is not None:
            mv.tags[r[9]] = r[10] or ""
    return out


def newest_source(session: Any, name: str, workspace: str = DEFAULT_WORKSPACE) -> str | None:
    """The source of model ``name``'s highest version, as ``session`` sees it."""
    session.flush()
    key = {"workspace": workspace, "name": name}
    source: str | None = session.connection().execute(_reads().newest, key).scalar()
    return source


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
