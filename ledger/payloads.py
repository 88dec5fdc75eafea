"""The members each action's payload may and must hold (docs/FORMAT.md §4), checked for
every event: by the writer before it signs, and by ``verify`` for every event it reads.

Writers build payloads with the parsers in :mod:`ledger.events`, which give the CLI's
own error messages; this module is the one statement of what a *stored* payload must be,
so that a correctly signed event that breaks the format (written by another tool, or by
an older or buggy writer) is named by ``verify`` as ``bad_payload`` rather than passed.
What the action may do given the ledger's state is :mod:`ledger.state`'s question.

Pure: no I/O. "Characters" are Unicode code points (Python's ``len``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

from . import events as E
from . import requirements as R
from .errors import InputError

KIND = "bad_payload"

#: Members every payload of the action may hold (required ones in :data:`_REQUIRED`).
#: ``break_glass`` (the grants an event uses) may appear in every payload except these two.
_MEMBERS: dict[str, frozenset[str]] = {
    E.GENESIS: frozenset({"format", "key_id", "actor", "public_key", "roles"}),
    E.KEY_ADD: frozenset({"key_id", "actor", "public_key", "roles"}),
    E.KEY_REVOKE: frozenset({"key_id", "reason"}),
    E.REGISTER: frozenset(
        {
            "artifact",
            "datasets",
            "code",
            "parents",
            "metrics",
            "params",
            "tags",
            "metadata",
            "description",
            "environment",
        }
    ),
    E.APPROVE: frozenset({"env", "comment"}),
    E.REJECT: frozenset({"comment"}),
    E.DEPLOY: frozenset({"env", "comment"}),
    E.UNDEPLOY: frozenset({"env", "comment"}),
    E.DEPRECATE: frozenset({"comment"}),
    E.POLICY_SET: frozenset({"policy", "comment"}),
    E.BREAK_GLASS: frozenset({"action", "rule", "justification", "model", "version", "env"}),
    E.ALIAS_SET: frozenset({"alias", "comment"}),
    E.ALIAS_DELETE: frozenset({"alias", "comment"}),
    E.TAG_SET: frozenset({"tags", "comment"}),
    E.TAG_DELETE: frozenset({"keys", "comment"}),
    E.DESCRIBE: frozenset({"description"}),
    E.MODEL_CREATE: frozenset({"comment"}),
}
_REQUIRED: dict[str, frozenset[str]] = {
    E.GENESIS: frozenset({"format", "key_id", "actor", "public_key", "roles"}),
    E.KEY_ADD: frozenset({"key_id", "actor", "public_key", "roles"}),
    E.KEY_REVOKE: frozenset({"key_id"}),
    E.APPROVE: frozenset({"env"}),
    E.DEPLOY: frozenset({"env"}),
    E.UNDEPLOY: frozenset({"env"}),
    E.POLICY_SET: frozenset({"policy"}),
    E.BREAK_GLASS: frozenset({"action", "rule", "justification"}),
    E.ALIAS_SET: frozenset({"alias"}),
    E.ALIAS_DELETE: frozenset({"alias"}),
    E.TAG_SET: frozenset({"tags"}),
    E.TAG_DELETE: frozenset({"keys"}),
    E.DESCRIBE: frozenset({"description"}),
}
_NO_CITATIONS = frozenset({E.GENESIS, E.BREAK_GLASS})

_ARTIFACT = frozenset({"digest", "uri", "kind", "name", "size", "manifest"})
_DATASET = frozenset({"name", "uri", "digest"})
_PARENT = frozenset({"model", "version", "relation"})
_CODE = frozenset({"repo", "commit"})
_KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
_ENVIRONMENT = frozenset({"python", "packages", "files"})
_PACKAGE = frozenset({"name", "spec", "source", "extras", "marker", "url", "channel", "build"})
#: The members each package source may hold besides name, spec and source.
_PACKAGE_EXTRA = {R.PIP: ("extras", "marker", "url"), R.CONDA: ("channel", "build")}
_FILE = frozenset({"kind", "name", "digest"})


class _Bad(InputError):
    def __init__(self, action: str, where: str, what: str) -> None:
        super().__init__(f"{action} payload: {where} {what}", kind=KIND)


def check_event(ev: E.Event) -> None:
    """Raise :class:`~ledger.errors.InputError` (kind ``bad_payload``) if ``ev``'s
    model, version or payload break FORMAT.md §4 for its action. Unknown actions (a
    newer format's) are not checked here: their payload is theirs to define."""
    a = ev.action
    allowed = _MEMBERS.get(a)
    if allowed is None:
        return
    p = ev.payload
    if a in E.MODEL_SCOPED:
        if type(ev.model) is not str or not E.MODEL_RE.fullmatch(ev.model):
            raise _Bad(a, "the event's model", f"{_show(ev.model)} is not a model name")
        if a == E.MODEL_CREATE:
            if ev.version is not None:
                raise _Bad(a, "the event's version", f"{_show(ev.version)} must be null")
        elif (a not in E.META_ACTIONS or ev.version is not None) and (
            type(ev.version) is not int or ev.version < 1
        ):
            raise _Bad(a, "the event's version", f"{_show(ev.version)} is not a positive integer")
    elif ev.model is not None or ev.version is not None:
        raise InputError(f"{a} event names a model or version; both must be null", kind=KIND)
    for k in p:
        if k not in allowed and not (k == "break_glass" and a not in _NO_CITATIONS):
            known = ", ".join(sorted(allowed))
            raise _Bad(a, f"member {k!r}", f"is not one of this action's members ({known})")
    for k in _REQUIRED.get(a, ()):
        if k not in p:
            raise _Bad(a, f"member {k!r}", "is missing")
    check = _CHECKS.get(a)
    if check is not None:
        check(a, p)
    if "comment" in p:
        _text(a, "'comment'", p["comment"])
    if "env" in p and a != E.BREAK_GLASS:
        _env(a, "'env'", p["env"])
    if "break_glass" in p:
        cited = p["break_glass"]
        if (
            type(cited) is not list
            or not cited
            or any(type(s) is not int or not 0 < s < ev.seq for s in cited)
            or any(x >= y for x, y in itertools.pairwise(cited))
        ):
            raise _Bad(
                a,
                "member 'break_glass'",
                "must be a non-empty ascending list of distinct seqs below the event's own",
            )


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else f"{text[:59]}…"


def _text(a: str, where: str, v: Any, *, empty: bool = True) -> None:
    if type(v) is not str:
        raise _Bad(a, where, f"must be a string, not {_show(v)}")
    if len(v) > E.MAX_TEXT:
        raise _Bad(a, where, f"is {len(v)} characters; the limit is {E.MAX_TEXT}")
    if not empty and not v:
        raise _Bad(a, where, "must not be empty")


def _name(a: str, where: str, v: Any, pattern: re.Pattern[str], what: str) -> None:
    if type(v) is not str or not pattern.fullmatch(v):
        raise _Bad(a, where, f"{_show(v)} is not a valid {what}")


def _env(a: str, where: str, v: Any) -> None:
    _name(a, where, v, E.ENV_RE, "environment name")


def _object(a: str, where: str, v: Any) -> dict[str, Any]:
    if type(v) is not dict:
        raise _Bad(a, where, f"must be an object, not {_show(v)}")
    return v


def _members(a: str, where: str, v: Any, allowed: frozenset[str], required: set[str]) -> None:
    obj = _object(a, where, v)
    path = where.strip("'")
    for k in obj:
        if k not in allowed:
            raise _Bad(a, f"'{path}.{k}'", f"is not a member ({', '.join(sorted(allowed))})")
    for k in sorted(required):
        if k not in obj:
            raise _Bad(a, f"'{path}.{k}'", "is missing")


def _digest(a: str, where: str, v: Any) -> None:
    if type(v) is not str or not E.DIGEST_RE.fullmatch(v):
        raise _Bad(a, where, f"{_show(v)} is not sha256: and 64 lowercase hex digits")


def _key_event(a: str, p: dict[str, Any]) -> None:
    _name(a, "'key_id'", p["key_id"], _KEY_ID_RE, "key id (16 hex digits)")
    _name(a, "'actor'", p["actor"], E.ACTOR_RE, "actor name")
    if type(p["public_key"]) is not str:
        raise _Bad(a, "'public_key'", "must be a string (base64 of 32 bytes)")
    roles = p["roles"]
    if (
        type(roles) is not list
        or not roles
        or any(type(r) is not str or r not in E.ROLES for r in roles)
        or roles != sorted(set(roles))
    ):
        raise _Bad(
            a, "'roles'", f"must be a sorted list of distinct roles from {', '.join(E.ROLES)}"
        )
    if a == E.GENESIS and p["format"] != E.FORMAT:
        raise _Bad(a, "'format'", f"must be {E.FORMAT!r}, not {_show(p['format'])}")


def _key_revoke(a: str, p: dict[str, Any]) -> None:
    _name(a, "'key_id'", p["key_id"], _KEY_ID_RE, "key id (16 hex digits)")
    if "reason" in p:
        _text(a, "'reason'", p["reason"])


def _register(a: str, p: dict[str, Any]) -> None:
    if "artifact" in p:
        art = p["artifact"]
        _members(a, "'artifact'", art, _ARTIFACT, {"digest"})
        _digest(a, "'artifact.digest'", art["digest"])
        for k in ("uri", "name"):
            if k in art:
                _text(a, f"'artifact.{k}'", art[k])
        if "kind" in art and art["kind"] not in ("file", "directory"):
            raise _Bad(a, "'artifact.kind'", f"{_show(art['kind'])} is not file or directory")
        if "size" in art and (type(art["size"]) is not int or art["size"] < 0):
            raise _Bad(a, "'artifact.size'", "must be a non-negative integer")
        if "manifest" in art:
            _object(a, "'artifact.manifest'", art["manifest"])
    datasets = p.get("datasets", [])  # (absent: none, as an empty list)
    if type(datasets) is not list:
        raise _Bad(a, "'datasets'", "must be a list")
    names = set()
    for i, d in enumerate(datasets):
        where = f"'datasets[{i}]'"
        _members(a, where, d, _DATASET, {"name", "uri"})
        _name(a, f"{where[:-1]}.name'", d["name"], E.KEYNAME_RE, "dataset name")
        _text(a, f"{where[:-1]}.uri'", d["uri"], empty=False)
        if "digest" in d:
            _digest(a, f"{where[:-1]}.digest'", d["digest"])
        if d["name"] in names:
            raise _Bad(a, f"{where[:-1]}.name'", f"{d['name']!r} is given twice")
        names.add(d["name"])
    if "code" in p:
        code = p["code"]
        _members(a, "'code'", code, _CODE, set(_CODE))
        _text(a, "'code.repo'", code["repo"], empty=False)
        _name(a, "'code.commit'", code["commit"], E.COMMIT_RE, "commit (7 to 64 hex digits)")
    parents = p.get("parents", [])
    if type(parents) is not list:
        raise _Bad(a, "'parents'", "must be a list")
    seen = set()
    for i, par in enumerate(parents):
        where = f"'parents[{i}]"
        _members(a, f"{where}'", par, _PARENT, set(_PARENT))
        _name(a, f"{where}.model'", par["model"], E.MODEL_RE, "model name")
        if type(par["version"]) is not int or par["version"] < 1:
            raise _Bad(a, f"{where}.version'", "must be a positive integer")
        if par["relation"] not in E.RELATIONS:
            raise _Bad(a, f"{where}.relation'", f"must be one of {', '.join(E.RELATIONS)}")
        ref = (par["model"], par["version"])
        if ref in seen:
            raise _Bad(a, f"{where}'", f"names {ref[0]}:{ref[1]} a second time")
        seen.add(ref)
    for k, v in _object(a, "'metrics'", p.get("metrics", {})).items():
        _name(a, "'metrics' name", k, E.KEYNAME_RE, "metric name")
        if type(v) not in (int, float):
            raise _Bad(a, f"'metrics.{k}'", f"must be a number, not {_show(v)}")
    for member in ("params", "tags"):
        for k, v in _object(a, f"{member!r}", p.get(member, {})).items():
            _name(a, f"{member!r} name", k, E.KEYNAME_RE, f"{member[:-1]} name")
            _text(a, f"'{member}.{k}'", v)
    if "metadata" in p:
        _object(a, "'metadata'", p["metadata"])
    if "description" in p:
        _text(a, "'description'", p["description"])
    if "environment" in p:
        _environment(a, p["environment"])


def _environment(a: str, env: Any) -> None:
    """The declared inference environment (ledger/requirements.py writes it)."""
    _members(a, "'environment'", env, _ENVIRONMENT, {"packages", "files"})
    if "python" in env:
        _name(a, "'environment.python'", env["python"], R.PYTHON_RE, "Python version (3.11)")
    for member in ("packages", "files"):
        if type(env[member]) is not list:
            raise _Bad(a, f"'environment.{member}'", "must be a list")
    for i, pkg in enumerate(env["packages"]):
        where = f"'environment.packages[{i}]"
        _members(a, f"{where}'", pkg, _PACKAGE, {"name", "spec", "source"})
        source = pkg["source"]
        if source not in _PACKAGE_EXTRA:
            raise _Bad(a, f"{where}.source'", f"{_show(source)} is not pip or conda")
        name_re = R.PIP_NAME_RE if source == R.PIP else R.CONDA_NAME_RE
        what = "normalized package name (PEP 503)" if source == R.PIP else "conda package name"
        _name(a, f"{where}.name'", pkg["name"], name_re, what)
        _name(a, f"{where}.spec'", pkg["spec"], R.SPEC_RE, "version specifier")
        for k in sorted(set(pkg) - {"name", "spec", "source"}):
            if k not in _PACKAGE_EXTRA[source]:
                raise _Bad(a, f"{where}.{k}'", f"is not a member of a {source} package")
            if k == "extras":
                ex = pkg[k]
                if type(ex) is not list or not ex or ex != sorted(set(ex)):
                    raise _Bad(a, f"{where}.extras'", "must be a sorted list of distinct names")
                for x in ex:
                    _name(a, f"{where}.extras'", x, R.PIP_NAME_RE, "normalized extra name")
            else:
                _text(a, f"{where}.{k}'", pkg[k], empty=False)
    for i, f in enumerate(env["files"]):
        where = f"'environment.files[{i}]"
        _members(a, f"{where}'", f, _FILE, set(_FILE))
        if f["kind"] not in (R.REQUIREMENTS_FILE, R.CONDA_FILE):
            raise _Bad(a, f"{where}.kind'", f"{_show(f['kind'])} is not requirements or conda")
        _text(a, f"{where}.name'", f["name"], empty=False)
        _digest(a, f"{where}.digest'", f["digest"])


def _policy_set(a: str, p: dict[str, Any]) -> None:
    _object(a, "'policy'", p["policy"])  # its contents: ledger.policydoc


def _break_glass(a: str, p: dict[str, Any]) -> None:
    # (its members' values: ledger.policydoc.grant_payload, which names them better)
    _text(a, "'justification'", p["justification"], empty=False)


def _alias(a: str, p: dict[str, Any]) -> None:
    alias = p["alias"]
    if type(alias) is not str or not E.ENV_RE.fullmatch(alias) or alias == "latest":
        raise _Bad(a, "'alias'", f"{_show(alias)} is not a valid alias name")


def _tag_set(a: str, p: dict[str, Any]) -> None:
    tags = _object(a, "'tags'", p["tags"])
    if not tags:
        raise _Bad(a, "'tags'", "must name at least one tag")
    for k, v in tags.items():
        _name(a, "'tags' name", k, E.KEYNAME_RE, "tag name")
        _text(a, f"'tags.{k}'", v)


def _tag_delete(a: str, p: dict[str, Any]) -> None:
    keys = p["keys"]
    if (
        type(keys) is not list
        or not keys
        or any(type(k) is not str or not E.KEYNAME_RE.fullmatch(k) for k in keys)
        or any(x >= y for x, y in itertools.pairwise(keys))
    ):
        raise _Bad(
            a, "'keys'", "must be a non-empty list of distinct tag names in increasing order"
        )


def _describe(a: str, p: dict[str, Any]) -> None:
    _text(a, "'description'", p["description"])


_CHECKS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    E.ALIAS_SET: _alias,
    E.ALIAS_DELETE: _alias,
    E.TAG_SET: _tag_set,
    E.TAG_DELETE: _tag_delete,
    E.DESCRIBE: _describe,
    E.GENESIS: _key_event,
    E.KEY_ADD: _key_event,
    E.KEY_REVOKE: _key_revoke,
    E.REGISTER: _register,
    E.POLICY_SET: _policy_set,
    E.BREAK_GLASS: _break_glass,
}

__all__ = ["KIND", "check_event"]
