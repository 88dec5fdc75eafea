"""Corrupted and hostile ledger folders: a precise verdict or a one-line error, never a
traceback, a hang, unbounded memory or a write (the probe runs in a sandboxed child)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.cli import cli
from tests.hostile_files import (
    CASES,
    FUZZ,
    KNOWN_BUGS,
    build_source,
    damaged_copy,
    events_of,
    probe_many,
    seg,
    snapshot,
)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_source(tmp_path_factory.mktemp("corrupt"))


def _prefix(verdict: tuple) -> str:
    """The text verdict's start, from the kind's seq and segment: ``FAIL: seq N in FILE:``."""
    _, _, seq, rng = verdict
    where = []
    if seq is not None:
        where.append(f"seq {seq}")
    if rng is not None:
        name = seg(Path(), rng).name if "-" in rng else rng
        where.append(f"in {name}")
    return f"FAIL: {' '.join(where)}: "


@pytest.fixture(scope="module")
def probed(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """Every case damaged in its own copy, all read by one sandboxed probe process."""
    root = tmp_path_factory.mktemp("damaged")
    paths = {
        case: damaged_copy(source, root / f"c{i}", mutate)
        for i, (case, (mutate, _)) in enumerate(sorted(CASES.items()))
    }
    results = probe_many(list(paths.values()))
    return {case: (path, results[path]) for case, path in paths.items()}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[c]))
        if c in KNOWN_BUGS
        else c
        for c in sorted(CASES)
    ],
)
def test_damaged_ledger_gets_a_precise_verdict(
    case: str, source: Path, probed: dict[str, tuple]
) -> None:
    expected = CASES[case][1]
    path, result = probed[case]
    assert result.problems == [], result.problems
    assert result.verdict == expected, (result.verdict, result.text, result.stderr)
    if expected[0] == "FAIL":
        assert result.text.startswith(_prefix(expected)), result.text
        assert result.text.count("\n") == 1
    elif expected[0] == "OK":
        assert events_of(path) == events_of(source)
    else:
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert result.maxrss_mb < 1024


@pytest.mark.parametrize("case", sorted(CASES))
def test_writer_on_damaged_ledger_never_masks_damage(
    case: str, source: Path, tmp_path: Path
) -> None:
    """An append to a damaged ledger either fails with a one-line error having written
    nothing, or appends one event without changing verify's verdict on the damage."""
    mutate, expected = CASES[case]
    path = damaged_copy(source, tmp_path / "reg", mutate)
    key = source.parent / "alice.pem"
    before = snapshot(path)
    r = CliRunner().invoke(cli, ["register", "zz", "--ledger", str(path), "--key", str(key)])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    if r.exit_code == 0:
        from ledger import Ledger

        report = Ledger.open(path).verify()
        if expected[0] == "OK":
            assert report.ok and report.events == expected[1] + 1
        else:
            p = report.problems[0]
            assert ("FAIL", p.kind, p.seq) == expected[:3], (r.stdout, report.summary())
        return
    assert r.exit_code in (2, 3, 4, 5, 6, 7), (r.exit_code, r.stderr)
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
    after = snapshot(path)
    after.pop(".lock", None), before.pop(".lock", None)  # taking the lock may create it
    assert after == before


def test_random_damage_is_caught_or_harmless(source: Path, tmp_path: Path) -> None:
    """Random bit flips, truncations, zeroed blocks and appended garbage (two of each)."""
    rng = random.Random(11)
    names = sorted(FUZZ) * 2
    paths = [
        damaged_copy(source, tmp_path / f"f{i}", FUZZ[name], seed=rng.randrange(1 << 30))
        for i, name in enumerate(names)
    ]
    results = probe_many(paths)
    for name, path in zip(names, paths, strict=True):
        result = results[path]
        assert result.problems == [], (name, result.problems)
        if result.verdict[0] == "OK":  # e.g. a flip inside statistics no reader looks at
            assert events_of(path) == events_of(source), name
        else:
            assert result.verdict[0] in ("FAIL", "Error"), (name, result.verdict)


def test_truncated_tail_needs_a_trusted_checkpoint(tmp_path: Path) -> None:
    """The limit of a hash chain: removing the newest events leaves a valid shorter chain.
    Only a checkpoint kept from earlier (in the ledger, or better, outside it) shows it."""
    import json
    import shutil

    from ledger import Ledger, load_signing_key
    from tests.writer_process import make_ledger

    path, key_file = make_ledger(tmp_path)
    key = load_signing_key(key_file)
    led = Ledger.open(path)
    for i in range(3):
        led.register(f"m{i}", key=key)
    trusted = tmp_path / "trusted.checkpoint"
    shutil.copy(led.checkpoint(key).path, trusted)
    seg(path / "events", "4-4").unlink()

    def verify(*args: str) -> tuple[int, list]:
        r = CliRunner().invoke(cli, ["verify", "--format", "json", *args, "--ledger", str(path)])
        return r.exit_code, [(p["kind"], p["seq"]) for p in json.loads(r.stdout)["problems"]]

    assert verify() == (1, [("truncated", 4)])  # the checkpoint stored in the ledger
    shutil.rmtree(path / "checkpoints")  # ... which whoever truncated can delete too
    assert verify() == (0, [])  # undetectable from the ledger alone
    evidence = ["--evidence-dir", str(tmp_path / "evidence")]
    assert verify("--trusted", str(trusted), *evidence) == (1, [("truncated", 4)])
