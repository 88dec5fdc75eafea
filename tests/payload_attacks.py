"""Attacks on what an event may hold (FORMAT.md §3.1 limits, §4 payload members, §5
columns), for the tamper table in tests/test_tamper.py.

Each forges a correctly signed, correctly chained event that the write path would have
refused, with a key that may sign it, and appends it as a new segment: only the check
the attack is named after can catch it. The bytes are built by hand (the write path's
encoder refuses them), the typed columns agree with them, and for the payload attacks
the payload column is the same text, so the fast path sees exactly what the reference
sees.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ledger import events as E
from ledger.keys import pae
from ledger.store import SCHEMA, segment_name

XGB = "fraud.detector.xgb"


def _text(value: Any) -> str:
    # RFC 8785 for what these attacks hold (ASCII strings, integers, objects).
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def forge_raw(
    t: Any,
    signer: str,
    action: str,
    payload: Any,
    model: str | None = None,
    version: int | None = None,
    *,
    extra: dict[str, Any] | None = None,
    payload_text: str | None = None,
    ts_step: int = 1,
    raw_members: dict[str, bytes] | None = None,
) -> int:
    """Append an event signed by ``t.keys[signer]`` built from ``payload`` as given, with
    ``extra`` top-level members; returns its seq."""
    led = t.ledger
    n, last_hash, last_ts = led.store.tail()
    ts = last_ts + ts_step
    doc = {
        "action": action,
        "actor": signer,
        "key_id": t.keys[signer].key_id,
        "model": model,
        "origin": led.origin,
        "payload": payload,
        "prev_hash": last_hash.hex(),
        "seq": n,
        "ts": E.format_ts(ts),
        "version": version,
    } | (extra or {})
    text = payload_text if payload_text is not None else _text(payload)
    canon = _text(doc).replace(_text(payload), text, 1).encode()
    for name, raw in (raw_members or {}).items():  # a member's bytes as given
        start = canon.index(b'"%s":' % name.encode()) + len(name) + 3
        end = canon.index(b',"', start) if name != "version" else len(canon) - 1
        canon = canon[:start] + raw + canon[end:]
    cols = {
        "seq": [n],
        "ts": [ts],
        "action": [action],
        "model": [model],
        "version": [version],
        "actor": [signer],
        "key_id": [t.keys[signer].key_id],
        "payload": [text],
        "hash": [hashlib.sha256(canon).digest()],
        "sig": [t.keys[signer].sign(pae(canon))],
        "canonical": [canon],
    }
    pq.write_table(
        pa.Table.from_pydict(cols, schema=SCHEMA), led.path / "events" / segment_name(n, n)
    )
    return n


def _register(t: Any, payload: dict[str, Any], **kw: Any) -> int:
    return forge_raw(t, "alice", E.REGISTER, payload, "fraud.detector.forged", 1, **kw)


def event_over_64_kib(t):
    _register(t, {"metadata": {"blob": "x" * 70_000}})


def payload_nested_too_deep(t):
    deep: dict[str, Any] = {}
    for _ in range(40):
        deep = {"a": deep}
    _register(t, {"metadata": deep})


def integer_beyond_2_53(t):
    _register(t, {"metrics": {"n": 2**53 + 1}})


def non_canonical_payload(t):
    # The space is inside the payload, in the bytes and in the payload column alike.
    _register(t, {"tags": {"team": "risk"}}, payload_text='{"tags": {"team":"risk"}}')


def extra_event_member(t):
    _register(t, {}, extra={"note": "added"})


def unknown_payload_member(t):
    forge_raw(t, "bob", E.APPROVE, {"env": "canary", "waiver": "yes"}, XGB, 1)


def comment_over_the_text_limit(t):
    forge_raw(t, "bob", E.APPROVE, {"comment": "x" * 4097, "env": "canary"}, XGB, 1)


def dataset_digest_malformed(t):
    _register(t, {"datasets": [{"digest": "sha256:beef", "name": "train", "uri": "s3://d"}]})


def environment_member_malformed(t):
    # A package name pip would never have recorded (not PEP 503-normalized).
    _register(t, {"environment": {"files": [], "packages": [
        {"name": "NumPy", "source": "pip", "spec": "<2"}]}})  # fmt: skip


def key_event_naming_a_model(t):
    forge_raw(t, "admin", E.KEY_REVOKE, {"key_id": t.keys["bob"].key_id}, XGB, 1)


def newer_action_backdated(t):
    # An action this version does not know still may not go back in time (§7.3).
    forge_raw(t, "alice", "retire", {}, XGB, 1, ts_step=-1_000_000)


# --- the lifecycle rules of FORMAT.md §7.2, each with its own kind ---------------------


def parent_never_registered(t):
    _register(t, {"parents": [{"model": "m.ghost", "relation": "finetune", "version": 1}]})


def own_parent(t):
    forge_raw(t, "alice", E.REGISTER,
              {"parents": [{"model": XGB, "relation": "retrain", "version": 2}]}, XGB, 2)  # fmt: skip


def version_skipped(t):
    forge_raw(t, "alice", E.REGISTER, {}, XGB, 3)


def model_never_registered(t):
    forge_raw(t, "bob", E.APPROVE, {"env": "canary"}, "m.ghost", 1)


def version_never_registered(t):
    forge_raw(t, "bob", E.APPROVE, {"env": "canary"}, XGB, 7)


def revoke_of_an_unregistered_key(t):
    forge_raw(t, "admin", E.KEY_REVOKE, {"key_id": "00000000000000ff"})


def key_registered_twice(t):
    import base64

    k = t.keys["bob"]
    payload = {"actor": "bob2", "key_id": k.key_id, "public_key":
               base64.b64encode(k.public_key).decode(), "roles": ["approver"]}  # fmt: skip
    forge_raw(t, "admin", E.KEY_ADD, payload)


def key_id_not_of_its_key(t):
    import base64

    payload = {"actor": "eve", "key_id": "0123456789abcdef", "public_key":
               base64.b64encode(b"e" * 32).decode(), "roles": ["approver"]}  # fmt: skip
    forge_raw(t, "admin", E.KEY_ADD, payload)


def ts_in_another_form(t):
    _register(t, {}, raw_members={"ts": b'"2026-03-01T09:00:00Z"'})


def member_of_another_type(t):
    _register(t, {}, raw_members={"version": b'"1"'})


def lone_surrogate(t):
    _register(t, {"tags": {"t": "x"}}, payload_text='{"tags":{"t":"\\ud800"}}')


def nan_metric(t):
    _register(t, {"metrics": {"auc": 1}}, payload_text='{"metrics":{"auc":NaN}}')


def policy_document_malformed(t):
    forge_raw(t, "admin", E.POLICY_SET, {"policy": {"approvals": {"required": {"production": -1}}}})


def policy_pattern_outside_the_subset(t):
    # A pattern the write path would refuse: a lazy quantifier is outside the subset.
    forge_raw(t, "admin", E.POLICY_SET, {"policy": {"format": 2, "naming": {"model": "^(a+)+?$"}}})


def grant_without_justification(t):
    forge_raw(t, "admin", E.BREAK_GLASS, {"action": "deploy", "env": "production",
              "justification": " ", "model": XGB, "rule": "approvals", "version": 1})  # fmt: skip


def citation_of_a_later_seq(t):
    forge_raw(t, "bob", E.APPROVE, {"break_glass": [12], "env": "canary"}, XGB, 1)


# --- aliases, tags and descriptions (issue 17) --------------------------------------------


def alias_of_an_unregistered_version(t):
    forge_raw(t, "carol", E.ALIAS_SET, {"alias": "champion"}, XGB, 5)


def alias_named_latest(t):
    forge_raw(t, "carol", E.ALIAS_SET, {"alias": "latest"}, XGB, 1)


def alias_set_by_a_registrar(t):
    forge_raw(t, "alice", E.ALIAS_SET, {"alias": "champion"}, XGB, 1)


def alias_deleted_that_never_was(t):
    forge_raw(t, "carol", E.ALIAS_DELETE, {"alias": "champion"}, XGB, 1)


def alias_deleted_from_another_version(t):
    forge_raw(t, "alice", E.REGISTER, {}, XGB, 2)
    forge_raw(t, "carol", E.ALIAS_SET, {"alias": "champion"}, XGB, 1)
    forge_raw(t, "carol", E.ALIAS_DELETE, {"alias": "champion"}, XGB, 2)


def tag_deleted_that_is_not_set(t):
    forge_raw(t, "alice", E.TAG_DELETE, {"keys": ["owner"]}, XGB, 1)


def tag_of_an_unregistered_model(t):
    forge_raw(t, "alice", E.TAG_SET, {"tags": {"owner": "risk"}}, "m.ghost", None)


def tag_keys_unsorted(t):
    forge_raw(t, "alice", E.TAG_DELETE, {"keys": ["team", "owner"]}, XGB, 1)


def description_not_text(t):
    forge_raw(t, "alice", E.DESCRIBE, {"description": 7}, XGB, None)


def model_created_twice(t):
    forge_raw(t, "alice", E.MODEL_CREATE, {}, XGB, None)


def model_created_with_a_version(t):
    forge_raw(t, "alice", E.MODEL_CREATE, {}, "m.new", 1)


def model_created_by_a_deployer(t):
    forge_raw(t, "carol", E.MODEL_CREATE, {}, "m.new", None)


def _rewrite(t: Any, fn: Any) -> None:
    path = t.ledger.path / "events" / "000000000000-000000000010.parquet"
    pq.write_table(fn(pq.read_table(path)), path)


def columns_reordered(t):
    _rewrite(t, lambda tb: tb.select(["ts", "seq", *tb.column_names[2:]]))


def extra_column(t):
    _rewrite(t, lambda tb: tb.append_column("note", pa.array(["x"] * tb.num_rows)))


def ts_in_another_unit(t):
    def fn(tb: pa.Table) -> pa.Table:
        i = tb.column_names.index("ts")
        return tb.set_column(
            i, "ts", tb.column("ts").cast(pa.timestamp("ms", tz="UTC"), safe=False)
        )

    _rewrite(t, fn)


CASES = [
    (event_over_64_kib, 11, segment_name(11, 11), "malformed",
     "event is 70295 bytes; the limit is 65536"),
    (payload_nested_too_deep, 11, segment_name(11, 11), "malformed",
     "event bytes are not a valid event: value at $.payload.metadata.a.a.a.a.a.a.a.a.a.a.a.a.a.a"
     ".a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a is nested deeper than 32 levels"),
    (integer_beyond_2_53, 11, segment_name(11, 11), "malformed",
     "event bytes are not a valid event: integer at $.payload.metrics.n is outside the exact"
     " JSON range ±(2**53-1)"),
    (non_canonical_payload, 11, segment_name(11, 11), "malformed",
     "event bytes are not in RFC 8785 canonical form (re-encoding them gives other bytes)"),
    (extra_event_member, 11, segment_name(11, 11), "malformed",
     "event has the member 'note'; an event has exactly the ten members of FORMAT.md §3.1"),
    (unknown_payload_member, 11, segment_name(11, 11), "bad_payload",
     "approve payload: member 'waiver' is not one of this action's members (comment, env)"),
    (comment_over_the_text_limit, 11, segment_name(11, 11), "bad_payload",
     "approve payload: 'comment' is 4097 characters; the limit is 4096"),
    (dataset_digest_malformed, 11, segment_name(11, 11), "bad_payload",
     "register payload: 'datasets[0].digest' 'sha256:beef' is not sha256: and 64 lowercase"
     " hex digits"),
    (environment_member_malformed, 11, segment_name(11, 11), "bad_payload",
     "register payload: 'environment.packages[0].name' 'NumPy' is not a valid normalized"
     " package name (PEP 503)"),
    (key_event_naming_a_model, 11, segment_name(11, 11), "bad_payload",
     "key_revoke event names a model or version; both must be null"),
    (newer_action_backdated, 11, segment_name(11, 11), "timestamp_backwards",
     "timestamp {ts_minus} is earlier than the previous event's {ts}"),
    (ts_in_another_form, 11, segment_name(11, 11), "malformed",
     "event bytes are not a valid event: timestamp '2026-03-01T09:00:00Z' is not"
     " YYYY-MM-DDTHH:MM:SS.ffffffZ"),
    (member_of_another_type, 11, segment_name(11, 11), "malformed",
     "event bytes are not a valid event: field 'version' is neither an integer nor null"),
    (lone_surrogate, 11, segment_name(11, 11), "malformed",
     "event bytes are not a valid event: string at $.payload.tags.t contains a lone surrogate"),
    (nan_metric, 11, segment_name(11, 11), "malformed",
     "event bytes are not a valid event: number at $.payload.metrics.auc is nan; JSON has no"
     " NaN or infinity"),
    (policy_document_malformed, 11, segment_name(11, 11), "bad_payload",
     "policy_set payload: approvals.required.production must be a whole number from 0 to"
     " 1000, got -1"),
    (policy_pattern_outside_the_subset, 11, segment_name(11, 11), "bad_payload",
     "policy_set payload: naming.model: pattern '^(a+)+?$': '?' at position 6 repeats a"
     " repetition (lazy and possessive quantifiers are not part of the subset)"),
    (grant_without_justification, 11, segment_name(11, 11), "bad_payload",
     "break_glass payload: break-glass needs a justification: say why the rule must be"
     " bypassed"),
    (citation_of_a_later_seq, 11, segment_name(11, 11), "bad_payload",
     "approve payload: member 'break_glass' must be a non-empty ascending list of distinct"
     " seqs below the event's own"),
    (parent_never_registered, 11, segment_name(11, 11), "unknown_parent",
     "parent m.ghost:1 is not registered; parents must be registered first"),
    (own_parent, 11, segment_name(11, 11), "self_parent",
     f"{XGB}:2 names itself as a parent; a version cannot be its own parent"),
    (version_skipped, 11, segment_name(11, 11), "rule_violation",
     f"{XGB}:3 registered out of order (next version is 2)"),
    (model_never_registered, 11, segment_name(11, 11), "unknown_model",
     "model m.ghost is not registered"),
    (version_never_registered, 11, segment_name(11, 11), "unknown_version",
     f"{XGB}:7 is not registered (latest is {XGB}:1)"),
    (revoke_of_an_unregistered_key, 11, segment_name(11, 11), "unknown_key",
     "key 00000000000000ff is not registered"),
    (key_registered_twice, 11, segment_name(11, 11), "rule_violation",
     "key {bob} is already registered (actor bob)"),
    (key_id_not_of_its_key, 11, segment_name(11, 11), "bad_payload",
     "key_add payload: key_id 0123456789abcdef does not match its public key"),
    (alias_of_an_unregistered_version, 11, segment_name(11, 11), "unknown_version",
     f"{XGB}:5 is not registered (latest is {XGB}:1)"),
    (alias_named_latest, 11, segment_name(11, 11), "bad_payload",
     "alias_set payload: 'alias' 'latest' is not a valid alias name"),
    (alias_set_by_a_registrar, 11, segment_name(11, 11), "missing_role",
     "key {alice} (alice) lacks the 'deployer' role needed to alias_set"),
    (alias_deleted_that_never_was, 11, segment_name(11, 11), "unknown_alias",
     f"model {XGB} has no alias champion"),
    (alias_deleted_from_another_version, 13, segment_name(13, 13), "rule_violation",
     f"alias champion points at {XGB}:1, not {XGB}:2"),
    (tag_deleted_that_is_not_set, 11, segment_name(11, 11), "rule_violation",
     f"tag owner is not set on {XGB}:1"),
    (tag_of_an_unregistered_model, 11, segment_name(11, 11), "unknown_model",
     "model m.ghost is not registered"),
    (tag_keys_unsorted, 11, segment_name(11, 11), "bad_payload",
     "tag_delete payload: 'keys' must be a non-empty list of distinct tag names in"
     " increasing order"),
    (description_not_text, 11, segment_name(11, 11), "bad_payload",
     "describe payload: 'description' must be a string, not 7"),
    (model_created_twice, 11, segment_name(11, 11), "rule_violation",
     f"model {XGB} already exists (with 1 version)"),
    (model_created_with_a_version, 11, segment_name(11, 11), "bad_payload",
     "model_create payload: the event's version 1 must be null"),
    (model_created_by_a_deployer, 11, segment_name(11, 11), "missing_role",
     "key {carol} (carol) lacks the 'registrar' role needed to model_create"),
    (columns_reordered, 0, "000000000000-000000000010.parquet", "bad_schema",
     "segment's columns are in the order ts, seq, action, model, version, actor, key_id,"
     " payload, hash, sig, canonical; FORMAT.md §5's is seq, ts, action, model, version,"
     " actor, key_id, payload, hash, sig, canonical"),
    (extra_column, 0, "000000000000-000000000010.parquet", "bad_schema",
     "segment has a column 'note' that FORMAT.md §5 does not define"),
    (ts_in_another_unit, 0, "000000000000-000000000010.parquet", "bad_schema",
     "column 'ts' has Parquet type INT64 Timestamp(isAdjustedToUTC=true,"
     ' timeUnit="milliseconds"), expected INT64 Timestamp(isAdjustedToUTC=true,'
     ' timeUnit="microseconds")'),
]  # fmt: skip


def handmade_ledger(path: Any, key: Any, roles: list[str], origin: str = "hand.example/l") -> None:
    """A one-event ledger written by hand: a genesis registering ``key`` with ``roles``,
    as another tool might write it (the write path refuses a genesis without admin)."""
    import base64
    import os

    from ledger.keys import key_id

    pub = base64.b64encode(key.public_key).decode()
    payload = {"actor": "root", "format": E.FORMAT, "key_id": key_id(key.public_key),
               "public_key": pub, "roles": roles}  # fmt: skip
    doc = {"action": E.GENESIS, "actor": "root", "key_id": key.key_id, "model": None,
           "origin": origin, "payload": payload, "prev_hash": E.GENESIS_PREV_HASH, "seq": 0,
           "ts": E.format_ts(1_700_000_000_000_000), "version": None}  # fmt: skip
    canon = _text(doc).encode()
    os.makedirs(path / "events")
    cols = {"seq": [0], "ts": [1_700_000_000_000_000], "action": [E.GENESIS], "model": [None],
            "version": [None], "actor": ["root"], "key_id": [key.key_id],
            "payload": [_text(payload)], "hash": [hashlib.sha256(canon).digest()],
            "sig": [key.sign(pae(canon))], "canonical": [canon]}  # fmt: skip
    pq.write_table(pa.Table.from_pydict(cols, schema=SCHEMA), path / "events" / segment_name(0, 0))
    identity = {"format": E.FORMAT, "genesis_hash": hashlib.sha256(canon).hexdigest(),
                "origin": origin}  # fmt: skip
    (path / "ledger.json").write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
