"""Peers: the same registry workflow on the ledger, on MLflow (SQLite) and on GTO (git).

The workflow, one operation at a time: V versions spread over V/10 models; each version
is registered, approved and deployed (3 writes); then, per model, the versions are
searched and the version live in production is looked up (2 reads). On the ledger every
write is an Ed25519-signed, hash-chained event, fsynced before the call returns.

Each peer runs in its own virtualenv under ``benchmarks/.venvs/<peer>`` (git-ignored),
created and filled with ``pip`` on first use; if that fails the peer is skipped with a
message. The peer scripts (``mlflow_peer.py``, ``gto_peer.py``) never import ``ledger``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENVS = HERE.parent / ".venvs"
PEERS = {
    # peer: (pip requirements, script)
    "mlflow": (["mlflow-skinny", "sqlalchemy", "alembic"], "mlflow_peer.py"),
    "gto": (["gto"], "gto_peer.py"),
}

#: What each peer cannot answer at all (checked against their documentation and data
#: model; the ledger answers each of these from its signed events).
CANNOT = {
    "mlflow": [
        "point-in-time state: aliases and tags are overwritten in place, so 'what was in"
        " production on 1 March' has no answer",
        "signed evidence: rows in the SQLite store can be edited by anyone with file access,"
        " leaving no trace; nothing is signed or hash-chained",
        "who approved: a tag's value is free text, not bound to a key or identity",
        "revoked signers: no key registry, so approvals by a departed reviewer cannot be found",
        "offline verification / inclusion proof for an auditor",
    ],
    "gto": [
        "tamper evidence: tags can be deleted or moved (git push --force); GTO does not sign",
        "approvals by several people: a stage assignment is one tag by one author",
        "dataset and parent lineage: no provenance beyond the commit",
        "revoked signers and key registry",
        "queries at scale: every read parses all tags (cost grows with history)",
    ],
}


def ensure_venv(peer: str) -> Path | None:
    """The peer's venv python, creating the venv (pip install) if needed; None if not."""
    reqs, _ = PEERS[peer]
    venv = VENVS / peer
    py = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists() and py.exists():
        return py
    print(f"  installing {peer} into {venv} (once)...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", *reqs],
            check=True,
            timeout=1200,
            capture_output=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"  {peer}: could not install ({exc}); skipped", flush=True)
        return None
    stamp.write_text(" ".join(reqs) + "\n")
    return py


def run_peer(peer: str, versions: int) -> dict[str, Any] | str:
    py = ensure_venv(peer)
    if py is None:
        return f"could not install {' '.join(PEERS[peer][0])} into {VENVS / peer}"
    with tempfile.TemporaryDirectory(prefix=f"peer-{peer}-") as work:
        try:
            p = subprocess.run(
                [str(py), str(HERE / PEERS[peer][1]), str(versions), work],
                capture_output=True,
                text=True,
                timeout=3600,
                env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
            )
        except subprocess.TimeoutExpired:
            return "timed out"
    if p.returncode != 0:
        return f"failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}"
    return json.loads(p.stdout.strip().splitlines()[-1])


def ledger_workflow(versions: int, work: Path) -> dict[str, Any]:
    """The same workflow through the ledger's API."""
    from ledger import Ledger, SigningKey

    keys = {n: SigningKey(bytes([i + 10]) * 32) for i, n in enumerate(("admin", "a", "b", "c"))}
    led = Ledger.init(work / "peer-ledger", keys["admin"], "admin")
    for n, role in (("a", "registrar"), ("b", "approver"), ("c", "deployer")):
        led.add_key(keys[n].public_key, {"a": "alice", "b": "bob", "c": "carol"}[n], role,
                    key=keys["admin"])  # fmt: skip
    models = max(1, versions // 10)
    names = [f"bench-model-{i}" for i in range(models)]
    per = {"register": 0.0, "approve": 0.0, "deploy": 0.0}
    t_all = time.perf_counter()
    for i in range(versions):
        name = names[i % models]
        t = time.perf_counter()
        r = led.register(name, key=keys["a"], artifact={"digest": "sha256:" + f"{i:064x}"},
                         tags={"team": "bench"})  # fmt: skip
        per["register"] += time.perf_counter() - t
        t = time.perf_counter()
        led.approve(name, r.version, "production", key=keys["b"])
        per["approve"] += time.perf_counter() - t
        t = time.perf_counter()
        led.deploy(name, r.version, "production", key=keys["c"])
        per["deploy"] += time.perf_counter() - t
    writes = time.perf_counter() - t_all
    t = time.perf_counter()
    for name in names:
        led.status(name)
    search = time.perf_counter() - t
    t = time.perf_counter()
    for name in names:
        led.status(name, "production")
    alias = time.perf_counter() - t
    assert led.verify().ok
    return {
        "writes": 3 * versions,
        "write_s": writes,
        "per_op_s": per,
        "versions": versions,
        "models": models,
        "search_s": search,
        "alias_s": alias,
        "reads": models,
    }


def run_peers(run: Any) -> None:
    versions = run.p["workflow"]
    led = ledger_workflow(versions, run.work)
    led_rate = led["writes"] / led["write_s"]
    run.add(
        "peers",
        "ledger_workflow_writes",
        led_rate,
        "ops/s",
        limit="atomic_file",
        note=f"{versions} versions x register+approve+deploy, one at a time, each signed and"
        " fsynced",
    )
    run.add(
        "peers",
        "ledger_search_versions",
        led["search_s"] / led["reads"],
        "s",
        note="status(model), warm DuckDB",
    )
    run.add(
        "peers",
        "ledger_get_live",
        led["alias_s"] / led["reads"],
        "s",
        note="status(model, 'production')",
    )
    for peer in ("mlflow", "gto"):
        if not run.wanted("peers", peer):
            continue
        # GTO re-reads every tag on every call, so its cost grows with history: cap it.
        n = versions if peer != "gto" else min(versions, 100)
        res = run_peer(peer, n)
        if isinstance(res, str):
            run.add("peers", f"{peer}_workflow_writes", None, "ops/s", note=f"skipped: {res}")
            continue
        if peer == "mlflow":
            run.mlflow = res  # daily_use compares its point reads and threads with these
        rate = res["writes"] / res["write_s"]
        per = ", ".join(f"{k} {n / v:,.0f}/s" for k, v in res["per_op_s"].items() if v > 0)
        run.add(
            "peers",
            f"{peer}_workflow_writes",
            rate,
            "ops/s",
            limit="atomic_file",
            note=f"{peer} {res['version']}, {n} versions: {per}",
        )
        target = ">= 10x" if peer == "mlflow" else None
        run.add(
            "peers",
            f"ledger_vs_{peer}",
            led_rate / rate,
            "x",
            target=target,
            check=(lambda v, r: v >= 10) if peer == "mlflow" else None,
            note=f"ledger writes/s over {peer} writes/s (ledger: every write signed + fsynced)",
        )
        run.add(
            "peers",
            f"{peer}_search_versions",
            res["search_s"] / res["reads"],
            "s",
            note="search_model_versions" if peer == "mlflow" else "gto show",
        )
        run.add(
            "peers",
            f"{peer}_get_live",
            res["alias_s"] / res["reads"],
            "s",
            note="get_model_version_by_alias" if peer == "mlflow" else "find_versions_in_stage",
        )
        run.add("peers", f"{peer}_cannot_answer", None, "", note="; ".join(CANNOT[peer]))
