"""Evidence that proves nothing was left out: the story map (issue 14).

A real ledger with a policy, a break-glass override, a deployment ended by another
version's deploy, an undeploy, a rejection and a deprecation; a checkpoint; a bundle.
Each attack edits the bundle file on disk (and re-canonicalizes it, as a forger would)
and expects the precise verdict of ``verify-evidence``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger import checkpoint as C
from ledger import checkpoints as CS
from ledger import events as E
from ledger import note, storymap
from ledger import storyread as S
from ledger.canonical import canonicalize
from tests.stories import BASE, JUSTIFICATION, XGB, scripted_story


@pytest.fixture
def story(team, tmp_path, invoke):
    return scripted_story(team, tmp_path, invoke)


# The events of xgb:1, the policy in force, the grant, the deploy that ended its
# production deployment, and the key events its signers need: genesis (admin, who
# signed the policy and the grant), alice's, bob's and carol's key_add (not dave's or cp's).
STORY = [0, 1, 2, 3, 7, 8, 9, 10, 11, 12, 15, 16, 17, 18]


def _doc(path: Path) -> dict[str, Any]:
    return json.loads(path.read_bytes())


def _seq(item: dict[str, Any]) -> int:
    return json.loads(base64.b64decode(item["envelope"]["payload"]))["seq"]


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.write_bytes(canonicalize(doc) + b"\n")  # (a forger re-canonicalizes)


def _verify(invoke, t, path: Path | None = None) -> tuple[int, str]:
    r = invoke(["verify-evidence", str(path or t.bundle), "--trusted-key", str(t.cp_pub)])
    return r.exit_code, r.stdout


def test_the_bundle_holds_the_whole_story_and_names_the_override(story, invoke):
    t = story
    doc = _doc(t.bundle)
    assert [_seq(e) for e in doc["events"]] == STORY
    assert [s for s, _ in doc["story"]["events"]] == STORY
    assert set(doc) == {"checkpoint", "events", "format", "model", "origin", "signer_keys",
                        "story", "version"}  # fmt: skip
    code, out = _verify(invoke, t)
    assert code == 0, out
    assert out.startswith(f"OK: {XGB}:1 registered by alice at ")
    assert (
        f", deployed to production by carol at {_ts(t, 12)} under break-glass grant seq 11:"
        f' "{JUSTIFICATION}", replaced in production by {XGB}:2 (deployed by carol at'
        f" {_ts(t, 15)}), undeployed from staging by carol at {_ts(t, 16)}, rejected by bob at"
        f" {_ts(t, 17)}, deprecated by alice at {_ts(t, 18)}; the complete story (10 events,"
        " policy seq 8 in force), all signatures valid, included in checkpoint of size 20 of"
    ) in out


def _ts(t, seq: int) -> str:
    return E.format_ts(t.ledger.events().column("ts").cast("int64")[seq].as_py())


# Each attack removes one kind of event from the bundle (and only from its events).
REMOVALS = [
    ("undeploy_hidden", 16),
    ("rejection_hidden", 17),
    ("deprecation_hidden", 18),
    ("replacing_deploy_hidden", 15),
    ("break_glass_grant_hidden", 11),
    ("policy_in_force_hidden", 8),
    ("approval_hidden", 9),
    ("signer_key_event_hidden", 3),
]


@pytest.mark.parametrize(("attack", "seq"), REMOVALS, ids=[a[0] for a in REMOVALS])
def test_an_event_removed_from_the_bundle_is_incomplete(story, invoke, attack, seq):
    t = story
    doc = _doc(t.bundle)
    doc["events"] = [e for e in doc["events"] if _seq(e) != seq]
    _write(t.bundle, doc)
    assert _verify(invoke, t) == (
        1,
        f"FAIL: incomplete: seq {seq} of the story of {XGB}:1 missing from the bundle (events"
        " removed)\n",
    )


@pytest.mark.parametrize(("attack", "seq"), REMOVALS, ids=[a[0] for a in REMOVALS])
def test_an_event_removed_from_the_bundle_and_its_list_is_incomplete(story, invoke, attack, seq):
    t = story
    doc = _doc(t.bundle)
    doc["events"] = [e for e in doc["events"] if _seq(e) != seq]
    doc["story"]["events"] = [x for x in doc["story"]["events"] if x[0] != seq]
    _write(t.bundle, doc)
    assert _verify(invoke, t) == (
        1,
        f"FAIL: incomplete: the bundle's list of the story of {XGB}:1 is not the one the"
        " checkpoint's story map commits to (events removed from it or added)\n",
    )


def test_an_event_of_another_version_added_is_incomplete(story, invoke, tmp_path):
    t = story
    other = tmp_path / "base1.json"
    assert invoke(["evidence", f"{BASE}:1", "--out", str(other)], env=t.env()).exit_code == 0
    extra = next(e for e in _doc(other)["events"] if _seq(e) == 19)  # with its real proof
    doc = _doc(t.bundle)
    doc["events"] = sorted([*doc["events"], extra], key=_seq)
    _write(t.bundle, doc)
    assert _verify(invoke, t) == (
        1,
        f"FAIL: incomplete: seq 19 in the bundle but not in the story of {XGB}:1 (events added)\n",
    )


def test_a_story_list_with_a_swapped_hash_is_incomplete(story, invoke):
    t = story
    doc = _doc(t.bundle)
    doc["story"]["events"][3][1] = hashlib.sha256(b"another event").hexdigest()
    _write(t.bundle, doc)
    code, out = _verify(invoke, t)
    assert (code, out.split(" (")[0]) == (
        1,
        f"FAIL: incomplete: the bundle's list of the story of {XGB}:1 is not the one the"
        " checkpoint's story map commits to",
    )


def test_reordered_events_are_refused(story, invoke):
    t = story
    doc = _doc(t.bundle)
    doc["events"][7], doc["events"][8] = doc["events"][8], doc["events"][7]
    _write(t.bundle, doc)
    code, out = _verify(invoke, t)
    assert code == 1
    assert out.startswith("FAIL: evidence bundle is invalid: seq ") and "out of order" in out


def test_a_forged_story_proof_is_incomplete(story, invoke):
    t = story
    doc = _doc(t.bundle)
    doc["story"]["proof"] = doc["story"]["proof"][1:]
    _write(t.bundle, doc)
    code, out = _verify(invoke, t)
    assert code == 1 and out.startswith("FAIL: incomplete: the bundle's list of the story")


def _forged_checkpoint(t, story_root: bytes) -> str:
    """A checkpoint of the whole ledger signed by the real checkpointer key, committing
    to ``story_root`` (an insider holding that key, forging the map)."""
    led = t.ledger
    real = CS.latest(led)
    return C.sign(led.origin, real.size, real.root, t.keys["cp"], story_root)


def test_verify_fails_a_checkpoint_whose_story_map_is_forged(story, invoke):
    t = story
    real = CS.latest(t.ledger)
    text = _forged_checkpoint(t, hashlib.sha256(b"forged").digest())
    for p in (t.path / "checkpoints").iterdir():
        p.unlink()  # (replaced by the forged one)
    (t.path / "checkpoints" / C.file_name(20, real.root, text)).write_text(text)
    r = invoke(["verify", "--format", "json"], env=t.env())
    assert r.exit_code == 1, r.stdout
    problem = json.loads(r.stdout)["problems"][0]
    assert problem["kind"] == "story_map"
    assert problem["seq"] == 19
    assert problem["segment"].startswith("checkpoints/")
    assert problem["message"] == (
        "the story map this checkpoint commits to is not the one its 20 events give (forged:"
        " evidence bundles against it could leave events out)"
    )


def test_evidence_needs_a_checkpoint_with_a_story_map(story, invoke, tmp_path):
    t = story
    real = CS.latest(t.ledger)
    old = tmp_path / "old.cp"
    old.write_text(C.sign(t.ledger.origin, real.size, real.root, t.keys["cp"]))
    before = sorted(p.name for p in t.path.rglob("*"))
    r = invoke(["evidence", f"{XGB}:1", "--out", str(tmp_path / "b.json"), "--checkpoint",
                str(old)], env=t.env())  # fmt: skip
    assert (r.exit_code, r.stderr) == (
        2,
        "Error: the checkpoint of size 20 signed by cp (key"
        f" {t.keys['cp'].key_id}) commits to no story map (issued before story maps), so a"
        " bundle against it could not prove it is complete; issue a new checkpoint (ledger"
        " checkpoint) and build the bundle against that\n",
    )
    assert sorted(p.name for p in t.path.rglob("*")) == before
    assert not (tmp_path / "b.json").exists()


def test_a_standard_note_verifier_still_reads_the_checkpoint(story):
    t = story
    cp = CS.latest(t.ledger)
    name, _, pub = note.parse_vkey(C.vkey(t.ledger.origin, t.keys["cp"].public_key))
    body, _ = note.open_note(cp.note, [(name, pub)])
    lines = body.splitlines()
    assert lines[:3] == [t.ledger.origin, "20", cp.root_b64]
    assert lines[3].startswith("ledger-story/2 ") and len(lines) == 4


# --- the story map against its definition -------------------------------------------------


def _reference(rows: list[tuple[Any, ...]]) -> dict[object, list[int]]:
    """Each story by docs/FORMAT.md's definition, event by event (quadratic)."""
    parsed = [json.loads(r[5]) for r in rows]
    out: dict[object, set[int]] = {}
    for i, (seq, action, model, version, _h, _p, _k) in enumerate(rows):
        if model is None or version is None:
            continue
        s = out.setdefault((model, version), set())
        s.add(seq)
        policies = [r[0] for r in rows[:i] if r[1] == E.POLICY_SET]
        if policies:
            s.add(policies[-1])
        used = {
            g
            for g in parsed[i].get("break_glass", [])
            if any(r[0] == g and r[1] == E.BREAK_GLASS and parsed[j].get("model") == model
                   for j, r in enumerate(rows[:i]))
        }  # fmt: skip
        s |= used
        if action in (E.DEPLOY, E.UNDEPLOY) and isinstance(parsed[i].get("env"), str):
            # the deployment history of the model there: this event, the policy in force
            # and the grants it cites, as for the version
            h = out.setdefault((model, parsed[i]["env"]), set())
            h |= {seq, *policies[-1:]}
            h |= used
        if action == E.DEPLOY:
            env = parsed[i].get("env")
            for j in range(i + 1, len(rows)):
                r = rows[j]
                if r[2] != model or parsed[j].get("env") != env:
                    continue
                if r[1] == E.UNDEPLOY and r[3] == version:
                    break
                if r[1] == E.DEPLOY and r[3] != version:
                    s.add(r[0])
                    break
    for i, r in enumerate(rows):
        p = parsed[i]
        if (
            r[1] == E.BREAK_GLASS
            and isinstance(p.get("model"), str)
            and type(p.get("version")) is int
        ):
            out.setdefault((p["model"], p["version"]), set()).add(r[0])

    def needs(key_id: str, before: int) -> set[int]:
        found = set()
        for j, r in enumerate(rows[:before]):
            if r[1] in E.KEY_ACTIONS and parsed[j].get("key_id") == key_id:
                found |= {r[0]} | needs(r[6], r[0])
        return found

    for s in out.values():
        for seq in list(s):
            s |= needs(rows[seq][6], seq)
    return {k: sorted(v) for k, v in out.items()}


step = st.tuples(
    st.sampled_from(["register", "approve", "deploy", "deploy", "undeploy", "reject",
                     "policy_set", "break_glass", "key_add", "key_revoke"]),
    st.integers(0, 2),  # model
    st.integers(1, 3),  # version
    st.sampled_from(["staging", "production"]),
    st.integers(0, 30),  # which grant is cited, if any
    st.sampled_from(["k0", "k1", "k2", "k3"]),  # the signer; the key a key event is about
)  # fmt: skip


def story_rows(steps: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Events (as :data:`ledger.storyread.STORY_COLUMNS`) from Hypothesis ``step``s."""
    rows = []
    for seq, (action, m, v, env, g, signer) in enumerate(steps):
        model, payload = f"m{m}", {}
        if action in (E.APPROVE, E.DEPLOY, E.UNDEPLOY):
            payload["env"] = env
        if action in (E.DEPLOY, E.UNDEPLOY, E.REGISTER) and g % 3 == 0:
            # (a recent event, often a grant; sometimes a later one, which must not count)
            payload["break_glass"] = [seq - 2 + g % 4]
        if action == E.BREAK_GLASS:
            payload = {"action": "deploy", "model": model, "rule": "approvals"}
            if g % 2:
                payload["version"] = v
        if action in E.KEY_ACTIONS:
            payload = {"key_id": f"k{g % 4}"}
        keyless = action in (E.POLICY_SET, E.BREAK_GLASS, *E.KEY_ACTIONS)
        text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        h = hashlib.sha256(f"{seq}{action}".encode()).digest()
        rows.append(
            (seq, action, None if keyless else model, None if keyless else v, h, text, signer)
        )
    return rows


def story_table(rows: list[tuple[Any, ...]]) -> Any:
    import pyarrow as pa

    return pa.table(
        {name: [r[i] for r in rows] for i, name in enumerate(S.STORY_COLUMNS)},
        schema=pa.schema([("seq", pa.int64()), ("action", pa.string()), ("model", pa.string()),
                          ("version", pa.int64()), ("hash", pa.binary(32)),
                          ("payload", pa.string()), ("key_id", pa.string())]),
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(step, max_size=40))
# (a grant used by a deploy belongs to the model's deployment history too: rare at random)
@example([("break_glass", 0, 1, "staging", 0, "k0"), ("deploy", 0, 1, "production", 9, "k0")])
def test_the_column_wise_stories_equal_the_definition(steps):
    rows = story_rows(steps)
    table = story_table(rows)
    fast = storymap.Stories()
    if rows:
        cut = len(rows) // 2  # (in two parts, as a checkpoint after another would)
        fast.add_columns(*S.story_columns(table.slice(0, cut)))
        fast.add_columns(*S.story_columns(table.slice(cut)))
    ref = _reference(rows)
    got = {k: [s for s, _ in fast._full(v)] for k, v in fast.stories.items() if v}
    assert got == ref
    assert fast.root() == storymap.stories(rows).root()


# --- the sparse Merkle tree ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.sets(st.text(min_size=1, max_size=12), min_size=1, max_size=60), st.randoms())
def test_every_key_proves_and_nothing_else_does(names, rnd: random.Random):
    leaves = {storymap.key_hash(n): hashlib.sha256(n.encode()).digest() for n in names}
    root = storymap.root(leaves)
    for n in names:
        value = leaves[storymap.key_hash(n)]
        path = storymap.prove(leaves, n)
        storymap.verify(root, n, value, path)
        with pytest.raises(storymap.StoryMapError):
            storymap.verify(root, n, hashlib.sha256(b"other").digest(), path)
        if path:
            bad = list(path)
            k = rnd.randrange(len(bad))
            bad[k] = bytes(32) if bad[k] != bytes(32) else b"\x01" * 32
            with pytest.raises(storymap.StoryMapError):
                storymap.verify(root, n, value, bad)
        with pytest.raises(storymap.StoryMapError):
            storymap.verify(root, n + "\x00", value, path)


def test_the_map_root_by_hand():
    a, b = storymap.key_hash("a"), storymap.key_hash("b")
    va, vb = b"\x11" * 32, b"\x22" * 32
    assert storymap.root({}) == bytes(32)
    assert storymap.root({a: va}) == hashlib.sha256(b"\x00" + a + va).digest()
    # "a" and "b" differ in the first bit of their SHA-256: they split at the root.
    assert (a[0] >> 7) != (b[0] >> 7)
    left, right = (a, va), (b, vb)
    if a[0] >> 7:
        left, right = right, left
    leaf = [hashlib.sha256(b"\x00" + k + v).digest() for k, v in (left, right)]
    assert storymap.root({a: va, b: vb}) == hashlib.sha256(b"\x01" + leaf[0] + leaf[1]).digest()
    assert (
        storymap.value_hash([(5, b"\x33" * 32)])
        == hashlib.sha256(b"ledger-story/1\n" + (5).to_bytes(8, "big") + b"\x33" * 32).digest()
    )


def test_the_checkpoint_signers_key_events_ride_beside_the_story(story, invoke):
    t = story
    doc = _doc(t.bundle)
    assert [_seq(e) for e in doc["signer_keys"]] == [5]  # cp's key_add
    r = invoke(["verify-evidence", str(t.bundle)])  # no --trusted-key: the bundle's registry
    assert r.exit_code == 0 and "a checkpointer key registered by the bundle's own" in r.stdout
    doc["signer_keys"] = []
    _write(t.bundle, doc)
    r = invoke(["verify-evidence", str(t.bundle)])
    assert (r.exit_code, r.stdout) == (
        1,
        "FAIL: the bundle's checkpoint (size 20) is not signed by a checkpointer key the bundle"
        " registers\n",
    )
    assert _verify(invoke, t)[0] == 0  # a trusted key needs none of them
    doc["signer_keys"] = [e for e in _doc_of(invoke, t) if _seq(e) == 19]
    _write(t.bundle, doc)
    code, out = _verify(invoke, t)
    assert (code, out) == (
        1,
        "FAIL: evidence bundle is invalid: seq 19: signer_keys may hold key events only\n",
    )


def _doc_of(invoke, t) -> list[dict[str, Any]]:
    """The events of base:1's bundle (seq 19 among them, with its inclusion proof)."""
    other = t.bundle.with_name("base1.json")
    assert invoke(["evidence", f"{BASE}:1", "--out", str(other)], env=t.env()).exit_code == 0
    return _doc(other)["events"]
