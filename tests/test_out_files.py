"""``--out`` never writes into a ledger folder, writes atomically, and writes tables too.

Each attack points a read command's output at a file of the ledger (issue 16: ``log
--format csv --out LEDGER/events/<segment>.parquet`` overwrote a segment); each must be
a one-line ``Error:`` with exit 2 and the ledger byte-for-byte as it was."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledger import output
from ledger.keys import SigningKey, write_key_files


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def reg(team, tmp_path):
    t, k = team, team.keys
    t.ledger.register("fraud.detector.xgb", key=k["alice"])
    t.ledger.approve("fraud.detector.xgb", 1, "staging", key=k["bob"])
    t.keys["cp"] = SigningKey(b"o" * 32)
    t.key_files["cp"] = tmp_path / "keys" / "cp.pem"
    write_key_files(t.key_files["cp"], t.keys["cp"])
    t.ledger.add_key(t.keys["cp"].public_key, "cp", "checkpointer", key=k["admin"])
    t.ledger.checkpoint(t.keys["cp"])
    return t


def _segment(t) -> Path:
    return next((t.path / "events").glob("*.parquet"))


# (attack, command line after `ledger`, with {L} the ledger folder and {seg} a segment)
ATTACKS = [
    ("log_csv_over_a_segment", ["log", "--format", "csv", "--out", "{seg}"]),
    ("log_json_over_the_identity", ["log", "--format", "json", "--out", "{L}/ledger.json"]),
    ("sql_parquet_into_events", ["sql", "SELECT seq FROM events", "--format", "parquet",
                                 "--out", "{L}/events/000000000099-000000000099.parquet"]),
    ("status_table_over_the_lock", ["status", "--out", "{L}/.lock"]),
    ("query_into_the_index", ["query", "self-approval", "--format", "csv",
                              "--out", "{L}/index/x.csv"]),
    ("evidence_over_the_identity", ["evidence", "fraud.detector.xgb:1", "--out",
                                    "{L}/ledger.json"]),
    ("prove_into_checkpoints", ["prove", "1", "--out", "{L}/checkpoints/x.json"]),
    ("checkpoint_copy_over_a_checkpoint", ["checkpoint", "--out", "{L}/checkpoints/c"]),
    ("lineage_dot_into_the_tree_cache", ["lineage", "fraud.detector.xgb:1", "--format", "dot",
                                         "--out", "{L}/tree/blocks"]),
    ("impact_json_beside_the_identity", ["impact", "--model", "fraud.detector.xgb:1",
                                        "--format", "json", "--out", "{L}/impact.json"]),
    ("through_a_dotdot_path", ["log", "--format", "csv", "--out", "{L}/events/../ledger.json"]),
    ("through_a_symlink", ["log", "--format", "csv", "--out", "{link}"]),
]  # fmt: skip


@pytest.mark.parametrize(("attack", "args"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_out_inside_the_ledger_is_refused_and_nothing_changes(reg, invoke, tmp_path, attack, args):
    t = reg
    link = tmp_path / "innocent.csv"
    link.symlink_to(t.path / "ledger.json")
    fill = {"L": str(t.path), "seg": str(_segment(t)), "link": str(link)}
    before = _snapshot(t.path)
    r = invoke([a.format(**fill) for a in args], env=t.env("cp"))
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "is inside the ledger folder" in r.stderr
    assert _snapshot(t.path) == before


def test_a_table_goes_to_the_out_file_as_plain_text(reg, invoke, tmp_path):
    t = reg
    out = tmp_path / "status.txt"
    r = invoke(["status", "--out", str(out)], env=t.env())
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    text = out.read_text()
    assert "fraud.detector.xgb" in text and "\x1b[" not in text  # (no colour codes)
    printed = invoke(["status"], env=t.env()).stdout
    assert text == printed


def test_a_failed_write_leaves_the_old_file_and_no_partial_one(reg, invoke, tmp_path, monkeypatch):
    t = reg
    out = tmp_path / "log.csv"
    out.write_text("the previous export\n")
    calls = {"n": 0}
    real = output._cell

    def breaks_midway(v):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(28, "No space left on device")
        return real(v)

    monkeypatch.setattr(output, "_cell", breaks_midway)
    r = invoke(["log", "--format", "csv", "--out", str(out)], env=t.env())
    assert r.exit_code == 7, (r.stdout, r.stderr)
    assert r.stderr == f"Error: cannot write {out}: no space left on device\n"
    assert out.read_text() == "the previous export\n"
    assert sorted(os.listdir(tmp_path)) == sorted(["keys", "reg", "log.csv", "verified-records"]
                                                  if (tmp_path / "verified-records").exists()
                                                  else ["keys", "reg", "log.csv"])  # fmt: skip


def test_outputs_get_the_usual_file_mode(reg, invoke, tmp_path):
    t = reg
    out = tmp_path / "log.json"
    assert invoke(["log", "--format", "json", "--out", str(out)], env=t.env()).exit_code == 0
    mask = os.umask(0o022)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask
