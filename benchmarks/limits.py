"""Physical limits of this machine, measured in the same run as the ledger's figures.

Each function returns a row (``name``, ``value``, ``unit``, ``note``). The harness puts
the matching limit beside every operation, so a figure reads as "x% of what the
hardware and the libraries underneath can do at all":

* ``ed25519_sign_1core`` / ``_allcores``: libsodium (PyNaCl, what the ledger uses)
  signatures per second of an event-sized DSSE message, on one core and on every core
  (one process per core); ``ed25519_verify_*`` the same for verification;
  ``ed25519_*_cryptography`` is OpenSSL through ``cryptography``, for reference.
* ``sha256_event``: SHA-256 of event-sized messages per second (one core).
* ``fsync_append``: write 300 bytes to a file and fsync, per second: the most durable
  appends one writer can make on this disk; ``atomic_file``: create a temporary file,
  fsync it, rename it and fsync the folder, as the store does for every segment.
* ``parquet_write`` / ``parquet_read``: events per second writing and reading the same
  rows with the ledger's own Parquet settings (zstd, dictionary columns).
* ``duckdb_count``: ``count(*)`` over the ledger's segment files.
* ``python_startup``, ``import_ledger_cli``, ``import_pyarrow``: wall seconds of a fresh
  ``python -c pass``, and of one that imports the CLI / pyarrow (best of several).
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: An event-sized message: the DSSE pre-authentication encoding of ~350 canonical bytes.
MESSAGE_BYTES = 400


#: CPU-time rates of the last ``_rate`` calls by kernel, for a loaded machine (see ``crypto``).
CPU_RATES: dict[str, float] = {}


def _rate(fn: Callable[[], Any], seconds: float, batch: int = 200, name: str = "") -> float:
    """Calls per second of ``fn`` over at least ``seconds`` (after a short warm-up)."""
    for _ in range(batch):
        fn()
    n = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        dt = time.perf_counter() - t0
        if dt >= seconds:
            if name:
                CPU_RATES[name] = n / max(time.process_time() - c0, 1e-9)
            return n / dt


def _nacl_sign(seconds: float) -> float:
    import nacl.bindings as sodium
    from nacl._sodium import ffi, lib

    _, sk = sodium.crypto_sign_seed_keypair(b"\x01" * 32)
    msg = os.urandom(MESSAGE_BYTES)
    n = len(msg)

    def sign() -> bytes:
        # The cheapest call into libsodium from Python (what ledger.keys does).
        buf = ffi.new("unsigned char[]", n + 64)
        lib.crypto_sign(buf, ffi.NULL, msg, n, sk)
        return ffi.buffer(buf, 64)[:]

    return _rate(sign, seconds, name="sign")


def _nacl_verify(seconds: float) -> float:
    import nacl.bindings as sodium

    pk, sk = sodium.crypto_sign_seed_keypair(b"\x01" * 32)
    msg = os.urandom(MESSAGE_BYTES)
    signed = sodium.crypto_sign(msg, sk)
    return _rate(lambda: sodium.crypto_sign_open(signed, pk), seconds)


def _openssl_sign(seconds: float) -> float:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    k = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    msg = os.urandom(MESSAGE_BYTES)
    return _rate(lambda: k.sign(msg), seconds)


def _openssl_verify(seconds: float) -> float:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    k = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)
    pub = k.public_key()
    msg = os.urandom(MESSAGE_BYTES)
    sig = k.sign(msg)
    return _rate(lambda: pub.verify(sig, msg), seconds)


_KERNELS = {
    "sign": _nacl_sign,
    "verify": _nacl_verify,
    "sign_openssl": _openssl_sign,
    "verify_openssl": _openssl_verify,
}


def _kernel(args: tuple[str, float]) -> float:
    name, seconds = args
    return _KERNELS[name](seconds)


def _all_cores(name: str, seconds: float) -> float:
    """Sum of the rates of one process per core running the kernel at the same time."""
    cores = os.cpu_count() or 1
    with mp.get_context("spawn").Pool(cores) as pool:
        return sum(pool.map(_kernel, [(name, seconds)] * cores))


def row(name: str, value: float, unit: str, note: str = "") -> dict[str, Any]:
    return {"group": "limit", "name": name, "value": value, "unit": unit, "note": note}


def crypto(seconds: float = 1.0) -> list[dict[str, Any]]:
    cores = os.cpu_count() or 1
    sign = _nacl_sign(seconds)
    return [
        row("ed25519_sign_1core", sign, "sig/s", "libsodium via PyNaCl"),
        row(
            "ed25519_sign_1core_cpu",
            CPU_RATES["sign"],
            "sig/s",
            "per CPU-second: what one core does when it is not shared",
        ),
        row("ed25519_sign_allcores", _all_cores("sign", seconds), "sig/s", f"{cores} processes"),
        row("ed25519_verify_1core", _nacl_verify(seconds), "verif/s", "libsodium via PyNaCl"),
        row(
            "ed25519_verify_allcores",
            _all_cores("verify", seconds),
            "verif/s",
            f"{cores} processes",
        ),
        row("ed25519_sign_cryptography", _openssl_sign(seconds), "sig/s", "OpenSSL, reference"),
        row(
            "ed25519_verify_cryptography",
            _openssl_verify(seconds),
            "verif/s",
            "OpenSSL, reference",
        ),
        row("sha256_event", _sha256(seconds), "hash/s", f"{MESSAGE_BYTES}-byte messages"),
    ]


def _sha256(seconds: float) -> float:
    msg = os.urandom(MESSAGE_BYTES)
    sha = hashlib.sha256
    return _rate(lambda: sha(msg).digest(), seconds, batch=2000)


def disk(folder: Path, seconds: float = 1.0) -> list[dict[str, Any]]:
    """fsync'd appends and atomic file creations per second in ``folder``."""
    data = os.urandom(300)
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:

        def append() -> None:
            os.write(fd, data)
            os.fsync(fd)

        appends = _rate(append, seconds, batch=20)
    finally:
        os.close(fd)
        path.unlink()
    counter = iter(range(10**9))

    def atomic() -> None:
        i = next(counter)
        tmp, final = folder / f".tmp-{i}", folder / f"atomic-{i}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, final)
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    files = _rate(atomic, seconds, batch=10)
    for p in folder.glob("atomic-*"):
        p.unlink()
    return [
        row("fsync_append", appends, "fsync/s", "300-byte write + fsync"),
        row("atomic_file", files, "files/s", "write + fsync + rename + fsync(dir)"),
    ]


def parquet(ledger_path: Path, scratch: Path) -> list[dict[str, Any]]:
    """Write and read the ledger's own rows with its own Parquet settings; DuckDB count."""
    import pyarrow.parquet as pq

    from ledger.store import _DICT_COLUMNS, _STATS_COLUMNS, ROW_GROUP, Store

    table = Store(ledger_path).read()
    n = table.num_rows
    out = scratch / "probe.parquet"
    t0 = time.perf_counter()
    pq.write_table(
        table,
        out,
        compression="zstd",
        row_group_size=ROW_GROUP,
        use_dictionary=_DICT_COLUMNS,
        write_statistics=_STATS_COLUMNS,
    )
    dt_w = time.perf_counter() - t0
    size = out.stat().st_size
    t0 = time.perf_counter()
    pq.read_table(out)
    dt_r = time.perf_counter() - t0
    out.unlink()
    rows = [
        row("parquet_write", n / dt_w, "events/s", f"{size / dt_w / 1e6:.0f} MB/s compressed"),
        row("parquet_read", n / dt_r, "events/s", f"{size / dt_r / 1e6:.0f} MB/s compressed"),
    ]
    import duckdb

    glob = str(ledger_path / "events" / "*.parquet")
    con = duckdb.connect()
    con.execute("SELECT count(*) FROM read_parquet(?)", [glob]).fetchall()  # warm
    t0 = time.perf_counter()
    (count,) = con.execute("SELECT count(*) FROM read_parquet(?)", [glob]).fetchone()
    rows.append(row("duckdb_count", time.perf_counter() - t0, "s", f"count(*) = {count}"))
    t0 = time.perf_counter()
    con.execute("SELECT action, count(*) FROM read_parquet(?) GROUP BY action", [glob]).fetchall()
    rows.append(row("duckdb_groupby", time.perf_counter() - t0, "s", "GROUP BY action"))
    return rows


def best_wall(argv: list[str], runs: int = 5, env: dict[str, str] | None = None) -> float:
    """Best wall time of ``runs`` fresh processes."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        best = min(best, time.perf_counter() - t0)
    return best


def startup(runs: int = 5) -> list[dict[str, Any]]:
    py = sys.executable
    return [
        row("python_startup", best_wall([py, "-c", "pass"], runs), "s", "python -c pass"),
        row(
            "import_pyarrow",
            best_wall([py, "-c", "import pyarrow.parquet"], runs),
            "s",
            "python -c 'import pyarrow.parquet'",
        ),
        row(
            "import_ledger_cli",
            best_wall([py, "-c", "import ledger.cli"], runs),
            "s",
            "python -c 'import ledger.cli'",
        ),
    ]


def measure(ledger_path: Path | None, seconds: float = 1.0) -> list[dict[str, Any]]:
    """Every limit; the Parquet/DuckDB ones need a ledger to read. ``seconds`` per
    kernel (the smoke test uses a few milliseconds)."""
    rows = crypto(seconds)
    with tempfile.TemporaryDirectory(dir=ledger_path.parent if ledger_path else None) as d:
        rows += disk(Path(d), seconds)
        if ledger_path is not None:
            rows += parquet(ledger_path, Path(d))
    rows += startup(5 if seconds >= 0.5 else 1)
    return rows


if __name__ == "__main__":
    for r in measure(Path(sys.argv[1]) if len(sys.argv) > 1 else None):
        print(f"{r['name']:<28} {r['value']:>14,.3f} {r['unit']:<10} {r['note']}")
