"""``ledger demo`` is the README's ledger: the same on every machine (published seeds,
fixed past dates), checkpointed so that evidence works at once, and quick."""

from __future__ import annotations

import os
import stat
import time

from ledger import Ledger
from ledger import events as E
from ledger.demo import ACTORS, demo_key, run_demo


def _quiet(_line: str) -> None:
    pass


def test_the_demo_is_the_same_wherever_it_is_built(tmp_path):
    a = run_demo(tmp_path / "a" / "demo-ledger", echo=_quiet)
    b = run_demo(tmp_path / "b" / "elsewhere", echo=_quiet)
    assert a.verify().head == b.verify().head
    assert [k.key_id for k in a.keys()] == [k.key_id for k in b.keys()]
    assert [c.note for c in a.checkpoints()] == [c.note for c in b.checkpoints()]
    assert [k.key_id for k in a.keys()] == [demo_key(name).key_id for name in ACTORS]


def test_the_demo_keys_are_written_like_any_other(tmp_path):
    run_demo(tmp_path / "demo", echo=_quiet)
    keys = tmp_path / "demo-keys"
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700
    for name in ACTORS:
        assert stat.S_IMODE(os.stat(keys / f"{name}.pem").st_mode) == 0o600
        assert (keys / f"{name}.pub").is_file()


def test_the_demo_events_carry_fixed_past_dates_in_order(tmp_path):
    led = run_demo(tmp_path / "demo", echo=_quiet)
    ts = [E.format_ts(t) for t in led.events(columns=["ts"])["ts"].cast("int64").to_pylist()]
    assert ts[0] == "2026-03-02T09:00:00.000000Z"  # genesis
    assert ts[-1] == "2026-09-16T09:10:00.000000Z"  # the model's description
    assert ts == sorted(ts)
    assert E.parse_ts(ts[-1]) < time.time() * 1_000_000


def test_evidence_works_right_after_the_demo(tmp_path, invoke, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke(["demo"])
    assert r.exit_code == 0, r.output
    (cp,) = Ledger.open("demo-ledger").checkpoints()
    assert (cp.size, cp.signer_key_id) == (33, demo_key("notary").key_id)
    r = invoke(
        ["evidence", "fraud.detector.xgb:1", "--out", "xgb1.json", "--ledger", "demo-ledger"]
    )
    assert r.exit_code == 0, r.output
    r = invoke(["verify-evidence", "xgb1.json", "--trusted-key", "demo-ledger-keys/notary.pub"])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(
        "OK: fraud.detector.xgb:1 registered by alice at 2026-03-02T14:00:00.000000Z,"
    )


def test_the_demo_policy_file_is_the_policy_it_set(tmp_path, invoke):
    led = run_demo(tmp_path / "demo", echo=_quiet)
    before = led.policy().policy.to_dict()
    args = ["policy", "set", str(tmp_path / "demo-artifacts" / "mrm.toml")]
    r = invoke(
        [
            *args,
            "--ledger",
            str(tmp_path / "demo"),
            "--key",
            str(tmp_path / "demo-keys" / "admin.pem"),
        ]
    )
    assert r.exit_code == 0, r.output
    assert Ledger.open(tmp_path / "demo").policy().policy.to_dict() == before
