"""The story map: which events make up each model version's story, committed (pure).

An inclusion proof shows that an event is in the log; it cannot show that a bundle of
events is *all* of a version's history. The story map closes that gap (docs/FORMAT.md,
"Story map"; docs/proofs.md says why it is sound). For the first N events of a ledger it
maps each key to the list of ``(seq, event hash)`` of the events of that key's story:

* ``version:MODEL:VERSION`` — the events on that version (register, approve, reject,
  deploy, undeploy, deprecate, and any later action on it), each deploy of another
  version of the model to an environment where this one was live (it ended that
  deployment), every break-glass grant naming the version or cited by one of its
  events, the policy in force at each of its events (the last ``policy_set`` before
  it), and the key events its signatures need (each signer's key events before it,
  back to genesis);
* ``env:MODEL:ENV`` — the deployment history of a model in one environment: every
  deploy and undeploy of any of its versions there, with the break-glass grants they
  cite, the policy in force at each and the key events their signatures need. It proves
  what was live there between any two instants.

The map is a sparse Merkle tree over SHA-256(key) with shortcut leaves (a subtree that
holds one key is that key's leaf), the construction of Diem's Jellyfish Merkle tree and
of AKD: ``leaf = SHA-256(0x00 || SHA-256(key) || value)``, ``node = SHA-256(0x01 || left
|| right)``, an empty subtree is 32 zero bytes, ``value = SHA-256("ledger-story/1\\n" ||
for each event: seq as 8 bytes big-endian || its 32-byte hash)``. A checkpoint commits
to the root with the extension line ``ledger-story/2 <base64 root>`` (``ledger-story/1``: a map of version keys only,
issued before deployment histories).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from . import events as E

#: The checkpoint extension line's first word: a map of version and deployment-history
#: keys. ``ledger-story/1`` maps (version keys only, the first checkpoints that had a
#: map) are still read and verified.
EXTENSION = "ledger-story/2"
EXTENSION_V1 = "ledger-story/1"
EMPTY = bytes(32)
_VALUE_TAG = b"ledger-story/1\n"
_SEQ = struct.Struct(">Q")
_EXT_RE = re.compile(r"ledger-story/([12]) ([A-Za-z0-9+/]{43}=)")
_ENV_ONLY = E.ENV_ONLY


class StoryMapError(ValueError):
    """A story-map proof or extension line that does not hold."""


def version_key(model: str, version: int) -> str:
    return f"version:{model}:{version}"


def env_key(model: str, env: str) -> str:
    return f"env:{model}:{env}"


def _key_of(k: tuple[str, int | str]) -> str:
    """The map key of a story's ``(model, version)`` or ``(model, env)``."""
    return env_key(k[0], k[1]) if isinstance(k[1], str) else version_key(k[0], k[1])


def value_hash(story: Iterable[tuple[int, bytes]]) -> bytes:
    """The leaf value committing to a story: its ``(seq, event hash)`` list, in seq order."""
    h = hashlib.sha256(_VALUE_TAG)
    h.update(b"".join([_SEQ.pack(seq) + ev_hash for seq, ev_hash in story]))
    return h.digest()


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def leaf_hash(khash: bytes, value: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + khash + value).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _bit(khash: bytes, depth: int) -> int:
    return (khash[depth >> 3] >> (7 - (depth & 7))) & 1


# --- the stories ---------------------------------------------------------------------------


@dataclass
class Stories:
    """The stories of a ledger's first events, fed in seq order (:meth:`add`, or
    :meth:`add_columns` for many at once)."""

    #: (model, version) -> its events' (seq, event hash, signer) in seq order, key
    #: events not yet included (:meth:`story` adds those its signatures need); and
    #: (model, env) -> the deployment history's, likewise
    stories: dict[tuple[str, int | str], list[tuple[int, bytes, int]]] = field(default_factory=dict)
    #: a key (by code) -> the key events about it: (seq, hash, signer's code)
    _keylog: dict[int, list[tuple[int, bytes, int]]] = field(default_factory=dict)
    #: key id -> its code (the signer of each story event is kept as a small int)
    _codes: dict[str, int] = field(default_factory=dict)
    _closures: dict[tuple[int, int], frozenset[tuple[int, bytes]]] = field(default_factory=dict)
    _keyseqs: dict[int, list[int]] = field(default_factory=dict)
    #: the sorted key events of a set of (signer, count) bounds
    _unions: dict[tuple[tuple[int, int], ...], list[tuple[int, bytes]]] = field(
        default_factory=dict
    )
    #: (model, env) -> the version live there, as the deploys and undeploys left it
    _live: dict[tuple[str, str], int] = field(default_factory=dict)
    #: grant seq -> its hash and the model it names
    _grants: dict[int, tuple[bytes, str | None, int]] = field(default_factory=dict)
    _policy: tuple[int, bytes, int] | None = None
    #: (model, version) or (model, env) -> seq of the last policy put in its story
    _policy_of: dict[tuple[str, int | str], int] = field(default_factory=dict)
    events: int = 0

    def _put(self, key: tuple[str, int | str], seq: int, ev_hash: bytes, signer: int) -> None:
        story = self.stories.setdefault(key, [])
        if not story or story[-1][0] < seq:
            story.append((seq, ev_hash, signer))
        elif all(s != seq for s, _, _ in story):  # (a grant cited after later events)
            story.append((seq, ev_hash, signer))
            story.sort()

    def _code(self, key_id: object) -> int:
        if not isinstance(key_id, str):
            return -1
        return self._codes.setdefault(key_id, len(self._codes))

    def add(
        self,
        seq: int,
        action: str,
        model: str | None,
        version: int | None,
        ev_hash: bytes,
        payload: str,
        key_id: str,
    ) -> None:
        """One event (its typed columns, hash, payload JSON text and signing key id), in
        seq order."""
        parsed = None
        env = None
        if action == E.DEPLOY or action == E.UNDEPLOY:
            m = _ENV_ONLY.fullmatch(payload)
            if m:
                env = m[1]
            else:
                parsed = _parse(payload)
                env = parsed.get("env") if isinstance(parsed.get("env"), str) else None
        if action in E.KEY_ACTIONS or action == E.BREAK_GLASS or '"break_glass"' in payload:
            parsed = _parse(payload) if parsed is None else parsed
        self.add_columns(
            [seq], [action], [model], [version], [ev_hash], [key_id], [env], {0: parsed or {}}
        )

    def add_columns(
        self,
        seqs: Sequence[int],
        actions: Sequence[str],
        models: Sequence[str | None],
        versions: Sequence[int | None],
        hashes: Sequence[bytes],
        key_ids: Sequence[str],
        envs: Sequence[str | None],
        parsed: dict[int, dict[str, object]],
    ) -> None:
        """Events as columns, in seq order: ``envs`` the deploys' and undeploys'
        environment, ``parsed`` the payloads (by row) of the key events, the break-glass
        grants and the events citing one (the only payloads the stories need)."""
        stories, live, grants, put = self.stories, self._live, self._grants, self._put
        policy, pol = self._policy, self._policy_of
        key_actions, deploy, undeploy = E.KEY_ACTIONS, E.DEPLOY, E.UNDEPLOY
        codes = self._codes
        signers = [codes.get(k) if k in codes else self._code(k) for k in key_ids]
        for i, (seq, action, model, version, h, signer) in enumerate(
            zip(seqs, actions, models, versions, hashes, signers, strict=True)
        ):
            if model is not None and version is not None:
                key = (model, version)
                story = stories.get(key)
                if story is None:
                    story = stories[key] = []
                if policy is not None and pol.get(key) != policy[0]:
                    pol[key] = policy[0]  # (the policy in force at this event)
                    put(key, *policy)
                used: list[int] = []
                if i in parsed:
                    cited = parsed[i].get("break_glass")
                    for g in cited if isinstance(cited, list) else ():
                        grant = grants.get(g) if type(g) is int else None
                        if grant is not None and grant[1] == model:
                            put(key, g, grant[0], grant[2])
                            used.append(g)
                if story and story[-1][0] >= seq:
                    put(key, seq, h, signer)
                else:
                    story.append((seq, h, signer))
                if action in (deploy, undeploy):
                    env = envs[i]
                    if env is None:
                        continue
                    history = (model, env)  # (its deployment history there)
                    if policy is not None and pol.get(history) != policy[0]:
                        pol[history] = policy[0]
                        put(history, *policy)
                    for g in used:
                        grant = grants[g]
                        put(history, g, grant[0], grant[2])
                    put(history, seq, h, signer)
                    was = live.get((model, env))
                    if action == deploy:
                        if was is not None and was != version:
                            put((model, was), seq, h, signer)  # it ended that deployment
                        live[(model, env)] = version
                    elif was == version:
                        del live[(model, env)]
            elif action in key_actions:
                about = self._code(parsed.get(i, {}).get("key_id"))
                self._keylog.setdefault(about, []).append((seq, h, signer))
                self._keyseqs.setdefault(about, []).append(seq)
            elif action == E.POLICY_SET:
                policy = (seq, h, signer)
            elif action == E.BREAK_GLASS:
                p = parsed.get(i, {})
                m, v = p.get("model"), p.get("version")
                m = m if isinstance(m, str) else None
                grants[seq] = (h, m, signer)
                if m is not None and type(v) is int:
                    put((m, v), seq, h, signer)
        self._policy = policy
        self.events += len(seqs)

    def _keys_before(self, key: int, before: int) -> frozenset[tuple[int, bytes]]:
        """The key events about ``key`` below seq ``before``, and (recursively) those of
        the keys that signed them: what checking a signature by ``key`` needs."""
        return self._closure(key, self._count_before(key, before))

    def _count_before(self, key: int, before: int) -> int:
        """How many of the key events about ``key`` lie below seq ``before``."""
        seqs = self._keyseqs.get(key)
        return bisect.bisect_left(seqs, before) if seqs else 0

    def _closure(self, key: int, n: int) -> frozenset[tuple[int, bytes]]:
        """The first ``n`` key events about ``key`` and, recursively, what their signers
        need."""
        memo = self._closures.get((key, n))
        if memo is None:
            out: set[tuple[int, bytes]] = set()
            for seq, h, signer in self._keylog.get(key, [])[:n]:
                out.add((seq, h))
                if signer != key:
                    out |= self._keys_before(signer, seq)
            memo = self._closures[(key, n)] = frozenset(out)
        return memo

    def _full(self, events: list[tuple[int, bytes, int]]) -> list[tuple[int, bytes]]:
        """A story's events with the key events its signatures need, in seq order."""
        last: dict[int, int] = {}
        for seq, _, signer in events:
            last[signer] = seq  # (a key's events before its last use cover the earlier)
        count = self._count_before
        bounds = tuple(sorted((k, count(k, seq)) for k, seq in last.items()))
        keys = self._unions.get(bounds)
        if keys is None:
            found: set[tuple[int, bytes]] = set()
            for k, n in bounds:
                found |= self._closure(k, n)
            keys = self._unions[bounds] = sorted(found)
        own = [(seq, h) for seq, h, _ in events]
        if not keys:
            return own
        if not own or keys[-1][0] < own[0][0]:  # (the usual case: keys registered first)
            return keys + own
        return sorted({*own, *keys})

    def signer_keys(self, key_id: str, before: int) -> list[tuple[int, bytes]]:
        """The key events that checking a signature by ``key_id`` at ``before`` needs."""
        code = self._codes.get(key_id)
        return [] if code is None else sorted(self._keys_before(code, before))

    def story(self, key: str) -> list[tuple[int, bytes]]:
        """The story of ``version:MODEL:VERSION`` or ``env:MODEL:ENV`` (empty if it has
        none)."""
        kind, _, rest = key.partition(":")
        model, _, last = rest.rpartition(":")
        k: tuple[str, int | str] = (model, int(last) if kind == "version" else last)
        return self._full(self.stories.get(k, []))

    def leaves(self, envs: bool = True) -> dict[bytes, bytes]:
        """SHA-256(key) -> value, for every key with a story (without the deployment
        histories if not ``envs``: a ``ledger-story/1`` map)."""
        return {
            key_hash(_key_of(k)): value_hash(self._full(story))
            for k, story in self.stories.items()
            if envs or not isinstance(k[1], str)
        }

    def root(self, envs: bool = True) -> bytes:
        return root(self.leaves(envs))


def _parse(payload: str) -> dict[str, object]:
    try:
        p = json.loads(payload)
    except (TypeError, ValueError, RecursionError):
        return {}
    return p if isinstance(p, dict) else {}


def stories(
    rows: Iterable[tuple[int, str, str | None, int | None, bytes, str, str]],
) -> Stories:
    """The stories of events given as (seq, action, model, version, hash, payload,
    key_id), one by one: the
    simple reference the column-wise path is held to."""
    s = Stories()
    for row in rows:
        s.add(*row)
    return s


# --- the sparse Merkle tree ----------------------------------------------------------------


def root(leaves: dict[bytes, bytes]) -> bytes:
    """The map root of ``SHA-256(key) -> value`` leaves."""
    items = sorted(leaves.items())
    return _subtree(items, 0, len(items), 0)


def _subtree(items: Sequence[tuple[bytes, bytes]], lo: int, hi: int, depth: int) -> bytes:
    if hi == lo:
        return EMPTY
    if hi - lo == 1:
        return leaf_hash(*items[lo])
    a = _split(items, lo, hi, depth)
    return node_hash(_subtree(items, lo, a, depth + 1), _subtree(items, a, hi, depth + 1))


def _split(items: Sequence[tuple[bytes, bytes]], lo: int, hi: int, depth: int) -> int:
    """Where the keys of ``items[lo:hi]`` with bit ``depth`` set begin (keys are sorted,
    so those with the bit clear come first)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if _bit(items[mid][0], depth):
            hi = mid
        else:
            lo = mid + 1
    return lo


def prove(leaves: dict[bytes, bytes], key: str) -> list[bytes]:
    """The siblings, root first, on the path to ``key``'s leaf (which must exist)."""
    khash = key_hash(key)
    if khash not in leaves:
        raise KeyError(key)
    items = sorted(leaves.items())
    lo, hi, depth = 0, len(items), 0
    path: list[bytes] = []
    while hi - lo > 1:
        a = _split(items, lo, hi, depth)
        if _bit(khash, depth):
            path.append(_subtree(items, lo, a, depth + 1))
            lo = a
        else:
            path.append(_subtree(items, a, hi, depth + 1))
            hi = a
        depth += 1
    return path


def verify(map_root: bytes, key: str, value: bytes, path: Sequence[bytes]) -> None:
    """Check that the map with ``map_root`` holds ``key -> value``; raise StoryMapError."""
    if len(path) > 256:
        raise StoryMapError(f"a story-map proof has at most 256 hashes, got {len(path)}")
    khash = key_hash(key)
    h = leaf_hash(khash, value)
    for depth in range(len(path) - 1, -1, -1):
        h = node_hash(path[depth], h) if _bit(khash, depth) else node_hash(h, path[depth])
    if h != map_root:
        raise StoryMapError(f"the story map does not hold this story of {key}")


# --- the map in buckets: a cache for building the next map incrementally -----------------

#: Keys are bucketed by the first DEPTH bits of SHA-256(key); a bucket's hash is the
#: subtree root at that depth, so the map root follows from the buckets alone.
DEPTH = 12
BUCKETS = 1 << DEPTH
_CACHE_MAGIC = b"ledger-story-cache/1\n"
_HEAD = struct.Struct(">QQ")
_COUNTS = struct.Struct(f">{BUCKETS}I")


def _bucket(khash: bytes) -> int:
    return int.from_bytes(khash[:2], "big") >> (16 - DEPTH)


class MapCache:
    """The story map of a ledger's first ``size`` events as buckets of sorted leaves,
    each with its subtree hash. Serialized beside the checkpoints (``tree/story-N``), it
    lets the next map be built from the keys the new events touch: :meth:`updated`
    rehashes only their buckets. It is an untrusted cache: whoever loads it checks
    :meth:`root` against a signed checkpoint's story root, and :meth:`updated` checks
    every bucket it opens against that bucket's hash (docs/proofs.md)."""

    def __init__(
        self,
        size: int,
        counts: list[int],
        hashes: list[bytes],
        buckets: dict[int, list[tuple[bytes, bytes]]],
        raw: bytes | memoryview = b"",
        offsets: list[int] | None = None,
    ) -> None:
        self.size = size
        self.counts = counts
        self.hashes = hashes
        self._buckets = buckets  # bucket -> its leaves, for those read or changed
        self._raw = memoryview(raw)
        self._offsets = offsets

    @classmethod
    def build(cls, size: int, leaves: dict[bytes, bytes]) -> MapCache:
        """The buckets of ``SHA-256(key) -> value`` leaves."""
        buckets: dict[int, list[tuple[bytes, bytes]]] = {}
        for item in sorted(leaves.items()):
            buckets.setdefault(_bucket(item[0]), []).append(item)
        counts = [0] * BUCKETS
        hashes = [EMPTY] * BUCKETS
        for b, items in buckets.items():
            counts[b] = len(items)
            hashes[b] = _subtree(items, 0, len(items), DEPTH)
        return cls(size, counts, hashes, buckets)

    def root(self) -> bytes:
        """The map root, from the bucket hashes alone."""
        sums = [0]
        for c in self.counts:
            sums.append(sums[-1] + c)
        return self._top(sums, 0, BUCKETS)

    def _top(self, sums: list[int], lo: int, hi: int) -> bytes:
        total = sums[hi] - sums[lo]
        if total == 0:
            return EMPTY
        if total == 1 or hi - lo == 1:  # (one key: its leaf, at whatever depth)
            if hi - lo > 1:
                lo = bisect.bisect_right(sums, sums[lo]) - 1
            return self.hashes[lo]
        mid = (lo + hi) // 2
        return node_hash(self._top(sums, lo, mid), self._top(sums, mid, hi))

    def items(self, b: int) -> list[tuple[bytes, bytes]]:
        """Bucket ``b``'s leaves, sorted by key hash."""
        found = self._buckets.get(b)
        if found is None:
            found = []
            if self._offsets is not None and self.counts[b]:
                raw, at = self._raw, self._offsets[b]
                for i in range(at, at + 64 * self.counts[b], 64):
                    found.append((bytes(raw[i : i + 32]), bytes(raw[i + 32 : i + 64])))
            self._buckets[b] = found
        return found

    def leaves(self) -> dict[bytes, bytes]:
        return {k: v for b in range(BUCKETS) if self.counts[b] for k, v in self.items(b)}

    def updated(self, size: int, changes: dict[bytes, bytes], check: bool = True) -> MapCache:
        """The map of ``size`` events: this one with the ``SHA-256(key) -> value``
        ``changes`` (new keys or new values). Raises StoryMapError if a bucket it opens
        does not hash to the bucket's recorded hash (the cache was altered); ``check``
        False skips that for a map built here from the events, not read from a file."""
        if size < self.size:
            raise StoryMapError(f"a story-map cache of {self.size} events cannot give {size}")
        counts, hashes = list(self.counts), list(self.hashes)
        buckets = dict(self._buckets)
        by_bucket: dict[int, dict[bytes, bytes]] = {}
        for k, v in changes.items():
            by_bucket.setdefault(_bucket(k), {})[k] = v
        for b, new in by_bucket.items():
            items = self.items(b)
            if check and _subtree(items, 0, len(items), DEPTH) != self.hashes[b]:
                raise StoryMapError(f"the story-map cache's bucket {b} does not match its hash")
            merged = dict(items) | new
            items = sorted(merged.items())
            buckets[b] = items
            counts[b] = len(items)
            hashes[b] = _subtree(items, 0, len(items), DEPTH)
        return MapCache(size, counts, hashes, buckets, self._raw, self._offsets)

    def to_bytes(self) -> bytes:
        """``magic ‖ size ‖ keys (8-byte big-endian each) ‖ counts (4 bytes per bucket)
        ‖ bucket hashes ‖ the leaves (key hash ‖ value), sorted``."""
        body = b"".join(k + v for b in range(BUCKETS) if self.counts[b] for k, v in self.items(b))
        head = _CACHE_MAGIC + _HEAD.pack(self.size, sum(self.counts))
        return head + _COUNTS.pack(*self.counts) + b"".join(self.hashes) + body

    @classmethod
    def from_bytes(cls, data: bytes) -> MapCache:
        """Raises StoryMapError for bytes that are not a story-map cache."""
        n = len(_CACHE_MAGIC)
        fixed = n + _HEAD.size + _COUNTS.size + 32 * BUCKETS
        if data[:n] != _CACHE_MAGIC or len(data) < fixed:
            raise StoryMapError("not a story-map cache")
        size, keys = _HEAD.unpack_from(data, n)
        counts = list(_COUNTS.unpack_from(data, n + _HEAD.size))
        if sum(counts) != keys or len(data) != fixed + 64 * keys:
            raise StoryMapError("a story-map cache of the wrong length")
        at = n + _HEAD.size + _COUNTS.size
        hashes = [data[at + 32 * b : at + 32 * b + 32] for b in range(BUCKETS)]
        offsets, pos = [], fixed
        for c in counts:
            offsets.append(pos)
            pos += 64 * c
        return cls(size, counts, hashes, {}, data, offsets)


def changed(
    st: Stories,
    touched: frozenset[str] | set[str] | None,
    since: int,
    envs: bool = True,
) -> dict[bytes, bytes]:
    """The leaves that events from seq ``since`` on changed, from stories fed every key,
    policy and break-glass event and every event of the ``touched`` models (those of the
    new events and the grants among them; None: stories fed every event): a version's
    story depends only on these, and a story that changed gained an event at ``since``
    or later. Without ``envs``, the version keys only (a ``ledger-story/1`` map)."""
    return {
        key_hash(_key_of(k)): value_hash(st._full(story))
        for k, story in st.stories.items()
        if story
        and story[-1][0] >= since
        and (touched is None or k[0] in touched)
        and (envs or not isinstance(k[1], str))
    }


# --- the checkpoint extension -------------------------------------------------------------


def extension(map_root: bytes) -> str:
    import base64

    return f"{EXTENSION} {base64.b64encode(map_root).decode()}"


def story_line(extensions: Sequence[str]) -> tuple[int, bytes] | None:
    """The story map a checkpoint commits to, as (format: 2, or 1 for a map of version
    keys only; its root), or None if it commits to none. Raises StoryMapError for a
    malformed line or more than one."""
    import base64

    found = [x for x in extensions if x.split(" ", 1)[0] in (EXTENSION, EXTENSION_V1)]
    if not found:
        return None
    if len(found) > 1:
        raise StoryMapError(f"the checkpoint has {len(found)} ledger-story lines")
    m = _EXT_RE.fullmatch(found[0])
    if not m:
        raise StoryMapError(f"malformed {found[0].split(' ', 1)[0]} line {found[0][:80]!r}")
    return int(m[1]), base64.b64decode(m[2])


def root_from_extensions(extensions: Sequence[str]) -> bytes | None:
    """The story-map root a checkpoint commits to (:func:`story_line`), or None."""
    line = story_line(extensions)
    return line[1] if line else None
