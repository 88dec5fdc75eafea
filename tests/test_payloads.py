"""What a stored payload may hold (ledger/payloads.py, FORMAT.md §4): every payload the
write path builds passes; each way of breaking §4 is named. The on-disk attacks, through
``ledger verify``, are in tests/payload_attacks.py (run by tests/test_tamper.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import actions
from ledger import events as E
from ledger.errors import InputError
from ledger.payloads import check_event

DIGEST = "sha256:" + "ab" * 32


def event(action: str, payload: dict[str, Any], model: str | None = "m", version: int | None = 1):
    if action not in E.MODEL_ACTIONS and model == "m":
        model, version = None, None
    return E.Event(5, 0, "o", action, "a", "k", payload, "0" * 64, model, version)


names = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
texts = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@given(
    metrics=st.dictionaries(names, st.integers(-(2**53) + 1, 2**53 - 1) | st.floats(-1e9, 1e9)),
    tags=st.dictionaries(names, texts),
    params=st.dictionaries(names, texts),
    datasets=st.lists(names, max_size=3, unique=True),
    description=st.none() | texts,
)
def test_every_register_payload_the_writer_builds_passes(
    metrics, tags, params, datasets, description
):
    payload = E.register_payload(
        artifact={"digest": DIGEST, "uri": "s3://m/1"},
        datasets=[{"name": n, "uri": f"s3://d/{n}", "digest": DIGEST} for n in datasets],
        code="https://git.example/r@3f2a9c1",
        parents=[{"model": "base", "version": 1, "relation": "finetune"}],
        metrics=metrics,
        params=params,
        tags=tags,
        description=description,
    )
    check_event(event(E.REGISTER, payload))


def test_every_environment_the_reader_records_passes():
    from ledger import requirements as R

    reqs = (
        b"numpy>=1.26,<2\nPandas[Perf,sql]==2.2.1; python_version >= '3.10'\nx @ https://e/x.whl\n"
    )
    conda = b"dependencies:\n  - conda-forge::numpy=1.26.4=py311h_0\n  - scipy 1.13.0\n  - pip:\n    - torch==2.3\n"
    env = R.environment([("r", "r.txt", reqs)], ("c", "env.yaml", conda), "3.11")
    check_event(event(E.REGISTER, E.register_payload(environment=env)))


def test_the_other_actions_drafts_pass():
    d = actions.model_action(E.DEPLOY, "m", 1, env="production", comment="go")
    check_event(event(d.action, d.payload))
    d = actions.key_revoke("0123456789abcdef", "left")
    check_event(event(d.action, d.payload))
    d = actions.break_glass(E.DEPLOY, "m", 1, "production", "approvals", "outage")
    check_event(event(d.action, d.payload))
    check_event(event(E.APPROVE, {"env": "staging", "break_glass": [1, 3]}))


# (name, action, payload, message) — each breaks one rule of §4.
BROKEN = [
    ("unknown member", E.DEPLOY, {"env": "production", "why": "x"},
     "deploy payload: member 'why' is not one of this action's members (comment, env)"),
    ("env missing", E.DEPLOY, {}, "deploy payload: member 'env' is missing"),
    ("env not a name", E.DEPLOY, {"env": "Prod"},
     "deploy payload: 'env' 'Prod' is not a valid environment name"),
    ("comment not text", E.REJECT, {"comment": 5}, "reject payload: 'comment' must be a string, not 5"),
    ("comment too long", E.REJECT, {"comment": "é" * 4097},
     "reject payload: 'comment' is 4097 characters; the limit is 4096"),
    ("citations unordered", E.APPROVE, {"env": "staging", "break_glass": [3, 1]},
     "approve payload: member 'break_glass' must be a non-empty ascending list of distinct"
     " seqs below the event's own"),
    ("citation of a later seq", E.APPROVE, {"env": "staging", "break_glass": [5]},
     "approve payload: member 'break_glass' must be a non-empty ascending list of distinct"
     " seqs below the event's own"),
    ("tag value not text", E.REGISTER, {"tags": {"team": 1}},
     "register payload: 'tags.team' must be a string, not 1"),
    ("metric a boolean", E.REGISTER, {"metrics": {"auc": True}},
     "register payload: 'metrics.auc' must be a number, not True"),
    ("metric name", E.REGISTER, {"metrics": {"a b": 1}},
     "register payload: 'metrics' name 'a b' is not a valid metric name"),
    ("parent relation", E.REGISTER,
     {"parents": [{"model": "b", "version": 1, "relation": "copy"}]},
     "register payload: 'parents[0].relation' must be one of finetune, adapter, distill,"
     " quantize, merge, retrain, prune, derived"),
    ("parent twice", E.REGISTER,
     {"parents": [{"model": "b", "version": 1, "relation": "merge"}] * 2},
     "register payload: 'parents[1]' names b:1 a second time"),
    ("dataset name twice", E.REGISTER,
     {"datasets": [{"name": "t", "uri": "s3://a"}, {"name": "t", "uri": "s3://b"}]},
     "register payload: 'datasets[1].name' 't' is given twice"),
    ("artifact without digest", E.REGISTER, {"artifact": {"uri": "s3://m"}},
     "register payload: 'artifact.digest' is missing"),
    ("artifact member", E.REGISTER, {"artifact": {"digest": DIGEST, "owner": "x"}},
     "register payload: 'artifact.owner' is not a member (digest, kind, manifest, name, size,"
     " uri)"),
    ("code commit", E.REGISTER, {"code": {"repo": "r", "commit": "XYZ"}},
     "register payload: 'code.commit' 'XYZ' is not a valid commit (7 to 64 hex digits)"),
    ("uri too long", E.REGISTER, {"datasets": [{"name": "t", "uri": "u" * 4097}]},
     "register payload: 'datasets[0].uri' is 4097 characters; the limit is 4096"),
    ("environment without files", E.REGISTER, {"environment": {"packages": []}},
     "register payload: 'environment.files' is missing"),
    ("environment python", E.REGISTER,
     {"environment": {"files": [], "packages": [], "python": "three"}},
     "register payload: 'environment.python' 'three' is not a valid Python version (3.11)"),
    ("package source", E.REGISTER,
     {"environment": {"files": [], "packages": [{"name": "numpy", "source": "npm", "spec": ""}]}},
     "register payload: 'environment.packages[0].source' 'npm' is not pip or conda"),
    ("package spec with a space", E.REGISTER,
     {"environment": {"files": [], "packages": [{"name": "numpy", "source": "pip", "spec": "< 2"}]}},
     "register payload: 'environment.packages[0].spec' '< 2' is not a valid version specifier"),
    ("conda member on a pip package", E.REGISTER,
     {"environment": {"files": [], "packages": [
         {"channel": "conda-forge", "name": "numpy", "source": "pip", "spec": ""}]}},
     "register payload: 'environment.packages[0].channel' is not a member of a pip package"),
    ("extras unsorted", E.REGISTER,
     {"environment": {"files": [], "packages": [
         {"extras": ["b", "a"], "name": "x", "source": "pip", "spec": ""}]}},
     "register payload: 'environment.packages[0].extras' must be a sorted list of distinct"
     " names"),
    ("environment file digest", E.REGISTER,
     {"environment": {"packages": [], "files": [
         {"digest": "sha256:beef", "kind": "requirements", "name": "r.txt"}]}},
     "register payload: 'environment.files[0].digest' 'sha256:beef' is not sha256: and 64"
     " lowercase hex digits"),
    ("environment file kind", E.REGISTER,
     {"environment": {"packages": [], "files": [
         {"digest": DIGEST, "kind": "poetry", "name": "poetry.lock"}]}},
     "register payload: 'environment.files[0].kind' 'poetry' is not requirements or conda"),
    ("roles unsorted", E.KEY_ADD,
     {"actor": "a", "key_id": "0123456789abcdef", "public_key": "", "roles": ["registrar", "admin"]},
     "key_add payload: 'roles' must be a sorted list of distinct roles from admin, registrar,"
     " approver, deployer, checkpointer"),
    ("genesis format", E.GENESIS,
     {"actor": "a", "key_id": "0123456789abcdef", "public_key": "", "roles": ["admin"],
      "format": "ledger/2"},
     "genesis payload: 'format' must be 'ledger/1', not 'ledger/2'"),
    ("grant citing grants", E.BREAK_GLASS,
     {"action": "deploy", "rule": "approvals", "justification": "x", "break_glass": [1]},
     "break_glass payload: member 'break_glass' is not one of this action's members (action,"
     " env, justification, model, rule, version)"),
]  # fmt: skip


@pytest.mark.parametrize("case", BROKEN, ids=[c[0] for c in BROKEN])
def test_each_broken_rule_is_named(case):
    _, action, payload, message = case
    with pytest.raises(InputError) as info:
        check_event(event(action, payload))
    assert (info.value.kind, str(info.value)) == ("bad_payload", message)


def test_model_and_version_belong_to_model_actions_only():
    with pytest.raises(InputError, match=r"^register payload: the event's version 0 is not a"):
        check_event(event(E.REGISTER, {}, "m", 0))
    with pytest.raises(InputError, match=r"^key_revoke event names a model or version"):
        check_event(E.Event(5, 0, "o", E.KEY_REVOKE, "a", "k", {"key_id": "0" * 16}, "", "m", 1))


def test_unknown_actions_are_a_newer_formats_to_define():
    check_event(event("retire", {"anything": [1, {"x": None}]}, None, None))
