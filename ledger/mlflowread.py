"""MLflow's registry read into ledger/mlflowmap.py's terms: from the registry store's own
database session (the store plugin, inside its transaction) or through MLflow's client
(``ledger import mlflow``, ``ledger mlflow diff``). Needs MLflow (``ledger[mlflow]``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .mlflowmap import MModel, MVersion, RunFacts

#: MLflow's stage for a deleted version whose row it keeps.
DELETED_STAGE = "Deleted_Internal"
_PAGE = 1000


def model_from_session(session: Any, name: str) -> MModel | None:
    """Registered model ``name`` as ``session`` sees it (its own uncommitted changes
    included), deleted versions too; None if there is none."""
    from mlflow.store.model_registry.dbmodels.models import (
        SqlModelVersion,
        SqlRegisteredModel,
    )

    rm = session.query(SqlRegisteredModel).filter(SqlRegisteredModel.name == name).one_or_none()
    if rm is None:
        return None
    out = MModel(
        name,
        tags={t.key: t.value or "" for t in rm.registered_model_tags},
        description=rm.description or None,
        aliases={a.alias: int(a.version) for a in rm.registered_model_aliases},
        creation_time=rm.creation_time,
    )
    for v in session.query(SqlModelVersion).filter(SqlModelVersion.name == name):
        deleted = v.current_stage == DELETED_STAGE
        out.versions[int(v.version)] = MVersion(
            int(v.version),
            stage="None" if deleted else (v.current_stage or "None"),
            tags={t.key: t.value or "" for t in v.model_version_tags},
            description=v.description or None,
            deleted=deleted,
            source=v.source,
            storage_location=v.storage_location,
            run_id=v.run_id or None,
            run_link=v.run_link or None,
            creation_time=v.creation_time,
            user_id=v.user_id,
        )
    return out


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
