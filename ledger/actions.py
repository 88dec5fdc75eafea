"""The events each registry action writes, checked and assembled (no ledger I/O).

The facade's write methods (``Ledger.register``, ``approve``, ``add_key``,
``set_policy``, ``break_glass``, …) build their drafts here and hand them to the write
path (:mod:`ledger.writer`); ``Ledger.init`` takes its genesis event from here. What an
action may do given the ledger's state is :mod:`ledger.state` and :mod:`ledger.policy`;
this module checks only what the arguments alone decide (names, limits, shapes).
Reading a local artifact (to digest it), a policy file or an environment file is the
only I/O.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import events as E
from . import policydoc as P
from . import requirements as R
from .errors import InputError
from .keys import key_id


def key_payload(public_key: bytes, actor: str, roles: Sequence[str]) -> dict[str, Any]:
    """The payload of a ``genesis`` or ``key_add`` event."""
    return {
        "actor": actor,
        "key_id": key_id(public_key),
        "public_key": base64.b64encode(public_key).decode(),
        "roles": list(roles),
    }


def genesis(
    public_key: bytes,
    signer_key_id: str,
    actor: str,
    roles: Sequence[str] | str,
    origin: str,
    ts: int,
) -> E.Event:
    """Event 0 of a new ledger: it registers ``public_key`` for ``actor`` (an admin)."""
    E.check_actor(actor)
    roles = E.check_roles(roles)
    if E.ADMIN not in roles:
        raise InputError("the genesis key must hold the admin role")
    if not E.KEYNAME_RE.fullmatch(origin) or len(origin) > E.MAX_NAME:
        raise InputError(
            f"invalid origin {origin!r}: letters, digits and _.:/- only (e.g. example.com/models)"
        )
    return E.Event(
        seq=0,
        ts=ts,
        origin=origin,
        action=E.GENESIS,
        actor=actor,
        key_id=signer_key_id,
        payload=key_payload(public_key, actor, roles) | {"format": E.FORMAT},
        prev_hash=E.GENESIS_PREV_HASH,
    )


def register(
    model: str,
    *,
    artifact: str | os.PathLike[str] | dict[str, Any] | None = None,
    artifact_uri: str | None = None,
    datasets: Iterable[str | dict[str, Any]] = (),
    code: str | dict[str, Any] | None = None,
    parents: Iterable[str | dict[str, Any]] = (),
    metrics: Any = None,
    params: Any = None,
    tags: Any = None,
    metadata: dict[str, Any] | None = None,
    description: str | None = None,
    requirements: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
    conda: str | os.PathLike[str] | None = None,
    python: str | None = None,
) -> E.Draft:
    """The draft registering the next version of ``model``; ``artifact`` is a local file
    or folder (digested here) or a ready ``{"digest": "sha256:…", …}`` object;
    ``requirements`` (one or more pip requirements files), ``conda`` (an environment
    file) and ``python`` (a version) declare the environment it runs in."""
    E.check_model_name(model)
    env = declared_environment(requirements, conda, python)
    if artifact is not None and not isinstance(artifact, dict):
        from .artifact import describe

        art: dict[str, Any] | None = describe(artifact, artifact_uri)
    elif isinstance(artifact, dict):
        art = dict(artifact) | ({"uri": artifact_uri} if artifact_uri else {})
    else:
        art = {"uri": artifact_uri} if artifact_uri else None
        if art is not None:
            raise InputError("--artifact-uri needs --artifact (a local path) or a digest")
    payload = E.register_payload(
        artifact=art,
        datasets=datasets,
        code=code,
        parents=parents,
        metrics=metrics,
        params=params,
        tags=tags,
        metadata=metadata,
        description=description,
        environment=env,
    )
    return E.Draft(E.REGISTER, payload, model)


def declared_environment(
    requirements: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None,
    conda: str | os.PathLike[str] | None,
    python: str | None,
) -> dict[str, Any] | None:
    """The register payload's ``environment`` member read from the files named (None
    when nothing is declared); files a requirements file includes (``-r``) are read
    relative to it."""
    if isinstance(requirements, str | os.PathLike):
        requirements = [requirements]
    paths = [Path(p) for p in requirements or ()]
    if not paths and conda is None and python is None:
        return None

    def read(path: Path) -> tuple[str, str, bytes]:
        try:
            return str(path.resolve()), path.name, path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read environment file {path}: {exc.strerror}") from None

    def include(fid: str, ref: str) -> tuple[str, str, bytes]:
        return read(Path(fid).parent / ref)

    return R.environment(
        [read(p) for p in paths],
        read(Path(conda)) if conda is not None else None,
        python,
        opener=include,
    )


def model_action(action: str, model: str, version: int | str, **fields: Any) -> E.Draft:
    """The draft of an approve, reject, deploy, undeploy or deprecate of ``model:version``
    (``version`` an int or ``"@alias"``; ``fields``: ``env``, ``comment``; None ones left
    out)."""
    payload = {k: v for k, v in fields.items() if v is not None}
    if "env" in payload:
        E.check_env(payload["env"])
    if "comment" in payload:
        E.check_text(payload["comment"], "comment")
    if version is None:
        raise InputError("version must be a positive integer or '@ALIAS', got None")
    return model_draft(action, model, version, payload)


def key_add(public_key: bytes, actor: str, roles: Sequence[str] | str) -> E.Draft:
    return E.Draft(E.KEY_ADD, key_payload(public_key, E.check_actor(actor), E.check_roles(roles)))


def key_revoke(kid: str, reason: str | None = None) -> E.Draft:
    payload: dict[str, Any] = {"key_id": kid}
    if reason:
        payload["reason"] = E.check_text(reason, "reason")
    return E.Draft(E.KEY_REVOKE, payload)


def policy_set(policy: Any, comment: str | None = None) -> E.Draft:
    """The draft recording ``policy``: a ``Policy``, a parsed document (dict) or the path
    of a TOML/YAML/JSON policy file."""
    if isinstance(policy, str | os.PathLike):
        path = Path(policy)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read policy file {path}: {exc.strerror}") from None
        policy = P.parse_policy(data, path.name)
    elif isinstance(policy, dict):
        policy = P.Policy.from_dict(policy)
    elif not isinstance(policy, P.Policy):
        raise InputError("set_policy needs a Policy, a dict or a policy file path")
    payload: dict[str, Any] = {"policy": policy.to_dict()}
    if comment:
        payload["comment"] = E.check_text(comment, "comment")
    return E.Draft(E.POLICY_SET, payload)


def break_glass(
    action: str,
    model: str | None,
    version: int | None,
    env: str | None,
    rule: str,
    justification: str,
) -> E.Draft:
    """The draft of a break-glass grant (whether a policy in force has ``rule`` on is
    the caller's question: it needs the ledger's state)."""
    return E.Draft(E.BREAK_GLASS, P.grant_payload(action, rule, justification, model, version, env))


# --- registry metadata: aliases, tags, descriptions (issue 17) -------------------------------


def _version_or_alias(version: int | str | None) -> tuple[int | None, str | None]:
    """A version given as an int, or as ``"@alias"`` (resolved by the writer)."""
    if isinstance(version, str) and version.startswith("@"):
        return None, E.check_alias(version[1:])
    if version is not None and (type(version) is not int or version < 1):
        raise InputError(f"version must be a positive integer or '@ALIAS', got {version!r}")
    return version, None


def model_draft(
    action: str, model: str, version: int | str | None, payload: dict[str, Any]
) -> E.Draft:
    """A draft naming ``model`` and ``version`` (an int, ``"@alias"``, or None)."""
    v, alias = _version_or_alias(version)
    return E.Draft(action, payload, E.check_model_name(model), v, alias=alias)


def alias_set(model: str, version: int | str, alias: str, comment: str | None = None) -> E.Draft:
    """Point ``alias`` of ``model`` at ``version`` (moving it from any other version)."""
    if version is None:
        raise InputError("alias set needs MODEL:VERSION (or MODEL@ALIAS)")
    payload: dict[str, Any] = {"alias": E.check_alias(alias)}
    if comment is not None:
        payload["comment"] = E.check_text(comment, "comment")
    return model_draft(E.ALIAS_SET, model, version, payload)


def alias_delete(model: str, alias: str, comment: str | None = None) -> E.Draft:
    """Remove ``alias`` of ``model``; the event names the version it pointed at."""
    payload: dict[str, Any] = {"alias": E.check_alias(alias)}
    if comment is not None:
        payload["comment"] = E.check_text(comment, "comment")
    return model_draft(E.ALIAS_DELETE, model, f"@{alias}", payload)


def tag_set(model: str, version: int | str | None, tags: Any) -> E.Draft:
    """Set tags (``KEY=VALUE`` specs or a dict) on ``model:version``, or on the model."""
    parsed = E.parse_pairs(tags, "--tag") if not isinstance(tags, dict) else dict(tags)
    if not parsed:
        raise InputError("tag set needs at least one KEY=VALUE")
    for k, v in parsed.items():
        if not isinstance(k, str) or not E.KEYNAME_RE.fullmatch(k):
            raise InputError(f"invalid tag name {k!r}")
        if not isinstance(v, str):
            raise InputError(f"tag {k} must be text, got {v!r}")
        E.check_text(v, f"tag {k}")
    return model_draft(E.TAG_SET, model, version, {"tags": parsed})


def tag_delete(model: str, version: int | str | None, keys: Iterable[str]) -> E.Draft:
    """Remove the tags ``keys`` from ``model:version``, or from the model."""
    names = sorted(set(keys))
    if not names:
        raise InputError("tag delete needs at least one KEY")
    for k in names:
        if not isinstance(k, str) or not E.KEYNAME_RE.fullmatch(k):
            raise InputError(f"invalid tag name {k!r}")
    return model_draft(E.TAG_DELETE, model, version, {"keys": names})


def describe(model: str, version: int | str | None, text: str) -> E.Draft:
    """Set the description of ``model:version``, or of the model."""
    if not isinstance(text, str):
        raise InputError("a description must be text")
    return model_draft(
        E.DESCRIBE, model, version, {"description": E.check_text(text, "description")}
    )
