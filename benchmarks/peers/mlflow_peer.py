"""The registry workflow on MLflow's model registry with a SQLite backend store.

Run inside benchmarks/.venvs/mlflow (it must not import ``ledger``):
``python mlflow_peer.py VERSIONS WORKDIR`` prints one JSON object with the timings.

Mapping of the ledger's operations (same counts, one operation at a time):
register -> ``create_model_version`` (plus ``create_registered_model`` for a new model);
approve -> ``set_model_version_tag(approved.staging=bob)``; deploy ->
``set_registered_model_alias(production)``; status / search -> ``search_model_versions``
and ``get_model_version_by_alias``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings


def main(versions: int, work: str) -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{os.path.join(work, 'mlflow.db')}"
    t0 = time.perf_counter()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.search_registered_models()  # creates the schema (alembic migrations)
    setup = time.perf_counter() - t0
    models = max(1, versions // 10)
    names = [f"bench-model-{i}" for i in range(models)]
    per: dict[str, float] = {"register": 0.0, "approve": 0.0, "deploy": 0.0}
    t_all = time.perf_counter()
    for i in range(versions):
        name = names[i % models]
        t = time.perf_counter()
        if i < models:
            client.create_registered_model(name)
        mv = client.create_model_version(
            name, source=f"s3://models/{name}/{i}", tags={"team": "bench"}
        )
        per["register"] += time.perf_counter() - t
        t = time.perf_counter()
        client.set_model_version_tag(name, mv.version, "approved.staging", "bob")
        per["approve"] += time.perf_counter() - t
        t = time.perf_counter()
        client.set_registered_model_alias(name, "production", mv.version)
        per["deploy"] += time.perf_counter() - t
    writes = time.perf_counter() - t_all
    t = time.perf_counter()
    for name in names:
        client.search_model_versions(f"name='{name}'")
    search = time.perf_counter() - t
    t = time.perf_counter()
    for name in names:
        client.get_model_version_by_alias(name, "production")
    alias = time.perf_counter() - t
    print(
        json.dumps(
            {
                "peer": "mlflow",
                "version": mlflow.__version__,
                "setup_s": setup,
                "writes": 3 * versions,
                "write_s": writes,
                "per_op_s": per,
                "versions": versions,
                "models": models,
                "search_s": search,
                "alias_s": alias,
                "reads": models,
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
