"""What ``verify`` accepted, kept outside the ledger, and the check every read makes.

When ``verify`` (full or ``--since``) says OK it keeps a *record* of what it accepted:
per live segment its name, seq range, file identity (size, inode, mtime_ns, ctime_ns),
the hash of its last event, a digest of its ``hash`` and ``sig`` columns and the
identity of its index bundle, plus the ledger's origin and genesis hash. A FAIL
verdict replaces the record with the problem. The record is a cache on this machine,
never evidence: ``verify`` never reads it.

Every read (``Ledger`` methods marked ``_checked``) then compares the live segments
with the record, at the cost of one stat per file and one small JSON file:

* a segment the record holds, with the same identity, is accepted as it stands;
* a segment whose identity changed is reported;
* a merged segment holding accepted events is accepted if its ``hash`` and ``sig``
  columns have the recorded digests of the segments it replaced, every ``hash`` is
  the SHA-256 of its ``canonical`` bytes and its typed columns are exactly what those
  bytes say (the column-wise template of :mod:`ledger.scan`): then every column is
  what ``verify`` accepted, and no signature needs checking again;
* the events after the accepted ones (appended since) are verified on the fly with the
  ``verify --since`` machinery, continuing the chain from the recorded hash, when they
  are few (:data:`ON_THE_FLY_SEGMENTS`, :data:`ON_THE_FLY_EVENTS`), else reported.

Whatever was checked on the fly extends the record. The record lives in
``$LEDGER_VERIFIED_DIR``, else ``$XDG_CACHE_HOME/ledger/verified``, else
``~/.cache/ledger/verified``: never inside the ledger folder (reads never write there).
Failing to write it fails nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from .errors import InputError, LedgerError
from .store import INDEX_MIN_ROWS, Segment, Store, file_id, open_parquet

if TYPE_CHECKING:
    from .opened import Opened
    from .verify import VerifyReport

#: At most this many segments, and events, are verified on the fly by a read.
ON_THE_FLY_SEGMENTS = 4
ON_THE_FLY_EVENTS = 10_000
RECORD_FORMAT = 1
_RECHECK_COLUMNS = [
    "seq", "ts", "action", "model", "version", "actor", "key_id", "payload", "hash", "sig",
    "canonical",
]  # fmt: skip

log = logging.getLogger("ledger")

FileId = tuple[int, int, int, int]  # size, inode, mtime_ns, ctime_ns


# --- where the record lives -------------------------------------------------------------


def record_dir() -> Path | None:
    """``$LEDGER_VERIFIED_DIR``, else ``$XDG_CACHE_HOME/ledger/verified``, else
    ``~/.cache/ledger/verified``; None when there is no home to put it in."""
    env = os.environ.get("LEDGER_VERIFIED_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):  # (the XDG spec: a relative path is ignored)
        return Path(xdg) / "ledger" / "verified"
    try:
        return Path.home() / ".cache" / "ledger" / "verified"
    except RuntimeError:
        return None


def record_path(led: Opened) -> Path | None:
    """The record of ``led``: named from its resolved path and genesis hash."""
    folder = record_dir()
    if folder is None:
        return None
    key = f"{_resolved(led.path)}\0{led.identity['genesis_hash']}".encode()
    return folder / f"{hashlib.sha256(key).hexdigest()[:40]}.json"


def require_from_env() -> bool:
    """``$LEDGER_REQUIRE_VERIFIED`` as a flag (unset: False)."""
    text = os.environ.get("LEDGER_REQUIRE_VERIFIED", "").strip().lower()
    if text in ("", "0", "no", "off", "false"):
        return False
    if text in ("1", "yes", "on", "true"):
        return True
    raise InputError(f"LEDGER_REQUIRE_VERIFIED must be 1 or 0, got {text[:40]!r}")


def _resolved(path: Path) -> str:
    return str(Path(os.path.realpath(path)))


# --- the record -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One segment ``verify`` accepted."""

    name: str
    first: int
    last: int
    file: FileId
    last_hash: str
    digest: str
    index: tuple[FileId, FileId] | None

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "first": self.first,
            "last": self.last,
            "file": list(self.file),
            "last_hash": self.last_hash,
            "digest": self.digest,
            "index": [list(i) for i in self.index] if self.index else None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Entry:
        index = d["index"]
        return cls(
            str(d["name"]),
            int(d["first"]),
            int(d["last"]),
            _file_id(d["file"]),
            str(d["last_hash"]),
            str(d["digest"]),
            (_file_id(index[0]), _file_id(index[1])) if index else None,
        )


def _file_id(value: Any) -> FileId:
    a, b, c, d = (int(x) for x in value)
    return a, b, c, d


def _index_id(store: Store, seg: Segment) -> tuple[FileId, FileId] | None:
    """The identity of the index bundle readers may take for ``seg`` (None: none)."""
    if seg.count < INDEX_MIN_ROWS:
        return None
    a, b = (file_id(p) for p in store.index_files(seg))
    return (a, b) if a is not None and b is not None else None


def _digest(table: pa.Table) -> str:
    """SHA-256 over the rows' ``hash`` column, then their ``sig`` column (raw bytes)."""
    h = hashlib.sha256()
    for name, width in (("hash", 32), ("sig", 64)):
        for chunk in table.column(name).chunks:
            if chunk.type != pa.binary(width) or chunk.null_count:
                raise ValueError(f"column {name} is not {width}-byte binary")
            data = chunk.buffers()[1]
            h.update(memoryview(data)[chunk.offset * width : (chunk.offset + len(chunk)) * width])
    return h.hexdigest()


def _entry(store: Store, seg: Segment, file: FileId, table: pa.Table | None = None) -> Entry:
    """A record entry for ``seg`` (whose rows ``table`` holds, else read here)."""
    if table is None:
        table = open_parquet(seg.path).read(columns=["hash", "sig"], use_threads=False)
    if table.num_rows != seg.count:
        raise ValueError(f"{seg.name} holds {table.num_rows} rows")
    last = table.column("hash")[table.num_rows - 1].as_py()
    return Entry(
        seg.name, seg.first, seg.last, file, last.hex(), _digest(table), _index_id(store, seg)
    )


@dataclass
class Record:
    origin: str
    entries: list[Entry]
    failed: str | None = None

    @property
    def end(self) -> int:
        """The number of events accepted (0..end-1)."""
        return max((e.last + 1 for e in self.entries), default=0)


def _load(led: Opened) -> Record | None:
    path = record_path(led)
    if path is None:
        return None
    try:
        doc = json.loads(path.read_bytes())
        if (
            doc.get("format") != RECORD_FORMAT
            or doc.get("ledger") != _resolved(led.path)
            or doc.get("genesis_hash") != led.identity["genesis_hash"]
        ):
            return None
        failed = doc.get("failed")
        entries = [Entry.from_json(d) for d in doc.get("segments", ())]
        return Record(str(doc["origin"]), entries, str(failed) if failed is not None else None)
    except (OSError, ValueError, TypeError, KeyError, AttributeError, IndexError):
        return None


def _save(led: Opened, record: Record) -> None:
    """Write the record atomically (temp file + rename, 0600 in a 0700 folder); never
    inside the ledger folder; a failure is only a debug note."""
    path = record_path(led)
    if path is None:
        return
    doc: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "ledger": _resolved(led.path),
        "origin": record.origin,
        "genesis_hash": led.identity["genesis_hash"],
        "segments": [e.to_json() for e in record.entries],
    }
    if record.failed is not None:
        doc["failed"] = record.failed
    root = Path(_resolved(led.path))
    folder = Path(os.path.realpath(path.parent))
    if folder == root or root in folder.parents:
        log.debug("not writing the verification record inside the ledger folder %s", root)
        return
    tmp = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        log.debug("cannot write the verification record %s: %s", path, exc)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


@dataclass(frozen=True)
class Summary:
    """What the record of a ledger says (for a report): read only, nothing checked."""

    path: Path
    #: when the record was last written (µs since the epoch: the file's mtime)
    written: int
    #: events 0..events-1 accepted by verify (or by reads checking on the fly)
    events: int
    #: the hash (hex) of the last accepted event, None when none is
    head: str | None
    #: the problem of the last verify, when it failed
    failed: str | None


def summary(led: Opened) -> Summary | None:
    """The record of ``led`` on this machine, or None when there is none (never verified
    here, or a record of another ledger at this path). Reads only, outside the ledger."""
    path = record_path(led)
    record = _load(led)
    if path is None or record is None:
        return None
    try:
        written = path.stat().st_mtime_ns // 1000
    except OSError:
        return None
    last = max(record.entries, key=lambda e: e.last, default=None)
    head = last.last_hash if last is not None else None
    return Summary(path, written, record.end, head, record.failed)


# --- verify keeps the record ------------------------------------------------------------------


def listing(store: Store) -> dict[str, FileId | None]:
    """The live segments' identities (taken before a verify starts)."""
    try:
        return {s.name: file_id(s.file) for s in store.segments()}
    except LedgerError:
        return {}


def accept(led: Opened, report: VerifyReport, before: dict[str, FileId | None]) -> None:
    """After ``verify``: record what it accepted (OK), or that it failed. Only segments
    whose identity is the same before and after the verify are recorded. Never raises."""
    try:
        if not report.ok:
            _save(led, Record(led.origin, [], str(report.problems[0])))
            return
        entries = []
        for seg in led.store.segments():
            file = file_id(seg.file)
            if seg.last >= report.events or file is None or before.get(seg.name) != file:
                break  # (what is not recorded is checked, or reported, by the next read)
            entries.append(_entry(led.store, seg, file))
        if (
            entries
            and entries[-1].last == report.events - 1
            and entries[-1].last_hash != report.head
        ):
            return  # not the chain verify accepted: record nothing
        _save(led, Record(led.origin, entries))
    except (OSError, LedgerError, pa.ArrowException, ValueError) as exc:
        log.debug("no verification record written: %s", exc)


# --- the check every read makes ---------------------------------------------------------------


def _names(segs: list[Segment]) -> str:
    if len(segs) <= 2:
        return ", ".join(f"events/{s.name}" for s in segs)
    return f"events/{segs[0].name} … events/{segs[-1].name} ({len(segs)} segments)"


def _events(n: int) -> str:
    return f"{n} event" if n == 1 else f"{n} events"


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


def check(led: Opened) -> str | None:
    """What is wrong with reading ``led`` now as verified data (one line, without the
    ``Warning:`` prefix), or None. Extends the record with what it verifies on the fly."""
    record = _load(led)
    if record is None:
        where = record_dir()
        return (
            "this ledger has not been verified on this machine (no record of ledger verify"
            f" in {where}); run ledger verify"
        )
    if record.failed is not None:
        return f"the last ledger verify of this ledger failed ({record.failed}); run ledger verify"
    if record.origin != led.origin:
        return "ledger.json changed since ledger verify accepted it; run ledger verify"
    store = led.store
    segs = store.segments()
    files = [file_id(s.file) for s in segs]
    total = segs[-1].last + 1 if segs else 0
    by_name = {e.name: e for e in record.entries}
    end = record.end
    changed = [
        s
        for s, f in zip(segs, files, strict=True)
        if s.name in by_name and by_name[s.name].file != f
    ]
    if changed:
        verb = "it" if len(changed) == 1 else "them"
        return (
            f"{_names(changed)} changed since ledger verify accepted {verb}"
            f" ({_events(sum(s.count for s in changed))}); run ledger verify"
        )
    if total < end:
        return (
            f"events {total}..{end - 1} that ledger verify accepted are gone"
            f" ({_events(end - total)}); run ledger verify"
        )
    # The prefix of accepted (or cheaply re-accepted) segments, then the rest on the fly.
    new: list[Entry] = []
    dirty = False
    head = ""
    done = 0  # events 0..done-1 are accepted
    why = "appended since ledger verify"
    for seg, file in zip(segs, files, strict=True):
        e = by_name.get(seg.name)
        if e is not None:
            index = _index_id(store, seg)
            if index != e.index:
                if index is not None and _index_problem(store, seg):
                    name = store.index_files(seg)[0].name.removesuffix(".events.arrow")
                    return (
                        f"index/{name}.* changed since ledger verify accepted"
                        f" events/{seg.name} ({_events(seg.count)}); run ledger verify"
                    )
                e = Entry(e.name, e.first, e.last, e.file, e.last_hash, e.digest, index)
                dirty = True
            new.append(e)
            head, done = e.last_hash, seg.last + 1
            continue
        if seg.first >= end or file is None:
            break
        # A merge of accepted segments (and perhaps of newer ones).
        why = "merged since ledger verify, and not the events it accepted"
        upto = min(seg.last, end - 1)
        parts = [p for p in record.entries if seg.first <= p.first and p.last <= upto]
        if not _tiles(parts, seg.first, upto):
            break
        try:
            entry = _recheck(led, seg, file, parts, upto)
        except (OSError, LedgerError, pa.ArrowException, ValueError, KeyError):
            entry = None
        if entry is None:
            break
        dirty = True
        head, done = _hash_at(entry, parts, upto), upto + 1
        if upto < seg.last:  # its newer rows are checked with the rest, below
            why = "appended since ledger verify"
            break
        new.append(entry)
    if done < total:
        rest = [s for s in segs if s.last >= done]
        n = total - done
        if n > ON_THE_FLY_EVENTS or len(rest) > ON_THE_FLY_SEGMENTS:
            return (
                f"{_events(n)} in {_names(rest)} {_are(n)} not verified ({why}; more than"
                f" {ON_THE_FLY_SEGMENTS} segments or {ON_THE_FLY_EVENTS} events to check on"
                " the fly); run ledger verify"
            )
        from . import scan
        from .events import GENESIS_PREV_HASH

        report = scan.verify_after(led, done, head if done else GENESIS_PREV_HASH)
        if not report.ok:
            return (
                f"{_events(n)} in {_names(rest)} {_are(n)} not verified ({report.problems[0]});"
                " run ledger verify"
            )
        try:
            for seg in rest:
                file = files[segs.index(seg)]
                if file is None:
                    return None  # verified, but gone since: the next read checks again
                new.append(_entry(store, seg, file))
        except (OSError, pa.ArrowException, ValueError):
            return None  # verified, but not recordable now: the next read checks again
        dirty = True
    if dirty:
        _save(led, Record(led.origin, new))
    return None


def _tiles(parts: list[Entry], first: int, last: int) -> bool:
    """True when ``parts`` (in order) cover ``first..last`` exactly."""
    at = first
    for p in sorted(parts, key=lambda p: p.first):
        if p.first != at:
            return False
        at = p.last + 1
    return bool(parts) and at == last + 1


def _hash_at(entry: Entry, parts: list[Entry], seq: int) -> str:
    """The hash of event ``seq``, the last of one of ``parts`` (or of ``entry``)."""
    if entry.last == seq:
        return entry.last_hash
    return next(p.last_hash for p in parts if p.last == seq)


def _index_problem(store: Store, seg: Segment) -> bool:
    from . import derived

    try:
        return derived.index_mismatch(store, seg) is not None
    except (LedgerError, OSError, pa.ArrowException, ValueError, KeyError):
        return True


def _recheck(
    led: Opened, seg: Segment, file: FileId, parts: list[Entry], upto: int
) -> Entry | None:
    """Accept ``seg`` (a merge of ``parts``, accepted, up to seq ``upto``) without checking
    signatures again: the rows of each part have its recorded hash/sig digest, every
    hash is the SHA-256 of its bytes, and the typed columns are exactly those bytes
    (:func:`ledger.scanworkers._template_rows`). Then, if readers would take its index bundle,
    the bundle matches its events. Returns its record entry, or None."""
    from . import scanworkers

    table = led.store.read_segment(seg, _RECHECK_COLUMNS)
    if table.num_rows != seg.count:
        return None
    for p in parts:
        if _digest(table.slice(p.first - seg.first, p.count)) != p.digest:
            return None
    known = table.slice(0, upto - seg.first + 1).combine_chunks()
    sha256 = hashlib.sha256
    hashes = known.column("hash").cast(pa.binary()).to_pylist()
    for canon, h in zip(known.column("canonical").to_pylist(), hashes, strict=True):
        if canon is None or sha256(canon).digest() != h:
            return None
    rows, _prev = scanworkers._template_rows(known, seg.first, led.origin)
    if rows != known.num_rows:
        return None
    if _index_problem(led.store, seg):
        return None
    return _entry(led.store, seg, file, table.select(["hash", "sig"]))


__all__ = [
    "ON_THE_FLY_EVENTS",
    "ON_THE_FLY_SEGMENTS",
    "Summary",
    "accept",
    "check",
    "record_dir",
    "summary",
]
