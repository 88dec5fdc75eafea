"""The worker side of verifying a ledger folder: the per-row checks of one row group,
run in a worker process (or inline) for :mod:`ledger.scan`.

A worker checks a run of rows (one Parquet row group) without any earlier event: SHA-256
of the bytes against the stored hash, the typed columns against the signed bytes (origin,
``seq`` and ``prev_hash`` within the run, built column-wise by :func:`_template_rows`),
the RFC 6962 leaf hash and the signature under the key the key events name
(:func:`_check_rows`). It returns a compact :class:`~ledger.verify.Clean`: how many
leading rows it vouches for, and their leaf hashes. It never names a problem: the first
row it cannot vouch for goes to the main process, which checks it with the reference.

This is a fast path. Its reference is the one-row-at-a-time checks in ledger/verify.py
(:meth:`~ledger.verify.Verifier.feed`); the differential tests holding them together
are tests/test_tamper.py, which runs every attack under the default jobs and under
``--jobs 1`` (and the reference alone, with :func:`check_run` vouching for nothing),
and its ``test_parallel_and_serial_agree_*`` with the worker pool forced; and
tests/test_compat.py::test_the_workers_inline_pae_and_leaf_hash_are_the_definitions,
which holds the inlined DSSE PAE and leaf hash to :func:`ledger.keys.pae` and
:func:`ledger.merkle.leaf_hash`.

Worker processes import this module to unpickle :func:`check_run`, so it imports only
what the checks need (storage's Parquet reader and schema, the tree's block size,
:class:`~ledger.verify.Clean`, libsodium); dispatching the tasks, the sequential checks
and the verdict are :mod:`ledger.scan`'s.
"""

from __future__ import annotations

import hashlib
import re

import pyarrow as pa

from . import merkle
from . import tree as T
from .compat import sodium
from .events import MAX_EVENT_BYTES
from .keys import pae_prefix
from .store import SCHEMA, open_parquet
from .verify import Clean

_WORKER_COLUMNS = [
    "seq",
    "ts",
    "action",
    "model",
    "version",
    "actor",
    "key_id",
    "payload",
    "hash",
    "sig",
    "canonical",
]

_ORIGIN = ""
_KEYS: dict[str, bytes] = {}


def _init(origin: str, keys: dict[str, bytes]) -> None:
    """Set the ledger's origin and the key map the checks use (the pool's initializer)."""
    global _ORIGIN, _KEYS
    _ORIGIN, _KEYS = origin, keys


Task = tuple[str, int | None, int, int, int]  # path, row group, first seq, rows, rows to skip

#: A typed string the template below may splice into the signed bytes: no quote,
#: backslash or control character, so JSON reads it back as exactly these characters.
_UNSAFE = r'["\\\x00-\x1f]'
#: ``ts`` values the arithmetic below formats exactly: 1970-01-01 up to the year 9999.
_TS_MAX = 253_402_300_800_000_000
_DAY = 86_400_000_000


def check_run(task: Task) -> Clean:
    """Check the rows of one row group (or a whole file when ``rg`` is None), after the
    first ``skip`` (``verify --since`` starts inside a row group), with the origin and
    key map :func:`_init` set."""
    return check_task(task, _ORIGIN, _KEYS)


def check_task(task: Task, origin: str, keys: dict[str, bytes]) -> Clean:
    """:func:`check_run` with the origin and key map given: for workers that may check
    runs of several ledgers (a shared Dask cluster), where no global can be trusted."""
    path, rg, first, _count, skip = task
    try:
        pf = open_parquet(path)
        if rg is None:
            t = pf.read(columns=_WORKER_COLUMNS, use_threads=False)
        else:
            t = pf.read_row_group(rg, columns=_WORKER_COLUMNS, use_threads=False)
        if skip:
            t, first = t.slice(skip), first + skip
        for name in _WORKER_COLUMNS:
            if t.schema.field(name).type != SCHEMA.field(name).type:
                return Clean(0, "", b"")  # the reference path names the problem
        n, first_prev = _template_rows(t.combine_chunks(), first, origin)
        t = t.slice(0, n)
        canons = t.column("canonical").to_pylist()
        # Fixed-size binary converts ~15x slower than variable-size binary.
        hashes = t.column("hash").cast(pa.binary()).to_pylist()
        sigs = t.column("sig").cast(pa.binary()).to_pylist()
        kids = t.column("key_id").to_pylist()
    except Exception:  # anything odd: leave the verdict to the reference path
        return Clean(0, "", b"")
    return _check_rows(first, first_prev, canons, hashes, sigs, kids, keys)


def _template_rows(t: pa.Table, first: int, origin: str) -> tuple[int, str]:
    """How many leading rows of ``t`` hold canonical bytes that are exactly the event
    their typed columns describe, and the first row's ``prev_hash``.

    For every row the expected bytes are built from the typed columns, column-wise in
    Arrow (no Python object per row): the ten members in canonical order, this ledger's
    origin, ``seq`` = its position, ``ts`` formatted as the format requires, and as
    ``prev_hash`` the hex of the previous row's stored ``hash`` (the caller then checks
    that each stored hash is the SHA-256 of its bytes). The typed strings must be free
    of quotes, backslashes and control characters, so the values cannot shift across
    members and JSON reads back exactly the typed values; the payload column is spliced
    in verbatim and the main process checks it is one JSON object. The first row's
    ``prev_hash`` is read from its bytes (the main process chains it).
    """
    import pyarrow.compute as pc

    n = t.num_rows
    if not n or re.search(_UNSAFE, origin) or not origin:
        return 0, ""
    col = t.column
    binary = pa.binary()

    def b(name: str) -> pa.Array:
        return col(name).chunk(0).cast(binary)

    a, ac, k, m, p = b("action"), b("actor"), b("key_id"), b("model"), b("payload")
    seq = col("seq").chunk(0)
    us = col("ts").chunk(0).cast(pa.int64())
    # Rows the template may vouch for: safe strings, seq = position, ts in range.
    good = pc.equal(seq, pa.array(range(first, first + n), pa.int64()))
    for s in (a, ac, k, m):  # (a null model is the template's ``null``; other nulls fail)
        unsafe = pc.fill_null(pc.match_substring_regex(s.cast(pa.string()), _UNSAFE), False)
        good = pc.and_(good, pc.invert(unsafe))
    good = pc.and_(good, pc.and_(pc.greater_equal(us, 0), pc.less(us, _TS_MAX)))
    size = pc.binary_length(col("canonical").chunk(0))
    good = pc.and_(good, pc.less_equal(size, MAX_EVENT_BYTES))
    # ts as YYYY-MM-DDTHH:MM:SS.ffffffZ (pc.strftime costs four times as much).
    day = pc.divide(us, _DAY)
    rem = pc.subtract(us, pc.multiply(day, _DAY))
    sec = pc.divide(rem, 1_000_000)
    hh = pc.divide(sec, 3600)
    mi = pc.divide(pc.subtract(sec, pc.multiply(hh, 3600)), 60)
    ss = pc.subtract(sec, pc.add(pc.multiply(hh, 3600), pc.multiply(mi, 60)))

    def pad(x: pa.Array, width: int) -> pa.Array:
        return pc.utf8_slice_codeunits(pc.add(x, 10**width).cast(pa.string()), 1).cast(binary)

    # (clamped so that no value, even one ``good`` excludes, makes the cast fail)
    day = pc.min_element_wise(pc.max_element_wise(day, 0), _TS_MAX // _DAY - 1)
    date = day.cast(pa.int32()).cast(pa.date32()).cast(pa.string())
    frac = pc.subtract(rem, pc.multiply(sec, 1_000_000))
    # prev_hash: the hex of the previous row's stored hash (row 0: a placeholder).
    raw = col("hash").chunk(0)
    hexes = bytes(raw.buffers()[1])[raw.offset * 32 : (raw.offset + n - 1) * 32].hex()
    prev = pa.Array.from_buffers(
        pa.binary(64), n, [None, pa.py_buffer(b"0" * 64 + hexes.encode())]
    ).cast(binary)
    model = pc.fill_null(pc.binary_join_element_wise(b'"', m, b'"', b""), b"null")
    version = pc.fill_null(col("version").chunk(0).cast(pa.string()).cast(binary), b"null")
    origin_bytes = origin.encode()
    expected = pc.binary_join_element_wise(
        b'{"action":"', a, b'","actor":"', ac, b'","key_id":"', k, b'","model":', model,
        b',"origin":"' + origin_bytes + b'","payload":', p, b',"prev_hash":"', prev,
        b'","seq":', seq.cast(pa.string()).cast(binary), b',"ts":"', date.cast(binary),
        b"T", pad(hh, 2), b":", pad(mi, 2), b":", pad(ss, 2), b".", pad(frac, 6),
        b'Z","version":', version, b"}", b"",
    )  # fmt: skip
    canon = col("canonical").chunk(0)
    same = pc.fill_null(pc.and_kleene(good, pc.equal(expected, canon)), False)
    # Row 0 against its expected bytes around the prev_hash placeholder.
    e0, c0 = expected[0].as_py(), canon[0].as_py()
    if not good[0].as_py() or e0 is None or c0 is None or len(c0) != len(e0):
        return 0, ""
    at = e0.rfind(b'","seq":') - 64
    if c0[:at] != e0[:at] or c0[at + 64 :] != e0[at + 64 :]:
        return 0, ""
    try:
        first_prev = c0[at : at + 64].decode("ascii")
    except UnicodeDecodeError:
        return 0, ""
    bad = pc.index(same.slice(1), False).as_py()
    return (n if bad < 0 else bad + 1), first_prev


def _check_rows(
    first: int,
    first_prev: str,
    canons: list[bytes],
    hashes: list[bytes],
    sigs: list[bytes],
    kids: list[str],
    keys: dict[str, bytes],
) -> Clean:
    """The per-row checks of rows whose bytes :func:`_template_rows` matched: stored
    hash = SHA-256 of the bytes, signature under the key id's key; then leaf hashes.

    The signature check is libsodium's ``crypto_sign_open`` through PyNaCl's cffi module
    with one reusable output buffer: the fastest Ed25519 verify available here (~17k/s
    per core, against ~10k/s for OpenSSL through ``cryptography``).
    ``crypto_sign_verify_detached`` would skip the signature + message concatenation,
    but PyNaCl's compiled module does not export it, and calling it through cffi's ABI
    mode costs as much as the copy saves (measured: within 1%)."""
    ffi, lib = sodium()
    sha256 = hashlib.sha256
    size = max(map(len, canons), default=0) + 1024
    buf = ffi.new("unsigned char[]", size)
    outlen = ffi.new("unsigned long long *")
    open_ = lib.crypto_sign_open
    pae_type = pae_prefix()  # (keys.pae, inline: the signed message is sig ‖ PAE)
    leaf = merkle.LEAF_PREFIX
    leaves: list[bytes] = []
    add = leaves.append
    for c, h, s, k in zip(canons, hashes, sigs, kids, strict=True):
        pub = keys.get(k)
        if pub is None or sha256(c).digest() != h:
            break
        sm = b"%b%b%d %b" % (s, pae_type, len(c), c)
        if open_(buf, outlen, sm, len(sm), pub) != 0:
            break
        add(sha256(leaf + c).digest())  # (merkle.leaf_hash, inline)
    i = len(leaves)
    n = len(canons)
    roots: dict[tuple[int, int], bytes] = {}
    if i == n and n and n & (n - 1) == 0 and first % n == 0 and n <= T.BLOCK:
        roots[(first, first + n)] = merkle.root(leaves)
    return Clean(i, first_prev if i else "", b"".join(leaves), roots)


__all__ = ["Task", "check_run", "check_task"]
