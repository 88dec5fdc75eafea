"""The declared inference environment (ledger/requirements.py): pip requirements and
conda environment files read into the register payload's ``environment`` member, through
the reader, the Python API and ``ledger register``."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from ledger import requirements as R
from ledger.errors import InputError

XGB = "fraud.detector.xgb"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pip(text: str, name: str = "requirements.txt") -> list[dict]:
    return R.environment([(name, name, text.encode())])["packages"]


def test_requirement_lines_as_pip_reads_them():
    text = """\
# the serving image
numpy>=1.26,<2          # a range: the clauses are recorded sorted
Pandas_Stubs[Perf, SQL] == 2.2.1 ; python_version >= "3.10"
scikit-learn==1.4.2 \\
    --hash=sha256:00aa \\
    --hash=sha256:11bb
--index-url https://pypi.example/simple
--extra-index-url=https://mirror.example/simple
--prefer-binary

torch @ https://download.example/torch-2.3.0-cp311.whl
requests
"""
    assert pip(text) == [
        {"name": "numpy", "source": "pip", "spec": "<2,>=1.26"},
        {
            "extras": ["perf", "sql"],
            "marker": 'python_version >= "3.10"',
            "name": "pandas-stubs",
            "source": "pip",
            "spec": "==2.2.1",
        },
        {"name": "scikit-learn", "source": "pip", "spec": "==1.4.2"},
        {
            "name": "torch",
            "source": "pip",
            "spec": "",
            "url": "https://download.example/torch-2.3.0-cp311.whl",
        },
        {"name": "requests", "source": "pip", "spec": ""},
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("numpy\n-e git+https://git.example/pkg#egg=pkg\n",
         "requirements.txt line 2: -e (an editable install) cannot be recorded: it is a working"
         " copy, not a versioned package; name the package and its version (and the code with"
         " --code REPO@COMMIT)"),
        ("-c constraints.txt\n",
         "requirements.txt line 1: -c (a constraints file) is not read: it pins versions"
         " without declaring packages; put the pins in the requirements file"),
        ("--no-deps\n",
         "requirements.txt line 1: unknown option --no-deps; the options read are"
         " -r/--requirement and the package-source options (-i, --index-url,"
         " --extra-index-url, --find-links, …), which are not recorded"),
        ("./wheels/numpy-1.26.4.whl\n",
         "requirements.txt line 1: './wheels/numpy-1.26.4.whl' is not a requirement"
         " (NAME[EXTRAS] SPECIFIER [; MARKER], or NAME @ URL): Expected package name at the"
         " start of dependency specifier"),
        ("numpy==1.26 --global-option=--x\n",
         "requirements.txt line 1: the per-requirement option --global-option is not read"
         " (only --hash is, and not recorded)"),
        ("-r\n", "requirements.txt line 1: -r needs a file name"),
    ],
)  # fmt: skip
def test_requirement_lines_it_cannot_record_are_refused_by_line(text, error):
    with pytest.raises(InputError) as exc:
        pip(text)
    assert str(exc.value) == error


def test_includes_are_read_relative_to_the_including_file_once(tmp_path):
    from ledger import actions

    (tmp_path / "deps").mkdir()
    top = tmp_path / "requirements.txt"
    top.write_text("-r deps/base.txt\nnumpy==1.26.4\n")
    base = tmp_path / "deps" / "base.txt"
    base.write_text("pyarrow>=15\n-r ../requirements.txt\n")  # (a cycle: read once)
    env = actions.declared_environment(top, None, None)
    assert env == {
        "files": [
            {
                "digest": digest(top.read_bytes()),
                "kind": "requirements",
                "name": "requirements.txt",
            },
            {"digest": digest(base.read_bytes()), "kind": "requirements", "name": "base.txt"},
        ],
        "packages": [
            {"name": "pyarrow", "source": "pip", "spec": ">=15"},
            {"name": "numpy", "source": "pip", "spec": "==1.26.4"},
        ],
    }
    top.write_text("-r missing.txt\n")
    with pytest.raises(InputError) as exc:
        actions.declared_environment(top, None, None)
    assert str(exc.value) == (
        f"cannot read environment file {tmp_path / 'missing.txt'}: No such file or directory"
    )


CONDA = """\
name: fraud-serving
channels: [conda-forge, defaults]
dependencies:
  - python=3.11
  - conda-forge::numpy=1.26.4=py311h64a7726_0
  - scipy 1.13.0
  - pandas >=2.1,<3
  - _libgcc_mutex
  - pip
  - pip:
      - torch==2.3.0   # from PyPI
      - Scikit_Learn>=1.4
"""


def test_a_conda_environment_file():
    pytest.importorskip("yaml")
    env = R.environment(conda=("env.yaml", "env.yaml", CONDA.encode()), python="3.11")
    assert env == {
        "files": [{"digest": digest(CONDA.encode()), "kind": "conda", "name": "env.yaml"}],
        "packages": [
            {"name": "python", "source": "conda", "spec": "=3.11"},
            {
                "build": "py311h64a7726_0",
                "channel": "conda-forge",
                "name": "numpy",
                "source": "conda",
                "spec": "=1.26.4",
            },
            {"name": "scipy", "source": "conda", "spec": "==1.13.0"},  # (bare: exact)
            {"name": "pandas", "source": "conda", "spec": ">=2.1,<3"},
            {"name": "_libgcc_mutex", "source": "conda", "spec": ""},
            {"name": "pip", "source": "conda", "spec": ""},
            {"name": "torch", "source": "pip", "spec": "==2.3.0"},
            {"name": "scikit-learn", "source": "pip", "spec": ">=1.4"},
        ],
        "python": "3.11",
    }


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("dependencies:\n  - numpy[version='>=1.26']\n",
         "env.yaml dependencies[0]: \"numpy[version='>=1.26']\" is not a conda spec this reads"
         " ([CHANNEL::]NAME [VERSION [BUILD]], NAME=VERSION[=BUILD] or NAME>=1,<2; bracketed"
         " forms are not read)"),
        ("dependencies:\n  - 3.11\n",
         "env.yaml dependencies[0]: expected a conda spec (text) or a pip: list, got float"),
        ("dependencies:\n  - npm: [left-pad]\n",
         "env.yaml dependencies[0]: expected a conda spec (text) or a pip: list, got dict"),
        ("name: x\nbuild: gpu\n",
         "env.yaml: unknown key 'build'; the keys are name, channels, dependencies, prefix,"
         " variables"),
        ("dependencies:\n  - pip:\n      - -e .\n",
         "env.yaml dependencies[0].pip[0]: -e (an editable install) cannot be recorded: it is"
         " a working copy, not a versioned package; name the package and its version (and"
         " the code with --code REPO@COMMIT)"),
        ("- numpy\n", "env.yaml: a conda environment file is a mapping (name, dependencies …)"),
        ("name: a\nname: b\n", "env.yaml: not valid YAML: duplicate key 'name' at line 2"),
    ],
)  # fmt: skip
def test_conda_files_it_cannot_record_are_refused(text, error):
    pytest.importorskip("yaml")
    with pytest.raises(InputError) as exc:
        R.environment(conda=("env.yaml", "env.yaml", text.encode()))
    assert str(exc.value) == error


def test_conda_without_pyyaml_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(InputError) as exc:
        R.environment(conda=("env.yaml", "env.yaml", b"dependencies: []\n"))
    assert str(exc.value) == (
        "env.yaml: reading a conda environment file needs PyYAML (pip install pyyaml); or give"
        " its packages as a requirements file"
    )


def test_files_that_are_not_text_or_too_large():
    with pytest.raises(InputError, match=r"^r\.txt: not UTF-8 text$"):
        R.environment([("r", "r.txt", b"\xff\xfe")])
    with pytest.raises(InputError, match=r"^r\.txt: 1,048,577 bytes; an environment file is"):
        R.environment([("r", "r.txt", b"#" * (R.MAX_FILE_BYTES + 1))])
    with pytest.raises(InputError) as exc:
        R.environment(python="3")
    assert str(exc.value) == "--python must be a Python version such as 3.11 or 3.11.9, got '3'"


# --- through the API and the CLI ------------------------------------------------------------


def stored(led, seq: int) -> dict:
    return json.loads(led.events(columns=["payload"])["payload"][seq].as_py())


def test_register_records_the_environment_through_the_api(team, tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_bytes(b"numpy<2,>=1.26\n")
    r = team.ledger.register(XGB, key=team.keys["alice"], requirements=req, python="3.11")
    assert stored(team.ledger, r.seq)["environment"] == {
        "files": [{"digest": digest(req.read_bytes()), "kind": "requirements", "name": "requirements.txt"}],
        "packages": [{"name": "numpy", "source": "pip", "spec": "<2,>=1.26"}],
        "python": "3.11",
    }  # fmt: skip
    r = team.ledger.register(XGB, key=team.keys["alice"])
    assert "environment" not in stored(team.ledger, r.seq)  # (nothing declared, no member)
    assert team.ledger.verify().ok


def test_register_command_with_requirements_conda_and_python(team, invoke, tmp_path):
    pytest.importorskip("yaml")
    req = tmp_path / "requirements.txt"
    req.write_text("xgboost==2.0.3\n")
    env_file = tmp_path / "env.yaml"
    env_file.write_text("dependencies:\n  - python=3.11\n")
    args = ["register", XGB, "--requirements", str(req), "--conda", str(env_file)]
    r = invoke([*args, "--python", "3.11"], env=team.env("alice"))
    assert r.exit_code == 0, r.output
    env = stored(team.ledger, 5)["environment"]
    assert [f["kind"] for f in env["files"]] == ["requirements", "conda"]
    assert [p["name"] for p in env["packages"]] == ["xgboost", "python"]
    req.write_text("-e .\n")
    r = invoke(args, env=team.env("alice"))
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == (
        "Error: requirements.txt line 1: -e (an editable install) cannot be recorded: it is a"
        " working copy, not a versioned package; name the package and its version (and the"
        " code with --code REPO@COMMIT)\n"
    )
    r = invoke(
        ["register", XGB, "--requirements", str(tmp_path / "none.txt")], env=team.env("alice")
    )
    assert r.exit_code == 2
    assert r.stderr == (
        f"Error: cannot read environment file {tmp_path / 'none.txt'}: No such file or directory\n"
    )
    assert team.ledger.events(columns=["seq"]).num_rows == 6  # (refusals write nothing)


def test_a_file_named_twice_is_read_once(team, tmp_path: Path):
    req = tmp_path / "requirements.txt"
    req.write_text("numpy\n")
    r = team.ledger.register(XGB, key=team.keys["alice"], requirements=[req, req])
    env = stored(team.ledger, r.seq)["environment"]
    assert (len(env["files"]), len(env["packages"])) == (1, 1)


# --- the live-by-package query ------------------------------------------------------------

SPECS = {
    "pinned": "numpy==1.26.4",
    "range": "NumPy>=1.24,<2",
    "newer": "numpy>=2.1",
    "any": "numpy",
    "two": "numpy==2.0.0",
    "prefix": "numpy==1.26.*",
    "old": "numpy<1.20",
    "other": "scipy==1.13",
}


@pytest.fixture
def fleet(team, tmp_path):
    """One model per spec, each version 1 live in production (and 'pinned' in staging),
    plus one version with no declared environment."""
    led, k = team.ledger, team.keys
    for m, spec in SPECS.items():
        req = tmp_path / f"{m}.txt"
        req.write_text(spec + "\n")
        led.register(f"svc.{m}", key=k["alice"], requirements=req)
        led.deploy(f"svc.{m}", 1, "production", key=k["carol"])
    led.deploy("svc.pinned", 1, "staging", key=k["carol"])
    led.register("svc.bare", key=k["alice"])
    led.deploy("svc.bare", 1, "production", key=k["carol"])
    return team


def live_by_package(led, **params) -> list[tuple]:
    rows = led.query("live-by-package", params).to_pylist()
    return [(r["ref"], r["env"], r["spec"], r["pinned"], r["match"]) for r in rows]


def test_live_by_package_finds_pins_in_the_range_and_specs_that_allow_it(fleet):
    pytest.importorskip("duckdb")
    led = fleet.ledger
    assert live_by_package(led, package="numpy", below="2") == [
        ("svc.any:1", "production", "", None, "allowed"),
        ("svc.old:1", "production", "<1.20", None, "allowed"),
        ("svc.pinned:1", "production", "==1.26.4", "1.26.4", "pinned"),
        ("svc.prefix:1", "production", "==1.26.*", None, "allowed"),
        ("svc.range:1", "production", "<2,>=1.24", None, "allowed"),
        ("svc.pinned:1", "staging", "==1.26.4", "1.26.4", "pinned"),
    ]
    assert live_by_package(led, package="NumPy", below="2.0.0", at_least="1.25", pinned=1, env="production") == [
        ("svc.pinned:1", "production", "==1.26.4", "1.26.4", "pinned"),
    ]  # fmt: skip
    # 2.0.0 is not below 2; <1.20 rules out 1.25 and up; >=2.1 rules out below 2.
    assert [r[0] for r in live_by_package(led, package="numpy", at_least="1.25")] == [
        "svc.any:1", "svc.newer:1", "svc.pinned:1", "svc.prefix:1", "svc.range:1", "svc.two:1",
        "svc.pinned:1",
    ]  # fmt: skip
    row = led.query("live-by-package", {"package": "scipy"}).to_pylist()
    assert [(r["ref"], r["package"], r["source"], r["deployed_by"]) for r in row] == [
        ("svc.other:1", "scipy", "pip", "carol")
    ]
    led.undeploy("svc.pinned", 1, "production", key=fleet.keys["carol"])
    assert [r[:2] for r in live_by_package(led, package="numpy", below="2", pinned=1)] == [
        ("svc.pinned:1", "staging")
    ]
