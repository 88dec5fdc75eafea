"""Runs MLflow's client in a process of its own (the test suite's process blocks numpy and
pandas, which MLflow needs): ``python tests/mlflow_driver.py OPS.json`` with MLflow's
registry URI in ``$DRIVER_REGISTRY`` and tracking URI in ``$DRIVER_TRACKING``.

OPS is a list of ``{"op": METHOD, "args": [...], "kwargs": {...}}``: each calls
``MlflowClient.METHOD``; ``"$run"`` in an argument is the run the op ``log_run`` made.
Prints one JSON line per op: ``{"ok": RESULT}`` or ``{"error": MESSAGE, "code": CODE}``.
``{"op": "wait_for", "args": [PATH]}`` waits until PATH exists.

``$DRIVER_CRASH`` = ``before_commit`` / ``after_commit`` / ``after_append`` kills the
process with SIGKILL at that step of the store's first write of a model version: before
MLflow's transaction commits, after it commits and before the ledger's append, after the
append and before the outbox row is deleted.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import warnings
from typing import Any

warnings.simplefilter("ignore")


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _install_crash(point: str) -> None:
    from ledger.ledger import Ledger

    real = Ledger.append_planned

    def append_planned(self: Any, models: Any, plan: Any, key: Any, before_write: Any,
                       **kw: Any) -> Any:  # fmt: skip
        def hook(receipts: Any) -> None:
            if receipts and any(r.action == "register" for r in receipts):
                if point == "before_commit":
                    _die()
                before_write(receipts)
                if point == "after_commit":
                    _die()
            else:
                before_write(receipts)

        out = real(self, models, plan, key, hook, **kw)
        if point == "after_append" and any(r.action == "register" for r in out):
            _die()
        return out

    Ledger.append_planned = append_planned  # type: ignore[method-assign]


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, str | int | float | bool):
        return v
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    out = {}
    for k in ("name", "version", "current_stage", "aliases", "tags", "description", "run_id"):
        if hasattr(v, k):
            out[k] = _jsonable(getattr(v, k))
    return out or repr(v)


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        ops = json.load(f)
    if os.environ.get("DRIVER_CRASH"):
        _install_crash(os.environ["DRIVER_CRASH"])
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    tracking = os.environ["DRIVER_TRACKING"]
    mlflow.set_tracking_uri(tracking)
    run_id = None
    for op in ops:
        name, args, kwargs = op["op"], op.get("args", []), op.get("kwargs", {})
        args = [run_id if a == "$run" else a for a in args]
        kwargs = {k: run_id if v == "$run" else v for k, v in kwargs.items()}
        try:
            if name == "wait_for":  # (until the test makes the file: another process ran)
                while not os.path.exists(args[0]):
                    time.sleep(0.05)
                result = None
            elif name == "log_run":
                with mlflow.start_run() as run:
                    mlflow.log_metrics(kwargs.get("metrics", {}))
                    mlflow.log_params(kwargs.get("params", {}))
                    mlflow.set_tags(kwargs.get("tags", {}))
                    for ds in kwargs.get("datasets", []):
                        data = mlflow.data.meta_dataset.MetaDataset(
                            mlflow.data.http_dataset_source.HTTPDatasetSource(ds["url"]),
                            name=ds["name"],
                        )
                        mlflow.log_input(data)
                run_id = run.info.run_id
                result: Any = run_id
            else:
                client = MlflowClient(
                    tracking_uri=tracking, registry_uri=os.environ["DRIVER_REGISTRY"]
                )
                result = getattr(client, name)(*args, **kwargs)
            print(json.dumps({"ok": _jsonable(result)}), flush=True)
        except MlflowException as exc:
            print(json.dumps({"error": exc.message, "code": exc.error_code}), flush=True)


if __name__ == "__main__":
    main()
