"""MLflow: the store plugin's overhead per registry write, and `ledger import mlflow`.

    python -m benchmarks.bench_mlflow [--writes 200] [--versions 10000]

Needs MLflow (``pip install -e '.[test]'``); not part of ``python -m benchmarks run``.
Prints, in one run, each figure beside its peer: the same registry writes through plain
MLflow on SQLite, and an fsynced append to the same disk (the physical floor of one
durable write).

* overhead: N rounds of create_model_version + set_model_version_tag +
  set_registered_model_alias through ``MlflowClient`` in this process, against
  ``sqlite:///`` and against ``ledger+sqlite:///`` (fresh database and ledger each; both
  clients built first, then taking turns round by round, so that both meet the same
  machine load); then the same writes over REST to a real ``mlflow server`` of each
  kind (one keep-alive connection), as a team's clients meet it; the target is ≤ 1.5×
  plain;
* import: a registry of ``--versions`` versions (in 100 models, each with a run) written
  straight into MLflow's SQLite database through MLflow's own client, then imported by a
  fresh ``ledger import mlflow`` process; the target is ≤ 60 s for 10,000 versions.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any


def _fsync_floor(folder: Path) -> float:
    """Seconds per new file made durable (write, fsync, rename, fsync of the folder):
    benchmarks/limits.py's disk probe."""
    from benchmarks import limits

    return 1 / {r["name"]: r["value"] for r in limits.disk(folder)}["atomic_file"]


def _team(folder: Path) -> Path:
    from ledger import Ledger, SigningKey
    from ledger.keys import write_key_files

    admin, server = SigningKey.generate(), SigningKey.generate()
    led = Ledger.init(folder / "audit", admin, "admin")
    led.add_key(server.public_key, "mlflow-server", ["registrar", "deployer"], key=admin)
    write_key_files(folder / "server.pem", server)
    return folder / "server.pem"


def _writes(clients: dict[str, Any], rounds: int) -> dict[str, float]:
    """Seconds per registry write through each client: ``rounds`` rounds of the same
    three writes, the clients taking turns in each round, in the order reversed every
    other round (run one after the other, the figures drifted with the machine's load
    by ±20%; taking turns, both see the same load)."""
    for client in clients.values():
        client.create_registered_model("bench")
        client.create_model_version("bench", "s3://warm/0")  # (store and engine built)
    total = dict.fromkeys(clients, 0.0)
    names = list(clients)
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            client = clients[name]
            t = time.perf_counter()
            mv = client.create_model_version("bench", f"s3://models/{i}")
            client.set_model_version_tag("bench", mv.version, "validated", "yes")
            client.set_registered_model_alias("bench", "champion", mv.version)
            total[name] += time.perf_counter() - t
    return {name: seconds / (3 * rounds) for name, seconds in total.items()}


def overhead(rounds: int) -> None:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plain_db, led_db = f"sqlite:///{root / 'plain.db'}", f"sqlite:///{root / 'led.db'}"
        key = _team(root)
        uri = f"ledger+{led_db}?ledger={root / 'audit'}&key={key}"
        per_write = _writes({
            "plain": MlflowClient(tracking_uri=plain_db, registry_uri=plain_db),
            "ledger": MlflowClient(tracking_uri=led_db, registry_uri=uri),
        }, rounds)  # fmt: skip
        plain, ledger = per_write["plain"], per_write["ledger"]
        floor = _fsync_floor(root)
    print(f"registry write, plain MLflow (SQLite)   {plain * 1e3:8.2f} ms")
    print(f"registry write, ledger+sqlite store     {ledger * 1e3:8.2f} ms"
          f"   {ledger / plain:.2f}x plain MLflow (target <= 1.5x)")  # fmt: skip
    print(f"  floor: a new file made durable      {floor * 1e3:8.2f} ms")


def _server_writes(root: Path, backend: str, registry: str, rounds: int) -> float:
    """Seconds per registry write over MLflow's REST API, one keep-alive connection."""
    import http.client
    import json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", backend, "--registry-store-uri",
         registry, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        deadline = time.monotonic() + 120
        while True:
            try:
                conn.request("GET", "/health")
                conn.getresponse().read()
                break
            except OSError:
                conn.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)

        def post(path: str, body: dict[str, str]) -> dict[str, object]:
            conn.request("POST", f"/api/2.0/mlflow/{path}", json.dumps(body),
                         {"Content-Type": "application/json"})  # fmt: skip
            r = conn.getresponse()
            data = json.loads(r.read())
            if r.status != 200:
                raise RuntimeError(f"{path}: {r.status} {data}")
            return data

        post("registered-models/create", {"name": "bench"})
        post("model-versions/create", {"name": "bench", "source": "s3://warm/0"})
        t = time.perf_counter()
        for i in range(rounds):
            mv = post("model-versions/create", {"name": "bench", "source": f"s3://m/{i}"})
            v = mv["model_version"]["version"]  # type: ignore[index]
            post("model-versions/set-tag", {"name": "bench", "version": v, "key": "validated",
                                            "value": "yes"})  # fmt: skip
            post("registered-models/alias", {"name": "bench", "alias": "champion", "version": v})
        return (time.perf_counter() - t) / (3 * rounds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def server_overhead(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        key = _team(root)
        plain_db, led_db = f"sqlite:///{root / 'plain.db'}", f"sqlite:///{root / 'led.db'}"
        plain = _server_writes(root, plain_db, plain_db, rounds)
        uri = f"ledger+{led_db}?ledger={root / 'audit'}&key={key}"
        ledger = _server_writes(root, led_db, uri, rounds)
    print(f"REST registry write, plain mlflow server  {plain * 1e3:8.2f} ms")
    print(f"REST registry write, ledger+sqlite store  {ledger * 1e3:8.2f} ms"
          f"   {ledger / plain:.2f}x plain MLflow (target <= 1.5x)")  # fmt: skip


def import_speed(versions: int) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        db = f"sqlite:///{root / 'mlflow.db'}"
        mlflow.set_tracking_uri(db)
        client = MlflowClient(tracking_uri=db, registry_uri=db)
        models = 100
        t = time.perf_counter()
        runs = []
        for _ in range(models):
            with mlflow.start_run() as run:
                mlflow.log_metrics({"auc": 0.9, "loss": 0.1})
                mlflow.log_params({"depth": "6"})
            runs.append(run.info.run_id)
        for m in range(models):
            client.create_registered_model(f"model-{m}")
        for i in range(versions):
            m = i % models
            client.create_model_version(f"model-{m}", f"runs:/{runs[m]}/m", run_id=runs[m])
        build = time.perf_counter() - t
        key = _team(root)
        cmd = [sys.executable, "-c", "from ledger.cli import main; main()", "import", "mlflow",
               "--registry-uri", db, "--key", str(key), "--ledger", str(root / "audit")]  # fmt: skip
        t = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        took = time.perf_counter() - t
        t = time.perf_counter()
        again = subprocess.run(cmd, capture_output=True, text=True, check=True)
        took_again = time.perf_counter() - t
        diff = [*cmd[:3], "mlflow", "diff", "--registry-uri", db, "--ledger", str(root / "audit")]
        t = time.perf_counter()
        subprocess.run(diff, capture_output=True, text=True, check=True)
        took_diff = time.perf_counter() - t
    print(f"building the registry through MLflow's client: {build:.1f} s"
          f" ({build / versions * 1e3:.1f} ms per version)")  # fmt: skip
    print(f"ledger import mlflow, {versions:,} versions: {took:.1f} s (target <= 60 s)"
          f"  [{out.stdout.strip()}]")  # fmt: skip
    print(f"  again, nothing changed: {took_again:.1f} s  [{again.stdout.strip()}]")
    print(f"ledger mlflow diff, {versions:,} versions, agreeing: {took_diff:.1f} s")


def main() -> None:
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--versions", type=int, default=10_000)
    args = ap.parse_args()
    if args.writes:
        overhead(args.writes)
        server_overhead(args.writes)
    if args.versions:
        import_speed(args.versions)


if __name__ == "__main__":
    main()
