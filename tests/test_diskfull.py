"""Disk full and read-only: an append or a compaction fails with a clear one-line error
and leaves the ledger byte-identical (and verifying). Uses a real, tiny tmpfs when this
process may mount one (root), and always also injects the OSError."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger import Ledger, SigningKey, StorageError
from ledger.cli import cli
from ledger.keys import write_key_files
from tests.hostile_files import snapshot


def _mount(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True
    )
    return r.returncode == 0


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of our own, unmounted afterwards."""
    mnt = tmp_path / "mnt"
    if os.geteuid() != 0 or not _mount(mnt, "size=4m,mode=0700"):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected tests still run")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _ledger(root: Path) -> tuple[Path, Path]:
    admin = SigningKey.generate()
    path = root / "reg"
    led = Ledger.init(path, admin, "admin", roles="admin,registrar")
    for i in range(3):
        led.register(f"m{i}", key=admin)
    key = root.parent / f"{root.name}-admin.pem"  # the key lives outside the small disk
    write_key_files(key, admin)
    return path, key


def _fill(root: Path) -> Path:
    """Write a file until the filesystem is full (tmpfs counts whole pages)."""
    filler = root / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def _register(path: Path, key: Path, model: str = "new") -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["register", model, "--ledger", str(path), "--key", str(key)])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stdout, r.stderr


def test_append_on_a_full_disk(tiny_fs: Path) -> None:
    path, key = _ledger(tiny_fs)
    filler = _fill(tiny_fs)
    before = snapshot(path)
    code, out, err = _register(path, key)
    assert (code, out) == (7, "")
    assert (
        err
        == "Error: cannot write segment 000000000004-000000000004.parquet: no space left on device\n"
    )
    assert snapshot(path) == before
    assert Ledger.open(path).verify().ok
    # Room again: the same append succeeds and continues the chain.
    filler.unlink()
    code, out, err = _register(path, key)
    assert (code, err) == (0, "") and out.startswith("register new:1: seq 4, hash ")
    assert Ledger.open(path).verify().events == 5


def test_compaction_on_a_full_disk(tiny_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_AUTOCOMPACT", "0")  # four segments for compact to merge
    path, _ = _ledger(tiny_fs)
    monkeypatch.delenv("LEDGER_AUTOCOMPACT")
    _fill(tiny_fs)
    before = snapshot(path)
    r = CliRunner().invoke(cli, ["compact", "--ledger", str(path)])
    assert (r.exit_code, r.stdout) == (7, "")
    assert r.stderr == (
        "Error: cannot write segment 000000000000-000000000003.parquet: no space left on device\n"
    )
    assert snapshot(path) == before
    assert Ledger.open(path).verify().ok


def test_read_only_filesystem(tiny_fs: Path) -> None:
    path, key = _ledger(tiny_fs)
    before = snapshot(path)
    assert subprocess.run(["mount", "-o", "remount,ro", str(tiny_fs)]).returncode == 0
    code, out, err = _register(path, key)
    assert (code, out) == (7, "")
    assert err == (
        f"Error: cannot open the lock file in {path}: Read-only file system"
        " (is the ledger folder read-only?)\n"
    )
    # Readers never write, so they work on a read-only ledger.
    r = CliRunner().invoke(cli, ["verify", "--ledger", str(path)])
    assert r.exit_code == 0 and r.stdout.startswith("OK: 4 events, head ")
    r = CliRunner().invoke(cli, ["log", "--format", "jsonl", "--ledger", str(path)])
    assert r.exit_code == 0 and r.stdout.count("\n") == 4
    assert snapshot(path) == before


# --- injected failures (run everywhere) -------------------------------------------------


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    return _ledger(tmp_path / "disk")


def _failing(real, fail_on: int, err: int):
    calls = {"n": 0}

    def fake(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == fail_on:
            raise OSError(err, os.strerror(err))
        return real(*args, **kwargs)

    return fake


@pytest.mark.parametrize(
    ("fail_on", "err", "message"),
    [
        (1, errno.ENOSPC, "no space left on device"),  # fsync of the temporary file
        (1, errno.EIO, "Input/output error"),
        (2, errno.ENOSPC, "no space left on device"),  # fsync of the folder, after the rename
    ],
    ids=["file-fsync-enospc", "file-fsync-eio", "folder-fsync-after-rename"],
)
def test_injected_fsync_failure_leaves_nothing(
    small: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, fail_on: int, err: int, message: str
) -> None:
    path, key = small
    before = snapshot(path)
    monkeypatch.setattr(os, "fsync", _failing(os.fsync, fail_on, err))
    code, out, stderr = _register(path, key)
    monkeypatch.undo()
    assert (code, out) == (7, "")
    assert stderr == f"Error: cannot write segment 000000000004-000000000004.parquet: {message}\n"
    assert snapshot(path) == before
    assert Ledger.open(path).verify().events == 4


def test_injected_read_only_lock(small: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = small
    before = snapshot(path)
    led = Ledger.open(path)
    monkeypatch.setattr(os, "open", _failing(os.open, 1, errno.EROFS))
    with pytest.raises(StorageError) as exc:
        led.register("new", key=SigningKey.generate())
    monkeypatch.undo()
    assert str(exc.value) == (
        f"cannot open the lock file in {path}: Read-only file system"
        " (is the ledger folder read-only?)"
    )
    assert snapshot(path) == before


def test_injected_rename_failure(small: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path, key = small
    before = snapshot(path)
    monkeypatch.setattr(os, "rename", _failing(os.rename, 1, errno.EROFS))
    code, out, stderr = _register(path, key)
    monkeypatch.undo()
    assert (code, out) == (7, "")
    assert stderr == (
        "Error: cannot write segment 000000000004-000000000004.parquet: Read-only file system"
        " (is the ledger folder read-only?)\n"
    )
    assert snapshot(path) == before


def test_a_failed_automatic_merge_fails_no_append(
    small: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The merge after an append runs once the events are durable: when it cannot write
    (here the merged segment's fsync fails), the append still succeeds, the parts stay
    as they were, and a later append merges them."""
    path, key = small
    for model in ("a", "b", "c"):
        assert _register(path, key, model)[0] == 0
    names = sorted(p.name for p in (path / "events").iterdir())
    assert names == [
        "000000000000-000000000003.parquet",
        *(f"00000000000{i}-00000000000{i}.parquet" for i in (4, 5, 6)),
    ]
    # Fsyncs of the fourth append: its segment, the folder, then the merged segment.
    monkeypatch.setattr(os, "fsync", _failing(os.fsync, 3, errno.ENOSPC))
    code, out, stderr = _register(path, key, "d")
    monkeypatch.undo()
    assert (code, stderr) == (0, "") and out.startswith("register d:1: seq 7, hash ")
    assert sorted(p.name for p in (path / "events").iterdir()) == [
        *names,
        "000000000007-000000000007.parquet",
    ]
    assert Ledger.open(path).verify().events == 8
    assert _register(path, key, "e")[0] == 0
    assert sorted(p.name for p in (path / "events").iterdir()) == [
        "000000000000-000000000003.parquet",
        "000000000004-000000000007.parquet",
        "000000000008-000000000008.parquet",
    ]
    assert Ledger.open(path).verify().events == 9
