"""The story map built incrementally from the previous checkpoint's cached map (issue 14).

The cache (``tree/story-N``) is held to the full build: Hypothesis for the bucketed tree
and for the claim the incremental build rests on (a version's story depends only on its
model's events and the key, policy and break-glass events); real ledgers for the
checkpoint and ``verify --since`` paths, which must not read every event; and attacks on
the cache file on disk, which ``verify`` names (``story_cache``) and the issuer survives.
"""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import SigningKey, storymap
from ledger import checkpoint as C
from ledger import checkpoints as CS
from ledger import events as E
from ledger import storyread as S
from ledger.keys import write_key_files

from .test_story_evidence import step, story_rows, story_table

XGB = "fraud.detector.xgb"

# --- the bucketed map against the plain root ------------------------------------------------


def _leaves(names: set[str]) -> dict[bytes, bytes]:
    return {storymap.key_hash(n): hashlib.sha256(n.encode()).digest() for n in names}


@settings(max_examples=80, deadline=None)
@given(
    st.sets(st.text(max_size=8), max_size=80),
    st.sets(st.text(max_size=8), max_size=20),
    st.randoms(),
)
def test_buckets_give_the_root_and_updates_match_a_rebuild(names, more, rnd: random.Random):
    leaves = _leaves(names)
    cache = storymap.MapCache.build(7, leaves)
    assert cache.root() == storymap.root(leaves)
    again = storymap.MapCache.from_bytes(cache.to_bytes())
    assert (again.size, again.root(), again.leaves()) == (7, cache.root(), leaves)
    changes = _leaves(more) | {
        k: hashlib.sha256(k).digest() for k in rnd.sample(sorted(leaves), min(3, len(leaves)))
    }
    new = again.updated(9, changes)
    assert (new.size, new.root()) == (9, storymap.root(leaves | changes))
    assert storymap.MapCache.from_bytes(new.to_bytes()).leaves() == leaves | changes


def test_an_altered_bucket_is_refused_when_opened():
    leaves = _leaves({f"k{i}" for i in range(50)})
    data = bytearray(storymap.MapCache.build(3, leaves).to_bytes())
    data[-1] ^= 1  # (the last leaf's value)
    cache = storymap.MapCache.from_bytes(bytes(data))
    last = max(leaves)
    with pytest.raises(storymap.StoryMapError, match=r"bucket \d+ does not match its hash"):
        cache.updated(4, {last: bytes(32)})


@pytest.mark.parametrize(
    "data",
    [b"", b"ledger-story-cache/1\n", b"something else entirely" * 10_000],
    ids=["empty", "header only", "not a cache"],
)
def test_bytes_that_are_not_a_cache_are_refused(data):
    with pytest.raises(storymap.StoryMapError):
        storymap.MapCache.from_bytes(data)


# --- the claim the incremental build rests on ---------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(st.lists(step, max_size=40), st.data())
def test_the_touched_models_stories_give_the_next_map(steps, data):
    rows = story_rows(steps)
    m = data.draw(st.integers(0, len(rows)), label="m")
    before, after = storymap.stories(rows[:m]), storymap.stories(rows)
    touched = {r[2] for r in rows[m:] if r[2] is not None}
    for r in rows[m:]:
        named = json.loads(r[5]).get("model") if r[1] == E.BREAK_GLASS else None
        if isinstance(named, str):
            touched.add(named)
    special = {*E.KEY_ACTIONS, E.POLICY_SET, E.BREAK_GLASS}
    subset = [r for r in rows if r[1] in special or r[2] in touched]
    part = storymap.Stories()
    if subset:
        part.add_columns(*S.story_columns(story_table(subset)))
    assert before.leaves() | storymap.changed(part, touched, m) == after.leaves()


class _Rows:
    """The story columns of ``rows`` as a Store reads them (maps_at reads nothing else)."""

    def __init__(self, rows):
        self.table = story_table(rows)

    def read(self, columns):
        assert list(columns) == S.STORY_COLUMNS
        return self.table


@settings(max_examples=100, deadline=None)
@given(st.lists(step, min_size=1, max_size=40), st.data(), st.booleans())
def test_maps_at_many_sizes_equals_each_map_built_alone(steps, data, envs):
    """maps_at builds the first map whole and each next one from it (a checkpoint a day
    for years): every one equals the map of its prefix built from scratch."""
    rows = story_rows(steps)
    sizes = data.draw(st.lists(st.integers(1, len(rows)), min_size=1, max_size=6), label="sizes")
    maps = S.maps_at(_Rows(rows), sizes, envs)
    for n in sizes:
        alone = storymap.stories(rows[:n])
        assert maps[n] is not None and maps[n].root() == alone.root(envs), n
        assert maps[n].leaves() == alone.leaves(envs), n


# --- real ledgers ------------------------------------------------------------------------------


@pytest.fixture
def two(team, tmp_path, invoke):
    """A ledger with a checkpoint (and its cached map), then more events of every kind."""
    t, led, k = team, team.ledger, team.keys
    t.keys["cp"] = SigningKey(b"c" * 32)
    t.key_files["cp"] = tmp_path / "keys" / "cp.pem"
    write_key_files(t.key_files["cp"], t.keys["cp"])
    led.add_key(t.keys["cp"].public_key, "cp", "checkpointer", key=k["admin"])
    for model in (XGB, "other.model.a", "other.model.b"):
        led.register(model, key=k["alice"])
        led.approve(model, 1, "staging", key=k["bob"])
        led.deploy(model, 1, "staging", key=k["carol"])
    led.set_policy({"approvals": {"required": {"production": 1}}}, key=k["admin"])
    assert invoke(["checkpoint"], env=t.env("cp")).exit_code == 0
    t.first = CS.latest(led)
    led.register(XGB, key=k["alice"])
    led.approve(XGB, 2, "staging", key=k["dave"])
    led.deploy(XGB, 2, "staging", key=k["carol"])  # (ends xgb:1 in staging)
    led.break_glass("deploy", "other.model.a", 1, "production", rule="approvals",
                    justification="INC-1", key=k["admin"])  # fmt: skip
    led.deploy("other.model.a", 1, "production", key=k["carol"])
    led.add_key(SigningKey(b"e" * 32).public_key, "erin", "approver", key=k["admin"])
    led.reject(XGB, 1, key=k["bob"], comment="superseded")
    return t


def _no_full_build(monkeypatch) -> None:
    def refuse(*_a, **_k):
        raise AssertionError("the story map was built from every event")

    monkeypatch.setattr(S, "maps_at", refuse)


def test_the_next_checkpoint_builds_its_map_from_the_cached_one(two, invoke, monkeypatch):
    t = two
    assert t.ledger.store.cached_names("story-") == [S.cache_name(t.first.size)]
    _no_full_build(monkeypatch)
    assert invoke(["checkpoint"], env=t.env("cp")).exit_code == 0
    monkeypatch.undo()
    cp = CS.latest(t.ledger)
    n = t.ledger.store.tail()[0]
    assert cp.size == n and cp.size > t.first.size
    assert cp.story_root == S.stories_at(t.ledger.store, [n])[n]
    assert t.ledger.store.cached_names("story-") == [S.cache_name(t.first.size), S.cache_name(n)]
    assert invoke(["verify"], env=t.env()).exit_code == 0


def test_only_the_newest_caches_are_kept(two, invoke):
    t = two
    for i in range(S.KEEP_CACHES + 1):
        t.ledger.register(f"more.model.m{i}", key=t.keys["alice"])
        assert invoke(["checkpoint"], env=t.env("cp")).exit_code == 0
    names = t.ledger.store.cached_names("story-")
    sizes = sorted(cp.size for cp in CS.stored(t.ledger))
    assert names == [S.cache_name(s) for s in sizes[-S.KEEP_CACHES :]]


def _forge_cache(t, size: int) -> None:
    """An altered cache: one leaf's value flipped, the bucket hashes left as they were."""
    path = t.path / "tree" / S.cache_name(size)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def test_an_altered_cache_does_not_reach_the_next_checkpoint(two, invoke):
    t = two
    _forge_cache(t, t.first.size)
    assert invoke(["checkpoint"], env=t.env("cp")).exit_code == 0
    cp = CS.latest(t.ledger)
    assert cp.story_root == S.stories_at(t.ledger.store, [cp.size])[cp.size]


@pytest.mark.parametrize(
    "attack",
    ["leaf value flipped", "truncated", "replaced by another size's map"],
)
def test_verify_names_an_altered_cache(two, invoke, attack):
    t = two
    size = t.first.size
    path = t.path / "tree" / S.cache_name(size)
    if attack == "leaf value flipped":
        _forge_cache(t, size)
    elif attack == "truncated":
        path.write_bytes(path.read_bytes()[:-64])
    else:
        other = S.maps_at(t.ledger.store, [size - 1])[size - 1]
        assert other is not None
        path.write_bytes(other.to_bytes())
    before = {p: p.read_bytes() for p in t.path.rglob("*") if p.is_file()}
    r = invoke(["verify", "--format", "json"], env=t.env())
    assert r.exit_code == 1, r.stdout
    name = S.cache_name(size)
    assert json.loads(r.stdout)["problems"][0] == {
        "kind": "story_cache",
        "seq": size - 1,
        "segment": f"tree/{name}",
        "message": f"tree/{name} is not the story map of the first {size} events (cache"
        f" altered; delete tree/{name} to rebuild it)",
    }
    assert {p: p.read_bytes() for p in t.path.rglob("*") if p.is_file()} == before
    path.unlink()
    assert invoke(["verify"], env=t.env()).exit_code == 0


def _checkpoint_later(t, invoke) -> C.SignedCheckpoint:
    assert invoke(["checkpoint"], env=t.env("cp")).exit_code == 0
    return CS.latest(t.ledger)


def test_verify_since_checks_newer_maps_from_the_cache(two, invoke, monkeypatch, tmp_path):
    t = two
    later = _checkpoint_later(t, invoke)
    first = tmp_path / "first.cp"
    first.write_text(t.first.note)
    _no_full_build(monkeypatch)
    r = invoke(["verify", "--since", str(first)], env=t.env())
    assert r.exit_code == 0, r.stdout + r.stderr
    # A newer checkpoint whose map is forged is caught on the same incremental path.
    forged = C.sign(t.ledger.origin, later.size, later.root, t.keys["cp"], bytes(32))
    for p in (t.path / "checkpoints").iterdir():
        if p.name != t.first.path.name:
            p.unlink()
    (t.path / "checkpoints" / C.file_name(later.size, later.root, forged)).write_text(forged)
    r = invoke(["verify", "--since", str(first), "--format", "json"], env=t.env())
    assert r.exit_code == 1, r.stdout
    assert json.loads(r.stdout)["problems"][0]["kind"] == "story_map"


def test_verify_since_without_a_cache_builds_from_every_event(two, invoke, tmp_path):
    t = two
    _checkpoint_later(t, invoke)
    for name in t.ledger.store.cached_names("story-"):
        (t.path / "tree" / name).unlink()
    first = tmp_path / "first.cp"
    first.write_text(t.first.note)
    r = invoke(["verify", "--since", str(first)], env=t.env())
    assert r.exit_code == 0, r.stdout + r.stderr
    assert t.ledger.store.cached_names("story-") == []  # (verify writes nothing)
