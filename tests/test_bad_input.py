"""Bad input gets a clear error and loses nothing (issue 16).

Integers beyond ±(2^53−1), the one limit on free text, ``init`` and the key it makes,
usage errors as one ``Error:`` line, instants and digests read one way everywhere: each
refusal is one exact line with its exit code, and leaves the ledger as it was.
"""

from __future__ import annotations

import errno
import json
import os

import pytest

from ledger import Ledger, SigningKey
from ledger import lineage as L
from ledger.errors import InputError
from ledger.events import parse_instant
from ledger.store import Store

from .test_rules import snapshot

XGB = "fraud.detector.xgb"
BASE_DATA = "sha256:" + "11" * 32  # the dataset the history fixture's base model used
LIMIT = "is outside ±9007199254740991 (2^53−1), the range JSON numbers hold exactly"


def cut(text: str) -> str:
    """How a refused value is shown in a message (ledger.events._r): its repr, cut short."""
    r = repr(text)
    return r if len(r) <= 60 else r[:59] + "…"


def refused(history, invoke, args, actor, code, stderr):
    """Run a command that must fail: exact stderr, no stdout, the ledger untouched."""
    before = snapshot(history.path)
    r = invoke(args, env=history.env(actor))
    assert (r.exit_code, r.stderr, r.stdout) == (code, stderr, "")
    assert snapshot(history.path) == before


def last_payload(led: Ledger) -> dict:
    with pytest.warns(Warning):  # (unverified: the test ledger is never verified)
        payload = led.events(columns=["payload"], last=1)["payload"][0].as_py()
    return json.loads(payload)


# --- 1. integers JSON cannot carry exactly ---------------------------------------------------

LONG_VERSION = XGB + ":" + "1" * 5000

INTEGERS = [
    # (name, args, actor, exact stderr)
    (
        "metric_2_53_plus_1",
        ["register", "m.x", "--metric", "n=9007199254740993"],
        "alice",
        f"Error: malformed --metric 'n=9007199254740993': the integer 9007199254740993 {LIMIT}\n",
    ),
    (
        "metric_1e30_written_as_an_integer",
        ["register", "m.x", "--metric", "n=1" + "0" * 30],
        "alice",
        f"Error: malformed --metric 'n=1{'0' * 30}': the integer 1{'0' * 30} {LIMIT}\n",
    ),
    (
        "metric_negative",
        ["register", "m.x", "--metric", "n=-9007199254740992"],
        "alice",
        f"Error: malformed --metric 'n=-9007199254740992': the integer -9007199254740992 {LIMIT}\n",
    ),
    (
        "query_int_parameter",
        ["query", "stale-approvals", "--param", "days=9007199254740993"],
        None,
        f"Error: parameter days of query stale-approvals: the integer 9007199254740993 {LIMIT}\n",
    ),
    (
        "version",
        ["status", XGB + ":99999999999999999999"],
        None,
        f"Error: malformed MODEL:VERSION '{XGB}:99999999999999999999': the integer"
        f" 99999999999999999999 {LIMIT}\n",
    ),
    (
        "version_of_5000_digits",  # (was an internal error: int() stops at 4,300 digits)
        ["history", LONG_VERSION],
        None,
        f"Error: malformed MODEL:VERSION {cut(LONG_VERSION)}: the integer {'1' * 39}… {LIMIT}\n",
    ),
]


@pytest.mark.parametrize(
    ("name", "args", "actor", "stderr"), INTEGERS, ids=[c[0] for c in INTEGERS]
)
def test_integers_beyond_2_53_are_refused(history, invoke, name, args, actor, stderr):
    refused(history, invoke, args, actor, 2, stderr)


def test_integers_within_2_53_and_floats_are_stored_exactly(history, invoke):
    args = [
        "register",
        "m.x",
        "--metric",
        "top=9007199254740991",
        "--metric",
        "low=-9007199254740991",
    ]
    args += ["--metric", "big=1e30", "--metric", "one=1.0", "--metric", "grouped=1_000"]
    r = invoke(args, env=history.env("alice"))
    assert r.exit_code == 0, r.stderr
    metrics = last_payload(history.ledger)["metrics"]
    assert metrics == {
        "top": 9007199254740991,
        "low": -9007199254740991,
        "big": 1e30,
        "one": 1,
        "grouped": 1000,
    }
    assert type(metrics["big"]) is float


def test_the_python_api_refuses_the_same_integers(history):
    led, k = history.ledger, history.keys["alice"]
    before = snapshot(history.path)
    with pytest.raises(InputError) as exc:
        led.register("m.x", key=k, metrics={"n": 2**53})
    assert str(exc.value) == f"metric 'n': the integer 9007199254740992 {LIMIT}"
    with pytest.raises(InputError) as exc:
        led.register("m.x", key=k, metrics={"n": -(10**5000)})
    assert str(exc.value) == f"metric 'n': the integer -<16610-bit integer> {LIMIT}"
    with pytest.raises(InputError) as exc:
        led.register("m.x", key=k, metrics=["n=9007199254740993"])
    assert str(exc.value) == (
        f"malformed --metric 'n=9007199254740993': the integer 9007199254740993 {LIMIT}"
    )
    with pytest.raises(InputError) as exc:
        led.query("stale-approvals", {"days": 2**60})
    assert str(exc.value) == (
        f"parameter days of query stale-approvals: the integer {2**60} {LIMIT}"
    )
    assert snapshot(history.path) == before


def test_a_policy_threshold_beyond_2_53_is_refused(history, invoke, tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text('[register_metadata]\nmetrics = ["n >= 9007199254740993"]\n')
    refused(
        history,
        invoke,
        ["policy", "set", str(bad)],
        "admin",
        2,
        "Error: p.toml: register_metadata.metrics: 'n >= 9007199254740993': the integer"
        f" 9007199254740993 {LIMIT}\n",
    )
    good = tmp_path / "q.toml"
    good.write_text('[register_metadata]\nmetrics = ["n >= 1e30", "m <= 9007199254740991"]\n')
    r = invoke(["policy", "set", str(good)], env=history.env("admin"))
    assert r.exit_code == 0, r.stderr
    with pytest.warns(Warning):
        rules = history.ledger.policy().policy.metrics
    assert [str(t) for t in rules] == ["n >= 1e+30", "m <= 9007199254740991"]


# --- 2. one limit on free text, everywhere ----------------------------------------------------

LONG = "x" * 5000
URI = "s3://b/" + "x" * 4998
CODE = "r" * 4992 + "@abcdef1"
DATASET = "d=" + LONG

TEXTS = [
    # (name, args, actor, exact stderr)
    (
        "artifact_uri",
        ["register", "m.x", "--artifact-digest", "sha256:" + "ab" * 32, "--artifact-uri", URI],
        "alice",
        "Error: artifact URI is too long (5,005 characters, limit 4,096)\n",
    ),
    (
        "tag_value",
        ["register", "m.x", "--tag", "t=" + LONG],
        "alice",
        "Error: tag 't' is too long (5,000 characters, limit 4,096)\n",
    ),
    (
        "param_value",
        ["register", "m.x", "--param", "p=" + LONG],
        "alice",
        "Error: param 'p' is too long (5,000 characters, limit 4,096)\n",
    ),
    (
        "code_repository",
        ["register", "m.x", "--code", CODE],
        "alice",
        f"Error: malformed --code {cut(CODE)}: the repository is too long (4,992 characters,"
        " limit 4,096)\n",
    ),
    (
        "dataset_uri",
        ["register", "m.x", "--dataset", DATASET],
        "alice",
        f"Error: malformed --dataset {cut(DATASET)}: the URI is too long (5,000 characters,"
        " limit 4,096)\n",
    ),
    (
        "description",
        ["register", "m.x", "--description", LONG],
        "alice",
        "Error: description is too long (5,000 characters, limit 4,096)\n",
    ),
    (
        "comment",
        ["approve", f"{XGB}:1", "--env", "qa", "--comment", LONG],
        "bob",
        "Error: comment is too long (5,000 characters, limit 4,096)\n",
    ),
    (
        "reason",
        ["keys", "revoke", "0" * 16, "--reason", LONG],
        "admin",
        "Error: reason is too long (5,000 characters, limit 4,096)\n",
    ),
    (
        "justification",
        [
            "break-glass",
            "deploy",
            f"{XGB}:1",
            *("--env", "qa", "--rule", "approvals"),
            "--justification",
            LONG,
        ],
        "admin",
        "Error: justification is too long (5,000 characters, limit 4,096)\n",
    ),
]


@pytest.mark.parametrize(("name", "args", "actor", "stderr"), TEXTS, ids=[c[0] for c in TEXTS])
def test_every_text_has_the_one_limit(history, invoke, name, args, actor, stderr):
    refused(history, invoke, args, actor, 2, stderr)


def test_texts_at_the_limit_are_stored(history, invoke):
    text = "y" * 4096
    args = ["register", "m.x", "--artifact-digest", "sha256:" + "ab" * 32]
    args += ["--artifact-uri", text, "--tag", f"t={text}", "--param", f"p={text}"]
    args += ["--code", f"{text}@abcdef1", "--dataset", f"d={text}", "--description", text]
    r = invoke(args, env=history.env("alice"))
    assert r.exit_code == 0, r.stderr
    p = last_payload(history.ledger)
    assert p["artifact"]["uri"] == p["tags"]["t"] == p["params"]["p"] == text
    assert p["code"]["repo"] == p["datasets"][0]["uri"] == p["description"] == text


def test_the_python_api_has_the_same_limit(history):
    led, k = history.ledger, history.keys["alice"]
    before = snapshot(history.path)
    cases = [
        (dict(tags={"t": LONG}), "tag 't' is too long (5,000 characters, limit 4,096)"),
        (dict(params={"p": 5}), "param 'p' must be text, got int"),
        (
            dict(artifact={"digest": "sha256:" + "ab" * 32, "uri": LONG}),
            "artifact URI is too long (5,000 characters, limit 4,096)",
        ),
        (
            dict(code={"repo": LONG, "commit": "abcdef1"}),
            "malformed --code {'repo': 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…:"
            " the repository is too long (5,000 characters, limit 4,096)",
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(InputError) as exc:
            led.register("m.x", key=k, **kwargs)
        assert str(exc.value) == message
    with pytest.raises(InputError) as exc:
        led.approve(XGB, 1, "qa", key=history.keys["bob"], comment=7)
    assert str(exc.value) == "comment must be text, got int"
    assert snapshot(history.path) == before


# --- 3. init checks the folder before it makes a key, and a failure removes the key -------


def listing(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_init_refuses_a_key_inside_the_ledger_folder(invoke, tmp_path):
    empty = tmp_path / "reg"
    empty.mkdir()
    for folder in (empty, tmp_path / "new"):
        key = folder / "admin.pem"
        r = invoke(["init", str(folder), "--key", str(key), "--actor", "admin"])
        assert (r.exit_code, r.stdout, r.stderr) == (
            2,
            "",
            f"Error: --key {key} is inside the ledger folder {folder}; private keys are never"
            " stored in a ledger: give a path outside it\n",
        )
    assert listing(tmp_path) == ["reg"]  # the empty folder, still empty; nothing else


def test_init_checks_the_folder_before_it_makes_a_key(invoke, tmp_path):
    full = tmp_path / "reg"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    r = invoke(["init", str(full), "--key", str(tmp_path / "admin.pem"), "--actor", "admin"])
    assert (r.exit_code, r.stderr) == (
        2,
        f"Error: {full} exists and is not empty; choose a new folder\n",
    )
    assert listing(tmp_path) == ["reg", "reg/notes.txt"]


def test_a_failed_init_removes_the_key_it_made(invoke, tmp_path):
    key = tmp_path / "admin.pem"
    r = invoke(["init", str(tmp_path / "reg"), "--key", str(key), "--actor", "bad actor!"])
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.startswith("Error: invalid actor name 'bad actor!'")
    assert listing(tmp_path) == []


@pytest.mark.parametrize("existed", [False, True], ids=["new_folder", "empty_folder"])
def test_a_full_disk_during_init_leaves_nothing(invoke, tmp_path, monkeypatch, existed):
    reg = tmp_path / "reg"
    if existed:
        reg.mkdir()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Store, "write_segment", full)
    r = invoke(["init", str(reg), "--key", str(tmp_path / "admin.pem"), "--actor", "admin"])
    assert (r.exit_code, r.stdout, r.stderr) == (
        7,
        "",
        f"Error: cannot create the ledger in {reg}: no space left on device\n",
    )
    assert listing(tmp_path) == (["reg"] if existed else [])


def test_the_api_refuses_a_file_as_the_ledger_folder(tmp_path):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(InputError) as exc:
        Ledger.init(tmp_path / "file", SigningKey.generate(), "admin")
    assert str(exc.value) == f"{tmp_path / 'file'} exists and is a file; choose a new folder"
    made = []
    with pytest.raises(InputError):  # (a key is asked for only once the folder is free)
        Ledger.init(tmp_path / "file", lambda: made.append(1) or SigningKey.generate(), "admin")
    assert made == [] and listing(tmp_path) == ["file"]


def test_init_with_an_existing_key_and_a_folder_as_key(history, invoke, tmp_path):
    admin = str(history.key_files["admin"])
    r = invoke(["init", str(tmp_path / "two"), "--key", admin, "--actor", "admin"])
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"created ledger {Ledger.open(tmp_path / 'two').origin} in {tmp_path / 'two'};"
        f" admin admin key {history.keys['admin'].key_id}"
    ]
    folder = tmp_path / "keys"
    r = invoke(["init", str(tmp_path / "three"), "--key", str(folder), "--actor", "admin"])
    assert (r.exit_code, r.stderr) == (
        5,
        f"Error: key file {folder} is a directory, not a key file\n",
    )
    assert not (tmp_path / "three").exists()


# --- 4. usage errors: one line, exit 2 ------------------------------------------------------

USAGE = [
    (["log", "--limit", "0"], "Error: Invalid value for '--limit': 0 is not in the range x>=1.\n"),
    (["log", "--bogus"], "Error: No such option '--bogus'. Did you mean '--out'?\n"),
    (
        ["log", "--format", "xml"],
        "Error: Invalid value for '--format': 'xml' is not one of 'table', 'json', 'jsonl',"
        " 'csv', 'parquet'.\n",
    ),
    (["init"], "Error: Missing argument 'PATH'.\n"),
    (["approve", f"{XGB}:1"], "Error: Missing option '--env'.\n"),
    (["nosuch"], "Error: No such command 'nosuch'.\n"),
    (["keys", "nosuch"], "Error: No such command 'nosuch'.\n"),
    (["--bogus"], "Error: No such option '--bogus'.\n"),
    (
        ["lineage", f"{XGB}:1", "--depth", "-1"],
        "Error: Invalid value for '--depth': -1 is not in the range x>=0.\n",
    ),
]


@pytest.mark.parametrize(("args", "stderr"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_are_one_line(history, invoke, args, stderr):
    refused(history, invoke, args, "bob", 2, stderr)


def test_help_still_shows_the_usage(invoke):
    r = invoke(["log", "--help"])  # (CliRunner names the program "cli")
    assert (r.exit_code, r.stdout.splitlines()[0]) == (0, "Usage: cli log [OPTIONS]")
    r = invoke(["keys"])  # (a group without a command shows its help, as click does)
    assert r.output.splitlines()[0] == "Usage: cli keys [OPTIONS] COMMAND [ARGS]..."


def test_a_folder_given_as_key_is_a_key_problem(history, invoke, tmp_path):
    folder = tmp_path / "keys"
    refused(
        history,
        invoke,
        ["approve", f"{XGB}:1", "--env", "qa", "--key", str(folder)],
        None,
        5,
        f"Error: key file {folder} is a directory, not a key file\n",
    )


# --- 5. the Python API: every instant as the CLI reads it, every error a LedgerError -------

INSTANT_METHODS = {
    "lineage": lambda led, **kw: led.lineage(f"{XGB}:1", **kw),
    "impact": lambda led, **kw: led.impact(dataset=BASE_DATA, **kw),
    "lineage_graph": lambda led, **kw: led.lineage_graph(**kw),
    "family_graph": lambda led, **kw: led.family_graph(f"{XGB}:1", **kw),
    "status": lambda led, **kw: led.status(XGB, **kw),
    "policy": lambda led, **kw: led.policy(**kw),
    "query": lambda led, **kw: led.query("zombie-deployments", **kw),
}


def _answer(x):
    if hasattr(x, "versions"):  # an Impact
        return x.versions, x.deployments
    if hasattr(x, "nodes") and callable(x.nodes):  # a graph
        return sorted(x.nodes), sorted(x.edges)
    return x


@pytest.mark.filterwarnings("ignore::ledger.errors.UnverifiedWarning")
@pytest.mark.parametrize("method", list(INSTANT_METHODS))
def test_as_of_takes_the_instants_the_cli_takes(history, method):
    ask = INSTANT_METHODS[method]
    led = history.ledger
    now = _answer(ask(led))
    assert _answer(ask(led, as_of="2999-01-01")) == now
    assert _answer(ask(led, as_of=parse_instant("2999-01-01T00:00Z"))) == now
    for bad, message in [
        (
            1.5,
            "--as-of must be microseconds since the epoch (an int) or a timestamp such as"
            " 2026-03-01T09:00:00Z, got float 1.5",
        ),
        (
            True,
            "--as-of must be microseconds since the epoch (an int) or a timestamp such as"
            " 2026-03-01T09:00:00Z, got bool True",
        ),
        (10**30, f"--as-of {'1' + '0' * 30} µs is outside the years 1 to 9999 a timestamp spans"),
        (
            "soon",
            "invalid --as-of timestamp 'soon': use YYYY-MM-DD[THH:MM[:SS[.ffffff]]][Z|+HH:MM],"
            " e.g. 2026-03-01T09:00:00Z",
        ),
    ]:
        with pytest.raises(InputError) as exc:
            ask(led, as_of=bad)
        assert str(exc.value) == message
    with pytest.raises(
        InputError, match=r"^--at-seq must be a seq (number >= 0|from 0 to 10), got '3'$"
    ):
        ask(led, at_seq="3")


def test_a_checkpoint_that_is_not_a_path_is_bad_input(history):
    with pytest.raises(InputError, match=r"^a checkpoint file is a path, got int 5$"):
        history.ledger.verify(since=5)


# --- 6–8. lineage --up --down, verify --policy wording, compact wording ----------------------


def test_lineage_refuses_up_and_down_together(history, invoke):
    refused(
        history,
        invoke,
        ["lineage", f"{XGB}:1", "--up", "--down"],
        None,
        2,
        "Error: give --up or --down, not both\n",
    )


def test_verify_policy_names_overridden_violations_truthfully(team, invoke):
    led, k = team.ledger, team.keys
    led.register(XGB, key=k["alice"])  # seq 5
    led.set_policy({"approvals": {"required": {"production": 1}}}, key=k["admin"])  # seq 6
    led.break_glass(
        "deploy", XGB, 1, "production", rule="approvals", justification="INC-1", key=k["admin"]
    )  # seq 7
    led.deploy(XGB, 1, "production", key=k["carol"])  # seq 8, overridden
    r = invoke(["verify", "--policy"], env=team.env())
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1:] == [
        "OK: policy: 1 violation in 9 events, overridden by a break-glass grant"
        " (policies set at seq 6)",
        f"  seq 8 deploy {XGB}:1 to production by carol [overridden by break-glass seq 7]:"
        f" approvals: deploying {XGB}:1 to production needs approvals from 1 distinct approvers"
        " for production, it has none; get 1 more approval for production",
        f"  break-glass seq 7 by admin: deploy {XGB}:1 to production may bypass approvals,"
        " used by seq 8; justification: INC-1",
    ]


def test_compact_counts_in_words_that_agree(history, invoke):
    n = len(history.ledger.store.segments())
    assert n > 1
    r = invoke(["compact"], env=history.env())
    assert r.stdout == f"compacted {n} segments into 1\n"
    r = invoke(["compact"], env=history.env())
    assert r.stdout == "compacted 1 segment into 1\n"


# --- 9. one digest syntax: full, the hex alone, or a unique prefix of 12+ digits ------------

SPELLINGS = [BASE_DATA, "11" * 32, "sha256:" + "1" * 12, "1" * 12, "1" * 40]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_impact_and_the_exposure_query_take_every_spelling(history, invoke, spelling):
    env = history.env()
    want = invoke(["impact", "--dataset", BASE_DATA, "--format", "csv"], env=env)
    assert want.stdout.count("\n") == 3  # the header, base:1 and xgb:1
    r = invoke(["impact", "--dataset", spelling, "--format", "csv"], env=env)
    assert (r.exit_code, r.stdout) == (0, want.stdout)
    want = invoke(
        ["query", "dataset-exposure", "--param", f"dataset={BASE_DATA}", "--format", "csv"], env=env
    )
    assert want.stdout.count("\n") == 2  # the header and xgb:1 in production
    r = invoke(
        ["query", "dataset-exposure", "--param", f"dataset={spelling}", "--format", "csv"], env=env
    )
    assert (r.exit_code, r.stdout) == (0, want.stdout)


@pytest.fixture
def twins(history):
    """``history`` plus two datasets whose digests share their first 12 hex digits with
    the base model's (111111111111…), but not the 13th."""
    for n, d in (("twin.a", "2"), ("twin.b", "3")):
        history.ledger.register(
            n,
            key=history.keys["alice"],
            datasets=[f"t=s3://b/{n}@sha256:{'1' * 12}{d * 52}"],
        )
    return history


def test_an_ambiguous_prefix_is_refused_with_the_count(twins, invoke):
    message = (
        "Error: digest prefix 111111111111 is ambiguous: 3 digests start with it;"
        " give more hex digits\n"
    )
    refused(twins, invoke, ["impact", "--dataset", "1" * 12], None, 2, message)
    refused(
        twins,
        invoke,
        ["query", "dataset-exposure", "--param", "dataset=111111111111"],
        None,
        2,
        message,
    )
    r = invoke(["impact", "--dataset", "1" * 13, "--format", "csv"], env=twins.env())
    assert r.exit_code == 0 and [ln.split(",")[0] for ln in r.stdout.splitlines()[1:]] == [
        "fraud.detector.base:1",
        f"{XGB}:1",
    ]


def test_a_prefix_naming_nothing_is_what_the_command_reports_for_nothing(history, invoke):
    refused(
        history,
        invoke,
        ["impact", "--dataset", "f" * 12],
        None,
        3,
        "Error: no registered version was trained on a dataset whose digest starts with"
        " sha256:ffffffffffff\n",
    )
    refused(
        history,
        invoke,
        ["impact", "--dataset", "1" * 11],  # too short to be a digest: a URI
        None,
        3,
        "Error: no registered version was trained on a dataset with URI 11111111111\n",
    )
    r = invoke(["query", "dataset-exposure", "--param", "dataset=ffffffffffff"], env=history.env())
    assert (r.exit_code, r.stdout) == (0, "No rows for dataset-exposure.\n")


@pytest.mark.filterwarnings("ignore::ledger.errors.UnverifiedWarning")
def test_the_graph_and_the_index_read_digests_alike(twins):
    led = twins.ledger
    g = led.lineage_graph()
    for spelling in [*SPELLINGS[:2], "1" * 13, "sha256:" + "1" * 12 + "2"]:
        fast, ref = led.impact(dataset=spelling), L.impact(g, dataset=spelling)
        assert (fast.sources, fast.versions) == (ref.sources, ref.versions), spelling
        assert set(led.family_graph(dataset=spelling)) >= fast.nodes
    for ask in (lambda: led.impact(dataset="1" * 12), lambda: L.impact(g, dataset="1" * 12)):
        with pytest.raises(InputError, match="3 digests start with it"):
            ask()
