"""Hostile input from users, through the API and the CLI: arbitrary Unicode, control
characters, huge and deeply nested values, NaN and infinities, duplicate keys. Each value
is either stored and read back exactly (and the ledger verifies) or refused with a clear
one-line message, leaving the ledger untouched. Limits: docs/guarantees.md, "Limits"."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import InputError, Ledger, SigningKey
from ledger import events as E
from ledger.canonical import MAX_DEPTH, MAX_SAFE_INTEGER, canonicalize, loads
from ledger.cli import cli
from ledger.keys import write_key_files

#: Any code point, lone surrogates and control characters included.
ANY_CHAR = st.characters(exclude_categories=())
#: Short text of any characters, or a very long repetition (cheap for Hypothesis to make).
LONG = st.builds(
    lambda piece, n: piece * n, st.text(ANY_CHAR, min_size=1, max_size=3), st.integers(1000, 40_000)
)
TEXT = st.text(ANY_CHAR, max_size=30) | LONG
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Reg:
    """A ledger whose one key holds every role, kept across Hypothesis examples."""

    def __init__(self, root: Path) -> None:
        self.key = SigningKey.generate()
        self.path = root / "reg"
        self.led = Ledger.init(self.path, self.key, "admin", roles=",".join(E.ROLES))
        self.key_file = root / "admin.pem"
        write_key_files(self.key_file, self.key)
        self.n = 0

    def model(self) -> str:
        self.n += 1
        if self.n % 25 == 0:
            self.led.compact()  # keep appends fast as examples pile up
        return f"m{self.n}"

    def files(self) -> dict[str, bytes]:
        ev = self.path / "events"
        return {p.name: p.read_bytes() for p in sorted(ev.iterdir())} | {
            "ledger.json": (self.path / "ledger.json").read_bytes()
        }

    def last_payload(self) -> dict[str, Any]:
        t = self.led.events(columns=["payload", "canonical"])
        canon = json.loads(t.column("canonical")[-1].as_py())
        payload = json.loads(t.column("payload")[-1].as_py())
        assert payload == canon["payload"]
        return payload


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory) -> Reg:
    return Reg(tmp_path_factory.mktemp("hostile"))


def _same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (JCS writes 1.0 as 1), everything else exactly."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        # A JSON number is a double: 7.01570164511489e16 comes back as the integer
        # 70157016451148900, which is the same double.
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return type(a) is type(b) and a == b


def _clear(exc: BaseException) -> None:
    """A clear refusal: one short line, whatever the size of the value refused."""
    msg = str(exc)
    assert msg and "\n" not in msg and "Traceback" not in msg, msg[:300]
    assert len(msg) <= 400, msg[:400]


@SETTINGS
@given(
    tags=st.dictionaries(st.from_regex(E.KEYNAME_RE, fullmatch=True) | TEXT, TEXT, max_size=3),
    metadata=st.dictionaries(TEXT, JSON, max_size=4),
    description=st.none() | TEXT,
    metrics=st.dictionaries(st.sampled_from(["auc", "loss", "f1"]), SCALARS, max_size=2),
)
def test_register_api_stores_exactly_or_refuses(
    reg: Reg, tags: dict, metadata: dict, description: str | None, metrics: dict
) -> None:
    model = reg.model()  # may compact: before the snapshot
    before = reg.files()
    try:
        reg.led.register(
            model,
            key=reg.key,
            tags=tags,
            metadata=metadata,
            description=description,
            metrics=metrics,
        )
    except InputError as exc:
        _clear(exc)
        assert reg.files() == before, "a refused append wrote something"
        return
    payload = reg.last_payload()
    assert _same(payload["tags"], tags)
    assert _same(payload["metrics"], metrics)
    assert _same(payload.get("metadata", {}), metadata)
    assert payload.get("description") == description
    assert all(type(v) in (int, float) and math.isfinite(v) for v in metrics.values())


@SETTINGS
@given(comment=TEXT, env=st.sampled_from(["staging", "prod-1"]) | TEXT)
def test_approve_api_comment_and_env(reg: Reg, comment: str, env: str) -> None:
    model = reg.model()
    reg.led.register(model, key=reg.key)
    before = reg.files()
    try:
        reg.led.approve(model, 1, env, key=reg.key, comment=comment)
    except InputError as exc:
        _clear(exc)
        assert reg.files() == before
        return
    payload = reg.last_payload()
    assert payload == {"comment": comment, "env": env}


def test_the_ledger_verifies_after_the_property_tests(reg: Reg) -> None:
    reg.led.register(reg.model(), key=reg.key, description="\x00\x1b[2J\u2028\U0010ffff")
    report = reg.led.verify()
    assert report.ok, report.summary()


NAME = st.from_regex(E.KEYNAME_RE, fullmatch=True) | TEXT


def _refused(r: Any) -> bool:
    """A clean refusal: one ``Error:`` line (a usage error for a bad option too)."""
    return r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1


@SETTINGS
@given(
    model=st.from_regex(E.MODEL_RE, fullmatch=True) | TEXT,
    tag=st.tuples(NAME, TEXT),
    meta=st.lists(st.tuples(NAME, TEXT), max_size=2),
    metric=st.tuples(st.sampled_from(["auc", "loss"]), TEXT | st.sampled_from(["nan", "inf"])),
    description=TEXT,
)
def test_register_cli_stores_exactly_or_refuses(
    reg: Reg, model: str, tag: tuple, meta: list, metric: tuple, description: str
) -> None:
    before = reg.files()
    specs = {"tag": f"{tag[0]}={tag[1]}", "meta": [f"{k}={v}" for k, v in meta]}
    args = ["register", model, "--tag", specs["tag"], "--metric", "=".join(metric)]
    for m in specs["meta"]:
        args += ["--meta", m]
    args += ["--description", description, "--ledger", str(reg.path), "--key", str(reg.key_file)]
    r = CliRunner().invoke(cli, args)
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    if r.exit_code != 0:
        assert r.exit_code == 2 and _refused(r), (r.exit_code, r.stderr)
        assert reg.files() == before
        return
    assert r.stdout.startswith(f"register {model}:")
    log = CliRunner().invoke(cli, ["log", "--format", "json", "--ledger", str(reg.path)])
    assert log.exit_code == 0, log.stderr
    last = json.loads(log.stdout)[-1]
    # NAME=VALUE splits at the first "=": that is what must be stored, exactly.
    k, _, v = specs["tag"].partition("=")
    assert last["model"] == model
    assert last["payload"]["tags"] == {k: v}
    assert last["payload"]["description"] == description
    assert last["payload"].get("metadata", {}) == dict(m.partition("=")[::2] for m in specs["meta"])
    assert math.isfinite(last["payload"]["metrics"][metric[0]])


def test_cli_refuses_a_repeated_meta_key(reg: Reg) -> None:
    r = CliRunner().invoke(
        cli,
        [
            "register",
            reg.model(),
            "--meta",
            "k=1",
            "--meta",
            "k=2",
            "--ledger",
            str(reg.path),
            "--key",
            str(reg.key_file),
        ],
    )
    assert r.exit_code == 2 and "given twice" in r.stderr


def test_log_table_shows_hostile_text_verbatim(reg: Reg) -> None:
    model = reg.model()
    reg.led.register(model, key=reg.key)
    reg.led.approve(model, 1, "staging", key=reg.key, comment="[/x] [red]r[/red]")
    # (wide enough that the details column never wraps inside a word: how wide it is
    # otherwise depends on the other events this module's ledger holds)
    r = CliRunner().invoke(cli, ["log", "--ledger", str(reg.path)], env={"COLUMNS": "400"})
    assert r.exit_code == 0, r.stderr
    assert "[/x] [red]r[/red]" in r.stdout


# --- the limits, at their boundaries -------------------------------------------------------


def _nest(depth: int) -> Any:
    v: Any = 1
    for _ in range(depth):
        v = {"a": v}
    return v


def test_nesting_limit(reg: Reg) -> None:
    # Containers count from the event document (0): payload 1, metadata 2, {"x": ..} 3;
    # the deepest container allowed is at depth MAX_DEPTH - 1.
    ok = _nest(MAX_DEPTH - 3)
    reg.led.register(reg.model(), key=reg.key, metadata={"x": ok})
    assert reg.last_payload()["metadata"] == {"x": ok}
    before = reg.files()
    with pytest.raises(InputError, match=f"nested deeper than {MAX_DEPTH} levels"):
        reg.led.register(reg.model(), key=reg.key, metadata={"x": _nest(MAX_DEPTH - 2)})
    with pytest.raises(InputError, match="nested deeper"):
        reg.led.register(reg.model(), key=reg.key, metadata={"x": _nest(100_000)})
    assert reg.files() == before


def test_event_size_limit(reg: Reg) -> None:
    before = reg.files()
    with pytest.raises(InputError) as exc:
        reg.led.register(reg.model(), key=reg.key, metadata={"x": "é" * E.MAX_EVENT_BYTES})
    assert str(exc.value).endswith(f"bytes once encoded; the limit is {E.MAX_EVENT_BYTES}")
    assert reg.files() == before
    reg.led.register(reg.model(), key=reg.key, metadata={"x": "é" * 30_000})  # 60 KB fits


def test_text_and_name_limits(reg: Reg) -> None:
    reg.led.register(reg.model(), key=reg.key, description="d" * E.MAX_TEXT)
    before = reg.files()
    with pytest.raises(
        InputError, match=r"description is too long \(4,097 characters, limit 4,096\)"
    ):
        reg.led.register(reg.model(), key=reg.key, description="d" * (E.MAX_TEXT + 1))
    name = "m" * E.MAX_NAME
    with pytest.raises(InputError, match="at most 128 characters"):
        reg.led.register(name + "x", key=reg.key)
    assert reg.files() == before
    assert reg.led.register(name, key=reg.key).model == name


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "number at $.payload.metadata.x is nan; JSON has no NaN or infinity"),
        (float("inf"), "number at $.payload.metadata.x is inf; JSON has no NaN or infinity"),
        (MAX_SAFE_INTEGER + 1, "integer at $.payload.metadata.x is outside the exact JSON range"),
        ("a\udc80b", "string at $.payload.metadata.x contains a lone surrogate"),
        (b"bytes", "value at $.payload.metadata.x has type bytes, which JSON cannot represent"),
        ({1: "a"}, "object key 1 at $.payload.metadata.x is not a string"),
    ],
)
def test_values_json_cannot_carry_exactly_are_refused(reg: Reg, value: Any, message: str) -> None:
    before = reg.files()
    with pytest.raises(InputError) as exc:
        reg.led.register(reg.model(), key=reg.key, metadata={"x": value})
    assert str(exc.value).startswith(message)
    assert reg.files() == before


@pytest.mark.parametrize("spec", ["auc=nan", "auc=inf", "auc=-Infinity", "auc=NaN"])
def test_cli_refuses_non_finite_metrics(reg: Reg, spec: str) -> None:
    r = CliRunner().invoke(
        cli,
        [
            "register",
            reg.model(),
            "--metric",
            spec,
            "--ledger",
            str(reg.path),
            "--key",
            str(reg.key_file),
        ],
    )
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr == f"Error: malformed --metric {spec!r}: metrics must be finite numbers\n"


def test_duplicate_keys_in_json_text_are_refused() -> None:
    with pytest.raises(InputError, match="duplicate key 'a'"):
        loads('{"a": 1, "b": {"a": 2}, "a": 3}')
    with pytest.raises(InputError, match="NaN is not valid JSON"):
        loads('{"a": NaN}')
    with pytest.raises(InputError, match="invalid JSON"):
        loads("[" * 100_000 + "]" * 100_000)


def test_cli_repeated_tag_is_refused(reg: Reg) -> None:
    r = CliRunner().invoke(
        cli,
        [
            "register",
            reg.model(),
            "--tag",
            "a=1",
            "--tag",
            "a=2",
            "--ledger",
            str(reg.path),
            "--key",
            str(reg.key_file),
        ],
    )
    assert (r.exit_code, r.stderr) == (2, "Error: tag 'a' is given twice\n")


def test_control_characters_round_trip_exactly(reg: Reg) -> None:
    text = "".join(chr(c) for c in range(32)) + "\x7f\u2028\u2029\ufeff\U0001f600\u202e"
    reg.led.register(reg.model(), key=reg.key, description=text, metadata={text: [text]})
    p = reg.last_payload()
    assert p["description"] == text and p["metadata"] == {text: [text]}
    assert canonicalize(text) == json.dumps(text, ensure_ascii=False).encode()
