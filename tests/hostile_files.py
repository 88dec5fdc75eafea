"""Damaged and hostile ledger folders, and a probe that reads them in a sandboxed process.

Each mutation takes a copy of a small ledger (segments 0-0, 1-1, 2-4, 5-5, 6-8) and damages
it one way. ``probe`` then runs ``ledger verify --format json``, ``ledger verify`` and
``ledger log`` on it in a child process with a timeout (a hang fails) and an address-space
limit (unbounded memory fails), and ``snapshot`` proves the readers wrote nothing.
Shared by tests/test_corruption.py and benchmarks/torture.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

#: Address-space limit of the probe process: pyarrow reserves ~0.7 GB of address space
#: at start and up to ~1.7 GB reading a 32 MB value; "unbounded" would blow far past this.
MEMORY_LIMIT = 4096 << 20
TIMEOUT = 60.0

SEGMENTS = ("0-0", "1-1", "2-4", "5-5", "6-8")
#: Size of the "huge" values; benchmarks/torture.py raises it.
HUGE = int(os.environ.get("LEDGER_TEST_HUGE", str(4 << 20)))


def seg(events: Path, rng: str) -> Path:
    a, b = (int(x) for x in rng.split("-"))
    return events / f"{a:012d}-{b:012d}.parquet"


def build_source(root: Path) -> Path:
    """A ledger whose segments are 0-0, 1-1, 2-4, 5-5 and 6-8 (no compaction)."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEDGER_AUTOCOMPACT", "0")  # the layout below is the point
        return _build_source(root)


def _build_source(root: Path) -> Path:
    from ledger import Draft, Ledger, SigningKey
    from ledger import events as E

    admin, alice = SigningKey.generate(), SigningKey.generate()
    path = root / "source"
    led = Ledger.init(path, admin, "admin", origin="test.example/corrupt")
    led.add_key(alice.public_key, "alice", "registrar", key=admin)

    def reg(model: str, **kw: Any) -> Draft:
        return Draft(E.REGISTER, E.register_payload(**kw), model)

    led.append_many(
        [reg("a", tags=["t=1"]), reg("b", metadata={"k": "é"}), reg("a", metrics={"x": 1.5})],
        alice,
    )
    led.register("c", key=alice, description="one")
    led.append_many([reg("c"), reg("d"), reg("a")], alice)
    from ledger.keys import write_key_files

    write_key_files(root / "alice.pem", alice)
    assert sorted(p.name for p in (path / "events").iterdir()) == sorted(
        seg(path / "events", r).name for r in SEGMENTS
    )
    return path


def snapshot(path: Path) -> dict[str, Any]:
    """Every entry under ``path``: type, mode, size and content hash (or link target)."""
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(path))
            st = p.lstat()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                out[rel] = (
                    "file",
                    st.st_mode,
                    st.st_size,
                    hashlib.sha256(p.read_bytes()).hexdigest(),
                )
            else:
                out[rel] = ("other", st.st_mode)
    return out


# --- rewriting segments ------------------------------------------------------------------


def _rewrite(p: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    table = pq.read_table(p)
    pq.write_table(change(table), p)


def _set(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.column_names.index(name)
    return table.set_column(i, pa.field(name, values.type), values)


def _flip(p: Path, rng: random.Random, n: int = 1) -> None:
    data = bytearray(p.read_bytes())
    for _ in range(n):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    p.write_bytes(bytes(data))


def _huge_value(table: pa.Table, name: str, size: int) -> pa.Table:
    col = table.column(name).to_pylist()
    col[0] = (b"x" if name == "canonical" else "x") * size
    return _set(table, name, pa.array(col, table.schema.field(name).type))


def _other_ledger_row(events: Path) -> pa.Table:
    """Segment 5-5 of an unrelated ledger: a different event under the same seq."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        other = build_source(Path(d))
        return pq.read_table(seg(other / "events", "5-5"))


def _identity(path: Path, change: Callable[[dict[str, Any]], Any]) -> None:
    p = path / "ledger.json"
    p.write_text(json.dumps(change(json.loads(p.read_text()))))


def _symlink_segment(path: Path) -> None:
    s = seg(path / "events", "5-5")
    target = path.parent / f"outside-{path.name}.parquet"
    shutil.move(s, target)
    s.symlink_to(target)


#: name -> (mutation, the verdict it must get). A verdict is ``("FAIL", kind, seq,
#: segment)``, ``("OK", events)`` or ``("Error", exit code, message start)``.
Mutation = Callable[[Path, random.Random], None]
EV = "events"
CASES: dict[str, tuple[Mutation, tuple[Any, ...]]] = {
    "truncated to half": (
        lambda p, r: os.truncate(s := seg(p / EV, "6-8"), s.stat().st_size // 2),
        ("FAIL", "unreadable", 6, "6-8"),
    ),
    "truncated to zero": (
        lambda p, r: os.truncate(seg(p / EV, "2-4"), 0),
        ("FAIL", "unreadable", 2, "2-4"),
    ),
    "last byte cut": (
        lambda p, r: os.truncate(s := seg(p / EV, "5-5"), s.stat().st_size - 1),
        ("FAIL", "unreadable", 5, "5-5"),
    ),
    "footer length huge": (
        lambda p, r: _patch(seg(p / EV, "2-4"), -8, b"\xff\xff\xff\x7f"),
        ("FAIL", "unreadable", 2, "2-4"),
    ),
    "extra column": (
        lambda p, r: _rewrite(
            seg(p / EV, "2-4"), lambda t: t.append_column("x", pa.array([1] * 3))
        ),
        ("FAIL", "bad_schema", 2, "2-4"),  # exactly FORMAT.md §5's columns
    ),
    "missing column": (
        lambda p, r: _rewrite(seg(p / EV, "2-4"), lambda t: t.drop_columns(["sig"])),
        ("FAIL", "bad_schema", 2, "2-4"),
    ),
    "wrong type seq": (
        lambda p, r: _rewrite(
            seg(p / EV, "5-5"), lambda t: _set(t, "seq", t.column("seq").cast(pa.string()))
        ),
        ("FAIL", "bad_schema", 5, "5-5"),
    ),
    "wrong type hash": (
        lambda p, r: _rewrite(
            seg(p / EV, "5-5"), lambda t: _set(t, "hash", t.column("hash").cast(pa.binary()))
        ),
        ("FAIL", "bad_schema", 5, "5-5"),
    ),
    "wrong type ts": (
        lambda p, r: _rewrite(
            seg(p / EV, "5-5"), lambda t: _set(t, "ts", t.column("ts").cast(pa.int64()))
        ),
        ("FAIL", "bad_schema", 5, "5-5"),
    ),
    "huge string in a typed column": (
        lambda p, r: _rewrite(seg(p / EV, "2-4"), lambda t: _huge_value(t, "model", HUGE)),
        ("FAIL", "column_mismatch", 2, "2-4"),
    ),
    "huge canonical bytes": (
        lambda p, r: _rewrite(seg(p / EV, "2-4"), lambda t: _huge_value(t, "canonical", HUGE)),
        ("FAIL", "bytes_modified", 2, "2-4"),
    ),
    "payload column not JSON": (
        lambda p, r: _rewrite(
            seg(p / EV, "5-5"), lambda t: _set(t, "payload", pa.array(['{"a": tru']))
        ),
        ("FAIL", "column_mismatch", 5, "5-5"),
    ),
    "rows reversed": (
        lambda p, r: _rewrite(seg(p / EV, "2-4"), lambda t: t.take([2, 1, 0])),
        ("FAIL", "reordered", 2, "2-4"),
    ),
    "named for a longer range": (
        lambda p, r: seg(p / EV, "6-8").rename(seg(p / EV, "6-9")),
        ("FAIL", "segment_range", 9, "6-9"),
    ),
    "named for a shifted range": (
        lambda p, r: seg(p / EV, "2-4").rename(seg(p / EV, "3-5")),
        ("FAIL", "segment_missing", 2, None),
    ),
    "segment deleted": (
        lambda p, r: seg(p / EV, "2-4").unlink(),
        ("FAIL", "segment_missing", 2, None),
    ),
    "duplicate, identical leftover": (
        lambda p, r: pq.write_table(
            pq.read_table(seg(p / EV, "2-4")).slice(1, 1), seg(p / EV, "3-3")
        ),
        ("OK", 9),  # an interrupted compaction's leftover, checked to be the same events
    ),
    "duplicate, different events": (
        lambda p, r: shutil.copy(seg(p / EV, "2-4"), seg(p / EV, "3-3")),
        ("FAIL", "segment_range", 3, "3-3"),
    ),
    "duplicate, from another ledger": (
        lambda p, r: pq.write_table(_other_ledger_row(p / EV), seg(p / EV, "3-3")),
        ("FAIL", "segment_range", 3, "3-3"),
    ),
    "leftover named for another seq": (
        lambda p, r: shutil.copy(seg(p / EV, "5-5"), seg(p / EV, "3-3")),
        ("FAIL", "segment_range", 3, "3-3"),
    ),
    "partial overlap": (
        lambda p, r: shutil.copy(seg(p / EV, "2-4"), seg(p / EV, "4-6")),
        ("FAIL", "overlap", 4, "4-6"),
    ),
    "symlink as a segment": (
        lambda p, r: _symlink_segment(p),
        ("FAIL", "symlink", None, "5-5"),
    ),
    "symlink loop": (
        lambda p, r: (p / EV / "loop").symlink_to(p / EV / "loop"),
        ("FAIL", "symlink", None, "loop"),
    ),
    "non-Parquet file named as a segment": (
        lambda p, r: seg(p / EV, "5-5").write_bytes(os.urandom(5000)),
        ("FAIL", "unreadable", 5, "5-5"),
    ),
    "stray text file": (
        lambda p, r: (p / EV / "notes.txt").write_text("hello"),
        ("FAIL", "stray_file", None, "notes.txt"),
    ),
    "segment named first > last": (
        lambda p, r: shutil.copy(seg(p / EV, "5-5"), p / EV / "000000000009-000000000007.parquet"),
        ("FAIL", "stray_file", None, "9-7"),
    ),
    "folder named as a segment": (
        lambda p, r: seg(p / EV, "9-9").mkdir(),
        ("FAIL", "stray_file", None, "9-9"),
    ),
    "fifo named as a segment": (
        lambda p, r: os.mkfifo(seg(p / EV, "9-9")),
        ("FAIL", "stray_file", None, "9-9"),
    ),
    "identity: genesis_hash edited": (
        lambda p, r: _identity(p, lambda d: d | {"genesis_hash": "ab" * 32}),
        ("FAIL", "genesis_mismatch", 0, "0-0"),
    ),
    "identity: origin edited": (
        lambda p, r: _identity(p, lambda d: d | {"origin": "evil.example/x"}),
        ("FAIL", "foreign_origin", 0, "0-0"),
    ),
    "identity: format edited": (
        lambda p, r: _identity(p, lambda d: d | {"format": "ledger/99"}),
        ("Error", 6, "Error: "),
    ),
    "identity: not JSON": (
        lambda p, r: (p / "ledger.json").write_bytes(b"{\x00\xff"),
        ("Error", 6, "Error: "),
    ),
    "identity: a list": (
        lambda p, r: _identity(p, lambda d: [d]),
        ("Error", 6, "Error: "),
    ),
    "identity: deeply nested": (
        lambda p, r: (p / "ledger.json").write_text("[" * 100000 + "]" * 100000),
        ("Error", 6, "Error: "),
    ),
    "identity: genesis_hash not hex": (
        lambda p, r: _identity(p, lambda d: d | {"genesis_hash": "Z" * 64}),
        ("Error", 6, "Error: "),
    ),
    "identity: missing": (
        lambda p, r: (p / "ledger.json").unlink(),
        ("Error", 3, "Error: "),
    ),
    "identity: a folder": (
        lambda p, r: ((p / "ledger.json").unlink(), (p / "ledger.json").mkdir()),
        ("Error", 6, "Error: "),
    ),
    "events/ missing": (
        lambda p, r: shutil.rmtree(p / EV),
        ("Error", 6, "Error: "),
    ),
    "events/ is a file": (
        lambda p, r: (shutil.rmtree(p / EV), (p / EV).write_text("x")),
        ("Error", 6, "Error: "),
    ),
}


#: Cases where a reader still breaks a promise (reported; the test expects the failure, so
#: it starts failing - strict xfail - the day the bug is fixed).
KNOWN_BUGS: dict[str, str] = {}


def _patch(p: Path, offset: int, data: bytes) -> None:
    raw = bytearray(p.read_bytes())
    start = offset % len(raw)
    raw[start : start + len(data)] = data
    p.write_bytes(bytes(raw))


#: Random damage for fuzzing; the verdict may be any FAIL or Error, or OK if the events
#: read back unchanged (e.g. a flip inside Parquet statistics no reader uses).
FUZZ: dict[str, Mutation] = {
    "flipped bit": lambda p, r: _flip(_pick(p, r), r, 1),
    "flipped bytes": lambda p, r: _flip(_pick(p, r), r, r.randrange(2, 40)),
    "random truncation": lambda p, r: os.truncate(s := _pick(p, r), r.randrange(s.stat().st_size)),
    "random bytes appended": lambda p, r: _append(_pick(p, r), os.urandom(r.randrange(1, 500))),
    "zeroed block": lambda p, r: _zero(_pick(p, r), r),
}


def _pick(p: Path, r: random.Random) -> Path:
    return r.choice(sorted((p / EV).glob("*.parquet")))


def _append(p: Path, data: bytes) -> None:
    with open(p, "ab") as f:
        f.write(data)


def _zero(p: Path, r: random.Random) -> None:
    raw = bytearray(p.read_bytes())
    i = r.randrange(len(raw))
    n = r.randrange(1, 256)
    raw[i : i + n] = bytes(min(n, len(raw) - i))
    p.write_bytes(bytes(raw))


# --- probing -----------------------------------------------------------------------------

_DRIVER = r"""
import faulthandler, json, resource, sys
limit = float(sys.argv.pop(1))
from click.testing import CliRunner
from ledger.cli import cli
for path in sys.argv[1:]:
    faulthandler.dump_traceback_later(limit, exit=True)  # a hang shows where, then ends
    out = []
    for args in (["verify", "--format", "json"], ["verify"], ["log", "--format", "jsonl"]):
        r = CliRunner().invoke(cli, [*args, "--ledger", path])
        exc = r.exception
        out.append({"args": args, "exit": r.exit_code, "stdout": r.stdout, "stderr": r.stderr,
                    "exception": None if exc is None or isinstance(exc, SystemExit) else repr(exc)})
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"path": path, "runs": out, "maxrss_kb": rss}), flush=True)
"""


@dataclass
class Probe:
    verdict: tuple[Any, ...]  # as in CASES
    json_report: dict[str, Any] | None
    text: str
    stderr: str
    log_exit: int
    log_stdout: str
    maxrss_mb: float  # of the probe process so far (it reads several ledgers in turn)
    problems: list[str]  # anything that breaks a promise: traceback, hang, memory, write


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def probe(path: Path, timeout: float = TIMEOUT) -> Probe:
    """Run the readers on ``path`` in a sandboxed child and classify what they said."""
    return probe_many([path], timeout)[path]


def probe_many(paths: list[Path], timeout: float = TIMEOUT) -> dict[Path, Probe]:
    """``probe`` for several folders in one child process (``timeout`` is per folder)."""
    before = {p: snapshot(p) for p in paths}
    out: dict[Path, Probe] = {}
    proc = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(timeout), *map(str, paths)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit,
        env={k: v for k, v in os.environ.items() if k != "LEDGER_DEBUG"},
    )
    import select

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""
    for path in paths:
        # Unbuffered: a buffered readline could hold the next line where select can't see it.
        # Chunks go to a list: an answer can be hundreds of MB (a huge value echoed).
        ready, chunks = True, [pending]
        while b"\n" not in chunks[-1]:
            ready = bool(select.select([fd], [], [], timeout + 5)[0])
            chunk = os.read(fd, 1 << 20) if ready else b""
            if not chunk:
                break
            chunks.append(chunk)
        line, newline, pending = b"".join(chunks).partition(b"\n")
        if not newline:  # no complete answer: the child hung, or died (perhaps mid-line)
            proc.kill()
            _, err = proc.communicate()
            hung = not ready or "Timeout (" in err  # faulthandler dumped the stacks
            why = (
                f"hang: no answer in {timeout}s"
                if hung
                else "probe died: " + ((err.strip().splitlines() or ["?"])[-1])
            )
            out[path] = Probe(("hang" if hung else "crash",), None, "", err, -1, "", 0, [why])
            for rest in paths[len(out) :]:
                out[rest] = Probe(("not run",), None, "", "", -1, "", 0, ["not run: " + why])
            return out
        out[path] = _classify(json.loads(line.decode()), before[path], path)
    proc.communicate(timeout=timeout)
    return out


def _classify(data: dict[str, Any], before: dict[str, Any], path: Path) -> Probe:
    problems: list[str] = []
    vj, vt, lg = data["runs"]
    after = snapshot(path)
    if after != before:
        changed = sorted(k for k in set(after) | set(before) if after.get(k) != before.get(k))
        problems.append(f"the readers wrote: {changed}")
    for run in data["runs"]:
        if run["exception"] or "Traceback" in run["stderr"] or run["exit"] == 70:
            problems.append(f"{run['args']}: {run['exception'] or run['stderr'].strip()}")
        if run["exit"] not in (0, 1) and not (
            run["stderr"].startswith("Error: ") and run["stderr"].count("\n") == 1
        ):
            problems.append(f"{run['args']}: not a one-line error: {run['stderr']!r}")
    report = None
    if vj["exit"] in (0, 1):
        report = json.loads(vj["stdout"])
        if report["ok"]:
            verdict: tuple[Any, ...] = ("OK", report["events"])
        else:
            p = report["problems"][0]
            segment = p["segment"]
            verdict = ("FAIL", p["kind"], p["seq"], (segment and _range(segment)) or segment)
        if vt["exit"] != vj["exit"]:
            problems.append("verify text and json disagree")
    else:
        verdict = ("Error", vj["exit"], vj["stderr"][:7])
    return Probe(
        verdict,
        report,
        vt["stdout"],
        vj["stderr"],
        lg["exit"],
        lg["stdout"],
        data["maxrss_kb"] / 1024,
        problems,
    )


def _range(name: str) -> str | None:
    import re

    m = re.fullmatch(r"(\d{12})-(\d{12})\.parquet", name)
    return f"{int(m[1])}-{int(m[2])}" if m else None


def damaged_copy(source: Path, dest: Path, mutation: Mutation, seed: int = 0) -> Path:
    """Copy ``source`` to ``dest`` (symlinks kept) and apply ``mutation``."""
    shutil.copytree(source, dest, symlinks=True)
    mutation(dest, random.Random(seed))
    return dest


def events_of(path: Path) -> list[tuple[int, bytes]]:
    """(seq, canonical bytes) of every live event, read directly, for OK-verdict checks."""
    from ledger import Ledger

    t = Ledger.open(path).events(columns=["seq", "canonical"])
    return list(zip(t.column("seq").to_pylist(), t.column("canonical").to_pylist(), strict=True))
