"""Shared fixtures: real ledgers in tmp_path, keys for a small team, the CLI runner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger import Ledger, SigningKey
from ledger.cli import cli
from ledger.keys import write_key_files

#: Published test vectors kept in the repository (with their source and license).
LOCAL_VECTORS = Path(__file__).resolve().parent / "vectors"

TEAM = {
    "admin": "admin",
    "alice": "registrar",
    "bob": "approver",
    "carol": "deployer",
    "dave": "approver",
}


def vectors(name: str) -> dict:
    """A published test-vector file from tests/vectors/ (copied there with its source,
    so that every clone runs these tests: a missing file fails, it does not skip)."""
    return json.loads((LOCAL_VECTORS / name).read_text(encoding="utf-8"))


@dataclass
class Team:
    """A ledger on disk plus the keys (objects and 0600 files) of a small team."""

    ledger: Ledger
    path: Path
    keys: dict[str, SigningKey]
    key_files: dict[str, Path]

    def env(self, actor: str | None = None) -> dict[str, str]:
        env = {"LEDGER_PATH": str(self.path)}
        if actor:
            env["LEDGER_KEY"] = str(self.key_files[actor])
        return env


@pytest.fixture(scope="session", autouse=True)
def _verified_records(tmp_path_factory: pytest.TempPathFactory):
    """Every record of what verify accepted (ledger/verified.py) goes to a folder of the
    test session, never the real home; module fixtures included. A record is named after
    its ledger's path and genesis hash, and every test's ledger has its own tmp path, so
    no test sees another's records (tests sharing a module's ledger share its record)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LEDGER_VERIFIED_DIR", str(tmp_path_factory.mktemp("verified")))
        mp.delenv("LEDGER_REQUIRE_VERIFIED", raising=False)
        yield


@pytest.fixture
def verified_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A record folder of this test's own (for tests that look inside it)."""
    path = tmp_path / "verified-records"
    monkeypatch.setenv("LEDGER_VERIFIED_DIR", str(path))
    return path


@pytest.fixture
def team(tmp_path: Path) -> Team:
    """A fresh ledger with admin, alice (registrar), bob, dave (approver), carol (deployer)."""
    keys = {name: SigningKey.generate() for name in TEAM}
    files = {}
    kdir = tmp_path / "keys"
    kdir.mkdir()
    for name, key in keys.items():
        files[name] = kdir / f"{name}.pem"
        write_key_files(files[name], key)
    path = tmp_path / "reg"
    led = Ledger.init(path, keys["admin"], "admin", origin="test.example/reg")
    for name, role in TEAM.items():
        if name != "admin":
            led.add_key(keys[name].public_key, name, role, key=keys["admin"])
    return Team(led, path, keys, files)


@pytest.fixture
def history(team: Team) -> Team:
    """``team`` plus a small scripted history: base -> xgb (finetune), approvals, deploys."""
    led, k = team.ledger, team.keys
    led.register(
        "fraud.detector.base",
        key=k["alice"],
        artifact={"digest": "sha256:" + "ab" * 32},
        datasets=["train=s3://b/train.parquet@sha256:" + "11" * 32],
        code="https://git.example/repo@3f2a9c1",
        metrics=["auc=0.88"],
    )
    led.register("fraud.detector.xgb", key=k["alice"], parents=["fraud.detector.base:1=finetune"])
    led.approve("fraud.detector.xgb", 1, "staging", key=k["bob"])
    led.deploy("fraud.detector.xgb", 1, "staging", key=k["carol"])
    led.approve("fraud.detector.xgb", 1, "production", key=k["bob"], comment="passed bias review")
    led.deploy("fraud.detector.xgb", 1, "production", key=k["carol"])
    return team


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def invoke(runner: CliRunner):
    """Run the CLI in-process: invoke(args, env=...) -> click Result (stderr separate)."""

    def run(args: list[str], env: dict[str, str] | None = None, input: str | None = None):
        return runner.invoke(cli, args, env=env, input=input, catch_exceptions=False)

    return run
