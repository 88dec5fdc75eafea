"""Signed checkpoints: issuing, storing, C2SP interoperability, rollback and fork verdicts,
incremental verification."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ledger import Ledger, SigningKey, merkle, note, storymap
from ledger import checkpoint as C
from ledger import checkpoints as CS
from ledger import storyread as S
from ledger.errors import InputError, KeyProblem
from ledger.store import segment_name
from tests.conftest import vectors

XGB = "fraud.detector.xgb"


@pytest.fixture
def ck(history, tmp_path):
    """``history`` plus ``cp``, a key holding the checkpointer role (seq 11)."""
    t = history
    t.keys["cp"] = SigningKey(b"k" * 32)
    t.key_files["cp"] = tmp_path / "keys" / "cp.pem"
    from ledger.keys import write_key_files

    write_key_files(t.key_files["cp"], t.keys["cp"])
    t.ledger.add_key(t.keys["cp"].public_key, "cp", "checkpointer", key=t.keys["admin"])
    return t


def root_b64(led: Ledger) -> str:
    import base64

    leaves = [merkle.leaf_hash(c) for c in led.events().column("canonical").to_pylist()]
    return base64.b64encode(merkle.root(leaves)).decode()


def test_checkpoint_command_writes_a_c2sp_note(ck, invoke, tmp_path):
    kid = ck.keys["cp"].key_id
    r = invoke(["checkpoint", "--out", str(tmp_path / "mine.cp")], env=ck.env("cp"))
    assert r.exit_code == 0, r.stderr
    (stored,) = [ck.path / "checkpoints" / n for n in CS.stored_names(ck.ledger)]
    assert r.stdout == (
        f"checkpoint: 12 events, root {root_b64(ck.ledger)}, signed by cp (key {kid})\n"
        f"stored in {stored}\n"
    )
    text = stored.read_text()
    assert (tmp_path / "mine.cp").read_text() == text
    # Any C2SP verifier reads it with the vkey alone.
    vkey = C.vkey(ck.ledger.origin, ck.keys["cp"].public_key)
    name, _, pub = note.parse_vkey(vkey)
    body, signers = note.open_note(text, [(name, pub)])
    assert signers == [ck.ledger.origin]
    cp = note.parse_checkpoint(body)
    assert (cp.origin, cp.size) == (ck.ledger.origin, 12)
    story = storymap.extension(_story_root(ck.ledger))
    assert body == f"{ck.ledger.origin}\n12\n{root_b64(ck.ledger)}\n{story}\n"


def _story_root(led) -> bytes:
    """The story-map root of the whole ledger, by the row-wise reference."""
    t = led.events(columns=S.STORY_COLUMNS)
    return storymap.stories(zip(*(t[c].to_pylist() for c in S.STORY_COLUMNS), strict=True)).root()


def test_every_checkpoint_is_kept(ck, invoke):
    invoke(["checkpoint"], env=ck.env("cp"))
    ck.ledger.register(XGB, key=ck.keys["alice"])
    invoke(["checkpoint"], env=ck.env("cp"))
    invoke(["checkpoint"], env=ck.env("cp"))  # nothing new: same file, not a duplicate
    sizes = [cp.size for cp in ck.ledger.checkpoints()]
    assert sizes == [12, 13]
    assert ck.ledger.verify().ok


def test_checkpoint_needs_the_checkpointer_role(ck, invoke):
    r = invoke(["checkpoint"], env=ck.env("alice"))
    assert (r.exit_code, r.stderr) == (
        5,
        f"Error: key {ck.keys['alice'].key_id} (alice) lacks the 'checkpointer' role needed"
        " to sign checkpoints\n",
    )
    assert [ck.path / "checkpoints" / n for n in CS.stored_names(ck.ledger)] == []


def test_checkpoint_refused_on_a_damaged_ledger(ck, invoke):
    import pyarrow.parquet as pq

    # The segment holding seq 7, however the merges have laid the ledger out.
    seg = next(s for s in ck.ledger.store.segments() if s.first <= 7 <= s.last)
    t = pq.read_table(seg.path).to_pydict()
    assert t["actor"][7 - seg.first] == "bob"
    t["actor"][7 - seg.first] = "dave"
    import pyarrow as pa

    from ledger.store import SCHEMA

    pq.write_table(pa.Table.from_pydict(t, schema=SCHEMA), seg.path)
    r = invoke(["checkpoint"], env=ck.env("cp"))
    assert r.exit_code == 6
    assert r.stderr == (
        f"Error: the ledger does not verify (FAIL: seq 7 in {seg.name}: typed column"
        " 'actor' ('dave') disagrees with the signed bytes ('bob')); no checkpoint issued\n"
    )


def test_revoked_key_cannot_vouch_for_later_trees(ck):
    first = ck.ledger.checkpoint(ck.keys["cp"])
    ck.ledger.revoke_key(ck.keys["cp"].key_id, key=ck.keys["admin"])
    keys = ck.ledger.keys()
    assert C.open_checkpoint(first.note, ck.ledger.origin, keys).size == 12
    later = C.sign(ck.ledger.origin, 14, b"\x01" * 32, ck.keys["cp"])
    with pytest.raises(KeyProblem) as e:
        C.open_checkpoint(later, ck.ledger.origin, keys, where="x")
    assert str(e.value) == (
        f"x is signed by key {ck.keys['cp'].key_id} (cp), revoked at seq 12, before the 14"
        " events it vouches for"
    )


def test_foreign_and_malformed_checkpoints(ck):
    keys = ck.ledger.keys()
    other = C.sign("other.example/reg", 3, b"\x00" * 32, ck.keys["cp"])
    with pytest.raises(InputError, match=r"is a checkpoint of ledger 'other\.example/reg'"):
        C.open_checkpoint(other, ck.ledger.origin, keys, where="x")
    with pytest.raises(InputError, match="x is not a checkpoint"):
        C.open_checkpoint("hello\n\n— a b\n", ck.ledger.origin, keys, where="x")
    stranger = C.sign(ck.ledger.origin, 3, b"\x00" * 32, ck.keys["alice"])
    with pytest.raises(
        KeyProblem, match=r"x \(size 3\) is not signed by a checkpointer key this ledger registers"
    ):
        C.open_checkpoint(stranger, ck.ledger.origin, keys, where="x")


def test_tessera_checkpoints_are_read_and_match_our_tree():
    v = vectors("tlog_checkpoint_vectors.json")
    _, _, pub = note.parse_vkey(v["vkey"])
    leaves = [merkle.leaf_hash(s.encode()) for s in v["leaf_inputs_ascii"]]
    for item in v["checkpoints"]:
        cp = C.open_checkpoint(item["checkpoint_note"], v["origin"], trusted=[pub])
        n = item["tree_size"]
        assert cp.size == n
        assert cp.root == merkle.root(leaves[:n])


# --- verify --trusted: rollback and fork -----------------------------------------------------


def _truncate(led: Ledger, keep: int) -> None:
    for p in (led.path / "events").iterdir():
        first = int(p.name[:12])
        if first >= keep:
            p.unlink()
    shutil.rmtree(led.path / "checkpoints", ignore_errors=True)  # the attacker's cleanup


def test_verify_trusted_ok(ck, invoke, tmp_path):
    invoke(["checkpoint", "--out", str(tmp_path / "kept.cp")], env=ck.env("cp"))
    ck.ledger.register(XGB, key=ck.keys["alice"])
    r = invoke(["verify", "--trusted", str(tmp_path / "kept.cp")], env=ck.env())
    assert (r.exit_code, r.stdout) == (
        0,
        f"OK: 13 events, head {ck.ledger.store.tail()[1].hex()}\n",
    )


def test_rollback_is_named_and_evidence_written(ck, invoke, tmp_path):
    ck.ledger.checkpoint(ck.keys["cp"])  # an older checkpoint (12 events) the ledger keeps
    ck.ledger.register(XGB, key=ck.keys["alice"])
    invoke(["checkpoint", "--out", str(tmp_path / "kept.cp")], env=ck.env("cp"))  # 13 events
    # The attacker removes the last event and the newest checkpoint.
    (ck.path / "events" / segment_name(12, 12)).unlink()
    for p in [ck.path / "checkpoints" / n for n in CS.stored_names(ck.ledger)]:
        if p.name.startswith("000000000013"):
            p.unlink()
    out = tmp_path / "ev"
    r = invoke(
        ["verify", "--trusted", str(tmp_path / "kept.cp"), "--evidence-dir", str(out)],
        env=ck.env(),
    )
    signer = f"cp (key {ck.keys['cp'].key_id})"
    assert (r.exit_code, r.stdout) == (
        1,
        f"FAIL: seq 12 in kept.cp: checkpoint of size 13 signed by {signer} vouches for 13 events"
        " but the ledger holds 12: events 12..12 were removed (truncated tail / rollback)\n"
        f"evidence: {out / 'trusted-13.checkpoint'}, {out / 'ledger-12.checkpoint'}\n",
    )
    assert (out / "trusted-13.checkpoint").read_text() == (tmp_path / "kept.cp").read_text()
    # Both are signed by the ledger's checkpointer: together they prove the rollback.
    keys = ck.ledger.keys()
    a = C.open_checkpoint((out / "trusted-13.checkpoint").read_text(), ck.ledger.origin, keys)
    b = C.open_checkpoint((out / "ledger-12.checkpoint").read_text(), ck.ledger.origin, keys)
    assert (a.size, b.size) == (13, 12)
    r = invoke(
        [
            "verify",
            "--trusted",
            str(tmp_path / "kept.cp"),
            "--format",
            "json",
            "--evidence-dir",
            str(out),
        ],
        env=ck.env(),
    )
    assert json.loads(r.stdout)["problems"][0]["kind"] == "truncated"


def test_fork_is_named(ck, invoke, tmp_path):
    ck.ledger.register(XGB, key=ck.keys["alice"])
    invoke(["checkpoint", "--out", str(tmp_path / "kept.cp")], env=ck.env("cp"))  # 13 events
    # History rewritten from seq 12 on by an insider holding alice's key, same length.
    _truncate(ck.ledger, 12)
    led = Ledger.open(ck.path)
    led.register("fraud.detector.other", key=ck.keys["alice"])
    out = tmp_path / "ev"
    r = invoke(
        ["verify", "--trusted", str(tmp_path / "kept.cp"), "--evidence-dir", str(out)],
        env=ck.env(),
    )
    signer = f"cp (key {ck.keys['cp'].key_id})"
    assert (r.exit_code, r.stdout) == (
        1,
        f"FAIL: seq 12 in kept.cp: the first 13 events no longer hash to the root of checkpoint"
        f" of size 13 signed by {signer} (history rewritten: forked)\n"
        f"evidence: {out / 'trusted-13.checkpoint'}, {out / 'ledger-13.unsigned-checkpoint'}\n",
    )
    r = invoke(
        [
            "verify",
            "--since",
            str(tmp_path / "kept.cp"),
            "--format",
            "json",
            "--evidence-dir",
            str(out),
        ],
        env=ck.env(),
    )
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["problems"][0]["kind"] == "forked" and len(doc["evidence"]) == 2


def test_stored_checkpoint_catches_truncation_without_a_trusted_file(ck, invoke):
    ck.ledger.register(XGB, key=ck.keys["alice"])
    ck.ledger.checkpoint(ck.keys["cp"])
    (ck.path / "events" / segment_name(12, 12)).unlink()
    (stored,) = [ck.path / "checkpoints" / n for n in CS.stored_names(ck.ledger)]
    r = invoke(["verify"], env=ck.env())
    assert r.exit_code == 1
    assert r.stdout.startswith(f"FAIL: seq 12 in checkpoints/{stored.name}: checkpoint of size 13")
    assert r.stdout.endswith("events 12..12 were removed (truncated tail / rollback)\n")


# --- verify --since ----------------------------------------------------------------------------


def test_since_checks_only_new_events(ck, invoke, tmp_path):
    invoke(["checkpoint", "--out", str(tmp_path / "kept.cp")], env=ck.env("cp"))
    for _ in range(3):
        ck.ledger.register(XGB, key=ck.keys["alice"])
    r = invoke(["verify", "--since", str(tmp_path / "kept.cp"), "--format", "json"], env=ck.env())
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["ok"] and doc["since"] == 12 and doc["events"] == 15
    assert doc["root"] == ck.ledger.verify().root
    # A new event tampered with is caught; an old one is not re-read (that is the point).
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ledger.store import SCHEMA

    p = ck.path / "events" / segment_name(13, 13)
    t = pq.read_table(p).to_pydict()
    t["sig"] = [bytes(64)]
    pq.write_table(pa.Table.from_pydict(t, schema=SCHEMA), p)
    r = invoke(["verify", "--since", str(tmp_path / "kept.cp")], env=ck.env())
    assert (r.exit_code, r.stdout) == (
        1,
        f"FAIL: seq 13 in {segment_name(13, 13)}: signature does not verify against key"
        f" {ck.keys['alice'].key_id} (alice)\n",
    )


def test_since_and_trusted_together_is_refused(ck, invoke, tmp_path):
    invoke(["checkpoint", "--out", str(tmp_path / "kept.cp")], env=ck.env("cp"))
    f = str(tmp_path / "kept.cp")
    r = invoke(["verify", "--since", f, "--trusted", f], env=ck.env())
    assert (r.exit_code, r.stderr) == (2, "Error: give --trusted or --since, not both\n")


def test_trusted_key_from_outside(ck, invoke, tmp_path):
    outsider = SigningKey(b"o" * 32)
    leaves = [merkle.leaf_hash(c) for c in ck.ledger.events().column("canonical").to_pylist()]
    text = C.sign(ck.ledger.origin, 12, merkle.root(leaves), outsider)
    (tmp_path / "w.cp").write_text(text)
    from ledger.keys import public_key_pem

    (tmp_path / "w.pub").write_bytes(public_key_pem(outsider.public_key))
    r = invoke(["verify", "--trusted", str(tmp_path / "w.cp")], env=ck.env())
    assert (r.exit_code, r.stderr) == (
        5,
        f"Error: {tmp_path / 'w.cp'} (size 12) is not signed by a checkpointer key this ledger"
        " registers (if a rollback removed its signer's key_add, check it with --trusted-key"
        " KEY)\n",
    )
    r = invoke(
        ["verify", "--trusted", str(tmp_path / "w.cp"), "--trusted-key", str(tmp_path / "w.pub")],
        env=ck.env(),
    )
    assert r.exit_code == 0, r.stdout


def test_a_rollback_that_removed_the_trusted_checkpoints_signer(ck, invoke, tmp_path):
    """The ledger's own registry authenticates a --trusted checkpoint; when a rollback
    removed its signer's key_add, only the key can: the error says so, and with the key
    the rollback is named."""
    led = ck.ledger
    led.register(XGB, key=ck.keys["alice"])  # seq 12
    cp = tmp_path / "kept.cp"
    cp.write_text(led.checkpoint(ck.keys["cp"]).note)  # size 13
    import pyarrow.parquet as pq

    from ledger.store import SCHEMA, segment_name

    kept = led.events().select(SCHEMA.names).slice(0, 11).cast(SCHEMA)  # cp's key_add is 11
    for s in led.store.segments():
        s.path.unlink()
    pq.write_table(kept, led.path / "events" / segment_name(0, 10))
    for cache in ("checkpoints", "tree", "index"):
        shutil.rmtree(led.path / cache, ignore_errors=True)
    r = invoke(["verify", "--trusted", str(cp), "--evidence-dir", str(tmp_path / "ev")],
               env=ck.env())  # fmt: skip
    assert (r.exit_code, r.stderr) == (
        5,
        f"Error: {cp} (size 13) is not signed by a checkpointer key this ledger registers (if a"
        " rollback removed its signer's key_add, check it with --trusted-key KEY)\n",
    )
    pub = tmp_path / "cp.pub"
    from ledger.keys import public_key_pem

    pub.write_bytes(public_key_pem(ck.keys["cp"].public_key))
    r = invoke(["verify", "--trusted", str(cp), "--trusted-key", str(pub),
                "--evidence-dir", str(tmp_path / "ev")], env=ck.env())  # fmt: skip
    assert r.exit_code == 1
    assert r.stdout.splitlines()[0] == (
        f"FAIL: seq 11 in {cp.name}: checkpoint of size 13 signed by trusted key"
        f" {ck.keys['cp'].key_id} vouches for 13 events but the ledger holds 11: events"
        " 11..12 were removed (truncated tail / rollback)"
    )


@pytest.mark.parametrize(
    ("lines", "why"),
    [
        (2, "the checkpoint has 2 ledger-story lines"),
        (0, "malformed ledger-story/2 line 'ledger-story/2 not-base64'"),
    ],
    ids=["two_story_lines", "malformed_story_line"],
)
def test_a_stored_checkpoint_with_a_bad_story_line_is_invalid(ck, invoke, lines, why):
    """FORMAT.md §10.1: at most one ledger-story line, and a well-formed one; otherwise
    the checkpoint would pass as one committing to no story map at all."""
    led = ck.ledger
    cp = led.checkpoint(ck.keys["cp"])
    ext = [storymap.extension(cp.story_root)] * lines or ["ledger-story/2 not-base64"]
    text = note.sign_note(
        note.format_checkpoint(led.origin, cp.size, cp.root, ext),
        led.origin,
        ck.keys["cp"].sign,
        ck.keys["cp"].public_key,
    )
    (stored,) = (led.path / "checkpoints").iterdir()
    stored.write_text(text)
    r = invoke(["verify"], env=ck.env())
    where = f"checkpoints/{stored.name}"
    assert (r.exit_code, r.stdout) == (1, f"FAIL: in {where}: {where} is not a checkpoint: {why}\n")


def test_missing_checkpoint_file(ck, invoke, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke(["verify", "--since", str(tmp_path / "nope")], env=ck.env())
    assert (r.exit_code, r.stderr) == (
        2,
        f"Error: checkpoint file {tmp_path / 'nope'} does not exist\n",
    )
    assert not Path("ledger-evidence").exists()


def test_a_checkpoint_by_a_key_registered_after_its_size_is_invalid(ck, invoke):
    """A key added at seq 11 cannot vouch for the first 11 events, which do not hold its
    registration (a later key would otherwise re-sign history it never saw)."""
    led = ck.ledger
    leaves = [merkle.leaf_hash(c) for c in led.events().column("canonical").to_pylist()]
    text = C.sign(led.origin, 11, merkle.root(leaves[:11]), ck.keys["cp"])
    (ck.path / "checkpoints").mkdir()
    name = C.file_name(11, merkle.root(leaves[:11]), text)
    (ck.path / "checkpoints" / name).write_text(text)
    r = invoke(["verify", "--format", "json"], env=ck.env())
    assert r.exit_code == 1, r.stdout
    (problem,) = json.loads(r.stdout)["problems"]
    assert problem == {
        "kind": "checkpoint_invalid",
        "seq": None,
        "segment": f"checkpoints/{name}",
        "message": f"checkpoints/{name} is signed by key {ck.keys['cp'].key_id} (cp), registered"
        " at seq 11, after the 11 events it vouches for",
    }
    # one event later the same key may sign: the tree then holds its registration
    assert (
        C.open_checkpoint(
            C.sign(led.origin, 12, merkle.root(leaves[:12]), ck.keys["cp"]),
            led.origin,
            led.keys(),
        ).size
        == 12
    )


def test_a_rollback_past_two_checkpoints_names_every_removed_event(ck, invoke, monkeypatch):
    """Checkpoints of 13 and 14 events, then the last two events removed: the verdict
    names events 12..13, from the larger checkpoint (the smaller one knows only of 12)."""
    monkeypatch.setenv("LEDGER_AUTOCOMPACT", "0")
    for _ in range(2):
        ck.ledger.register(XGB, key=ck.keys["alice"])
        ck.ledger.checkpoint(ck.keys["cp"])
    for seq in (12, 13):
        (ck.path / "events" / segment_name(seq, seq)).unlink()
    r = invoke(["verify"], env=ck.env())
    assert r.exit_code == 1
    assert "checkpoint of size 14" in r.stdout
    assert r.stdout.endswith("events 12..13 were removed (truncated tail / rollback)\n")


def test_rollback_evidence_is_never_written_into_the_ledger(ck, invoke, tmp_path, monkeypatch):
    """Run from inside the ledger folder, the default --evidence-dir would land in it: the
    verdict is still FAIL (exit 1), the evidence is not written, and the ledger stays as
    the attacker left it."""
    ck.ledger.register(XGB, key=ck.keys["alice"])
    invoke(["checkpoint", "--out", str(tmp_path / "kept.cp")], env=ck.env("cp"))  # 13 events
    _truncate(ck.ledger, 12)
    before = sorted(p.relative_to(ck.path) for p in ck.path.rglob("*"))
    monkeypatch.chdir(ck.path)
    r = invoke(["verify", "--ledger", ".", "--trusted", str(tmp_path / "kept.cp")])
    assert r.exit_code == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("FAIL: seq 12 in kept.cp:") and len(lines) == 2
    assert lines[1].startswith("evidence not written: ledger-evidence is inside the ledger folder")
    assert lines[1].endswith("(--evidence-dir DIR)")
    assert sorted(p.relative_to(ck.path) for p in ck.path.rglob("*")) == before


def test_since_names_a_rollback_past_a_stored_checkpoint(ck, invoke, tmp_path, monkeypatch):
    """verify --since OLD after the events of a newer stored checkpoint were removed: the
    verdict is truncated, naming that checkpoint (it was "Error: events … are not all
    present", exit 6, from the story-map check)."""
    monkeypatch.setenv("LEDGER_AUTOCOMPACT", "0")
    old = tmp_path / "old.cp"
    assert invoke(["checkpoint", "--out", str(old)], env=ck.env("cp")).exit_code == 0  # 12
    ck.ledger.register(XGB, key=ck.keys["alice"])
    ck.ledger.checkpoint(ck.keys["cp"])  # 13 events
    (ck.path / "events" / segment_name(12, 12)).unlink()
    (newer,) = [n for n in CS.stored_names(ck.ledger) if n.startswith("000000000013")]
    before = _snapshot(ck.path)
    r = invoke(["verify", "--since", str(old)], env=ck.env())
    assert r.exit_code == 1, r.stderr
    assert r.stdout.startswith(f"FAIL: seq 12 in checkpoints/{newer}: checkpoint of size 13")
    assert r.stdout.endswith("events 12..12 were removed (truncated tail / rollback)\n")
    assert _snapshot(ck.path) == before


def _snapshot(root):
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }
