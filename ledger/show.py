"""``ledger show``: everything about one version (or one model) in one document, each fact
with the seq and hash of the event it rests on.

The document is built from the model's own events (its payloads, in seq order), the state
the write path replays for that model (approvals, deployments, aliases, tags), the
policy in force (which approvals still count), the break-glass grants its events used,
and its children in the lineage graph. ``render`` turns it into the terminal's screen.
"""

from __future__ import annotations

import json
from typing import Any

from . import events as E
from .errors import InputError, NotFoundError
from .policydoc import DAY_US


def version_document(led: Any, model: str, version: int | str) -> dict[str, Any]:
    """The ``show MODEL:VERSION`` document (``version`` an int or ``"@alias"``)."""
    events = _events(led, model)
    state = led.state(models={model})
    if isinstance(version, str):
        alias = E.check_alias(version.removeprefix("@"))
        n = state.aliases.get((model, alias))
        if n is None:
            raise NotFoundError(f"model {model} has no alias {alias}", kind="unknown_alias")
        version = n
    if type(version) is not int or version < 1:
        raise InputError(f"version must be a positive integer or '@ALIAS', got {version!r}")
    v = state.versions.get((model, version))
    if v is None:
        led._registered(model, version)  # raises the precise NotFoundError
        raise NotFoundError(f"{model}:{version} is not registered", kind="unknown_version")
    mine = [e for e in events if e["version"] == version]
    reg = mine[0]
    p = reg["payload"]
    desc = _description(mine) or _description([e for e in events if e["version"] is None])
    doc: dict[str, Any] = {
        "model": model,
        "version": version,
        "status": v.status,
        "registered": _fact(reg) | {"by": reg["actor"]},
        "description": desc,
        "artifact": p.get("artifact"),
        "datasets": p.get("datasets", []),
        "code": p.get("code"),
        "environment": p.get("environment"),
        "metrics": p.get("metrics", {}),
        "params": p.get("params", {}),
        "tags": dict(sorted(v.tags.items())),
        "model_tags": dict(sorted(state.model_tags.get(model, {}).items())),
        "parents": [{"model": m, "version": n, "relation": r} for m, n, r in v.parents],
        "children": _children(led, f"{model}:{version}"),
        "aliases": sorted(a for (m, a), n in state.aliases.items() if m == model and n == version),
        "approvals": _approvals(state, v, mine),
        "deployments": _deployments(events, version),
        "overrides": _overrides(led, mine),
        "rejected": _at(mine, E.REJECT),
        "deprecated": _at(mine, E.DEPRECATE),
        "events": [_fact(e) | {"action": e["action"], "actor": e["actor"]} for e in mine],
    }
    return doc


def model_document(led: Any, model: str) -> dict[str, Any]:
    """The ``show MODEL`` document: the model's own tags and description, its aliases and
    its versions."""
    led._registered(model, None)
    events = _events(led, model)
    state = led.state(models={model})
    versions = [
        {
            "version": n,
            "status": v.status,
            "live_in": sorted(v.live),
            "aliases": sorted(a for (m, a), x in state.aliases.items() if m == model and x == n),
            "registered": _fact(next(e for e in events if e["version"] == n)),
        }
        for (m, n), v in sorted(state.versions.items())
        if m == model
    ]
    own = [e for e in events if e["version"] is None]
    return {
        "model": model,
        "description": _description(own),
        "tags": dict(sorted(state.model_tags.get(model, {}).items())),
        "aliases": {a: n for (m, a), n in sorted(state.aliases.items()) if m == model},
        "versions": versions,
        "events": [_fact(e) | {"action": e["action"], "actor": e["actor"]} for e in own],
    }


def _events(led: Any, model: str) -> list[dict[str, Any]]:
    import pyarrow as pa

    table = led.events(model=model)
    rows = table.select(["seq", "action", "version", "actor", "key_id", "payload", "hash"])
    micros = table["ts"].cast(pa.int64()).to_pylist()
    out = []
    for r, ts in zip(rows.to_pylist(), micros, strict=True):
        r["payload"] = json.loads(r["payload"])
        r["hash"] = r["hash"].hex()
        r["ts"] = E.format_ts(ts)
        out.append(r)
    return out


def _fact(e: dict[str, Any]) -> dict[str, Any]:
    return {"seq": e["seq"], "at": e["ts"], "hash": e["hash"], "key_id": e["key_id"]}


def _at(events: list[dict[str, Any]], action: str) -> dict[str, Any] | None:
    hit = next((e for e in events if e["action"] == action), None)
    return None if hit is None else _fact(hit) | {"by": hit["actor"]}


def _description(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last description given (a describe, or the register's own)."""
    last = None
    for e in events:
        text = e["payload"].get("description") if e["action"] in (E.REGISTER, E.DESCRIBE) else None
        if isinstance(text, str):
            last = _fact(e) | {"text": text, "by": e["actor"]}
    return last


def _approvals(state: Any, v: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each approval, and whether it counts under the policy in force now (own approvals
    and, with max_age_days, stale ones do not)."""
    policy = state.policy
    by_seq = {e["seq"]: e for e in events}
    out = []
    for env, approvals in sorted(v.approvals.items()):
        for ap in approvals:
            why = None
            if (
                policy is not None
                and policy.registrant_may_not_approve
                and ap.actor == v.registrant
            ):
                why = "the registrant's own approval (separation of duties)"
            elif (
                policy is not None
                and policy.approval_max_age_days
                and ap.ts < E.now_micros() - policy.approval_max_age_days * DAY_US
            ):
                why = f"older than {policy.approval_max_age_days} days"
            out.append(
                _fact(by_seq[ap.seq])
                | {"env": env, "by": ap.actor, "counts": why is None, "why": why}
            )
    return sorted(out, key=lambda a: a["seq"])


def _deployments(events: list[dict[str, Any]], version: int) -> list[dict[str, Any]]:
    """Every deployment of ``version``: where, from which deploy, until what ended it."""
    out: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["action"] not in (E.DEPLOY, E.UNDEPLOY):
            continue
        env = e["payload"].get("env")
        current = open_.get(env)
        other_deploy = e["action"] == E.DEPLOY and e["version"] != version
        own_undeploy = e["action"] == E.UNDEPLOY and e["version"] == version
        if current is not None and (other_deploy or own_undeploy):
            ended = {"action": e["action"], "by": e["actor"], "version": e["version"]}
            current["until"] = _fact(e) | ended
            current["live"] = False
            del open_[env]
        if e["action"] == E.DEPLOY and e["version"] == version and env not in open_:
            d = {"env": env, "deployed": _fact(e) | {"by": e["actor"]}, "until": None, "live": True}
            out.append(d)
            open_[env] = d
    return out


def _overrides(led: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The break-glass grants the version's events used."""
    cited = {s: e for e in events for s in (e["payload"].get("break_glass") or ())}
    if not cited:
        return []
    table = led.store.read_where(["seq", "action", "payload"], {E.BREAK_GLASS}, set())
    out = []
    for r in table.to_pylist():
        if r["action"] == E.BREAK_GLASS and r["seq"] in cited:
            p = json.loads(r["payload"])
            user = cited[r["seq"]]
            out.append(
                {
                    "grant_seq": r["seq"],
                    "rule": p.get("rule"),
                    "justification": p.get("justification"),
                    "used_by": _fact(user) | {"action": user["action"]},
                }
            )
    return out


def _children(led: Any, ref: str) -> list[dict[str, Any]]:
    g = led.lineage(ref, "down", depth=1)
    node = f"model:{ref}"
    out = []
    for src, dst, d in g.edges(data=True):
        if dst == node and d.get("kind") == "derived_from":
            n = g.nodes[src]
            out.append(
                {"model": n["model"], "version": n["version"], "relation": d.get("relation")}
            )
    return sorted(out, key=lambda c: (c["model"], c["version"]))


# --- the screen ------------------------------------------------------------------------------


def render(doc: dict[str, Any]) -> str:
    """The document as the lines ``ledger show`` prints."""
    if "versions" in doc:
        return _render_model(doc)
    lines = [f"{doc['model']}:{doc['version']}  {doc['status']}"]

    def put(label: str, text: str) -> None:
        lines.append(f"  {label:<13}{text}")

    r = doc["registered"]
    put("registered", f"by {r['by']} at {r['at']}  (seq {r['seq']}, {r['hash'][:16]}…)")
    if doc["description"]:
        d = doc["description"]
        put("description", f"{d['text']}  (seq {d['seq']})")
    art = doc["artifact"]
    if art:
        put("artifact", f"{art.get('digest')}" + (f"  {art['uri']}" if art.get("uri") else ""))
    for ds in doc["datasets"]:
        put(
            "dataset",
            f"{ds['name']}={ds['uri']}" + (f"@{ds['digest']}" if ds.get("digest") else ""),
        )
    if doc["code"]:
        put("code", f"{doc['code']['repo']}@{doc['code']['commit']}")
    env = doc.get("environment")
    if env:
        pins = ", ".join(f"{p.get('name')}{p.get('spec', '')}" for p in env.get("packages", []))
        put("environment", f"python {env.get('python', '?')}; {pins}".strip("; "))
    for label, key in (("metrics", "metrics"), ("params", "params"), ("tags", "tags"),
                       ("model tags", "model_tags")):  # fmt: skip
        if doc[key]:
            put(label, ", ".join(f"{k}={v}" for k, v in doc[key].items()))
    for p in doc["parents"]:
        put("parent", f"{p['model']}:{p['version']} ({p['relation']})")
    for c in doc["children"]:
        put("child", f"{c['model']}:{c['version']} ({c['relation']})")
    if doc["aliases"]:
        put("aliases", ", ".join(doc["aliases"]))
    for a in doc["approvals"]:
        counts = "counts" if a["counts"] else f"does not count: {a['why']}"
        put("approved", f"for {a['env']} by {a['by']} at {a['at']} (seq {a['seq']}; {counts})")
    for d in doc["deployments"]:
        dep = d["deployed"]
        text = f"to {d['env']} by {dep['by']} at {dep['at']} (seq {dep['seq']})"
        if d["live"]:
            text += ": live"
        else:
            u = d["until"]
            how = (
                "undeployed" if u["action"] == E.UNDEPLOY else f"replaced by version {u['version']}"
            )
            text += f" until {u['at']} ({how}, seq {u['seq']})"
        put("deployed", text)
    for o in doc["overrides"]:
        put("override", f"break-glass grant seq {o['grant_seq']} ({o['rule']}): \"{o['justification']}\""
            f", used by seq {o['used_by']['seq']}")  # fmt: skip
    for label in ("rejected", "deprecated"):
        if doc[label]:
            x = doc[label]
            put(label, f"by {x['by']} at {x['at']} (seq {x['seq']})")
    put("events", ", ".join(f"{e['seq']} {e['action']}" for e in doc["events"]))
    return "\n".join(lines)


def _render_model(doc: dict[str, Any]) -> str:
    lines = [doc["model"]]
    if doc["description"]:
        lines.append(
            f"  description  {doc['description']['text']}  (seq {doc['description']['seq']})"
        )
    if doc["tags"]:
        lines.append("  tags         " + ", ".join(f"{k}={v}" for k, v in doc["tags"].items()))
    if doc["aliases"]:
        lines.append("  aliases      " + ", ".join(f"{a}={n}" for a, n in doc["aliases"].items()))
    for v in doc["versions"]:
        extra = [f"live in {', '.join(v['live_in'])}"] if v["live_in"] else []
        extra += [f"alias {', '.join(v['aliases'])}"] if v["aliases"] else []
        tail = f"  ({'; '.join(extra)})" if extra else ""
        lines.append(
            f"  version {v['version']:<4} {v['status']:<11} seq {v['registered']['seq']}{tail}"
        )
    return "\n".join(lines)
