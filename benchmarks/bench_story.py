"""What the story map (ledger/storymap.py) costs, beside its floors, in one run.

``python benchmarks/bench_story.py [--ledger PATH] [--bundle-ledger PATH]``:

* ``story_map_full``: the story-map root of every event of ``--ledger`` (default the 1M
  benchmark ledger), as ``ledger checkpoint`` computes it; beside it ``read_columns``
  (reading the six columns it needs from Parquet) and ``sha256_values`` (hashing as many
  40-byte (seq, hash) records and leaves as the map holds): what any build pays;
* ``story_map_plus_1000``: what a checkpoint 1,000 events after the last one costs: the
  previous map loaded from its cache and checked, the touched stories rebuilt; beside it
  the full rebuild and reading the 1,000 new events;
* ``story_maps_40_checkpoints``: what full ``verify`` pays for the maps of 40 stored
  checkpoints 1,000 events apart (one pass, each map from the one before);
* ``bundle_bytes``: the size of ``ledger evidence`` for the version with the longest
  story of at most 20 events, on a copy of ``--bundle-ledger`` (default the 100k
  benchmark ledger) with a checkpoint issued there, and its event count;
* ``history_bundle_bytes``: the size of ``ledger evidence MODEL --env ENV`` for the
  longest deployment history there.

The cached benchmark ledgers are only read; the checkpoint is issued on a copy.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger import Ledger, SigningKey, storymap
from ledger import storyread as S
from ledger.evidence import dumps
from ledger.tree import read_rows

CACHE = Path("/tmp/ledger-bench-cache")


def _time(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ledger", type=Path, default=CACHE / "bench-1000000-seed0")
    ap.add_argument("--bundle-ledger", type=Path, default=CACHE / "bench-100000-seed0")
    a = ap.parse_args(argv)

    led = Ledger.open(a.ledger)
    n = led.store.tail()[0]  # (the number of events)
    t_read, table = _time(lambda: led.store.read(S.STORY_COLUMNS))
    t_full, roots = _time(lambda: S.stories_at(led.store, [n]))
    st = storymap.Stories()
    st.add_columns(*S.story_columns(table))
    keys = len(st.stories)

    def floor() -> None:
        for story in st.stories.values():
            hashlib.sha256(b"".join(s.to_bytes(8, "big") + h for s, h, _ in story)).digest()
        for k in range(2 * keys):
            hashlib.sha256(k.to_bytes(65, "big")).digest()

    t_floor, _ = _time(floor)
    print(f"events {n:,}, story keys {keys:,}")
    print(f"story_map_full       {t_full:7.2f} s   read_columns {t_read:.2f} s,"
          f" sha256_values {t_floor:.2f} s   target <= 10 s")  # fmt: skip
    # A checkpoint 1,000 events after the last one: the previous checkpoint's cached map
    # (tree/story-N) loaded and checked against its root, then only the stories of the
    # models the new events touch rebuilt (as ``ledger checkpoint`` and ``verify --since``
    # do). The cache is built here in memory: the benchmark ledger is only read.
    before = S.maps_at(led.store, [n - 1000])[n - 1000]
    assert before is not None
    data = before.to_bytes()

    def incremental() -> bytes:
        cache = storymap.MapCache.from_bytes(data)
        assert cache.root() == before.root()
        return S.advance(led.store, cache, n).root()

    t_inc = min(_time(incremental)[0] for _ in range(3))
    assert incremental() == roots[n]
    segs = led.store.segments()
    t_n, _ = _time(lambda: [read_rows(segs, n - 1000, n, c) for c in S.STORY_COLUMNS])
    print(f"story_map_plus_1000  {t_inc:7.2f} s   full rebuild {t_full:.2f} s, reading the"
          f" 1,000 new events {t_n:.3f} s, cache {len(data) / 1e6:.1f} MB   target <= 1 s")  # fmt: skip
    assert roots[n]
    # Full verify checks every stored checkpoint's map: a ledger with a checkpoint a day
    # for years has many. 40 of them, 1,000 events apart, in one pass (ledger verify).
    sizes = [n - 1000 * i for i in range(40)]
    t_40, maps = _time(lambda: S.maps_at(led.store, sizes))
    assert maps[n] is not None and maps[n].root() == roots[n]
    print(f"story_maps_40_checkpoints {t_40:5.2f} s   one map {t_full:.2f} s (the floor: the"
          " same pass over the events)")  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "l"
        shutil.copytree(a.bundle_ledger, copy)
        small = Ledger.open(copy)
        cp_key = SigningKey(b"b" * 32)
        admin = _admin_key(small)
        small.add_key(cp_key.public_key, "bench-cp", "checkpointer", key=admin)
        t_cp, _ = _time(lambda: small.checkpoint(cp_key))
        with small.store.reading():
            table = small.store.read(S.STORY_COLUMNS)
        st = storymap.Stories()
        st.add_columns(*S.story_columns(table))
        best = max(
            (k for k in st.stories if isinstance(k[1], int) and len(st._full(st.stories[k])) <= 20),
            key=lambda k: len(st._full(st.stories[k])),
        )
        model, version = best  # type: ignore[misc]
        bundle = small.evidence(model, version)
        size = len(dumps(bundle))
        print(f"checkpoint_100k      {t_cp:7.2f} s   (verify of the events + story map)")
        print(f"bundle_bytes         {size:7,} B   {model}:{version}: story"
              f" {len(bundle['story']['events'])} events, signer keys {len(bundle['signer_keys'])},"
              f" story proof {len(bundle['story']['proof'])} hashes   target <= 65,536 B")  # fmt: skip
        # The longest deployment history of any model in one environment.
        model, env = max(
            (k for k in st.stories if isinstance(k[1], str)),
            key=lambda k: len(st.stories[k]),
        )
        t_h, history = _time(lambda: small.deployment_evidence(model, env))  # type: ignore[arg-type]
        print(f"history_bundle_bytes {len(dumps(history)):7,} B   {model} in {env}:"
              f" {len(history['story']['events'])} events, built in {t_h:.2f} s"
              f" (the longest deployment history)")  # fmt: skip


def _admin_key(led: Ledger) -> SigningKey:
    """The generator's admin key (benchmarks.generator derives its keys from the seed)."""
    from benchmarks import generator
    from benchmarks.__main__ import keys_for

    return keys_for(0)[generator.ADMIN]


if __name__ == "__main__":
    main()
