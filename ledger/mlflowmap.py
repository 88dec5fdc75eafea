"""MLflow's model registry and the ledger's, side by side (docs/mlflow.md).

One statement of how an MLflow registry maps onto ledger events, used three ways: the
registry store plugin (ledger/mlflowstore.py) turns each MLflow write into the events
that bring the ledger to MLflow's new state; ``ledger import mlflow`` brings the ledger
to a whole registry's state; ``ledger mlflow diff`` lists what differs. Each is
:func:`differences` between an :class:`MModel` read from MLflow and the one
:func:`ledger_models` reads from the ledger's State, and the drafts each difference
carries.

The mapping:

- a registered model is a ledger model (``model_create``; its tags and description are
  model-level ``tag_set`` and ``describe``); a model version is a ``register`` of the
  same number, with its source run's metrics, params, git commit and datasets;
- a version's MLflow stage is its ledger tag ``ledger.mlflow.stage`` (absent: ``None``);
  and the version ``models:/NAME/Staging`` (``/Production``) resolves to, the highest
  version in that stage, is the ledger's live version in ``staging``
  (``production``): ``deploy`` and ``undeploy`` events, which policy governs;
- an alias is a ledger alias; a deleted version is ``deprecate``d; a deleted model's
  versions are deprecated and it is tagged ``ledger.mlflow.deleted``;
- a tag value or description longer than the ledger's 4,096-character limit is kept as
  ``sha256:`` and the digest of its UTF-8 bytes (compared the same way).

What cannot be mapped (a name outside the ledger's patterns, a renamed model, a version
deprecated in the ledger but live in MLflow) is a difference without drafts: the store
refuses the write that would make it, and ``diff`` reports it.

Pure: no I/O, no MLflow import.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import events as E
from .state import State

STAGES = ("None", "Staging", "Production", "Archived")
#: The ledger environment each serving stage is (the others serve nowhere).
STAGE_ENV = {"Staging": "staging", "Production": "production"}
STAGE_TAG = "ledger.mlflow.stage"
DELETED_TAG = "ledger.mlflow.deleted"
#: A version tag ``ledger.approve.ENV`` set through the store records an approval for ENV
#: by whoever sets it; it is not mirrored as a ledger tag (docs/mlflow.md).
APPROVE_PREFIX = "ledger.approve."
_RESERVED = frozenset({STAGE_TAG, DELETED_TAG})


def reserved(key: str) -> bool:
    """A tag key the mapping keeps to itself (not mirrored as a ledger tag)."""
    return key in _RESERVED or key.startswith(APPROVE_PREFIX)


def parent_source(source: str | None) -> tuple[str, int] | None:
    """The registered version a version was copied from (source ``models:/NAME/N``)."""
    if not source or not source.startswith("models:/"):
        return None
    name, _, version = source[len("models:/") :].rstrip("/").rpartition("/")
    return (name, int(version)) if name and version.isdigit() else None


def parent_in(state: State, source: str | None) -> tuple[str, int] | None:
    """:func:`parent_source`, if the ledger has that version."""
    parent = parent_source(source)
    return parent if parent is not None and parent in state.versions else None


@dataclass
class MVersion:
    """A model version as MLflow holds it (or as the ledger's events say it is)."""

    version: int
    stage: str = "None"
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    deleted: bool = False
    # Facts MLflow has and a register payload records (``None`` on the ledger's side):
    source: str | None = None
    storage_location: str | None = None
    run_id: str | None = None
    run_link: str | None = None
    creation_time: int | None = None  # milliseconds since the epoch, as MLflow keeps it
    user_id: str | None = None
    model_id: str | None = None


@dataclass
class MModel:
    """A registered model with its versions."""

    name: str
    tags: dict[str, str] = field(default_factory=dict)
    description: str | None = None
    aliases: dict[str, int] = field(default_factory=dict)
    versions: dict[int, MVersion] = field(default_factory=dict)
    creation_time: int | None = None
    #: (ledger side) the model was deleted in MLflow: DELETED_TAG is set on it
    deleted: bool = False
    #: (ledger side) the version live in each of STAGE_ENV's environments
    live: dict[str, int] = field(default_factory=dict)
    #: (ledger side) its highest version number
    latest: int = 0


@dataclass
class RunFacts:
    """What a version's source run tells a register payload."""

    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    #: (name, MLflow's digest, source type, source)
    datasets: list[tuple[str, str | None, str | None, str | None]] = field(default_factory=list)


@dataclass
class Difference:
    """One way the ledger's state differs from MLflow's, and the events that mend it."""

    model: str
    version: int | None
    what: str
    mlflow: str
    ledger: str
    drafts: list[E.Draft] = field(default_factory=list)
    #: why no drafts can mend it (the store refuses such a write; diff reports it)
    unmappable: str | None = None

    @property
    def where(self) -> str:
        return self.model if self.version is None else f"{self.model}:{self.version}"


# --- values -------------------------------------------------------------------------------
def text_value(v: str | None) -> str | None:
    """A tag value or description as the ledger keeps it: itself, or past the limit the
    digest of its UTF-8 bytes."""
    if v is None or len(v) <= E.MAX_TEXT:
        return v
    return "sha256:" + hashlib.sha256(v.encode("utf-8", "surrogatepass")).hexdigest()


def _description(v: str | None) -> str:
    return text_value(v) or ""


def bad_name(kind: str, name: str) -> str | None:
    """Why ``name`` cannot be a ledger name of ``kind`` (model, alias, tag), or None."""
    pattern = {"model": E.MODEL_RE, "alias": E.ENV_RE, "tag": E.KEYNAME_RE}[kind]
    if pattern.fullmatch(name) and not (kind == "alias" and name == "latest"):
        return None
    rule = {
        "model": "letters, digits, '.', '_', '-', at most 128, starting and ending with a"
        " letter or digit",
        "alias": "lowercase letters, digits, '_', '-', at most 32, starting with a letter",
        "tag": "letters, digits, '_', '.', ':', '/', '-', at most 64",
    }[kind]
    return f"the ledger cannot record {kind} name {name!r}: a ledger {kind} name is {rule}"


# --- the ledger's side ------------------------------------------------------------------
def ledger_models(
    state: State, names: Iterable[str] | None = None, versions: Iterable[int] | None = None
) -> dict[str, MModel]:
    """The registry the ledger's events describe, for ``names`` (default: every model);
    with ``versions``, only those of each model's versions (the rest of it whole)."""
    wanted = set(state.latest) if names is None else {n for n in names if n in state.latest}
    out = {m: MModel(m, latest=state.latest[m]) for m in wanted}
    for m, mm in out.items():
        tags = dict(state.model_tags.get(m, {}))
        mm.deleted = tags.pop(DELETED_TAG, None) is not None
        mm.tags = {k: v for k, v in tags.items() if not reserved(k)}
        mm.description = state.descriptions.get((m, None))
        numbers = (
            range(1, mm.latest + 1)
            if versions is None
            else sorted(n for n in set(versions) if 0 < n <= mm.latest)
        )
        for n in numbers:
            v = state.versions[(m, n)]
            mm.versions[n] = MVersion(
                n,
                stage=v.tags.get(STAGE_TAG, "None"),
                tags={k: t for k, t in v.tags.items() if not reserved(k)},
                description=state.descriptions.get((m, n)),
                deleted=v.deprecated_seq is not None,
            )
        for env in STAGE_ENV.values():
            live = state.live.get((m, env))
            if live is not None:
                mm.live[env] = live
    if out:
        for (m, alias), n in state.aliases.items():
            if m in out:
                out[m].aliases[alias] = n
    return out


def staged(state: State, name: str) -> set[int]:
    """The versions of model ``name`` the ledger has in a serving stage: what
    :func:`scope` finds in a whole model, for one read without its versions."""
    versions = state.versions
    return {
        n
        for n in range(1, state.latest.get(name, 0) + 1)
        if versions[(name, n)].tags.get(STAGE_TAG) in STAGE_ENV
    }


# --- register payloads -------------------------------------------------------------------
def register_payload(
    mv: MVersion, run: RunFacts | None, *, via: dict[str, Any], parent: tuple[str, int] | None
) -> dict[str, Any]:
    """The register payload for MLflow version ``mv`` and its run; the facts it had to
    leave out are listed in its ``metadata.mlflow.omitted``."""
    omitted: list[str] = []
    meta: dict[str, Any] = {}
    for k in ("source", "storage_location", "run_id", "run_link", "user_id", "model_id"):
        value = getattr(mv, k)
        if value is not None and value != "":
            meta[k] = _fit(value, k, omitted)
    if mv.creation_time is not None:
        meta["creation_time"] = E.format_ts(mv.creation_time * 1000)
    meta.update(via)
    payload: dict[str, Any] = {}
    tags = _tags(mv.tags, omitted)
    if mv.stage != "None":
        tags[STAGE_TAG] = mv.stage
    if tags:
        payload["tags"] = tags
    if mv.description:
        payload["description"] = _description(mv.description)
    if parent is not None:
        payload["parents"] = [{"model": parent[0], "version": parent[1], "relation": "derived"}]
    if run is not None:
        metrics = {}
        for k, x in sorted(run.metrics.items()):
            if bad_name("tag", k) is not None:
                omitted.append(f"metric {k!r}: not a ledger metric name")
            elif not isinstance(x, int | float) or not math.isfinite(x):
                omitted.append(f"metric {k!r}: {x!r} is not a finite number")
            elif isinstance(x, float) and x.is_integer() and 2**53 <= abs(x) < 1e21:
                # (no canonical JSON the ledger accepts: ledger/canonical.py)
                omitted.append(f"metric {k!r}: {x!r} is a whole number beyond 2^53")
            else:
                metrics[k] = x
        if metrics:
            payload["metrics"] = metrics
        params = _tags(run.params, omitted, "param")
        if params:
            payload["params"] = params
        commit = run.tags.get("mlflow.source.git.commit")
        repo = run.tags.get("mlflow.source.git.repoURL") or run.tags.get("mlflow.source.name")
        if commit and E.COMMIT_RE.fullmatch(commit) and repo:
            payload["code"] = {"repo": _fit(repo, "code repository", omitted), "commit": commit}
        elif commit:
            omitted.append(f"git commit {commit!r}: not 7 to 64 lowercase hex digits")
        datasets: list[dict[str, str]] = []
        digests: dict[str, dict[str, str]] = {}
        for name, digest, source_type, source in run.datasets:
            if bad_name("tag", name) is not None or any(d["name"] == name for d in datasets):
                omitted.append(f"dataset {name!r}: not a ledger dataset name, or given twice")
                continue
            uri = source or f"mlflow-dataset:{name}"
            datasets.append({"name": name, "uri": _fit(uri, f"dataset {name} source", omitted)})
            if digest or source_type:
                digests[name] = {
                    k: v for k, v in (("digest", digest), ("source_type", source_type)) if v
                }
        if datasets:
            payload["datasets"] = datasets
        if digests:
            meta["datasets"] = digests
    if omitted:
        meta["omitted"] = omitted
    payload["metadata"] = {"mlflow": meta}
    return payload


def _fit(value: str, what: str, omitted: list[str]) -> str:
    if len(value) <= E.MAX_TEXT:
        return value
    omitted.append(f"{what}: {len(value)} characters, kept as its digest")
    return text_value(value) or ""


def _tags(tags: dict[str, str], omitted: list[str], what: str = "tag") -> dict[str, str]:
    out = {}
    for k, v in sorted(tags.items()):
        if bad_name("tag", k) is not None:
            omitted.append(f"{what} {k!r}: not a ledger {what} name")
        elif not reserved(k):
            out[k] = text_value(v) or ""
    return out


# --- the comparison ------------------------------------------------------------------
def _mapped_tags(tags: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    out, bad = {}, []
    for k, v in tags.items():
        if bad_name("tag", k) is not None:
            bad.append(k)
        elif not reserved(k):
            out[k] = text_value(v) or ""
    return out, bad


def _serving(versions: dict[int, MVersion]) -> dict[str, int]:
    """The version ``models:/NAME/STAGE`` resolves to, for each serving stage."""
    out: dict[str, int] = {}
    for n, v in versions.items():
        env = STAGE_ENV.get(v.stage)
        if env is not None and not v.deleted and n > out.get(env, 0):
            out[env] = n
    return out


def differences(
    ml: MModel | None,
    led: MModel | None,
    *,
    run_facts: Callable[[MVersion], RunFacts | None],
    comment: str,
    via: dict[str, Any],
    parent_of: Callable[[MVersion], tuple[str, int] | None] = lambda mv: None,
    versions: set[int] | None = None,
) -> list[Difference]:
    """What differs between MLflow's model ``ml`` and the ledger's ``led`` (either may
    be None: absent), each with the drafts that make the ledger say what MLflow says.

    ``versions`` limits the comparison to those versions and the ones ``ml`` holds
    (then ``ml`` and ``led`` may hold only some of theirs: :func:`scope` says which a
    comparison needs); the model's own tags, description and aliases are compared
    whole. Held to the whole comparison by tests/test_mlflowmap.py.

    ``run_facts`` reads a new version's source run; ``comment`` goes on the events that
    take one, ``via`` into the register payloads' ``metadata.mlflow`` (who asked, from
    where; or that the event was imported). The drafts of all the differences, in the
    order given, are one valid batch.
    """
    if ml is None and (led is None or led.deleted):
        return []
    name = ml.name if ml is not None else led.name  # type: ignore[union-attr]
    out: list[Difference] = []
    note = {"comment": comment} if comment else {}

    def diff(
        version: int | None,
        what: str,
        m: str,
        lv: str,
        *drafts: E.Draft,
        unmappable: str | None = None,
    ) -> None:
        out.append(Difference(name, version, what, m, lv, list(drafts), unmappable))

    if ml is not None:
        bad = bad_name("model", ml.name)
        if bad is not None:
            diff(None, "model", "exists", "absent", unmappable=bad)
            return out
    if ml is None:
        assert led is not None
        # Deleted in MLflow: its live versions stop serving, its versions are deprecated.
        for env, n in sorted(led.live.items()):
            diff(n, f"live in {env}", "model deleted", "live",
                 E.Draft(E.UNDEPLOY, {"env": env, **note}, name, n))  # fmt: skip
        for alias, n in sorted(led.aliases.items()):
            diff(n, f"alias {alias}", "model deleted", f"version {n}",
                 E.Draft(E.ALIAS_DELETE, {"alias": alias, **note}, name, n))  # fmt: skip
        for n, v in sorted(led.versions.items()):
            if not v.deleted:
                diff(n, "version", "model deleted", "registered",
                     E.Draft(E.DEPRECATE, dict(note), name, n))  # fmt: skip
        diff(None, "model", "deleted", "exists",
             E.Draft(E.TAG_SET, {"tags": {DELETED_TAG: "true"}, **note}, name, None))  # fmt: skip
        return out

    if led is None or led.deleted:
        if led is None:
            diff(None, "model", "exists", "absent", E.Draft(E.MODEL_CREATE, dict(note), name))
        elif led.latest > 0:
            diff(None, "model", "exists (created again)", "deleted, with versions", unmappable=(
                f"model {name} was deleted in MLflow after the ledger recorded its versions"
                f" 1..{led.latest}; the ledger keeps every version a name has had, so the"
                " name cannot be used for a new model: choose another name"
            ))  # fmt: skip
            return out
        else:
            diff(None, "model", "exists", "deleted",
                 E.Draft(E.TAG_DELETE, {"keys": [DELETED_TAG], **note}, name, None))  # fmt: skip
        led = MModel(name, latest=led.latest if led else 0)

    # The model's own tags and description.
    _meta_diffs(out, name, None, (ml.tags, ml.description), (led.tags, led.description), note)

    # Versions: new ones registered in order (a number MLflow no longer lists was
    # deleted before the ledger saw it); known ones compared.
    top = max([led.latest, *ml.versions])
    numbers = range(1, top + 1) if versions is None else sorted(
        {n for n in versions if 0 < n <= top} | set(ml.versions) | set(range(led.latest + 1, top + 1))
    )  # fmt: skip
    for n in numbers:
        mv = ml.versions.get(n) or MVersion(n, deleted=True)
        lv = led.versions.get(n)
        if lv is None:
            payload = register_payload(
                mv, None if mv.deleted else run_facts(mv), via=via, parent=parent_of(mv)
            )
            if mv.deleted:
                payload["metadata"]["mlflow"]["deleted"] = True
            diff(n, "version", "deleted" if mv.deleted else "exists", "absent",
                 E.Draft(E.REGISTER, payload, name, n))  # fmt: skip
            if mv.deleted:
                diff(
                    n, "version", "deleted", "registered", E.Draft(E.DEPRECATE, dict(note), name, n)
                )
            continue
        if mv.deleted or lv.deleted:
            if mv.deleted and not lv.deleted:
                pass  # deprecated below, once it no longer serves or is named
            elif lv.deleted and not mv.deleted:
                diff(n, "version", mv.stage, "deprecated", unmappable=(
                    f"{name}:{n} is deprecated in the ledger; it cannot serve or change again"
                ))  # fmt: skip
            continue
        _meta_diffs(out, name, n, (mv.tags, mv.description), (lv.tags, lv.description), note)
        if mv.stage != lv.stage:
            change = (
                E.Draft(E.TAG_DELETE, {"keys": [STAGE_TAG], **note}, name, n)
                if mv.stage == "None"
                else E.Draft(E.TAG_SET, {"tags": {STAGE_TAG: mv.stage}, **note}, name, n)
            )
            diff(n, "stage", mv.stage, lv.stage, change)

    # Aliases that no longer name what they named: deleted (moved ones are set below).
    for alias, n in sorted(led.aliases.items()):
        if alias not in ml.aliases:
            diff(n, f"alias {alias}", "absent", f"version {n}",
                 E.Draft(E.ALIAS_DELETE, {"alias": alias, **note}, name, n))  # fmt: skip
    # Serving: the ledger's live version in each environment is the one MLflow serves.
    serving = _serving(ml.versions)
    for env in STAGE_ENV.values():
        want, have = serving.get(env), led.live.get(env)
        if want == have:
            continue
        if want is None:
            diff(have, f"live in {env}", "none", f"version {have}",
                 E.Draft(E.UNDEPLOY, {"env": env, **note}, name, have))  # fmt: skip
        elif not (led.versions.get(want) and led.versions[want].deleted):
            diff(want, f"live in {env}", f"version {want}", f"version {have}" if have else "none",
                 E.Draft(E.DEPLOY, {"env": env, **note}, name, want))  # fmt: skip
    for n in numbers:
        gone, lv = ml.versions.get(n), led.versions.get(n)
        if lv is not None and not lv.deleted and (gone is None or gone.deleted):
            diff(n, "version", "deleted", "registered", E.Draft(E.DEPRECATE, dict(note), name, n))
    for alias, n in sorted(ml.aliases.items()):
        if led.aliases.get(alias) == n:
            continue
        bad = bad_name("alias", alias)
        target = ml.versions.get(n)
        have = led.aliases.get(alias)
        shown = f"version {have}" if have is not None else "absent"
        if bad is not None:
            diff(n, f"alias {alias}", f"version {n}", shown, unmappable=bad)
        elif target is None or target.deleted:
            continue  # (MLflow drops the aliases of a deleted version)
        else:
            diff(n, f"alias {alias}", f"version {n}", shown,
                 E.Draft(E.ALIAS_SET, {"alias": alias, **note}, name, n))  # fmt: skip
    return out


def _meta_diffs(
    out: list[Difference],
    model: str,
    version: int | None,
    ml: tuple[dict[str, str], str | None],
    led: tuple[dict[str, str], str | None],
    note: dict[str, str],
) -> None:
    """The differences in the tags and description of a model (``version`` None) or a
    version: MLflow's ``ml`` against the ledger's ``led``."""
    want, bad_keys = _mapped_tags(ml[0])
    for k in sorted(bad_keys):
        out.append(Difference(model, version, f"tag {k}", "set", "absent", [], bad_name("tag", k)))
    _tag_diffs(out, version, model, want, led[0], note)
    text = _description(ml[1])
    if text != (led[1] or ""):
        draft = E.Draft(E.DESCRIBE, {"description": text}, model, version)
        out.append(
            Difference(model, version, "description", _short(ml[1]), _short(led[1]), [draft])
        )


def _tag_diffs(
    out: list[Difference],
    version: int | None,
    model: str,
    want: dict[str, str],
    have: dict[str, str],
    note: dict[str, str],
) -> None:
    changed = {k: v for k, v in sorted(want.items()) if have.get(k) != v}
    gone = sorted(k for k in have if k not in want)
    for k, v in changed.items():
        shown = _short(have.get(k)) if k in have else "absent"
        out.append(Difference(model, version, f"tag {k}", _short(v), shown))
    for k in gone:
        out.append(Difference(model, version, f"tag {k}", "absent", _short(have[k])))
    # One event for all the changes of one kind, carried by the first line of each.
    if changed:
        first = out[-len(changed) - len(gone)]
        first.drafts.append(E.Draft(E.TAG_SET, {"tags": changed, **note}, model, version))
    if gone:
        out[-len(gone)].drafts.append(E.Draft(E.TAG_DELETE, {"keys": gone, **note}, model, version))


def _short(v: str | None, limit: int = 40) -> str:
    if v is None or v == "":
        return "absent"
    text = v.replace("\n", " ")
    return repr(text if len(text) <= limit else f"{text[: limit - 1]}…")


def scope(led: MModel | None, ml_aliases: dict[str, int], touched: Iterable[int]) -> set[int]:
    """The versions a comparison must read, besides MLflow's versions newer than the
    ledger's and those MLflow has in a serving stage: the ones touched, and those the
    ledger has serving, in a serving stage, or named by an alias (on either side). When
    the ledger was in step with MLflow before the change, the touched versions and
    MLflow's serving ones are enough; the ledger's add drift on them to what is seen."""
    out = {n for n in touched if n > 0} | set(ml_aliases.values())
    if led is not None:
        out |= set(led.live.values()) | set(led.aliases.values())
        out |= {n for n, v in led.versions.items() if v.stage in STAGE_ENV}
    return out


def restrict(m: MModel | None, versions: set[int]) -> MModel | None:
    """``m`` with only ``versions`` of its versions."""
    if m is None:
        return None
    out = copy.copy(m)
    out.versions = {n: v for n, v in m.versions.items() if n in versions}
    return out


def drafts_of(diffs: Iterable[Difference]) -> list[E.Draft]:
    """Every draft of ``diffs``, in order."""
    return [d for x in diffs for d in x.drafts]


def unmappable(diffs: Iterable[Difference]) -> Difference | None:
    """The first difference no events can mend, if any."""
    return next((d for d in diffs if d.unmappable is not None), None)
