"""Reads never present unverified data as if it were verified (issue 14, ledger/verified.py).

Real ledgers in tmp_path, tampered on disk for real (a segment rewritten with pyarrow,
still a valid Parquet file), after ``verify`` accepted them.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ledger import Ledger, SigningKey, verified
from ledger.errors import UnverifiedError, UnverifiedWarning
from ledger.keys import write_key_files
from ledger.store import segment_name

XGB = "fraud.detector.xgb"
WARN = "Warning: "
TAIL = "; run ledger verify\n"


def _segment_of(path: Path, seq: int) -> Path:
    for p in sorted((path / "events").glob("*.parquet")):
        first, last = (int(x) for x in p.stem.split("-"))
        if first <= seq <= last:
            return p
    raise AssertionError(f"no segment holds seq {seq}")


def _rewrite(seg: Path, column: str, change) -> None:
    """Rewrite one column of a segment in place (same schema: a valid segment)."""
    t = pq.read_table(seg)
    i = t.schema.get_field_index(column)
    t = t.set_column(
        i, t.schema.field(i), pa.array(change(t.column(column).to_pylist()), t.schema.field(i).type)
    )
    pq.write_table(t, seg, compression="zstd")


def _forge_comment(path: Path, seq: int) -> Path:
    seg = _segment_of(path, seq)
    first = int(seg.stem.split("-")[0])

    def change(payloads):
        doc = json.loads(payloads[seq - first])
        doc["comment"] = "forged"
        payloads[seq - first] = json.dumps(doc, separators=(",", ":"), sort_keys=True)
        return payloads

    _rewrite(seg, "payload", change)
    return seg


def _snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, p.read_bytes())
        else:
            out[str(p.relative_to(root))] = (0, 0, b"dir")
    return out


@pytest.fixture
def audited(history, tmp_path, invoke):
    """``history`` with a checkpointer and a stored checkpoint (for ``evidence``), verified."""
    t = history
    t.keys["cp"] = SigningKey(b"k" * 32)
    t.key_files["cp"] = tmp_path / "keys" / "cp.pem"
    write_key_files(t.key_files["cp"], t.keys["cp"])
    t.ledger.add_key(t.keys["cp"].public_key, "cp", "checkpointer", key=t.keys["admin"])
    r = invoke(["checkpoint"], env=t.env("cp"))
    assert r.exit_code == 0, r.stderr
    r = invoke(["verify"], env=t.env())
    assert (r.exit_code, r.stderr) == (0, "")
    return t


#: Every read command, with the arguments of one question about the history.
READS = {
    "status": ["status"],
    "log": ["log"],
    "history": ["history", XGB],
    "query": ["query", "self-approval"],
    "sql": ["sql", "select seq, comment from approvals where seq = 9"],
    "lineage": ["lineage", f"{XGB}:1"],
    "lineage-export": ["lineage", f"{XGB}:1", "--format", "json"],
    "log-export": ["log", "--format", "jsonl"],
    "impact": ["impact", "--model", "fraud.detector.base:1"],
    "evidence": ["evidence", f"{XGB}:1", "--out", "EVIDENCE"],
    "keys": ["keys", "list"],
    "policy": ["policy", "show"],
}


def _args(name: str, tmp_path: Path) -> list[str]:
    return [str(tmp_path / "bundle.json") if a == "EVIDENCE" else a for a in READS[name]]


@pytest.mark.parametrize("name", READS)
def test_a_verified_ledger_reads_silently(audited, invoke, tmp_path, name):
    r = invoke(_args(name, tmp_path), env=audited.env())
    assert (r.exit_code, r.stderr) == (0, "")
    assert r.stdout
    r = invoke(["--help"])  # (the group still works)
    assert r.exit_code == 0


@pytest.mark.parametrize("name", READS)
def test_a_tampered_segment_warns_every_read(audited, invoke, tmp_path, name):
    t = audited
    seg = _forge_comment(t.path, 9)
    count = int(seg.stem.split("-")[1]) - int(seg.stem.split("-")[0]) + 1
    line = f"events/{seg.name} changed since ledger verify accepted it ({count} events)"
    r = invoke(_args(name, tmp_path), env=t.env())
    assert (r.exit_code, r.stderr) == (0, WARN + line + TAIL)
    assert r.stdout
    if name == "sql":
        assert "forged" in r.stdout  # the answer is still given, flagged
    (tmp_path / "bundle.json").unlink(missing_ok=True)
    r = invoke([*_args(name, tmp_path), "--require-verified"], env=t.env())
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "Error: " + line + TAIL)
    assert not (tmp_path / "bundle.json").exists()
    r = invoke(_args(name, tmp_path), env=t.env() | {"LEDGER_REQUIRE_VERIFIED": "1"})
    assert (r.exit_code, r.stdout, r.stderr) == (1, "", "Error: " + line + TAIL)


def test_verify_still_fails_and_then_reads_say_so(audited, invoke):
    t = audited
    seg = _forge_comment(t.path, 9)
    r = invoke(["verify"], env=t.env())
    problem = f"seq 9 in {seg.name}: typed column 'payload' disagrees with the signed bytes"
    assert (r.exit_code, r.stdout) == (1, f"FAIL: {problem}\n")
    r = invoke(["sql", "select seq, comment from approvals where seq = 9"], env=t.env())
    assert r.exit_code == 0
    assert r.stderr == f"{WARN}the last ledger verify of this ledger failed ({problem}){TAIL}"


def test_a_fresh_append_is_verified_on_the_fly_and_extends_the_record(
    history, invoke, verified_dir
):
    t = history
    assert t.ledger.verify().ok
    (record,) = verified_dir.glob("*.json")
    before = json.loads(record.read_text())
    assert before["segments"][-1]["last"] == 10
    t.ledger.approve(XGB, 1, "canary", key=t.keys["bob"], comment="late")
    r = invoke(["sql", "select seq, comment from approvals where seq = 11"], env=t.env())
    assert (r.exit_code, r.stderr) == (0, "")
    after = json.loads(record.read_text())
    assert after["segments"][-1]["last"] == 11
    assert after["segments"][-1]["last_hash"] == t.ledger.store.tail()[1].hex()
    # Extended once: the next read is the plain comparison, still silent.
    r = invoke(["log", "--limit", "1"], env=t.env())
    assert (r.exit_code, r.stderr) == (0, "")
    assert json.loads(record.read_text()) == after


def test_a_compaction_of_accepted_segments_is_accepted_without_a_warning(
    history, invoke, verified_dir
):
    t = history
    assert t.ledger.verify().ok
    assert t.ledger.compact()[1] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedWarning)
        assert t.ledger.unverified() is None
        t.ledger.status()
    (record,) = verified_dir.glob("*.json")
    names = [s["name"] for s in json.loads(record.read_text())["segments"]]
    assert names == [segment_name(0, 10)]


def test_a_forged_compacted_segment_is_reported(history, invoke):
    t = history
    assert t.ledger.verify().ok
    t.ledger.compact()
    seg = _forge_comment(t.path, 9)
    r = invoke(["log"], env=t.env())
    assert r.exit_code == 0
    assert r.stderr == (
        f"{WARN}11 events in events/{seg.name} are not verified (seq 9 in {seg.name}:"
        f" typed column 'payload' disagrees with the signed bytes){TAIL}"
    )


def test_a_forged_append_is_caught_on_the_fly(history, invoke, monkeypatch):
    monkeypatch.setenv("LEDGER_AUTOCOMPACT", "0")
    t = history
    assert t.ledger.verify().ok
    t.ledger.deploy(XGB, 1, "canary", key=t.keys["carol"])
    seg = t.path / "events" / segment_name(11, 11)
    _rewrite(seg, "sig", lambda sigs: [bytes([s[0] ^ 1]) + s[1:] for s in sigs])
    r = invoke(["status", XGB], env=t.env())
    carol = t.keys["carol"].key_id
    assert r.exit_code == 0
    assert r.stderr == (
        f"{WARN}1 event in events/{seg.name} is not verified (seq 11 in {seg.name}:"
        f" signature does not verify against key {carol} (carol)){TAIL}"
    )
    r = invoke(["status", XGB, "--require-verified"], env=t.env())
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr.startswith("Error: 1 event in ") and r.stderr.count("\n") == 1


def test_too_many_appends_to_check_on_the_fly(history, invoke, monkeypatch):
    monkeypatch.setenv("LEDGER_AUTOCOMPACT", "0")
    t = history
    assert t.ledger.verify().ok
    for env in ("a", "b", "c", "d", "e"):
        t.ledger.approve(XGB, 1, env, key=t.keys["bob"])
    r = invoke(["log"], env=t.env())
    assert r.exit_code == 0
    assert r.stderr == (
        f"{WARN}5 events in events/{segment_name(11, 11)} … events/{segment_name(15, 15)}"
        " (5 segments) are not verified (appended since ledger verify; more than 4 segments"
        f" or 10000 events to check on the fly){TAIL}"
    )
    # The event limit, too (lowered here rather than appending 10,001 events).
    monkeypatch.setattr(verified, "ON_THE_FLY_EVENTS", 1)
    monkeypatch.setenv("LEDGER_AUTOCOMPACT", "1")
    t.ledger.compact()  # one segment 0..15: 5 events beyond the record, in 1 segment
    r = invoke(["log"], env=t.env())
    assert r.stderr == (
        f"{WARN}5 events in events/{segment_name(0, 15)} are not verified (appended since"
        f" ledger verify; more than 4 segments or 1 events to check on the fly){TAIL}"
    )
    # verify accepts them all; reads are silent again.
    assert invoke(["verify"], env=t.env()).exit_code == 0
    assert invoke(["log"], env=t.env()).stderr == ""


def test_a_never_verified_ledger_warns_once(team, invoke, verified_dir):
    r = invoke(["log"], env=team.env())
    assert (r.exit_code, r.stderr) == (
        0,
        f"{WARN}this ledger has not been verified on this machine (no record of ledger"
        f" verify in {verified_dir}){TAIL}",
    )
    r = invoke(["log", "--require-verified"], env=team.env())
    assert (r.exit_code, r.stdout) == (1, "")
    assert r.stderr.startswith("Error: this ledger has not been verified on this machine")


def test_the_api_warns_or_raises(history):
    t = history
    with pytest.warns(UnverifiedWarning, match="not been verified on this machine"):
        t.ledger.sql("select count(*) from events")
    assert t.ledger.verify().ok
    _forge_comment(t.path, 9)
    with pytest.warns(UnverifiedWarning, match="changed since ledger verify accepted it"):
        t.ledger.history(XGB)
    strict = Ledger.open(t.path, require_verified=True)
    with pytest.raises(UnverifiedError, match="changed since ledger verify") as info:
        strict.sql("select seq, comment from approvals where seq = 9")
    assert info.value.exit_code == 1 and info.value.kind == "unverified"
    assert "changed since" in (t.ledger.unverified() or "")


def test_the_api_honours_the_environment(history, monkeypatch):
    monkeypatch.setenv("LEDGER_REQUIRE_VERIFIED", "1")
    with pytest.raises(UnverifiedError):
        Ledger.open(history.path).events()
    assert not Ledger.open(history.path, require_verified=False).require_verified


def test_an_unwritable_record_folder_does_not_break_verify(history, invoke, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("LEDGER_VERIFIED_DIR", str(blocker / "records"))
    r = invoke(["verify"], env=history.env())
    assert (r.exit_code, r.stderr) == (0, "")
    assert r.stdout.startswith("OK: 11 events")
    if os.geteuid() != 0:  # (root writes anywhere)
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        monkeypatch.setenv("LEDGER_VERIFIED_DIR", str(ro))
        r = invoke(["verify"], env=history.env())
        assert (r.exit_code, r.stderr) == (0, "")
    r = invoke(["log"], env=history.env())
    assert r.exit_code == 0 and "has not been verified on this machine" in r.stderr


def test_the_record_never_lands_in_the_ledger_folder(history, invoke, verified_dir, monkeypatch):
    t = history
    before = _snapshot(t.path)
    assert invoke(["verify"], env=t.env()).exit_code == 0
    assert invoke(["status"], env=t.env()).stderr == ""
    assert _snapshot(t.path) == before
    (record,) = verified_dir.glob("*.json")
    assert oct(record.stat().st_mode & 0o777) == "0o600"
    assert oct(verified_dir.stat().st_mode & 0o777) == "0o700"
    doc = json.loads(record.read_text())
    assert doc["ledger"] == os.path.realpath(t.path)
    assert doc["genesis_hash"] == t.ledger.identity["genesis_hash"]
    # Pointed inside the ledger folder, the record is not written there.
    monkeypatch.setenv("LEDGER_VERIFIED_DIR", str(t.path / "cache"))
    assert invoke(["verify"], env=t.env()).exit_code == 0
    r = invoke(["status"], env=t.env())
    assert "has not been verified on this machine" in r.stderr
    assert _snapshot(t.path) == before


def test_the_record_location(monkeypatch, tmp_path):
    monkeypatch.delenv("LEDGER_VERIFIED_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert verified.record_dir() == tmp_path / "xdg" / "ledger" / "verified"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert verified.record_dir() == tmp_path / "home" / ".cache" / "ledger" / "verified"


def test_a_changed_index_bundle_is_rechecked(tmp_path, invoke):
    """A segment big enough to have an index bundle: the bundle rewritten (same events)
    is accepted after a recheck; altered, it is reported."""
    admin = SigningKey.generate()
    led = Ledger.init(tmp_path / "reg", admin, "admin", roles="admin,registrar")
    from ledger import Draft

    drafts = [Draft("register", {}, f"m{i}") for i in range(1100)]
    led.append_many(drafts, admin)
    assert led.verify().ok
    seg = next(s for s in led.store.segments() if s.count >= 1024)
    events_file, _edges = led.store.index_files(seg)
    data = events_file.read_bytes()
    events_file.unlink()
    events_file.write_bytes(data)  # same bytes, new inode: rechecked, accepted
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnverifiedWarning)
        led.status("m5")
    table = pa.ipc.open_file(events_file).read_all()
    actor = table.schema.get_field_index("actor")
    field = table.schema.field(actor)
    altered = table.set_column(actor, field, pa.array(["evil"] * table.num_rows, field.type))
    with pa.OSFile(str(events_file), "wb") as sink, pa.ipc.new_file(sink, altered.schema) as w:
        w.write_table(altered)
    with pytest.warns(UnverifiedWarning, match=r"index/.* changed since ledger verify accepted"):
        led.status("m5")
