"""The write path's shortcuts give exactly the bytes the plain code gives."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import Ledger, SigningKey, signer, storereads
from ledger import events as E
from ledger.canonical import _Bad, _check, _scan, canonicalize
from ledger.errors import InputError, NotFoundError, RuleViolation
from ledger.store import STATE_COLUMNS

# Valid and invalid JSON-ish values: big integers, NaN, non-string keys, lone surrogates,
# tuples, bytes, deep nesting.
anything_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats()
    | st.text(max_size=6)
    | st.text(alphabet=st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010), max_size=3)
    | st.sampled_from(["\ud800", b"x", 1.0, 1e16, 1e-5, 2**53, -(2**53) + 1])
)
anything = st.recursive(
    anything_scalar,
    lambda c: (
        st.lists(c, max_size=4)
        | st.tuples(c, c)
        | st.dictionaries(st.text(max_size=5) | st.integers(0, 3), c, max_size=4)
    ),
    max_leaves=25,
)


def _verdict(fn, value):
    try:
        return fn(value)
    except (InputError, _Bad, UnicodeEncodeError):
        return "error"


@given(anything)
@settings(max_examples=400)
def test_fast_scan_agrees_with_the_checker(value):
    assert _verdict(lambda v: _scan(v, 0), value) == _verdict(lambda v: _check(v, 0, "$"), value)


@given(anything)
@settings(max_examples=300)
def test_canonicalize_equals_rfc8785_or_raises_input_error(value):
    try:
        out = canonicalize(value)
    except InputError:
        with pytest.raises(InputError):
            _check(value, 0, "$")
        return
    assert out == rfc8785.dumps(value)


def test_errors_keep_their_paths():
    with pytest.raises(InputError, match=r"number at \$\.a\[1\] is nan"):
        canonicalize({"a": [1, math.nan]})
    with pytest.raises(InputError, match=r"string at \$\.k contains a lone surrogate"):
        canonicalize({"k": "\ud800"})
    deep: object = 0
    for _ in range(33):
        deep = {"x": deep}
    with pytest.raises(InputError, match="nested deeper than 32"):
        canonicalize(deep)


@given(st.integers(min_value=-(2**40), max_value=253402300799999999))
def test_format_ts_matches_datetime(micros):
    dt = datetime.fromtimestamp(micros // 1_000_000, UTC)
    assert E.format_ts(micros) == f"{dt:%Y-%m-%dT%H:%M:%S}.{micros % 1_000_000:06d}Z"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(max_size=8)
    | st.sampled_from(['","prev_hash":"', '"payload":', "\\", '"']),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=3),
    max_leaves=12,
)


top_strings = st.text(max_size=12) | st.sampled_from(["", "a\x7fb", 'q"q', "b\\s", "é", "\n"])


@given(
    st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    st.tuples(top_strings, top_strings, top_strings, top_strings, top_strings),
    st.none() | top_strings,
    st.none() | st.integers(-(2**53), 2**53) | st.booleans(),
    st.integers(0, 2**53 - 1) | st.booleans(),
    st.integers(0, 253_402_300_799_999_999),  # up to 9999-12-31T23:59:59.999999Z
)
def test_event_encoding_is_the_documents_canonical_json(payload, strings, model, version, seq, ts):
    """The template path of Event.encode gives the general encoder's bytes, for every kind
    of top-level value (including those that must take the general path)."""
    action, actor, kid, origin, prev = strings
    ev = E.Event(seq, ts, origin, action, actor, kid, payload, prev, model, version)
    try:
        want = canonicalize(ev.document())
    except InputError as exc:
        with pytest.raises(InputError, match=re.escape(str(exc))):
            ev.encode()
        return
    if len(want) > E.MAX_EVENT_BYTES:
        return
    assert ev.encode() == (want, canonicalize(payload))
    assert ev.canonical() == want == rfc8785.dumps(ev.document())


def test_event_encoding_reports_bad_payloads_from_the_top():
    ev = E.Event(0, 0, "o", "register", "a", "k", {"metrics": {"auc": math.nan}}, "p", "m", 1)
    with pytest.raises(InputError, match=r"number at \$\.payload\.metrics\.auc is nan"):
        ev.encode()


# --- the ledger: cached state, failed batches, parallel signing ---------------------------


def _team(path: Path) -> tuple[Ledger, dict[str, SigningKey]]:
    keys = {n: SigningKey(bytes([i + 1]) * 32) for i, n in enumerate(("admin", "imp"))}
    led = Ledger.init(path, keys["admin"], "admin", origin="t.example/w", ts=1_000_000)
    led.append(
        E.Draft(
            E.KEY_ADD,
            {
                "actor": "imp",
                "key_id": keys["imp"].key_id,
                "public_key": __import__("base64").b64encode(keys["imp"].public_key).decode(),
                "roles": ["approver", "deployer", "registrar"],
            },
            ts=2_000_000,
        ),
        keys["admin"],
    )
    return led, keys


def _drafts(n: int, start: int = 0) -> list[E.Draft]:
    out = []
    for i in range(start, start + n):
        m = f"m{i % 7}"
        out.append(E.Draft(E.REGISTER, {"datasets": [], "metrics": {"auc": 0.5 + i / 1e6},
                                         "params": {}, "parents": [], "tags": {}},
                           m, None, 3_000_000 + i))  # fmt: skip
    return out


def test_two_writers_and_a_failed_batch_keep_the_state_right(tmp_path: Path) -> None:
    a, keys = _team(tmp_path / "l")
    b = Ledger.open(tmp_path / "l")
    a.append_many(_drafts(5), keys["imp"])
    a.append_many(_drafts(5, 5), keys["imp"])  # a now keeps its state
    b.append_many(_drafts(5, 10), keys["imp"])  # behind a's back
    a.append_many(_drafts(5, 15), keys["imp"])  # a catches up from the newest rows
    bad = [*_drafts(2, 20), E.Draft(E.DEPLOY, {"env": "prod"}, "m0", 99, 3_000_100)]
    with pytest.raises(Exception, match="m0:99"):
        a.append_many(bad, keys["imp"])
    with pytest.raises(RuleViolation):
        a.append_many([E.Draft(E.REGISTER, {}, "m1", 1, 3_000_200)], keys["imp"])
    receipts = a.append_many(_drafts(3, 22), keys["imp"])
    assert [r.version for r in receipts] == [4, 4, 4]  # m1, m2, m3 had three versions each
    report = a.verify()
    assert report.ok, report.summary()
    assert report.events == 2 + 23


def test_parallel_signing_gives_the_same_bytes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(signer, "PARALLEL_MIN", 8)
    monkeypatch.setattr(signer, "CHUNK", 5)
    tables = []
    for workers in ("0", "1"):
        monkeypatch.setenv("LEDGER_SIGN_WORKERS", workers)
        led, keys = _team(tmp_path / workers)
        led.append_many(_drafts(23), keys["imp"])
        assert led.verify().ok
        tables.append(led.events(columns=["canonical", "sig"]).to_pylist())
    assert tables[0] == tables[1]
    assert json.loads(tables[1][-1]["canonical"])["seq"] == 24


def test_a_helper_that_dies_leaves_the_batch_to_this_process(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(signer, "PARALLEL_MIN", 8)
    monkeypatch.setattr(signer, "CHUNK", 5)
    monkeypatch.setattr(signer, "_broken", False)
    monkeypatch.setenv("LEDGER_SIGN_WORKERS", "1")
    led, keys = _team(tmp_path / "a")
    led.append_many(_drafts(12), keys["imp"])
    helper = signer._helper
    assert helper is not None and helper.proc.is_alive()
    helper.proc.kill()
    helper.proc.join()
    receipts = led.append_many(_drafts(23, 12), keys["imp"])
    assert [r.seq for r in receipts] == list(range(14, 37))
    assert signer._helper is None and not signer.parallel_enabled(100)
    report = led.verify()
    assert report.ok, report.summary()
    monkeypatch.setenv("LEDGER_SIGN_WORKERS", "0")
    ref, keys = _team(tmp_path / "b")
    ref.append_many(_drafts(12), keys["imp"])
    ref.append_many(_drafts(23, 12), keys["imp"])
    cols = ["canonical", "sig"]
    assert led.events(columns=cols).to_pylist() == ref.events(columns=cols).to_pylist()


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signing helper for batches of 8 events or more, 5 messages a chunk."""
    monkeypatch.setattr(signer, "PARALLEL_MIN", 8)
    monkeypatch.setattr(signer, "CHUNK", 5)
    monkeypatch.setattr(signer, "_broken", False)
    monkeypatch.setenv("LEDGER_SIGN_WORKERS", "1")


def test_a_refused_batch_leaves_the_helper_owing_nothing(tmp_path: Path, small_chunks) -> None:
    """Its chunks in flight are answered after the refusal; the next batch must not take
    those answers for its own (it did: every event of it got a wrong signature)."""
    led, keys = _team(tmp_path / "a")
    led.append_many(_drafts(12), keys["imp"])  # the helper is up and answering
    bad = [*_drafts(30, 12), E.Draft(E.DEPLOY, {"env": "prod"}, "m0", 99, 3_000_100)]
    with pytest.raises(NotFoundError, match="m0:99"):
        led.append_many(bad, keys["imp"])
    helper = signer._helper
    assert helper is not None and not helper.answers.poll(0.3)  # nothing left in the pipe
    led.append_many(_drafts(23, 200), keys["imp"])  # (other events than the refused ones)
    report = led.verify()
    assert report.ok, report.summary()


def test_threads_appending_to_two_ledgers_never_mix_signatures(
    tmp_path: Path, small_chunks
) -> None:
    """The helper answers in request order: two batches at once must not share it."""
    reports = {}

    def write(name: str) -> None:
        led, keys = _team(tmp_path / name)
        for i in range(0, 200, 40):
            led.append_many(_drafts(40, i), keys["imp"])
        reports[name] = led.verify()

    threads = [threading.Thread(target=write, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {n: r.summary().split(",")[0] for n, r in reports.items()} == {
        "a": "OK: 202 events",
        "b": "OK: 202 events",
    }


def test_an_answer_out_of_step_is_never_taken(tmp_path: Path, small_chunks) -> None:
    """Every answer carries its request's id: a stray one makes the batch sign here and
    the helper be dropped, never a wrong signature."""
    led, keys = _team(tmp_path / "a")
    led.append_many(_drafts(12), keys["imp"])  # starts the helper
    helper = signer._helper
    assert helper is not None
    helper.requests.send_bytes(pickle.dumps((0, bytes(32), [b"stray"] * 5)))
    led.append_many(_drafts(23, 12), keys["imp"])
    assert signer._helper is None and not helper.proc.is_alive()
    report = led.verify()
    assert report.ok, report.summary()


def test_a_one_off_writer_replays_exactly_the_touched_models(tmp_path: Path) -> None:
    led, keys = _team(tmp_path / "l")
    for i in range(0, 42, 6):  # several segments, each with several models
        led.append_many(_drafts(6, i), keys["imp"])
    led.append(E.Draft(E.APPROVE, {"env": "prod"}, "m3", 2, 3_100_000), keys["imp"])
    led.append(E.Draft(E.DEPLOY, {"env": "prod"}, "m3", 2, 3_100_001), keys["imp"])
    full = Ledger.open(led.path).state()
    for models in (set(), {"m3"}, {"m0", "m3", "nope"}):
        part = Ledger.open(led.path).state(models=models)
        assert part.keys.keys() == full.keys.keys()
        assert part.versions == {k: v for k, v in full.versions.items() if k[0] in models}
        assert part.latest == {m: n for m, n in full.latest.items() if m in models}


@pytest.mark.parametrize(
    ("big", "max_slices"),
    [(False, 32), (False, 0), (True, 32)],
    ids=["small-ledger-slices", "small-ledger-take", "big-ledger-compute"],
)
def test_read_where_selects_exactly_the_wanted_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big: bool, max_slices: int
) -> None:
    monkeypatch.setattr(storereads, "_BIG_READ", 0 if big else 10**9)
    monkeypatch.setattr(storereads, "_MAX_SLICES", max_slices)
    led, keys = _team(tmp_path / "l")
    for i in range(0, 42, 6):  # several segments, each with several models
        led.append_many(_drafts(6, i), keys["imp"])
    everything = led.store.read(STATE_COLUMNS).to_pylist()
    cases = [
        (E.KEY_ACTIONS, set(), None),
        (E.KEY_ACTIONS, {"m3"}, None),
        (E.KEY_ACTIONS, {"m0", "m3", "nope"}, 20),
        (frozenset(), {"m1", "m2"}, 9),
        (frozenset({E.REGISTER}), set(), 0),
        (frozenset(), set(), None),
        (E.KEY_ACTIONS, {f"m{i}" for i in range(7)}, 20),  # a cut inside a segment
        (E.KEY_ACTIONS, {f"m{i}" for i in range(7)}, 9),
    ]
    for actions, models, before in cases:
        got = led.store.read_where(STATE_COLUMNS, actions, models, before=before)
        want = [
            r
            for r in everything
            if (r["action"] in actions or r["model"] in models)
            and (before is None or r["seq"] < before)
        ]
        assert got.to_pylist() == want, (actions, models, before)


#: An importer's work, run by the scripts below: big batches (the signing helper signs
#: them), then a verify on worker processes (as if the ledger were big).
_IMPORTER = """\
import ledger.scanpool
from ledger import Ledger, SigningKey
from ledger import events as E

def work(path, batches):
    admin, imp = SigningKey(bytes([1]) * 32), SigningKey(bytes([2]) * 32)
    led = Ledger.init(path, admin, 'admin')
    led.add_key(imp.public_key, 'imp', 'registrar', key=admin)
    p = {'datasets': [], 'metrics': {}, 'params': {}, 'parents': [], 'tags': {}}
    for _ in range(batches):
        led.append_many([E.Draft(E.REGISTER, p, f'm{i}') for i in range(2100)], imp)
    ledger.scanpool.PARALLEL_MIN_ROWS = 0
    print(led.verify(jobs=2).summary(), flush=True)
"""


def _run_script(path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """Run ``text`` as the script ``path``, with the signing helper even on one core."""
    path.write_text(text, encoding="utf-8")
    env = {**os.environ, "LEDGER_SIGN_WORKERS": "1"}
    return subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, env=env, timeout=120
    )


def test_helper_processes_do_not_run_an_unguarded_script_again(tmp_path: Path) -> None:
    """multiprocessing's spawn and forkserver children import the parent's __main__ again;
    an importer script without a ``__name__`` guard would append its batches twice."""
    out = _run_script(
        tmp_path / "importer.py",
        _IMPORTER
        + "print('top-level code ran', flush=True)\n"
        + f"work({str(tmp_path / 'l')!r}, 3)\n",
    )
    assert out.returncode == 0, out.stderr
    head = Ledger.open(tmp_path / "l").store.tail()[1].hex()
    assert out.stdout == f"top-level code ran\nOK: 6302 events, head {head}\n"


def test_a_daemonic_process_appends_and_verifies_without_helpers(tmp_path: Path) -> None:
    """A multiprocessing.Pool worker is daemonic and may not start processes: the batch
    is signed and verified in it instead of failing."""
    out = _run_script(
        tmp_path / "daemon.py",
        _IMPORTER
        + "import multiprocessing as mp\n"
        + "if __name__ == '__main__':\n"
        + f"    args = ({str(tmp_path / 'l')!r}, 2)\n"
        + "    pr = mp.get_context('spawn').Process(target=work, args=args, daemon=True)\n"
        + "    pr.start()\n"
        + "    pr.join()\n"
        + "    print('exit', pr.exitcode)\n",
    )
    head = Ledger.open(tmp_path / "l").store.tail()[1].hex()
    assert out.stdout == f"OK: 4202 events, head {head}\nexit 0\n", out.stderr


def test_a_fresh_register_does_not_import_pyarrow_compute(tmp_path: Path) -> None:
    """Importing pyarrow.compute costs a sixth of a fresh `ledger register`."""
    from ledger.keys import write_key_files
    from tests.fresh import fresh_cli

    led, keys = _team(tmp_path / "l")
    led.append_many(_drafts(6), keys["imp"])
    write_key_files(tmp_path / "imp.pem", keys["imp"])
    out, imported = fresh_cli(
        "register", "m1", "--metric", "auc=0.5", "--ledger", str(led.path),
        "--key", str(tmp_path / "imp.pem"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert imported == {"pyarrow.compute": False, "duckdb": False, "pandas": False}
