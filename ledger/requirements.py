"""The declared inference environment of a version (pure: files come in as bytes).

``ledger register … --requirements requirements.txt --conda env.yaml --python 3.11``
records what the model needs to run in the register payload's ``environment`` member
(docs/FORMAT.md §4.1)::

    {"python": "3.11",
     "packages": [{"name": "numpy", "spec": "<2,>=1.26", "source": "pip"}, …],
     "files": [{"kind": "requirements", "name": "requirements.txt", "digest": "sha256:…"}]}

What is declared, not what was installed: each package as its file names it (pip names
normalized per PEP 503, the specifier's clauses sorted), and each file read by name and
SHA-256 digest, so the exact text stays checkable by whoever holds it.

pip requirement files: one requirement per line (``NAME[EXTRAS] SPECIFIER ; MARKER`` or
``NAME @ URL``), parsed with the ``packaging`` library; ``#`` comments, blank lines and
``\\`` continuations as pip reads them. ``-r FILE`` includes another file (read once,
whatever includes it again); options that say where packages come from (``-i``,
``--index-url``, ``--extra-index-url``, ``--find-links``, ``--trusted-host``, ``--pre``,
``--no-index``, ``--prefer-binary``, ``--only-binary``, ``--no-binary``,
``--require-hashes``, ``--use-feature``) and a requirement's ``--hash`` are accepted and
not recorded (the file's digest covers them). Refused, with the file and line: ``-e``
(an editable install is a working copy, not a versioned package), ``-c`` (constraints
pin versions without declaring packages), any other option, and lines that name no
package (a bare path or URL).

conda environment files (``name``, ``channels``, ``dependencies``, ``prefix``,
``variables``; needs PyYAML): each dependency a conda match spec ``[CHANNEL::]NAME
[VERSION [BUILD]]`` or ``NAME=VERSION[=BUILD]`` / ``NAME>=1,<2``, its name lowercased, a
bare ``NAME 1.2.3`` recorded as ``==1.2.3``; the ``pip:`` sub-list is read as pip lines.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Any

from .errors import InputError

#: What a package record's ``source`` says installed it.
PIP, CONDA = "pip", "conda"
#: A file record's ``kind``.
REQUIREMENTS_FILE, CONDA_FILE = "requirements", "conda"
#: A file larger than this is refused before it is parsed (an event is at most 64 KiB).
MAX_FILE_BYTES = 1 << 20

PIP_NAME_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
CONDA_NAME_RE = re.compile(r"[a-z0-9_][a-z0-9_.-]*")
PYTHON_RE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}(?:\.[0-9]{1,3})?")
#: A specifier or conda version spec as recorded: no whitespace, no quotes.
SPEC_RE = re.compile(r"[^\s\"'\\]*")

#: pip options about where packages come from: accepted, not recorded.
_SOURCE_OPTIONS = frozenset(
    {
        "-i",
        "--index-url",
        "--extra-index-url",
        "--no-index",
        "-f",
        "--find-links",
        "--trusted-host",
        "--pre",
        "--prefer-binary",
        "--only-binary",
        "--no-binary",
        "--require-hashes",
        "--use-feature",
    }
)
_CONDA_KEYS = ("name", "channels", "dependencies", "prefix", "variables")
_COMMENT = re.compile(r"(?:^|\s)#.*$")
_OPTION_AFTER = re.compile(r"\s(--?[A-Za-z][A-Za-z-]*)(?:[=\s]\S*)?")
_CONDA_SPEC = re.compile(
    r"(?:(?P<channel>[A-Za-z0-9_./:-]+)::)?(?P<name>[A-Za-z0-9_][A-Za-z0-9_.-]*)\s*(?P<rest>.*)"
)

#: Reads a file a requirements file includes: (the including file's id, the name as
#: written) -> (the included file's id, its name to record, its bytes).
Opener = Callable[[str, str], tuple[str, str, bytes]]


def normalize(name: str) -> str:
    """A package name normalized per PEP 503: lowercase, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def file_record(kind: str, name: str, data: bytes) -> dict[str, Any]:
    return {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "kind": kind, "name": name}


def _text(data: bytes, name: str) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"{name}: {len(data):,} bytes; an environment file is at most 1 MiB")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{name}: not UTF-8 text") from None


class Reader:
    """Collects the packages and files of one environment, in the order read."""

    def __init__(self, opener: Opener | None = None) -> None:
        self.opener = opener
        self.packages: list[dict[str, Any]] = []
        self.files: list[dict[str, Any]] = []
        self._read: set[str] = set()

    def requirements(self, fid: str, name: str, data: bytes) -> None:
        """A pip requirements file (``fid``: its identity for includes, e.g. its path)."""
        if fid in self._read:
            return  # (included again: its packages are recorded once)
        self._read.add(fid)
        self.files.append(file_record(REQUIREMENTS_FILE, name, data))
        lines = _logical_lines(_text(data, name))
        self.pip_lines(((f"{name} line {n}", line) for n, line in lines), fid)

    def pip_lines(self, lines: Iterable[tuple[str, str]], fid: str) -> None:
        """Requirement lines, each with where it was read (for errors)."""
        for where, line in lines:
            if line.startswith("-"):
                self.pip_option(line, fid, where)
            else:
                self.packages.append(pip_requirement(line, where))

    def pip_option(self, line: str, fid: str, where: str) -> None:
        opt, value = _split_option(line)
        if opt in ("-r", "--requirement"):
            if not value:
                raise InputError(f"{where}: {opt} needs a file name")
            if self.opener is None:
                raise InputError(f"{where}: {opt} {value}: includes cannot be read here")
            inc_id, inc_name, data = self.opener(fid, value)
            self.requirements(inc_id, inc_name, data)
        elif opt in ("-e", "--editable"):
            raise InputError(
                f"{where}: {opt} (an editable install) cannot be recorded: it is a working"
                " copy, not a versioned package; name the package and its version (and the"
                " code with --code REPO@COMMIT)"
            )
        elif opt in ("-c", "--constraint"):
            raise InputError(
                f"{where}: {opt} (a constraints file) is not read: it pins versions without"
                " declaring packages; put the pins in the requirements file"
            )
        elif opt not in _SOURCE_OPTIONS:
            raise InputError(
                f"{where}: unknown option {opt}; the options read are -r/--requirement and"
                " the package-source options (-i, --index-url, --extra-index-url,"
                " --find-links, …), which are not recorded"
            )

    def conda(self, fid: str, name: str, data: bytes) -> None:
        """A conda environment file (YAML)."""
        doc = _yaml(_text(data, name), name)
        self.files.append(file_record(CONDA_FILE, name, data))
        if not isinstance(doc, dict):
            raise InputError(
                f"{name}: a conda environment file is a mapping (name, dependencies …)"
            )
        for k in doc:
            if k not in _CONDA_KEYS:
                raise InputError(
                    f"{name}: unknown key {k!r}; the keys are {', '.join(_CONDA_KEYS)}"
                )
        deps = doc.get("dependencies") or []
        if not isinstance(deps, list):
            raise InputError(f"{name}: dependencies must be a list")
        for i, dep in enumerate(deps):
            where = f"{name} dependencies[{i}]"
            if isinstance(dep, dict) and list(dep) == ["pip"]:
                pip = dep["pip"] or []
                if not isinstance(pip, list) or not all(isinstance(x, str) for x in pip):
                    raise InputError(f"{where}: pip must be a list of requirement lines")
                lines = [
                    (f"{where}.pip[{j}]", _COMMENT.sub("", x).strip()) for j, x in enumerate(pip)
                ]
                self.pip_lines(((w, line) for w, line in lines if line), fid)
            elif isinstance(dep, str):
                self.packages.append(conda_spec(dep, where))
            else:
                raise InputError(
                    f"{where}: expected a conda spec (text) or a pip: list, got {type(dep).__name__}"
                )


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) of each requirement line: continuations joined,
    comments and blank lines dropped."""
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = n
        body = _COMMENT.sub("", raw)
        if body == raw and raw.endswith("\\"):  # (as pip: a comment ends the line)
            pending += raw[:-1]
            continue
        line = (pending + body).strip()
        pending = ""
        if line:
            out.append((start, line))
    if pending.strip():
        line = _COMMENT.sub("", pending).strip()
        if line:
            out.append((start, line))
    return out


def _split_option(line: str) -> tuple[str, str]:
    m = re.match(r"(--?[A-Za-z][A-Za-z-]*)(?:=|\s+|(?=\S))?(.*)", line)
    if m is None:
        return line, ""
    opt, value = m[1], m[2].strip()
    if not opt.startswith("--") and len(opt) > 2:  # -rfile: -r with its value attached
        opt, value = opt[:2], (opt[2:] + value).strip()
    return opt, value


def pip_requirement(line: str, where: str) -> dict[str, Any]:
    """One pip requirement line as a package record."""
    opts = _OPTION_AFTER.findall(" " + line)
    for opt in opts:
        if opt != "--hash":
            raise InputError(
                f"{where}: the per-requirement option {opt} is not read (only --hash is, and"
                " not recorded)"
            )
    text = re.sub(r"\s--hash(?:[=\s])\S*", "", " " + line).strip()
    try:
        from packaging.requirements import InvalidRequirement, Requirement
    except ImportError:  # pragma: no cover (a dependency of the package)
        raise InputError("reading requirements needs the packaging library") from None
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise InputError(
            f"{where}: {text!r} is not a requirement (NAME[EXTRAS] SPECIFIER [; MARKER], or"
            f" NAME @ URL): {first}"
        ) from None
    record: dict[str, Any] = {
        "name": normalize(req.name),
        "source": PIP,
        "spec": ",".join(sorted(str(s) for s in req.specifier)),
    }
    if req.extras:
        record["extras"] = sorted({normalize(x) for x in req.extras})
    if req.marker is not None:
        record["marker"] = str(req.marker)
    if req.url:
        record["url"] = req.url
    return record


def conda_spec(spec: str, where: str) -> dict[str, Any]:
    """One conda match spec as a package record."""
    m = _CONDA_SPEC.fullmatch(spec.strip())
    if m is None or "[" in spec:
        raise InputError(
            f"{where}: {spec!r} is not a conda spec this reads ([CHANNEL::]NAME [VERSION"
            " [BUILD]], NAME=VERSION[=BUILD] or NAME>=1,<2; bracketed forms are not read)"
        )
    rest, build = m["rest"].strip(), None
    if rest and rest[0] in "=<>!~":
        version = rest.replace(" ", "")
        pinned = re.fullmatch(r"(==?)([^=]+)=([^=]+)", version)  # NAME=1.2=BUILD
        if pinned:
            version, build = pinned[1] + pinned[2], pinned[3]
    elif rest:
        words = rest.split()
        if len(words) > 2:
            raise InputError(f"{where}: {spec!r}: expected NAME [VERSION [BUILD]]")
        version = words[0]
        build = words[1] if len(words) == 2 else None
        if re.fullmatch(r"[0-9][0-9A-Za-z.+_!-]*", version):  # a bare version is exact
            version = "==" + version
    else:
        version = ""
    for part in (version, build or ""):
        if not SPEC_RE.fullmatch(part):
            raise InputError(f"{where}: {spec!r}: {part!r} is not a version spec")
    record: dict[str, Any] = {"name": m["name"].lower(), "source": CONDA, "spec": version}
    if m["channel"]:
        record["channel"] = m["channel"]
    if build:
        record["build"] = build
    return record


def _yaml(text: str, name: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise InputError(
            f"{name}: reading a conda environment file needs PyYAML (pip install pyyaml);"
            " or give its packages as a requirements file"
        ) from None
    from .canonical import DuplicateKey, unique_keys_loader

    try:
        return yaml.load(text, Loader=unique_keys_loader(yaml))
    except DuplicateKey as exc:
        raise InputError(f"{name}: not valid YAML: {exc}") from None
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise InputError(f"{name}: not valid YAML: {first}") from None


def check_python(version: str) -> str:
    if not isinstance(version, str) or not PYTHON_RE.fullmatch(version):
        raise InputError(
            f"--python must be a Python version such as 3.11 or 3.11.9, got {version!r}"
        )
    return version


def environment(
    requirements: Iterable[tuple[str, str, bytes]] = (),
    conda: tuple[str, str, bytes] | None = None,
    python: str | None = None,
    opener: Opener | None = None,
) -> dict[str, Any]:
    """The ``environment`` member: requirements files and a conda file as (id, name,
    bytes), the Python version, and ``opener`` for the files ``-r`` lines include."""
    r = Reader(opener)
    for fid, name, data in requirements:
        r.requirements(fid, name, data)
    if conda is not None:
        r.conda(*conda)
    env: dict[str, Any] = {"files": r.files, "packages": r.packages}
    if python is not None:
        env["python"] = check_python(python)
    return env


__all__ = ["CONDA", "PIP", "Reader", "environment", "normalize"]
