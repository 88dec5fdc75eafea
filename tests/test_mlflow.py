"""The MLflow registry store plugin, ``ledger import mlflow`` and ``ledger mlflow diff``,
against real MLflow: its client in a process of its own (tests/mlflow_driver.py) and a
real ``mlflow server`` on 127.0.0.1, driven over plain HTTP."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger import Ledger, SigningKey
from ledger.keys import write_key_files

DRIVER = Path(__file__).with_name("mlflow_driver.py")
pytestmark = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import mlflow"], capture_output=True).returncode,
    reason="MLflow is not installed (pip install -e '.[test]')",
)


@dataclass
class Setup:
    root: Path
    ledger: Path
    db: Path
    keys: dict[str, Path]
    #: MLflow's database, when not the SQLite file ``db``
    db_uri: str | None = None

    @property
    def tracking(self) -> str:
        return self.db_uri or f"sqlite:///{self.db}"

    @property
    def registry(self) -> str:
        return f"ledger+{self.tracking}?ledger={self.ledger}&key={self.keys['server']}"

    def led(self) -> Ledger:
        return Ledger.open(self.ledger)

    def registry_events(self) -> list[dict[str, Any]]:
        """The ledger's events but its keys and policy."""
        ev = self.led().events().to_pylist()
        for e in ev:
            e["comment"] = json.loads(e["payload"]).get("comment", "")
        return [e for e in ev if e["action"] not in ("genesis", "key_add", "policy_set")]

    def actions(self) -> list[tuple[str, str | None, int | None]]:
        ev = self.led().events()
        return [(r["action"], r["model"], r["version"]) for r in ev.to_pylist()
                if r["action"] not in ("genesis", "key_add", "policy_set")]  # fmt: skip


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    keys = {n: SigningKey.generate() for n in ("admin", "server", "carol", "importer")}
    (tmp_path / "keys").mkdir()
    files = {}
    for name, key in keys.items():
        files[name] = tmp_path / "keys" / f"{name}.pem"
        write_key_files(files[name], key)
    # (not "ledger": an editable install is shadowed by a folder of that name in the cwd)
    led = Ledger.init(tmp_path / "audit", keys["admin"], "admin", origin="test.example/ml")
    roles = {"server": "registrar,deployer,approver", "carol": "approver",
             "importer": "registrar,deployer"}  # fmt: skip
    for name, r in roles.items():
        actor = "mlflow-server" if name == "server" else name
        led.add_key(keys[name].public_key, actor, r.split(","), key=keys["admin"])
    return Setup(tmp_path, tmp_path / "audit", tmp_path / "mlflow.db", files)


def drive(s: Setup, ops: list[dict[str, Any]], *, registry: str | None = None,
          crash: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Run ``ops`` through MLflow's client in a new process; one result per op run."""
    path = s.root / f"ops-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(ops), encoding="utf-8")
    env = {**os.environ, "DRIVER_REGISTRY": registry or s.registry, "DRIVER_TRACKING": s.tracking}
    env.pop("PYTEST_CURRENT_TEST", None)  # (MLflow checks its own sessions' flags under it)
    if crash:
        env["DRIVER_CRASH"] = crash
    out = subprocess.run([sys.executable, str(DRIVER), str(path)], capture_output=True,
                         text=True, env=env, cwd=s.root, timeout=300)  # fmt: skip
    if crash:
        assert out.returncode == -9, out.stderr[-2000:]
    else:
        assert out.returncode == 0, out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def op(name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"op": name, "args": list(args), "kwargs": kwargs}


def ledger_cli(s: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-c", "from ledger.cli import main; main()", *args],
        capture_output=True, text=True, cwd=s.root, timeout=300,
        env={**os.environ, "LEDGER_PATH": str(s.ledger)},
    )  # fmt: skip


def mlflow_diff(s: Setup) -> subprocess.CompletedProcess[str]:
    return ledger_cli(s, "mlflow", "diff", "--registry-uri", s.tracking, "--format", "json")


RUN = op("log_run", metrics={"auc": 0.93}, params={"depth": "6"}, tags={
    "mlflow.source.git.commit": "0123456789abcdef0123456789abcdef01234567",
    "mlflow.source.git.repoURL": "https://git.example.com/fraud"},
    datasets=[{"name": "train", "url": "https://data.example.com/train.csv"}])  # fmt: skip


def test_every_registry_write_becomes_a_signed_event(setup: Setup) -> None:
    res = drive(setup, [
        RUN,
        op("create_registered_model", "fraud", tags={"team": "risk"}, description="Fraud"),
        op("create_model_version", "fraud", "runs:/$run/model", run_id="$run"),
        op("create_model_version", "fraud", "s3://models/fraud/2"),
        op("update_registered_model", "fraud", description="Fraud, v2"),
        op("update_model_version", "fraud", "1", description="first"),
        op("set_registered_model_tag", "fraud", "tier", "1"),
        op("delete_registered_model_tag", "fraud", "team"),
        op("set_model_version_tag", "fraud", "1", "owner", "alice"),
        op("delete_model_version_tag", "fraud", "1", "owner"),
        op("transition_model_version_stage", "fraud", "1", "Staging"),
        op("transition_model_version_stage", "fraud", "2", "Staging", archive_existing_versions=True),
        op("set_registered_model_alias", "fraud", "champion", "2"),
        op("delete_registered_model_alias", "fraud", "champion"),
        op("delete_model_version", "fraud", "1"),
        op("rename_registered_model", "fraud", "fraud2"),
        op("create_registered_model", "churn"),
        op("delete_registered_model", "churn"),
    ])  # fmt: skip
    assert [r.get("code") for r in res][:-3] == [None] * 15
    assert res[15]["code"] == "INVALID_PARAMETER_VALUE" and "cannot be renamed" in res[15]["error"]
    assert setup.actions() == [
        ("model_create", "fraud", None), ("tag_set", "fraud", None), ("describe", "fraud", None),
        ("register", "fraud", 1), ("register", "fraud", 2),
        ("describe", "fraud", None), ("describe", "fraud", 1),
        ("tag_set", "fraud", None), ("tag_delete", "fraud", None),
        ("tag_set", "fraud", 1), ("tag_delete", "fraud", 1),
        ("tag_set", "fraud", 1), ("deploy", "fraud", 1),
        ("tag_set", "fraud", 1), ("tag_set", "fraud", 2), ("deploy", "fraud", 2),
        ("alias_set", "fraud", 2), ("alias_delete", "fraud", 2),
        ("deprecate", "fraud", 1),
        ("model_create", "churn", None), ("tag_set", "churn", None),
    ]  # fmt: skip
    v1 = setup.led().show("fraud", 1)
    assert v1["metrics"] == {"auc": 0.93} and v1["params"] == {"depth": "6"}
    assert v1["code"] == {"repo": "https://git.example.com/fraud",
                          "commit": "0123456789abcdef0123456789abcdef01234567"}  # fmt: skip
    assert [d["name"] for d in v1["datasets"]] == ["train"]
    ev = setup.registry_events()
    assert all(e["actor"] == "mlflow-server" for e in ev)
    assert "mlflow create_registered_model (user=" in ev[0]["comment"]
    assert setup.led().verify().ok
    out = mlflow_diff(setup)
    assert (out.returncode, out.stdout) == (0, "[]\n"), out.stderr


def test_a_write_the_ledger_refuses_is_refused_to_mlflow_and_changes_nothing(setup: Setup) -> None:
    led = setup.led()
    policy = {"approvals": {"required": {"production": 1}},
              "separation_of_duties": {"registrant_may_not_approve": True}}  # fmt: skip
    led.set_policy(policy, key=_key(setup, "admin"))
    res = drive(setup, [
        op("create_registered_model", "fraud"),
        op("create_model_version", "fraud", "s3://m/1"),
        op("transition_model_version_stage", "fraud", "1", "Production"),
        op("set_registered_model_alias", "fraud", "production", "1"),
        op("set_model_version_tag", "fraud", "1", "ledger.approve.production", "ok"),
        op("get_model_version", "fraud", "1"),
    ])  # fmt: skip
    assert res[2]["code"] == "PERMISSION_DENIED"
    assert "production" in res[2]["error"] and "approv" in res[2]["error"]
    assert res[3]["code"] == "PERMISSION_DENIED"
    assert res[4]["code"] == "PERMISSION_DENIED"  # the registrant approving its own version
    assert res[5]["ok"]["current_stage"] == "None" and res[5]["ok"]["aliases"] == []
    assert "ledger.approve.production" not in res[5]["ok"]["tags"]
    before = setup.actions()
    setup.led().approve("fraud", 1, "production", key=_key(setup, "carol"))
    res = drive(setup, [op("transition_model_version_stage", "fraud", "1", "Production")])
    assert "ok" in res[0]
    assert setup.actions()[len(before):] == [
        ("approve", "fraud", 1), ("tag_set", "fraud", 1), ("deploy", "fraud", 1)]  # fmt: skip
    assert mlflow_diff(setup).returncode == 0


def _key(s: Setup, name: str) -> SigningKey:
    from ledger.keys import load_signing_key

    return load_signing_key(s.keys[name])


def test_a_change_behind_the_ledgers_back_shows_in_diff_and_blocks_writes(setup: Setup) -> None:
    drive(setup, [op("create_registered_model", "fraud"),
                  op("create_model_version", "fraud", "s3://m/1")])  # fmt: skip
    with sqlite3.connect(setup.db) as db:
        db.execute("UPDATE model_versions SET current_stage = 'Production' WHERE version = 1")
    out = mlflow_diff(setup)
    assert out.returncode == 1
    rows = json.loads(out.stdout)
    assert [(r["where"], r["what"], r["mlflow"], r["fix"]) for r in rows] == [
        ("fraud:1", "stage", "Production", "tag_set"),
        ("fraud:1", "live in production", "version 1", "deploy"),
    ]
    res = drive(setup, [op("set_model_version_tag", "fraud", "1", "owner", "bob")])
    assert res[0]["code"] == "PERMISSION_DENIED" and "behind the ledger" in res[0]["error"]
    out = ledger_cli(setup, "import", "mlflow", "--registry-uri", setup.tracking,
                     "--key", str(setup.keys["importer"]))  # fmt: skip
    assert (out.returncode, out.stdout) == (
        0,
        "Imported 2 events: 1 model changed, 0 versions registered.\n",
    ), out.stderr
    assert "ok" in drive(setup, [op("set_model_version_tag", "fraud", "1", "owner", "bob")])[0]
    assert mlflow_diff(setup).returncode == 0


def test_import_of_a_registry_built_through_mlflow_then_diff_is_empty(setup: Setup) -> None:
    plain = setup.tracking
    drive(setup, [
        RUN,
        op("create_registered_model", "fraud", tags={"team": "risk"}),
        op("create_model_version", "fraud", "runs:/$run/model", run_id="$run"),
        op("create_model_version", "fraud", "runs:/$run/model", run_id="$run"),
        op("create_model_version", "fraud", "runs:/$run/model", run_id="$run"),
        op("transition_model_version_stage", "fraud", "2", "Production"),
        op("set_registered_model_alias", "fraud", "champion", "3"),
        op("set_model_version_tag", "fraud", "3", "validated", "yes"),
        op("delete_model_version", "fraud", "1"),
        op("create_registered_model", "churn", description="Churn"),
    ], registry=plain)  # fmt: skip
    assert mlflow_diff(setup).returncode == 1
    args = ("import", "mlflow", "--registry-uri", plain, "--key", str(setup.keys["importer"]))
    out = ledger_cli(setup, *args)
    assert out.stdout == "Imported 10 events: 2 models changed, 3 versions registered.\n", (
        out.stderr
    )
    assert (mlflow_diff(setup).returncode, ledger_cli(setup, *args).stdout) == (
        0, "Imported 0 events: 0 models changed, 0 versions registered.\n")  # fmt: skip
    led = setup.led()
    assert led.show("fraud", 2)["metrics"] == {"auc": 0.93}
    assert led.status("fraud", "production").to_pylist()[0]["version"] == 2
    ev = setup.registry_events()
    assert all(e["actor"] == "importer" for e in ev)
    assert "imported from MLflow" in ev[-1]["comment"]
    assert led.verify().ok


@pytest.mark.parametrize("point", ["before_commit", "after_commit", "after_append"])
def test_a_crash_at_any_step_leaves_mlflow_and_the_ledger_agreeing(
    setup: Setup, point: str
) -> None:
    drive(setup, [op("create_registered_model", "fraud")])
    drive(setup, [op("create_model_version", "fraud", "s3://m/1")], crash=point)
    in_mlflow = point != "before_commit"
    in_ledger = point == "after_append"
    assert (("register", "fraud", 1) in setup.actions()) == in_ledger
    out = mlflow_diff(setup)
    rows = json.loads(out.stdout)
    if in_mlflow == in_ledger:  # (after the append the outbox row is complete: no-op)
        assert (out.returncode, rows) == (0, [])
    else:
        assert out.returncode == 1
        assert rows == [
            {"where": "fraud:1", "what": "version", "mlflow": "exists", "ledger": "absent",
             "fix": "register"},
            {"where": "fraud", "what": "pending write", "mlflow": "create_model_version",
             "ledger": "not written", "fix": "the store writes it when it next starts"},
        ]  # fmt: skip
    # The store's next start writes what the crash left out; then both agree.
    res = drive(setup, [op("get_model_version", "fraud", "1")])
    assert ("ok" in res[0]) == in_mlflow
    assert (("register", "fraud", 1) in setup.actions()) == in_mlflow
    assert (mlflow_diff(setup).returncode, setup.led().verify().ok) == (0, True)


def test_a_live_store_records_another_process_crashed_write_before_its_own(setup: Setup) -> None:
    """Store B is already running when process A dies between MLflow's commit and the
    ledger's append: B's next write of that model writes A's events first."""
    drive(setup, [op("create_registered_model", "fraud"),
                  op("create_model_version", "fraud", "s3://m/1")])  # fmt: skip
    go = setup.root / "go"
    path = setup.root / "b.json"
    path.write_text(json.dumps([op("get_registered_model", "fraud"), op("wait_for", str(go)),
                                op("set_model_version_tag", "fraud", "1", "owner", "bob")]))  # fmt: skip
    env = {**os.environ, "DRIVER_REGISTRY": setup.registry, "DRIVER_TRACKING": setup.tracking}
    env.pop("PYTEST_CURRENT_TEST", None)
    b = subprocess.Popen([sys.executable, str(DRIVER), str(path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=setup.root)  # fmt: skip
    try:
        assert b.stdout is not None and "ok" in json.loads(b.stdout.readline())  # B's store is up
        drive(setup, [op("create_model_version", "fraud", "s3://m/2")], crash="after_commit")
        assert ("register", "fraud", 2) not in setup.actions()
        go.touch()
        out, err = b.communicate(timeout=300)
    finally:
        b.kill()
    assert [json.loads(line) for line in out.splitlines()][-1] == {"ok": None}, err[-2000:]
    assert setup.actions()[-2:] == [("register", "fraud", 2), ("tag_set", "fraud", 1)]
    assert mlflow_diff(setup).returncode == 0


# --- a real MLflow server ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(setup: Setup, registry: str, *args: str, env: dict[str, str] | None = None):
    """``mlflow server`` on a free 127.0.0.1 port (stopped at the end); yields its URL."""
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    full = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"} | (env or {})
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", setup.tracking, "--registry-store-uri",
         registry, "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *args],
        cwd=setup.root, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    err = proc.stderr.read()[-2000:] if proc.stderr else b""
                    raise RuntimeError(f"mlflow server did not start: {err!r}") from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def server(setup: Setup):
    with _server(setup, setup.registry) as url:
        yield url


def _post(url: str, path: str, body: dict[str, Any],
          auth: tuple[str, str] | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    req = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(), method="POST",
        headers=headers,
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw or b"{}")
    except ValueError:
        return status, {"body": raw.decode(errors="replace")[:500]}


def test_the_server_records_rest_and_client_writes(setup: Setup, server: str) -> None:
    for path, body in [
        ("registered-models/create", {"name": "fraud"}),
        ("model-versions/create", {"name": "fraud", "source": "s3://m/1"}),
    ]:
        status, answer = _post(server, path, body)
        assert status == 200, answer["message"]
    status, body = _post(server, "registered-models/alias",
                         {"name": "fraud", "alias": "champion", "version": "1"})  # fmt: skip
    assert status == 200, body
    res = drive(setup, [op("set_model_version_tag", "fraud", "1", "owner", "alice"),
                        op("rename_registered_model", "fraud", "other")],
                registry=server)  # fmt: skip
    assert "ok" in res[0] and "cannot be renamed" in res[1]["error"]
    assert setup.actions() == [("model_create", "fraud", None), ("register", "fraud", 1),
                               ("alias_set", "fraud", 1), ("tag_set", "fraud", 1)]  # fmt: skip
    ev = setup.registry_events()
    assert "remote_addr=127.0.0.1" in ev[0]["comment"]
    # diff reads a tracking server too (its outbox is the server's: not listed).
    out = ledger_cli(setup, "mlflow", "diff", "--registry-uri", server, "--format", "json")
    assert (out.returncode, out.stdout) == (0, "[]\n"), out.stderr
    note = f"Note: {server} is not a database; the store's pending writes are not listed"
    assert note in out.stderr.splitlines()
    # A refusal is MLflow's error response, with the ledger's message.
    setup.led().set_policy({"approvals": {"required": {"production": 1}}},
                           key=_key(setup, "admin"))  # fmt: skip
    status, body = _post(server, "registered-models/alias",
                         {"name": "fraud", "alias": "production", "version": "1"})  # fmt: skip
    assert (status, body["error_code"]) == (403, "PERMISSION_DENIED")
    assert "approv" in body["message"]
    assert len(setup.actions()) == 4  # (nothing from the refused write)


def test_with_mlflow_auth_each_user_signs_with_their_own_key(setup: Setup) -> None:
    """MLflow's basic-auth app authenticates; the users file maps alice to a ledger key
    (the importer's, registrar and deployer); bob, not in it, is refused."""
    (setup.root / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = MANAGE\n"
        f"database_uri = sqlite:///{setup.root / 'auth.db'}\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n",
        encoding="utf-8",
    )
    (setup.root / "users.toml").write_text(
        f'[users]\nalice = "{setup.keys["importer"]}"\n', encoding="utf-8"
    )
    registry = f"{setup.registry}&users={setup.root / 'users.toml'}"
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(setup.root / "auth.ini"),
           "MLFLOW_AUTH_ADMIN_PASSWORD": "admin-password-1234",
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "test-secret"}  # fmt: skip
    with _server(setup, registry, "--app-name", "basic-auth", env=env) as url:
        admin = ("admin", "admin-password-1234")
        for user in ("alice", "bob"):
            status, body = _post(url, "users/create",
                                 {"username": user, "password": f"{user}-password-1234"}, admin)  # fmt: skip
            assert status == 200, body
        status, body = _post(url, "registered-models/create", {"name": "fraud"},
                             ("alice", "alice-password-1234"))  # fmt: skip
        assert status == 200, body
        status, body = _post(url, "registered-models/create", {"name": "churn"},
                             ("bob", "bob-password-1234"))  # fmt: skip
        assert (status, body["error_code"]) == (403, "PERMISSION_DENIED")
        assert "MLflow user 'bob' has no ledger key" in body["message"]
        status, _ = _post(url, "registered-models/create", {"name": "churn"},
                          ("alice", "wrong-password"))  # fmt: skip
        assert status == 401
    ev = setup.registry_events()
    assert [(e["action"], e["model"], e["actor"]) for e in ev] == [
        ("model_create", "fraud", "importer")]  # fmt: skip
    assert "user=alice, authenticated=True" in ev[0]["comment"]


def test_a_wrong_registry_uri_is_an_error_and_changes_nothing(setup: Setup) -> None:
    drive(setup, [op("create_registered_model", "fraud"),
                  op("create_model_version", "fraud", "s3://m/1")])  # fmt: skip
    # A model of the ledger's own (not from MLflow) is not MLflow's to delete.
    setup.led().register("churn", key=_key(setup, "importer"))
    before = setup.led().events().num_rows
    imp = ("import", "mlflow", "--key", str(setup.keys["importer"]), "--registry-uri")
    missing = setup.root / "typo" / "mlflow.db"
    out = ledger_cli(setup, *imp, f"sqlite:///{missing}")
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == f"Error: no MLflow database at {missing} (from sqlite:///{missing})\n"
    assert not missing.parent.exists()
    # An empty registry (another file): importing it would delete every model.
    with sqlite3.connect(setup.root / "empty.db"):
        pass
    drive(setup, [op("search_registered_models")], registry=f"sqlite:///{setup.root / 'empty.db'}")
    out = ledger_cli(setup, *imp, f"sqlite:///{setup.root / 'empty.db'}")
    assert out.returncode == 2 and "holds no registered models" in out.stderr, out.stderr
    assert setup.led().events().num_rows == before
    out = mlflow_diff(setup)
    assert (out.returncode, out.stdout) == (0, "[]\n"), out.stderr  # (churn is not compared)


# --- PostgreSQL ---------------------------------------------------------------------------
def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of the test's own on 127.0.0.1 (Debian's, which .ci/run
    installs), stopped at the end; yields (bin folder, port)."""
    pg = _pg_bin()
    if pg is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg")
    # (not under pytest's tmp: the postgres user must reach it, and root's is private)
    folder = Path(tempfile.mkdtemp(prefix="ledger-pg-"))
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if run_as:
        os.chown(folder, *(lambda p: (p.pw_uid, p.pw_gid))(__import__("pwd").getpwnam("postgres")))
    subprocess.run([*run_as, str(pg / "initdb"), "-D", str(folder / "data"), "-A", "trust",
                    "-U", "postgres"], check=True, capture_output=True)  # fmt: skip
    port = _free_port()
    proc = subprocess.Popen([*run_as, str(pg / "postgres"), "-D", str(folder / "data"), "-p",
                             str(port), "-k", str(folder), "-h", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while subprocess.run([str(pg / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                         capture_output=True).returncode:  # fmt: skip
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("PostgreSQL did not start")
        time.sleep(0.2)
    try:
        yield pg, port
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def test_on_postgresql_writes_are_recorded_and_a_crash_recovered(setup: Setup, postgres) -> None:
    pg, port = postgres
    name = f"mlflow_{os.getpid()}_{time.monotonic_ns()}"
    subprocess.run([str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                    name], check=True)  # fmt: skip
    setup.db_uri = f"postgresql://postgres@127.0.0.1:{port}/{name}"
    res = drive(setup, [
        op("create_registered_model", "fraud", tags={"team": "risk"}),
        op("create_model_version", "fraud", "s3://m/1"),
        op("transition_model_version_stage", "fraud", "1", "Staging"),
        op("set_registered_model_alias", "fraud", "champion", "1"),
        op("rename_registered_model", "fraud", "other"),
    ])  # fmt: skip
    assert [r.get("code") for r in res] == [None] * 4 + ["INVALID_PARAMETER_VALUE"]
    drive(setup, [op("create_model_version", "fraud", "s3://m/2")], crash="after_commit")
    assert ("register", "fraud", 2) not in setup.actions()
    assert mlflow_diff(setup).returncode == 1
    assert "ok" in drive(setup, [op("get_model_version", "fraud", "2")])[0]
    assert setup.actions() == [
        ("model_create", "fraud", None), ("tag_set", "fraud", None), ("register", "fraud", 1),
        ("tag_set", "fraud", 1), ("deploy", "fraud", 1), ("alias_set", "fraud", 1),
        ("register", "fraud", 2),
    ]  # fmt: skip
    assert (mlflow_diff(setup).returncode, setup.led().verify().ok) == (0, True)


def test_a_store_uri_missing_its_key_or_with_a_bad_users_file_is_one_clear_error(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEDGER_KEY", raising=False)
    no_key = f"ledger+{setup.tracking}?ledger={setup.ledger}"
    res = drive(setup, [op("create_registered_model", "fraud")], registry=no_key)
    assert res == [{"error": f"registry store URI {no_key!r}: no signing key (?key= or"
                    " $LEDGER_KEY)", "code": "INVALID_PARAMETER_VALUE"}]  # fmt: skip
    users = setup.root / "users.toml"
    users.write_text("[users]\nalice = 3\n", encoding="utf-8")
    res = drive(setup, [op("create_registered_model", "fraud")],
                registry=f"{setup.registry}&users={users}")  # fmt: skip
    assert res == [{"error": f'users file {users}: expected a [users] table of name = "key'
                    ' file"', "code": "INVALID_PARAMETER_VALUE"}]  # fmt: skip
    assert setup.actions() == []
