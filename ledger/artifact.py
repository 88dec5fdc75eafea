"""Digests of model artifacts: a file, or a directory as a manifest of per-file digests.

A directory is described the way the OpenSSF model-signing format does: one resource per
regular file (its path relative to the directory, with '/' separators, and the SHA-256
of its bytes), sorted by path, and a root digest = SHA-256 over the concatenated raw
32-byte digests in that order. Symbolic links are refused, as model-signing does by
default, because what they point at can change after signing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .errors import InputError, StorageError

_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise StorageError(f"cannot read artifact file {path}: {exc.strerror}") from None
    return h.hexdigest()


def describe(path: str | os.PathLike[str], uri: str | None = None) -> dict[str, Any]:
    """The ``artifact`` object of a register payload for a local file or directory."""
    p = Path(path)
    if p.is_symlink():
        raise InputError(f"artifact {p} is a symbolic link; pass the file or folder itself")
    if p.is_file():
        d = file_digest(p)
        out: dict[str, Any] = {
            "digest": f"sha256:{d}",
            "kind": "file",
            "name": p.name,
            "size": p.stat().st_size,
        }
    elif p.is_dir():
        resources = []
        for root, dirs, files in os.walk(p, followlinks=False):
            dirs.sort()
            for name in dirs:
                if (Path(root) / name).is_symlink():
                    raise InputError(
                        f"artifact folder {p} contains a symbolic link: {Path(root) / name}"
                    )
            for name in files:
                fp = Path(root) / name
                if fp.is_symlink():
                    raise InputError(f"artifact folder {p} contains a symbolic link: {fp}")
                rel = fp.relative_to(p).as_posix()
                resources.append({"name": rel, "algorithm": "sha256", "digest": file_digest(fp)})
        if not resources:
            raise InputError(f"artifact folder {p} is empty")
        resources.sort(key=lambda r: r["name"].encode("utf-8"))
        root_digest = hashlib.sha256(b"".join(bytes.fromhex(r["digest"]) for r in resources))
        out = {
            "digest": f"sha256:{root_digest.hexdigest()}",
            "kind": "directory",
            "name": p.resolve().name,
            "manifest": {"method": "files", "hash_type": "sha256", "resources": resources},
        }
    elif p.exists():
        raise InputError(f"artifact {p} is neither a file nor a folder")
    else:
        raise InputError(f"artifact {p} does not exist")
    if uri:
        out["uri"] = uri
    return out
