"""The event: fields, actions, roles, names, limits and canonical bytes (pure, no I/O)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .canonical import MAX_SAFE_INTEGER as _SAFE
from .canonical import canonicalize
from .errors import InputError
from .inputs import check_int, parse_int, parse_number
from .inputs import parse_instant as parse_instant  # (re-exported: callers use E.parse_instant)

FORMAT = "ledger/1"
GENESIS_PREV_HASH = "0" * 64

GENESIS = "genesis"
KEY_ADD = "key_add"
KEY_REVOKE = "key_revoke"
REGISTER = "register"
APPROVE = "approve"
REJECT = "reject"
DEPLOY = "deploy"
UNDEPLOY = "undeploy"
DEPRECATE = "deprecate"
POLICY_SET = "policy_set"
BREAK_GLASS = "break_glass"
#: Registry metadata (issue 17): an alias names one version of a model; tags and a
#: description belong to a version, or (``version`` null) to the model itself.
ALIAS_SET = "alias_set"
ALIAS_DELETE = "alias_delete"
TAG_SET = "tag_set"
TAG_DELETE = "tag_delete"
DESCRIBE = "describe"
#: A registered model with no version yet (issue 18: MLflow creates models before their
#: versions); its tags and description follow as model-level events.
MODEL_CREATE = "model_create"

ADMIN, REGISTRAR, APPROVER, DEPLOYER = "admin", "registrar", "approver", "deployer"
#: Signs Merkle checkpoints (ledger/checkpoint.py); no event action needs it.
CHECKPOINTER = "checkpointer"
#: Roles a key may hold. Later format versions may add more; unknown roles are kept.
ROLES = (ADMIN, REGISTRAR, APPROVER, DEPLOYER, CHECKPOINTER)

#: The role a key must hold to sign each action.
ACTION_ROLE: dict[str, str] = {
    GENESIS: ADMIN,
    KEY_ADD: ADMIN,
    KEY_REVOKE: ADMIN,
    REGISTER: REGISTRAR,
    DEPRECATE: REGISTRAR,
    APPROVE: APPROVER,
    REJECT: APPROVER,
    DEPLOY: DEPLOYER,
    UNDEPLOY: DEPLOYER,
    POLICY_SET: ADMIN,
    BREAK_GLASS: ADMIN,
    # (which version serves is a deployment decision; what a model is, its registrar's)
    ALIAS_SET: DEPLOYER,
    ALIAS_DELETE: DEPLOYER,
    TAG_SET: REGISTRAR,
    TAG_DELETE: REGISTRAR,
    DESCRIBE: REGISTRAR,
    MODEL_CREATE: REGISTRAR,
}
ACTIONS = tuple(ACTION_ROLE)
MODEL_ACTIONS = frozenset({REGISTER, APPROVE, REJECT, DEPLOY, UNDEPLOY, DEPRECATE})
ENV_ACTIONS = frozenset({APPROVE, DEPLOY, UNDEPLOY})
KEY_ACTIONS = frozenset({GENESIS, KEY_ADD, KEY_REVOKE})
#: Governance events (ledger/policy.py): they apply to every model, like key events.
POLICY_ACTIONS = frozenset({POLICY_SET, BREAK_GLASS})
#: Name a model and one of its versions (as MODEL_ACTIONS do); the alias is the target
#: that policy treats as an environment (approvals, signers, separation of duties).
ALIAS_ACTIONS = frozenset({ALIAS_SET, ALIAS_DELETE})
#: Name a model, and a version or (null) the model itself.
META_ACTIONS = frozenset({TAG_SET, TAG_DELETE, DESCRIBE})
#: Every action that names a model.
MODEL_SCOPED = MODEL_ACTIONS | ALIAS_ACTIONS | META_ACTIONS | {MODEL_CREATE}
#: Actions with a *target* policy rules read as an environment: the environment of an
#: approve, deploy or undeploy, the alias of an alias_set or alias_delete.
TARGET_ACTIONS = ENV_ACTIONS | ALIAS_ACTIONS

# --- limits (docs/FORMAT.md, "Limits") --------------------------------------------------
MAX_NAME = 128
MAX_EVENT_BYTES = 64 * 1024
MAX_TEXT = 4096

MODEL_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")
ENV_PATTERN = r"[a-z][a-z0-9_-]{0,31}"
ENV_RE = re.compile(ENV_PATTERN)
#: A payload that is exactly ``{"env": ENV}`` in canonical form, the environment as
#: group 1 (the fast paths read most approve/deploy/undeploy payloads without parsing),
#: and the same anchored with a named group, for Arrow's regex kernels.
ENV_ONLY = re.compile(r'\{"env":"(' + ENV_PATTERN + r')"\}')
ENV_ONLY_ANCHORED = r'^\{"env":"(?P<env>' + ENV_PATTERN + r')"\}$'
ACTOR_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._@-]{0,62}[A-Za-z0-9])?")
RELATION_RE = re.compile(r"[a-z][a-z0-9_-]{0,31}")
KEYNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63}")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
COMMIT_RE = re.compile(r"[0-9a-f]{7,64}")

#: Relations of a model to its parent, after Hugging Face's ``base_model_relation``.
RELATIONS = ("finetune", "adapter", "distill", "quantize", "merge", "retrain", "prune", "derived")


def _r(value: object, limit: int = 60) -> str:
    """repr() for an error message, cut short: a refused value may be megabytes long."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not MODEL_RE.fullmatch(name):
        raise InputError(
            f"invalid model name {_r(name)}: use letters, digits, '.', '_' and '-', start and end"
            f" with a letter or digit, at most {MAX_NAME} characters (e.g. fraud.detector.xgb)"
        )
    return name


def check_alias(alias: str) -> str:
    """An alias name: an environment name's pattern, except ``latest`` (MLflow reserves it
    for the newest version)."""
    if not isinstance(alias, str) or not ENV_RE.fullmatch(alias) or alias == "latest":
        raise InputError(
            f"invalid alias {_r(alias)}: lowercase letters, digits, '_' and '-', starting with"
            " a letter, at most 32 characters, not 'latest' (e.g. champion)"
        )
    return alias


def parse_target(ref: str) -> tuple[str, int | None, str | None]:
    """``MODEL``, ``MODEL:VERSION`` or ``MODEL@ALIAS`` -> (model, version, alias)."""
    if not isinstance(ref, str):
        raise InputError(f"expected MODEL, MODEL:VERSION or MODEL@ALIAS, got {_r(ref)}")
    if "@" in ref:
        model, _, alias = ref.rpartition("@")
        return check_model_name(model), None, check_alias(alias)
    if ":" in ref:
        model, version = parse_model_ref(ref)
        return model, version, None
    return check_model_name(ref), None, None


def parse_version_ref(ref: str) -> tuple[str, int | None, str | None]:
    """``MODEL:VERSION`` or ``MODEL@ALIAS`` (one version) -> (model, version, alias)."""
    model, version, alias = parse_target(ref) if "@" in str(ref) else (*parse_model_ref(ref), None)
    return model, version, alias


def check_env(env: str) -> str:
    if not isinstance(env, str) or not ENV_RE.fullmatch(env):
        raise InputError(
            f"invalid environment name {_r(env)}: lowercase letters, digits, '_' and '-',"
            " starting with a letter, at most 32 characters (e.g. production)"
        )
    return env


def check_actor(actor: str) -> str:
    if not isinstance(actor, str) or not ACTOR_RE.fullmatch(actor):
        raise InputError(
            f"invalid actor name {_r(actor)}: letters, digits, '.', '_', '-' and '@',"
            " at most 64 characters"
        )
    return actor


def check_roles(roles: Sequence[str] | str) -> list[str]:
    if isinstance(roles, str):
        roles = [r.strip() for r in roles.split(",") if r.strip()]
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise InputError(f"unknown role {_r(unknown[0])}; roles are {', '.join(ROLES)}")
    if not roles:
        raise InputError("a key needs at least one role")
    return sorted(set(roles))


def check_text(text: str | None, what: str) -> str | None:
    """``text`` unchanged if it is None or text within the one limit on free text
    (comments, reasons, descriptions, justifications, URIs, repositories, tag and param
    values: MAX_TEXT characters; free-form metadata is bounded by the event's size)."""
    if text is not None and not isinstance(text, str):
        raise InputError(f"{what} must be text, got {type(text).__name__}")
    if text is not None and len(text) > MAX_TEXT:
        raise InputError(f"{what} is {too_long(text)}")
    return text


def too_long(text: str) -> str:
    """'too long (N characters, limit 4,096)', for a text over MAX_TEXT."""
    return f"too long ({len(text):,} characters, limit {MAX_TEXT:,})"


def parse_model_ref(ref: str) -> tuple[str, int]:
    """Parse ``MODEL:VERSION``."""
    name, sep, version = ref.rpartition(":")
    if not sep or not version.isdigit() or not version.isascii() or version.startswith("0"):
        raise InputError(f"expected MODEL:VERSION (e.g. fraud.detector.xgb:4), got {_r(ref)}")
    try:
        parse_int(version)  # (no version is beyond ±(2^53−1); int() stops at 4,300 digits)
    except InputError as exc:
        raise InputError(f"malformed MODEL:VERSION {_r(ref)}: {exc}") from None
    return check_model_name(name), int(version)


def format_ts(micros: int) -> str:
    """RFC 3339 UTC with exactly six fractional digits, the only form events use."""
    global _last_second
    sec, us = divmod(micros, 1_000_000)
    cached = _last_second
    if cached[0] != sec:  # batches share seconds: format each second once
        cached = _last_second = (sec, f"{datetime.fromtimestamp(sec, UTC):%Y-%m-%dT%H:%M:%S}")
    return f"{cached[1]}.{us:06d}Z"


_last_second: tuple[int | None, str] = (None, "")


#: Printable ASCII except quote and backslash: text JCS copies into a string unchanged.
_PLAIN = re.compile(r"[ !#-\[\]-~]*").fullmatch

_TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def parse_ts(text: str) -> int:
    """Inverse of format_ts; raises ValueError on any other form."""
    if not isinstance(text, str) or not _TS_RE.fullmatch(text):
        raise ValueError(f"timestamp {_r(text)} is not YYYY-MM-DDTHH:MM:SS.ffffffZ")
    dt = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000 + int(text[20:26])


def now_micros() -> int:
    return int(datetime.now(UTC).timestamp() * 1_000_000)


@dataclass(frozen=True, slots=True)
class Event:
    """One ledger event as signed. ``ts`` is microseconds since the Unix epoch, UTC."""

    seq: int
    ts: int
    origin: str
    action: str
    actor: str
    key_id: str
    payload: dict[str, Any]
    prev_hash: str
    model: str | None = None
    version: int | None = None

    def document(self) -> dict[str, Any]:
        """The JSON object whose canonical bytes are hashed and signed."""
        return {
            "action": self.action,
            "actor": self.actor,
            "key_id": self.key_id,
            "model": self.model,
            "origin": self.origin,
            "payload": self.payload,
            "prev_hash": self.prev_hash,
            "seq": self.seq,
            "ts": format_ts(self.ts),
            "version": self.version,
        }

    def canonical(self) -> bytes:
        """The event's RFC 8785 bytes (what is hashed, signed and stored)."""
        return self.encode()[0]

    def encode(self) -> tuple[bytes, bytes]:
        """``(canonical bytes, canonical bytes of the payload)``.

        JCS is compositional (a member's canonical form inside an object is its own
        canonical form) and the top-level keys are fixed, so the document is assembled
        around the payload's bytes from a template whenever every top-level string is
        printable ASCII without a quote or backslash, i.e. needs no escaping. Anything
        else takes the general encoder; both give the same bytes (tested).
        """
        try:
            body = canonicalize(self.payload, depth=1)  # the payload sits in the document
        except InputError:
            canonicalize(self.document())  # the same error, with its path from the top
            raise
        m, v, seq = self.model, self.version, self.seq
        try:
            text = "".join((self.action, self.actor, self.key_id, self.origin, self.prev_hash))
        except TypeError:
            text = "\\"  # not all strings: the general encoder decides what to make of it
        if (
            type(seq) is int
            and type(self.ts) is int
            and (m is None or type(m) is str)
            and (v is None or (type(v) is int and -_SAFE <= v <= _SAFE))
            and -_SAFE <= seq <= _SAFE
            and _PLAIN(text + (m or ""))
        ):
            data = b'{"action":"%b","actor":"%b","key_id":"%b","model":%b,"origin":"%b",' % (
                self.action.encode(),
                self.actor.encode(),
                self.key_id.encode(),
                b"null" if m is None else b'"%b"' % m.encode(),
                self.origin.encode(),
            ) + b'"payload":%b,"prev_hash":"%b","seq":%d,"ts":"%b","version":%b}' % (
                body,
                self.prev_hash.encode(),
                self.seq,
                format_ts(self.ts).encode(),
                b"null" if v is None else b"%d" % v,
            )
        else:
            data = canonicalize(self.document())
        if len(data) > MAX_EVENT_BYTES:
            raise InputError(
                f"event is {len(data)} bytes once encoded; the limit is {MAX_EVENT_BYTES}"
            )
        return data, body


def event_hash(canonical: bytes) -> bytes:
    return hashlib.sha256(canonical).digest()


@dataclass(frozen=True, slots=True)
class Draft:
    """An event before the ledger gives it a seq, time, origin, signer and prev_hash."""

    action: str
    payload: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    version: int | None = None
    ts: int | None = None  # importers may carry historical times; must not go backwards
    #: Resolve ``version`` from this alias of ``model`` when the writer holds the lock (so
    #: that the version is the one the alias names at the instant the event is written).
    alias: str | None = None
    #: A reject or deprecate that the writer refuses, under the lock, while the version
    #: is live anywhere (the facade's lifecycle guard; raw drafts, e.g. an importer's
    #: history, may record a "zombie" deployment as it happened).
    unless_live: bool = False


def event_from_document(doc: dict[str, Any]) -> Event:
    """Build an Event from a parsed canonical document; raises ValueError if malformed."""
    if not isinstance(doc, dict):
        raise ValueError("event is not a JSON object")
    try:
        ev = Event(
            seq=doc["seq"],
            ts=parse_ts(doc["ts"]),
            origin=doc["origin"],
            action=doc["action"],
            actor=doc["actor"],
            key_id=doc["key_id"],
            payload=doc["payload"],
            prev_hash=doc["prev_hash"],
            model=doc["model"],
            version=doc["version"],
        )
    except KeyError as exc:
        raise ValueError(f"event lacks the field {exc.args[0]!r}") from None
    for name, typ in (
        ("seq", int),
        ("origin", str),
        ("action", str),
        ("actor", str),
        ("key_id", str),
        ("payload", dict),
        ("prev_hash", str),
    ):
        v = getattr(ev, name)
        if type(v) is not typ:
            raise ValueError(f"field {name!r} has type {type(v).__name__}, expected {typ.__name__}")
    if ev.model is not None and type(ev.model) is not str:
        raise ValueError("field 'model' is neither a string nor null")
    if ev.version is not None and type(ev.version) is not int:
        raise ValueError("field 'version' is neither an integer nor null")
    return ev


# --- register payload --------------------------------------------------------------------


def _kv(spec: str, what: str, example: str) -> tuple[str, str]:
    k, sep, v = spec.partition("=")
    if not sep or not KEYNAME_RE.fullmatch(k) or not v:
        raise InputError(f"malformed {what} {_r(spec)}: expected {example}")
    return k, v


def parse_dataset(spec: str | dict[str, Any]) -> dict[str, Any]:
    """``NAME=URI[@sha256:HEX]`` -> {"name", "uri"[, "digest"]}."""
    if isinstance(spec, dict):
        name, uri, digest = spec.get("name"), spec.get("uri"), spec.get("digest")
    else:
        name, rest = _kv(spec, "--dataset", "NAME=URI[@sha256:HEX]")
        uri, sep, hexd = rest.rpartition("@sha256:")
        if sep:
            digest = f"sha256:{hexd}"
        else:
            uri, digest = rest, None
    if not isinstance(name, str) or not KEYNAME_RE.fullmatch(name):
        raise InputError(f"malformed --dataset {_r(spec)}: the name must be a simple identifier")
    if not isinstance(uri, str) or not uri:
        raise InputError(f"malformed --dataset {_r(spec)}: the URI is empty")
    if len(uri) > MAX_TEXT:
        raise InputError(f"malformed --dataset {_r(spec)}: the URI is {too_long(uri)}")
    if digest is not None and (not isinstance(digest, str) or not DIGEST_RE.fullmatch(digest)):
        raise InputError(
            f"malformed --dataset {_r(spec)}: the digest must be sha256: and 64 lowercase hex digits"
        )
    out = {"name": name, "uri": uri}
    if digest:
        out["digest"] = digest
    return out


def parse_code(spec: str | dict[str, Any]) -> dict[str, Any]:
    """``REPOSITORY@COMMIT`` -> {"repo", "commit"}."""
    if isinstance(spec, dict):
        repo, commit = spec.get("repo"), spec.get("commit")
    else:
        repo, _, commit = spec.rpartition("@")
    if not isinstance(repo, str) or not repo:
        raise InputError(f"malformed --code {_r(spec)}: expected REPOSITORY@COMMIT")
    if len(repo) > MAX_TEXT:
        raise InputError(f"malformed --code {_r(spec)}: the repository is {too_long(repo)}")
    if not isinstance(commit, str) or not COMMIT_RE.fullmatch(commit):
        raise InputError(
            f"malformed --code {_r(spec)}: the commit must be 7 to 64 lowercase hex digits"
        )
    return {"repo": repo, "commit": commit}


def parse_parent(spec: str | dict[str, Any]) -> dict[str, Any]:
    """``MODEL:VERSION=RELATION`` -> {"model", "version", "relation"}."""
    if isinstance(spec, dict):
        model, version, relation = spec.get("model"), spec.get("version"), spec.get("relation")
        if not isinstance(model, str) or type(version) is not int:
            raise InputError(f"malformed parent {_r(spec)}: needs model and version")
        check_model_name(model)
    else:
        ref, sep, relation = spec.partition("=")
        if not sep:
            raise InputError(
                f"malformed --parent {_r(spec)}: expected MODEL:VERSION=RELATION"
                f" (relation one of {', '.join(RELATIONS)})"
            )
        model, version = parse_model_ref(ref)
    if relation not in RELATIONS:
        raise InputError(
            f"unknown relation {_r(relation)} in parent {_r(spec)}; use one of {', '.join(RELATIONS)}"
        )
    return {"model": model, "relation": relation, "version": version}


def parse_metric(spec: str) -> tuple[str, float | int]:
    name, value = _kv(spec, "--metric", "NAME=NUMBER (e.g. auc=0.91)")
    try:
        num = parse_number(value)
    except ValueError:
        raise InputError(f"malformed --metric {_r(spec)}: {_r(value)} is not a number") from None
    except InputError as exc:
        raise InputError(f"malformed --metric {_r(spec)}: {exc}") from None
    if num != num or num in (float("inf"), float("-inf")):
        raise InputError(f"malformed --metric {_r(spec)}: metrics must be finite numbers")
    if isinstance(num, float) and num.is_integer() and abs(num) < 2**53:
        return name, int(num)  # (1.0 and 1 are the same JSON number)
    return name, num


def parse_pair(spec: str, what: str) -> tuple[str, str]:
    return _kv(spec, what, "KEY=VALUE")


def parse_pairs(specs: Any, what: str) -> dict[str, str]:
    """``KEY=VALUE`` specs as a dict, refusing a key given twice."""
    return _mapping(specs, what.lstrip("-"), lambda s: parse_pair(s, what))


def _mapping(items: Any, what: str, parse: Any) -> dict[str, Any]:
    if items is None:
        return {}
    if isinstance(items, dict):
        out = dict(items)
    else:
        out = {}
        for spec in items:
            k, v = parse(spec)
            if k in out:
                raise InputError(f"{what} {_r(k)} is given twice")
            out[k] = v
    for k in out:
        if not isinstance(k, str) or not KEYNAME_RE.fullmatch(k):
            raise InputError(f"invalid {what} name {_r(k)}")
    return out


def register_payload(
    *,
    artifact: dict[str, Any] | None = None,
    datasets: Any = (),
    code: str | dict[str, Any] | None = None,
    parents: Any = (),
    metrics: Any = None,
    params: Any = None,
    tags: Any = None,
    metadata: dict[str, Any] | None = None,
    description: str | None = None,
    environment: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Validate and assemble a register payload; strings use the CLI's spec syntax.
    ``environment`` is the declared inference environment (ledger/requirements.py)."""
    ds = [parse_dataset(d) for d in datasets]
    names = [d["name"] for d in ds]
    if len(set(names)) != len(names):
        raise InputError("two datasets share a name; give each --dataset a distinct NAME")
    ps = [parse_parent(p) for p in parents]
    if len({(p["model"], p["version"]) for p in ps}) != len(ps):
        raise InputError("the same parent is given twice")
    payload: dict[str, Any] = {
        "datasets": ds,
        "metrics": _mapping(metrics, "metric", parse_metric),
        "params": _mapping(params, "param", lambda s: parse_pair(s, "--param")),
        "parents": ps,
        "tags": _mapping(tags, "tag", lambda s: parse_pair(s, "--tag")),
    }
    if artifact is not None:
        if not isinstance(artifact, dict) or not DIGEST_RE.fullmatch(str(artifact.get("digest"))):
            raise InputError("artifact needs a digest of the form sha256:<64 hex digits>")
        for k, v in artifact.items():
            if isinstance(v, str):
                check_text(v, "artifact URI" if k == "uri" else f"artifact {_r(k)}")
        payload["artifact"] = artifact
    if code is not None:
        payload["code"] = parse_code(code)
    if metadata:
        if not isinstance(metadata, dict):
            raise InputError("metadata must be a JSON object")
        payload["metadata"] = metadata
    if description is not None:
        payload["description"] = check_text(description, "description")
    if environment is not None:
        payload["environment"] = environment
    for what in ("tags", "params"):
        for k, v in payload[what].items():
            check_text(v, f"{what[:-1]} {_r(k)}")
    for name, v in payload["metrics"].items():
        if type(v) not in (int, float):
            raise InputError(f"metric {_r(name)} must be a number")
        if type(v) is int:
            check_int(v, f"metric {_r(name)}")
    return payload
