"""The registry workflow on GTO (git tags as a registry) in a fresh git repository.

Run inside benchmarks/.venvs/gto (it must not import ``ledger``):
``python gto_peer.py VERSIONS WORKDIR`` prints one JSON object with the timings.

Mapping (same counts, one operation at a time, through GTO's Python API): register ->
``gto.api.register`` (an annotated tag ``name@vX.Y.Z`` on the version's commit; the
commits themselves are made before the clock starts); approve -> ``assign`` to stage
``staging``; deploy -> ``assign`` to stage ``prod``; status / search -> ``show`` and
``find_versions_in_stage``; history -> ``history``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import warnings


def git(repo: str, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", repo, *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def main(versions: int, work: str) -> None:
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import gto
    from gto import api

    repo = os.path.join(work, "gto-repo")
    os.makedirs(repo)
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "bench@example.com")
    git(repo, "config", "user.name", "bench")
    models = max(1, versions // 10)
    names = [f"bench-model-{i}" for i in range(models)]
    commits = []
    for i in range(versions):  # one commit per version, made before timing starts
        with open(os.path.join(repo, "model.txt"), "w") as f:
            f.write(f"version {i}\n")
        git(repo, "add", "model.txt")
        git(repo, "commit", "-q", "-m", f"train {i}")
        commits.append(git(repo, "rev-parse", "HEAD"))
    per: dict[str, float] = {"register": 0.0, "approve": 0.0, "deploy": 0.0}
    t_all = time.perf_counter()
    for i in range(versions):
        name = names[i % models]
        v = f"v0.0.{i // models + 1}"
        t = time.perf_counter()
        api.register(repo, name, commits[i], version=v, author="alice", author_email="a@x")
        per["register"] += time.perf_counter() - t
        t = time.perf_counter()
        api.assign(repo, name, "staging", version=v, author="bob", author_email="b@x")
        per["approve"] += time.perf_counter() - t
        t = time.perf_counter()
        api.assign(repo, name, "prod", version=v, author="carol", author_email="c@x")
        per["deploy"] += time.perf_counter() - t
    writes = time.perf_counter() - t_all
    t = time.perf_counter()
    for name in names:
        api.show(repo, name)
    search = time.perf_counter() - t
    t = time.perf_counter()
    for name in names:
        api.find_versions_in_stage(repo, name, "prod")
    alias = time.perf_counter() - t
    t = time.perf_counter()
    api.history(repo, names[0])
    history = time.perf_counter() - t
    print(
        json.dumps(
            {
                "peer": "gto",
                "version": gto.__version__,
                "writes": 3 * versions,
                "write_s": writes,
                "per_op_s": per,
                "versions": versions,
                "models": models,
                "search_s": search,
                "alias_s": alias,
                "history_s": history,
                "reads": models,
                "tags": len(git(repo, "tag").splitlines()),
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
