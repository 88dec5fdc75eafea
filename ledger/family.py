"""A version's family, found in the event index, as the event rows its graph needs (pure).

``lineage MODEL:VERSION`` and ``impact`` ask about one family, not the ledger: this
module finds that family's versions in the index bundles (:mod:`ledger.eventindex`) —
ancestors through each register's parents, descendants through the ``parent`` edges,
the versions trained on a dataset or built from a commit — and returns the rows from
which :func:`ledger.lineage.build` makes a graph that, restricted to what the question
reaches, is the whole-ledger graph's (tests/test_lineage_family.py holds them equal):

* every event of every model the family touches (so each version's approvals,
  deployments, and the later deploys that ended them, are there);
* every key event (actor nodes and their roles);
* the event that first names each dataset, commit and environment the family uses
  (a node's attributes are those of its first event), and the register of the version
  that first deployment concerns.

Rows come in seq order with ``payload`` rebuilt from the index members the builder reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from . import events as E
from .bundles import Bundle, rows_in_order
from .inputs import digest_hex, resolve_digest

Version = tuple[str, int]


class Family:
    """Lookups over the bundles of a ledger, cut off at an instant."""

    def __init__(self, bundles: Sequence[Bundle], upto: int | None = None) -> None:
        """``upto``: only the events with ``seq <= upto`` count (the ledger as it stood
        then; an instant is turned into that seq by the caller)."""
        self.bundles = list(bundles)
        self.upto = upto
        self._models: dict[str, list[dict[str, Any]]] = {}
        #: Dataset labels found so far, by (dataset key, the name a register gave it).
        self.labels: dict[tuple[str, str | None], str] = {}
        self._registers: dict[str, dict[int, dict[str, Any]]] = {}
        self._firsts: dict[tuple[str, str], dict[str, Any] | None] = {}

    def _keeps(self, row: dict[str, Any]) -> bool:
        return self.upto is None or row["seq"] <= self.upto

    # --- lookups --------------------------------------------------------------------
    def model_rows(self, model: str) -> list[dict[str, Any]]:
        """Every event of ``model`` (within the cutoff), in seq order."""
        if model not in self._models:
            rows = [r for b in self.bundles for r in b.model_rows(model) if self._keeps(r)]
            self._models[model] = rows
        return self._models[model]

    def register(self, v: Version) -> dict[str, Any] | None:
        regs = self._registers.get(v[0])
        if regs is None:
            regs = self._registers[v[0]] = {
                r["version"]: r for r in self.model_rows(v[0]) if r["action"] == E.REGISTER
            }
        return regs.get(v[1])

    def edges(self, kind: str, key: str) -> list[dict[str, Any]]:
        return [e for b in self.bundles for e in b.edges(kind, key) if self._keeps(e)]

    def row_at(self, model: str, seq: int) -> dict[str, Any] | None:
        """The event ``seq`` of ``model`` (reading only the bundle that holds it)."""
        return self.rows_at([(model, seq)]).get(seq)

    def rows_at(self, wanted: Iterable[tuple[str, int]]) -> dict[int, dict[str, Any]]:
        """The ``(model, seq)`` events, by seq, a batch per bundle."""
        wanted = [w for w in wanted if self.upto is None or w[1] <= self.upto]
        out: dict[int, dict[str, Any]] = {}
        for b in self.bundles:
            mine = [w for w in wanted if b.first <= w[1] <= b.last]
            if mine:
                out.update(b.rows_at(mine))
        return out

    def edges_many(self, kind: str, keys: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        keys = list(keys)
        out: dict[str, list[dict[str, Any]]] = {}
        for b in self.bundles:
            for k, edges in b.edges_many(kind, keys).items():
                out.setdefault(k, []).extend(e for e in edges if self._keeps(e))
        return out

    def first_edge(self, kind: str, key: str) -> dict[str, Any] | None:
        if (kind, key) not in self._firsts:
            found = None
            for b in self.bundles:  # (bundles are in seq order, and so are their edges)
                edges = b.edges(kind, key)
                if edges:
                    found = edges[0] if self._keeps(edges[0]) else None
                    break
            self._firsts[(kind, key)] = found
        return self._firsts[(kind, key)]

    # --- walks ----------------------------------------------------------------------
    def ancestors(self, start: Version) -> set[Version]:
        """``start`` and every version it derives from, transitively."""
        seen = {start}
        todo = [start]
        while todo:
            reg = self.register(todo.pop())
            for p in (reg or {}).get("parents") or ():
                v = (p["model"], p["version"])
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        return seen

    def descendants(self, starts: Iterable[Version]) -> set[Version]:
        """``starts`` and every version derived from one of them, transitively."""
        return set(self.generations(starts))

    def generations(
        self, starts: Iterable[Version], first: int = 0
    ) -> dict[Version, tuple[int, int | None]]:
        """Breadth first from ``starts`` (at hop ``first``) through the ``parent`` edges:
        each version reached -> (its fewest hops, its register's seq if known)."""
        seen: dict[Version, tuple[int, int | None]] = {v: (first, None) for v in starts}
        level, h = list(seen), first
        while level:
            found = self.edges_many("parent", [f"{m}:{v}" for m, v in level])
            nxt = []
            for key in sorted(found):
                for e in found[key]:
                    child = (e["model"], e["version"])
                    if child not in seen:
                        seen[child] = (h + 1, e["seq"])
                        nxt.append(child)
            level, h = nxt, h + 1
        return seen

    def digests(self, prefix: str) -> list[str]:
        """The dataset digests starting with ``prefix`` that a register within the cutoff
        names (what a digest prefix may stand for, see ledger/inputs.py)."""
        keys = {k for b in self.bundles for k in b.edge_keys("digest") if k.startswith(prefix)}
        return sorted(k for k in keys if self.edges("digest", k))

    def dataset_key(self, uri_or_digest: str) -> tuple[str, str]:
        """(edge kind, key) of a dataset named by URI or digest (any digest syntax; a
        prefix naming none is kept as given, so that it matches nothing)."""
        if digest_hex(uri_or_digest) is None:
            return "uri", uri_or_digest
        return "digest", resolve_digest(uri_or_digest, self.digests) or uri_or_digest

    def trained_on(self, uri_or_digest: str) -> set[Version]:
        """Versions trained on a dataset with this digest or URI, as
        :func:`ledger.lineage.find_datasets` matches them."""
        return {(e["model"], e["version"]) for e in self.edges(*self.dataset_key(uri_or_digest))}

    def built_from(self, spec: str) -> set[Version]:
        """Versions built from a commit matching ``[REPOSITORY@]COMMIT`` as
        :func:`ledger.lineage.find_commits` matches it (a prefix either way round)."""
        repo, _, commit = spec.rpartition("@")
        if not re.fullmatch(r"[0-9a-f]{7,64}", commit):
            return set()
        keys: set[str] = set()
        for b in self.bundles:
            for k in b.edge_keys("commit"):
                if k.startswith(commit) or commit.startswith(k):
                    keys.add(k)
        out = set()
        for k in keys:
            for e in self.edges("commit", k):
                reg = self.register((e["model"], e["version"]))
                if reg is not None and (not repo or reg["code_repo"] == repo):
                    out.add((e["model"], e["version"]))
        return out

    # --- the rows a graph needs ------------------------------------------------------
    def rows(self, versions: Iterable[Version], models: Iterable[str] = ()) -> list[dict[str, Any]]:
        """The event rows of the graph around ``versions`` (see the module docstring),
        plus every event of ``models``; in seq order, with payloads for the builder."""
        family_models = {m for m, _ in versions} | set(models)
        parts = [self.model_rows(m) for m in sorted(family_models)]
        parts.append(
            [
                r
                for b in self.bundles
                for r in b.keyless_rows()
                if r["action"] in (E.GENESIS, E.KEY_ADD) and self._keeps(r)
            ]
        )
        # First namings matter only for the nodes the family's own versions reach (other
        # versions of its models are there for their deploys, outside the answer).
        wanted = set(versions)
        envs: set[str] = set()
        firsts: list[dict[str, Any] | None] = []
        for m in family_models:
            for r in self.model_rows(m):
                if (m, r["version"]) not in wanted:
                    continue
                if r["action"] == E.REGISTER:
                    for d in r["datasets"] or ():
                        key = f"{d['uri']}@{d['digest']}" if d["digest"] else d["uri"]
                        e = self.first_edge("dataset", key)
                        if e is not None and e["model"] not in family_models:
                            firsts.append(self.row_at(e["model"], e["seq"]))
                    if r["code_repo"] and r["code_commit"]:
                        e = self.first_edge("code", f"{r['code_repo']}@{r['code_commit']}")
                        if e is not None and e["model"] not in family_models:
                            firsts.append(self.row_at(e["model"], e["seq"]))
                elif r["action"] == E.DEPLOY and r["env"] is not None:
                    envs.add(r["env"])
        for env in envs:
            first = self._first_deploy(env)
            if first is not None:
                firsts.extend(first)
        parts.append([r for r in firsts if r is not None])
        return [_with_payload(r) for r in rows_in_order(parts)]

    def _first_deploy(self, env: str) -> list[dict[str, Any]] | None:
        """The first deploy to ``env`` within the cutoff, and its version's register."""
        for b in self.bundles:
            hit = b.first_deploys().get(env)
            if hit is None:
                continue
            seq, model, version = hit
            deploy = self.row_at(model, seq)
            if deploy is None:
                return None  # past the cutoff: so is every later one
            reg = self.register((model, version))
            return [deploy] if reg is None else [reg, deploy]
        return None


def question_rows(
    fam: Family,
    ref: str | None = None,
    direction: str = "up",
    *,
    dataset: str | None = None,
    commit: str | None = None,
) -> list[dict[str, Any]]:
    """The rows of the graph one question needs: ``MODEL:VERSION``'s ancestors (``up``)
    or descendants (``down``), or what is downstream of a dataset or a commit."""
    versions: set[Version] = set()
    models: set[str] = set()
    if ref is not None:
        model, version = E.parse_model_ref(ref)
        models.add(model)  # (an unknown version is then named with the latest one)
        if fam.register((model, version)) is not None:
            start = (model, version)
            versions = fam.ancestors(start) if direction == "up" else fam.descendants([start])
    elif dataset is not None:
        versions = fam.descendants(fam.trained_on(dataset))
    elif commit is not None:
        versions = fam.descendants(fam.built_from(commit))
    return fam.rows(versions, models)


def _with_payload(row: dict[str, Any]) -> dict[str, Any]:
    """The row as :func:`ledger.lineage.build` takes it: the payload members it reads."""
    a = row["action"]
    p: dict[str, Any] = {}
    if a in E.ENV_ACTIONS:
        if row["env"] is not None:
            p["env"] = row["env"]
    elif a == E.REGISTER:
        art = {
            k: row[f"artifact_{k}"] for k in ("digest", "uri") if row[f"artifact_{k}"] is not None
        }
        if art:
            p["artifact"] = art
        if row["description"] is not None:
            p["description"] = row["description"]
        p["parents"] = row["parents"] or []
        p["datasets"] = row["datasets"] or []
        if row["code_repo"] and row["code_commit"]:
            p["code"] = {"repo": row["code_repo"], "commit": row["code_commit"]}
    elif a in (E.GENESIS, E.KEY_ADD):
        if row["key_actor"] is not None:
            p["actor"] = row["key_actor"]
        if row["key_roles"] is not None:
            p["roles"] = row["key_roles"]
    return {**row, "payload": p}


# --- impact, column-wise ---------------------------------------------------------------

_IMPACT_COLUMNS = ("seq", "action", "version", "env")


def _fates_and_live(
    fam: Family, models: list[str]
) -> tuple[dict[Version, set[str]], dict[tuple[str, str], tuple[int, int, int, str]]]:
    """Over every event of ``models``: which of approve, reject and deprecate each
    version had, and per (model, env) the deployment live now as (version, seq, ts,
    actor). Column lists, a conversion per column and bundle: an impact may cover a
    hundred thousand events; the time and actor are read for the live deploys only."""
    fate: dict[Version, set[str]] = {}
    live: dict[tuple[str, str], tuple[int, int]] = {}
    upto = fam.upto
    fates = (E.APPROVE, E.REJECT, E.DEPRECATE)
    for b in fam.bundles:  # (in seq order, and each model's rows in seq order within)
        for m, c in b.columns(models, _IMPACT_COLUMNS).items():
            for seq, action, version, env in zip(*(c[n] for n in _IMPACT_COLUMNS), strict=True):
                if upto is not None and seq > upto:
                    break
                if action in fates:
                    fate.setdefault((m, version), set()).add(action)
                elif env is not None and (action == E.DEPLOY or action == E.UNDEPLOY):
                    if action == E.DEPLOY:
                        live[(m, env)] = (version, seq)
                    else:
                        live.pop((m, env), None)
    rows = fam.rows_at((m, seq) for (m, _), (_, seq) in live.items())
    return fate, {
        k: (version, seq, rows[seq]["ts"], rows[seq]["actor"]) for k, (version, seq) in live.items()
    }


def impact(
    fam: Family,
    *,
    dataset: str | None = None,
    model: str | None = None,
    commit: str | None = None,
) -> Any:
    """:func:`ledger.lineage.impact` answered from the index without building a graph:
    an impact can reach thousands of versions, and its answer needs only their
    registers, their models' deployments and whether each was approved, rejected or
    deprecated. Same result, field for field (tests/test_lineage_family.py)."""
    from . import lineage as L
    from .errors import InputError, NotFoundError

    if sum(x is not None for x in (dataset, model, commit)) != 1:
        raise InputError("give exactly one of --dataset, --model or --commit")
    hops: dict[str, int] = {}
    labels: dict[str, str] = {}
    regs: dict[Version, dict[str, Any]] = {}
    if dataset is not None:
        field, query = fam.dataset_key(dataset)
        edges = fam.edges(field, query)
        rows = fam.rows_at((e["model"], e["seq"]) for e in edges)
        for e in edges:
            reg = rows.get(e["seq"])
            if reg is None:
                continue
            regs[(e["model"], e["version"])] = reg
            for d in reg["datasets"] or ():
                if d[field] == query:
                    hops[L.dataset_id(d["uri"], d["digest"])] = 0
        if not hops:
            raise NotFoundError(L.no_dataset(dataset))
    elif commit is not None:
        _repo, _, spec = commit.rpartition("@")
        if not re.fullmatch(r"[0-9a-f]{7,64}", spec):
            raise InputError(
                f"invalid commit {commit!r}: expected 7 to 64 lowercase hex digits, optionally"
                " after REPOSITORY@"
            )
        for v in fam.built_from(commit):
            reg = fam.register(v)
            if reg is not None:
                regs[v] = reg
                hops[L.commit_id(reg["code_repo"], reg["code_commit"])] = 0
        if not hops:
            raise NotFoundError(f"no registered version was built from commit {commit}")
    else:
        m, n = E.parse_model_ref(model)  # type: ignore[arg-type]
        reg = fam.register((m, n))
        if reg is None:
            latest = max(
                (r["version"] for r in fam.model_rows(m) if r["action"] == E.REGISTER),
                default=None,
            )
            if latest is None:
                raise NotFoundError(f"model {m} is not registered", kind="unknown_model")
            raise NotFoundError(
                f"{m}:{n} is not registered (latest is {m}:{latest})", kind="unknown_version"
            )
        regs[(m, n)] = reg
        hops[L.model_id(m, n)] = 0
        labels[L.model_id(m, n)] = f"{m}:{n}"
    sources = sorted(hops)
    for s in sources:
        if s.startswith("dataset:"):
            d = next(
                d
                for reg in regs.values()
                for d in reg["datasets"] or ()
                if L.dataset_id(d["uri"], d["digest"]) == s
            )
            labels[s] = _dataset_label(fam, d)
        elif s.startswith("commit:"):
            repo, _, sha = s[len("commit:") :].rpartition("@")
            labels[s] = f"{repo}@{sha[:12]}"
    # Breadth first, as lineage.down walks: a version's hops are its fewest.
    first = 0 if model is not None else 1
    reached = fam.generations(list(regs), first)
    more = fam.rows_at(
        (v[0], q) for v, (_, q) in reached.items() if v not in regs and q is not None
    )
    for v, (_, q) in reached.items():
        if v not in regs and q in more:
            regs[v] = more[q]
    seen = {v: h for v, (h, _) in reached.items()}
    for v, n in seen.items():
        hops[L.model_id(*v)] = n
    fate, live = _fates_and_live(fam, sorted({m for m, _ in seen}))
    live_at: dict[Version, list[tuple[str, tuple[int, int, int, str]]]] = {}
    for (m, env), d in live.items():
        live_at.setdefault((m, d[0]), []).append((env, d))
    result = L.Impact(sources, nodes=set(hops), labels=labels)
    order = sorted(seen, key=lambda v: (seen[v], v[0], v[1]))
    for v in order:
        reg = regs.get(v)
        acts = fate.get(v, set())
        status = (
            "deprecated"
            if E.DEPRECATE in acts
            else "rejected"
            if E.REJECT in acts
            else "approved"
            if E.APPROVE in acts
            else "registered"
        )
        envs = sorted(live_at.get(v, []))
        ref = f"{v[0]}:{v[1]}"
        result.versions.append(
            {
                "ref": ref,
                "hops": seen[v],
                "via": _via(fam, reg, seen[v], hops),
                "status": status,
                "registered_seq": reg["seq"] if reg else None,
                "live_in": ",".join(env for env, _ in envs),
            }
        )
        for env, (_, seq, ts, actor) in envs:
            result.deployments.append(
                {
                    "env": env,
                    "ref": ref,
                    "since": E.format_ts(ts),
                    "deploy_seq": seq,
                    "deployed_by": actor,
                }
            )
    result.deployments.sort(key=lambda r: (r["env"], r["ref"]))
    return result


def _via(fam: Family, reg: dict[str, Any] | None, h: int, hops: dict[str, int]) -> str:
    """``lineage._via``: the register's lineage edges into nodes one hop nearer the
    source (one edge per neighbour, as the graph keeps them, the last one listed)."""
    from . import lineage as L

    if h == 0:
        return "(source)"
    if reg is None:
        return ""
    words: dict[str, str] = {}
    for p in reg["parents"] or ():
        pid = L.model_id(p["model"], p["version"])
        if hops.get(pid) == h - 1:
            words[pid] = f"{p['relation']} {p['model']}:{p['version']}"
    for d in reg["datasets"] or ():
        did = L.dataset_id(d["uri"], d["digest"])
        if hops.get(did) == h - 1:
            words[did] = f"trained on {_dataset_label(fam, d)}"
    if reg["code_repo"] and reg["code_commit"]:
        cid = L.commit_id(reg["code_repo"], reg["code_commit"])
        if hops.get(cid) == h - 1:
            words[cid] = f"built from {reg['code_repo']}@{reg['code_commit'][:12]}"
    return "; ".join(sorted(words.values()))


def _dataset_label(fam: Family, d: dict[str, Any]) -> str:
    """A dataset node's label: the name (else the URI) its first register gave it."""
    key = f"{d['uri']}@{d['digest']}" if d["digest"] else d["uri"]
    # (an impact labels the same few datasets for each of thousands of versions)
    known = fam.labels.get((key, d["name"]))
    if known is not None:
        return known
    label = d["name"] or d["uri"]
    e = fam.first_edge("dataset", key)
    first = fam.row_at(e["model"], e["seq"]) if e is not None else None
    for x in (first or {}).get("datasets") or ():
        if x["uri"] == d["uri"] and x["digest"] == d["digest"]:
            label = x["name"] or x["uri"]
            break
    fam.labels[(key, d["name"])] = label
    return label
