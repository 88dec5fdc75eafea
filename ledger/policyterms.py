"""The terms a policy document is written in (pure, no I/O): its rule names, metric
thresholds (``auc >= 0.8``) and promotion criteria that compare a version with another
(``auc >= live + 0.01``), and the environment an event names.

Below :mod:`ledger.policydoc` (the document) and :mod:`ledger.grants` (break-glass
grants, which name rules), so both can share them without importing each other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from . import events as E
from .errors import InputError

APPROVALS = "approvals"
SEPARATION = "separation_of_duties"
METADATA = "register_metadata"
PROMOTION = "promotion_order"
SIGNERS = "signers"
ENVIRONMENTS = "environments"
NAMING = "naming"
CRITERIA = "promotion_criteria"
#: Every rule, in the order they are listed (the first five are format 1's).
RULES = (APPROVALS, SEPARATION, METADATA, PROMOTION, SIGNERS, ENVIRONMENTS, NAMING, CRITERIA)
#: Not a rule of the document: an event citing a grant it may not use.
BREAK_GLASS_RULE = "break_glass"

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": lambda a, b: a >= b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
}
_METRIC = r"([A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63})"
_OP = r"(>=|<=|==|>|<)"
_THRESHOLD_RE = re.compile(rf"\s*{_METRIC}\s*{_OP}\s*(\S+)\s*")
_CRITERION_RE = re.compile(
    rf"\s*{_METRIC}\s*{_OP}\s*"
    rf"(?:(live(?::{E.ENV_PATTERN})?|previous)(?:\s*([+-])\s*(\S+))?|(\S+))\s*"
)
_THRESHOLD_SYNTAX = "METRIC OP NUMBER (e.g. 'auc >= 0.8'; OP is one of >=, >, <=, <, ==)"
_CRITERION_SYNTAX = (
    "METRIC OP NUMBER or METRIC OP BASELINE [+ NUMBER | - NUMBER], BASELINE one of live,"
    " live:ENV, previous (e.g. 'auc >= live + 0.01'; OP is one of >=, >, <=, <, ==)"
)

LIVE, PREVIOUS = "live", "previous"


def is_number(v: Any) -> bool:
    """A metric value a rule can compare: an int or a float, never a bool."""
    return type(v) in (int, float)


@dataclass(frozen=True)
class Threshold:
    """A metric bound such as ``auc >= 0.8``."""

    metric: str
    op: str
    value: int | float

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {num(self.value)}"

    def holds(self, value: Any) -> bool:
        return is_number(value) and _OPS[self.op](value, self.value)


@dataclass(frozen=True)
class Criterion:
    """What a deploy to an environment needs of a metric: a number (``auc >= 0.85``) or
    another version's value plus an offset: ``live`` (the version of the same model live
    in the environment deployed to), ``live:ENV`` (live in ENV), ``previous`` (the
    model's version N-1). With no such version, or when it lacks the metric, there is
    nothing to compare with and the criterion holds."""

    metric: str
    op: str
    #: None for an absolute bound; else "live", "live:ENV" or "previous"
    baseline: str | None
    #: the bound itself (absolute), or what is added to the baseline's value
    offset: int | float

    def __str__(self) -> str:
        if self.baseline is None:
            return f"{self.metric} {self.op} {num(self.offset)}"
        tail = ""
        if self.offset > 0:
            tail = f" + {num(self.offset)}"
        elif self.offset < 0:
            tail = f" - {num(-self.offset)}"
        return f"{self.metric} {self.op} {self.baseline}{tail}"

    @property
    def live_env(self) -> str | None:
        """ENV of ``live:ENV``; None for the others."""
        b = self.baseline or ""
        return b.partition(":")[2] or None if b.startswith(LIVE) else None

    def bound(self, base: Any) -> float | int | None:
        """The bound, given the baseline version's value of the metric (None: nothing to
        compare with). Baseline and offset add as binary floating point (as in SQL)."""
        if self.baseline is None:
            return self.offset
        return float(base) + float(self.offset) if is_number(base) else None

    def holds(self, value: Any, base: Any = None) -> bool:
        bound = self.bound(base)
        if bound is None:
            return True
        if not is_number(value):
            return False
        return _OPS[self.op](float(value) if self.baseline else value, bound)


def _number(text: str, exact: bool) -> float | int:
    """A finite number from a policy (an integer beyond ±(2^53−1) is refused in a new
    policy, read in a stored one); math.nan if ``text`` is not a number."""
    try:
        value = E.parse_number(text, exact=exact)
    except ValueError:
        return math.nan
    if not math.isfinite(value):
        return math.nan
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def parse_threshold(spec: Any, exact: bool = True) -> Threshold:
    """``METRIC OP NUMBER``; InputError says what is wrong with ``spec``."""
    m = _THRESHOLD_RE.fullmatch(spec) if isinstance(spec, str) else None
    try:
        value = _number(m[3], exact) if m else math.nan
    except InputError as exc:
        raise InputError(f"{show(spec)}: {exc}") from None
    if m is None or math.isnan(value):
        raise InputError(f"{show(spec)} is not {_THRESHOLD_SYNTAX}")
    return Threshold(m[1], m[2], value)


def parse_criterion(spec: Any, exact: bool = True) -> Criterion:
    """``METRIC OP NUMBER`` or ``METRIC OP BASELINE [± NUMBER]``, strictly."""
    m = _CRITERION_RE.fullmatch(spec) if isinstance(spec, str) else None
    text = (m[6] if m[6] is not None else m[5] or "0") if m else ""
    try:
        value = _number(text, exact) if m else math.nan
    except InputError as exc:
        raise InputError(f"{show(spec)}: {exc}") from None
    if m is None or math.isnan(value) or (m[5] is not None and text.startswith(("+", "-"))):
        raise InputError(f"{show(spec)} is not {_CRITERION_SYNTAX}")
    if m[3] is None:
        return Criterion(m[1], m[2], None, value)
    return Criterion(m[1], m[2], m[3], -value if m[4] == "-" else value)


def event_env(ev: E.Event) -> str | None:
    """The environment an approve, deploy or undeploy names, or the alias an alias_set
    or alias_delete names: policy treats an alias as an environment (None otherwise)."""
    if ev.action in E.ALIAS_ACTIONS:
        env = ev.payload.get("alias")
    else:
        env = ev.payload.get("env") if ev.action in E.ENV_ACTIONS else None
    return env if isinstance(env, str) else None


def env_phrase(action: str, env: str | None) -> str:
    """`` for ENV`` / `` to ENV`` / `` from ENV`` after an action, for messages."""
    if env is None:
        return ""
    if action in E.ALIAS_ACTIONS:
        return f" {env}"
    return {E.APPROVE: " for ", E.DEPLOY: " to ", E.UNDEPLOY: " from "}.get(action, " in ") + env


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` is most likely a typo of, for a "did you mean" hint: a close
    spelling, or the one known name it abbreviates or extends (prod -> production)."""
    import difflib

    known = list(known)
    hits = difflib.get_close_matches(name, known, n=1)
    if hits:
        return hits[0]
    near = [k for k in known if k.startswith(name) or name.startswith(k)]
    return near[0] if len(near) == 1 else None


def show(v: Any) -> str:
    """A value as an error message shows it."""
    if isinstance(v, dict | list):
        return "a table" if isinstance(v, dict) else "a list"
    return ("true" if v else "false") if isinstance(v, bool) else repr(v)


def num(v: int | float) -> str:
    """A number as the document writes it."""
    return str(v) if type(v) is int else repr(v)
