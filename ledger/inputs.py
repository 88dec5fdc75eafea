"""The values a user writes, each read one way everywhere (pure, no I/O): integers and
numbers, instants, and digests.

Every command and facade method that takes one of these from a person or a caller
reads it here, so that ``--metric n=…``, a policy threshold, a query parameter and
``MODEL:VERSION`` agree on what an integer is; ``--as-of`` and ``as_of=`` on what an
instant is; and ``impact --dataset`` and ``query dataset-exposure --param dataset=`` on
what names a digest.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from .canonical import MAX_SAFE_INTEGER
from .errors import InputError


def _cut(text: str, limit: int = 40) -> str:
    """``text`` for a one-line message: a refused value may be megabytes long."""
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


# --- integers: exact in JSON within ±(2^53−1) ---------------------------------------------

#: An integer literal as a person writes one (Python's ``_`` digit grouping allowed).
_INT_TOKEN = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*")


def unsafe_integer(text: str) -> InputError:
    """The error for an integer beyond ±(2^53−1), naming it and the limit."""
    return InputError(
        f"the integer {_cut(text)} is outside ±{MAX_SAFE_INTEGER} (2^53−1), the range JSON"
        " numbers hold exactly"
    )


def parse_int(text: str) -> int | None:
    """The integer an integer literal means, or None if ``text`` is not one; InputError
    beyond ±(2^53−1). The length is checked before ``int()``, which refuses to convert
    more than 4,300 digits."""
    t = text.strip()
    if not _INT_TOKEN.fullmatch(t):
        return None
    digits = t.lstrip("+-").replace("_", "").lstrip("0")
    if len(digits) > len(str(MAX_SAFE_INTEGER)) or int(digits or "0") > MAX_SAFE_INTEGER:
        raise unsafe_integer(t)
    return int(t)


def parse_number(text: str, exact: bool = True) -> int | float:
    """A number a person wrote (a metric, a policy threshold): an integer literal as that
    integer, anything else as a float (ValueError if it is none; NaN and infinities are
    returned, for the caller to refuse). An integer literal beyond ±(2^53−1) would be
    stored rounded (…993 as …992), so it is an InputError; ``exact=False`` reads it as a
    float, as policies already stored were read."""
    try:
        n = parse_int(text)
    except InputError:
        if exact:
            raise
        n = None
    return float(text) if n is None else n


def check_int(value: int, what: str) -> int:
    """``value`` if it is within ±(2^53−1), else an InputError naming ``what``."""
    if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return value
    try:
        shown = str(value)
    except ValueError:  # (more than 4,300 digits: Python will not convert it)
        shown = f"{'-' if value < 0 else ''}<{value.bit_length()}-bit integer>"
    raise InputError(f"{what}: {unsafe_integer(shown)}")


def read_int(value: Any, what: str) -> int:
    """An integer from a caller: an int, or text holding an integer literal, within
    ±(2^53−1); an InputError naming ``what`` otherwise."""
    if type(value) is int:
        return check_int(value, what)
    try:
        n = None if isinstance(value, bool) else parse_int(str(value))
    except InputError as exc:
        raise InputError(f"{what}: {exc}") from None
    if n is None:
        raise InputError(f"{what} must be an integer, got {_cut(repr(value))}")
    return n


# --- instants --------------------------------------------------------------------------------

_INSTANT_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?)?"
    r"(Z|z|[+-]\d{2}:\d{2})?"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The instants a timestamp can spell (years 1 to 9999), in µs since the epoch.
_FIRST_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_LAST_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // timedelta(
    microseconds=1
)


def parse_instant(text: str, what: str = "--as-of") -> int:
    """An instant as microseconds since the epoch, from RFC 3339 or a shorter form.

    Accepted: ``2026-03-01``, ``2026-03-01T09:00``, ``2026-03-01 09:00:00``,
    ``2026-03-01T09:00:00.123456Z``, ``…+01:00``. No zone means UTC; a date alone means
    the start of that day.
    """
    m = _INSTANT_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    hint = "use YYYY-MM-DD[THH:MM[:SS[.ffffff]]][Z|+HH:MM], e.g. 2026-03-01T09:00:00Z"
    shown = _cut(repr(text), 60)
    if not m:
        raise InputError(f"invalid {what} timestamp {shown}: {hint}")
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), tzinfo=UTC)
    except ValueError as exc:
        raise InputError(f"invalid {what} timestamp {shown}: {exc}") from None
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        zh, zm = int(zone[1:3]), int(zone[4:6])
        if zh > 23 or zm > 59:
            raise InputError(f"invalid {what} timestamp {shown}: bad zone offset {zone}")
        dt -= sign * timedelta(hours=zh, minutes=zm)
    micros = (dt - _EPOCH) // timedelta(microseconds=1)
    return micros + (int(frac.ljust(6, "0")) if frac else 0)


def instant(value: Any, what: str = "--as-of") -> int | None:
    """An as-of instant from a caller: None; µs since the epoch (an int); or a timestamp
    string as :func:`parse_instant` reads it. Anything else is an InputError, never a
    TypeError from deep inside a read."""
    if value is None:
        return None
    if isinstance(value, str):
        return parse_instant(value, what)
    if type(value) is not int:
        raise InputError(
            f"{what} must be microseconds since the epoch (an int) or a timestamp such as"
            f" 2026-03-01T09:00:00Z, got {type(value).__name__} {_cut(repr(value))}"
        )
    if not _FIRST_US <= value <= _LAST_US:
        raise InputError(
            f"{what} {_cut(str(value))} µs is outside the years 1 to 9999 a timestamp spans"
        )
    return value


def check_seq(at_seq: Any) -> int | None:
    """An ``at_seq`` from a caller: None, or a seq number (an int from 0 on)."""
    if at_seq is None:
        return None
    if type(at_seq) is not int or at_seq < 0:
        raise InputError(f"--at-seq must be a seq number >= 0, got {_cut(repr(at_seq))}")
    return at_seq


# --- digests ---------------------------------------------------------------------------------

DIGEST_PREFIX = "sha256:"
#: The fewest hex digits that name a digest (48 bits: ambiguity is an accident then).
MIN_DIGEST_HEX = 12
_DIGEST_SPEC = re.compile(rf"(?:sha256:)?([0-9a-f]{{{MIN_DIGEST_HEX},64}})")


def digest_hex(text: Any) -> str | None:
    """The hex digits ``text`` names a digest by, or None when it is not digest syntax:
    ``sha256:`` and 64 lowercase hex digits, the 64 digits alone, or a prefix of at least
    12 of them, with or without ``sha256:``."""
    m = _DIGEST_SPEC.fullmatch(text) if isinstance(text, str) else None
    return m[1] if m else None


def resolve_digest(text: Any, known: Callable[[str], Iterable[str]]) -> str | None:
    """The full digest (``sha256:HEX``) that ``text`` names, or None when ``text`` is not
    digest syntax (:func:`digest_hex`) or is a prefix of no digest ``known`` lists.

    A complete digest needs no lookup. For a prefix, ``known(prefix)`` lists the digests
    it may name (full ``sha256:…`` strings; those not starting with the prefix are
    ignored); more than one is an InputError naming how many."""
    h = digest_hex(text)
    if h is None:
        return None
    full = DIGEST_PREFIX + h
    if len(h) == 64:
        return full
    found = sorted({d for d in known(full) if d.startswith(full)})
    if len(found) > 1:
        raise InputError(
            f"digest prefix {text} is ambiguous: {len(found)} digests start with it;"
            " give more hex digits"
        )
    return found[0] if found else None
