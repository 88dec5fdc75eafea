"""RFC 8785 (JCS) canonical JSON, with input validation and limits.

``canonicalize`` is the only way event bytes are produced. It validates the value
(types, finite numbers, integer range, nesting depth, valid Unicode) and then emits
JCS. Python's C JSON encoder already produces JCS output for most documents: keys sorted,
no whitespace, the same string escapes. It differs only for floats outside
[1e-4, 1e16) or with an integral value, and for key ordering when keys contain
characters above U+D7FF (JCS sorts by UTF-16 code units). The validating walk spots
those cases and hands the document to the reference ``rfc8785`` encoder instead.
"""

from __future__ import annotations

import json
import math
from typing import Any

import rfc8785

from .errors import InputError

MAX_DEPTH = 32
#: Integers must be exactly representable as IEEE-754 doubles (I-JSON, RFC 7493).
MAX_SAFE_INTEGER = 2**53 - 1
#: Floats from here up to 1e21 are whole numbers that RFC 8785 writes without an exponent,
#: i.e. as integers beyond MAX_SAFE_INTEGER, which a reader could not take back exactly.
_WHOLE_BEYOND = 2.0**53

_encoder = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
)


def _make_fast() -> Any:
    """The C encoder behind ``_encoder``, made once. ``JSONEncoder.encode`` builds a new
    one per call, which is most of the cost for an event-sized payload. No circular-ref
    markers: ``_scan`` has already bounded the depth."""
    from json import encoder

    make = getattr(encoder, "c_make_encoder", None)
    basestring = getattr(encoder, "c_encode_basestring", None)
    if make is None or basestring is None:  # pragma: no cover - a Python without _json
        return _encoder.encode
    it = make(None, None, basestring, None, ":", ",", True, False, False)
    return lambda value: "".join(it(value, 0))


_fast = _make_fast()


def canonicalize(value: Any, *, depth: int = 0) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON value.

    Raises InputError for values JSON cannot carry exactly: NaN and infinities, integers
    beyond 2**53-1, non-string keys, lone surrogates, nesting deeper than MAX_DEPTH.
    Integral floats are emitted as integers, as JCS requires (``1.0`` -> ``1``).
    ``depth`` is the nesting level of ``value`` inside the document it belongs to.
    """
    try:
        slow = _scan(value, depth)
    except (_Bad, UnicodeEncodeError):
        slow = _check(value, depth, "$")  # raises with the path of the offending value
    if slow:
        return rfc8785.dumps(value)
    return _fast(value).encode("utf-8")


class _Bad(Exception):
    """Internal: ``_scan`` met a value ``_check`` will reject (with a precise message)."""


def _scan(value: Any, depth: int) -> bool:
    """``_check`` without the bookkeeping: the same verdict for every valid value, and an
    exception (``_Bad`` or UnicodeEncodeError) for every invalid one, so that the write
    path pays for building error paths only when there is an error. Leaves are tested
    inline because a function call per string or number is most of the cost."""
    t = type(value)
    if t is dict:
        if depth >= MAX_DEPTH:
            raise _Bad
        slow = False
        for k, v in value.items():
            if type(k) is not str:
                raise _Bad
            if not k.isascii():
                k.encode("utf-8")
                if max(k) > "\ud7ff":
                    slow = True
            tv = type(v)
            if tv is str:
                if not v.isascii():
                    v.encode("utf-8")
            elif tv is int:
                if not -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                    raise _Bad
            elif v is None or tv is bool:
                pass
            elif _scan(v, depth + 1):
                slow = True
        return slow
    if t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise _Bad
        slow = False
        for v in value:
            tv = type(v)
            if tv is str:
                if not v.isascii():
                    v.encode("utf-8")
            elif tv is int:
                if not -MAX_SAFE_INTEGER <= v <= MAX_SAFE_INTEGER:
                    raise _Bad
            elif v is None or tv is bool:
                pass
            elif _scan(v, depth + 1):
                slow = True
        return slow
    if t is str:
        if not value.isascii():
            value.encode("utf-8")
        return False
    if t is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return False
        raise _Bad
    if t is float:
        if not math.isfinite(value) or _WHOLE_BEYOND <= abs(value) < 1e21:
            raise _Bad
        return not (1e-4 <= abs(value) < 1e16) or value.is_integer()
    if value is None or t is bool:
        return False
    raise _Bad


def _check(value: Any, depth: int, where: str) -> bool:
    """Validate ``value``; return True when the fast encoder would not give JCS output."""
    t = type(value)
    if t is str:
        _check_str(value, where)
        return False
    if value is None or t is bool:
        return False
    if t is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return False
        raise InputError(f"integer at {_cut(where)} is outside the exact JSON range ±(2**53-1)")
    if t is float:
        if not math.isfinite(value):
            raise InputError(f"number at {_cut(where)} is {value!r}; JSON has no NaN or infinity")
        if _WHOLE_BEYOND <= abs(value) < 1e21:
            raise InputError(
                f"number at {_cut(where)} is {value!r}: RFC 8785 writes it as an integer"
                " beyond the exact JSON range ±(2**53-1)"
            )
        mag = abs(value)
        # Python's repr matches ECMAScript's Number.toString only here.
        return not (1e-4 <= mag < 1e16) or value.is_integer()
    if depth >= MAX_DEPTH:
        raise InputError(f"value at {_cut(where)} is nested deeper than {MAX_DEPTH} levels")
    slow = False
    if t is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise InputError(f"object key {_cut(repr(k))} at {_cut(where)} is not a string")
            _check_str(k, where)
            if not k.isascii() and max(k) > "\ud7ff":
                slow = True
            slow = _check(v, depth + 1, f"{where}.{k}") or slow
        return slow
    if t is list or t is tuple:
        for i, v in enumerate(value):
            slow = _check(v, depth + 1, f"{where}[{i}]") or slow
        return slow
    raise InputError(f"value at {_cut(where)} has type {t.__name__}, which JSON cannot represent")


def _cut(text: str, limit: int = 80) -> str:
    """A JSON path or key for a one-line error message: cut short (keys may be megabytes
    long), and any unprintable character (a newline in a key, say) shown escaped."""
    text = text[: limit + 1]  # escaping grows a character to at most 10; cut again after
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) > limit:
        text = f"{text[: limit - 1]}…"
    return text


def _check_str(s: str, where: str) -> None:
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"string at {_cut(where)} contains a lone surrogate") from None


def loads(data: bytes | str) -> Any:
    """Parse JSON text, rejecting NaN/Infinity literals and duplicate object keys."""
    try:
        return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"invalid JSON: {exc}") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise ValueError(f"duplicate key {k!r}")
            seen.add(k)
    return d


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# --- reading people's JSON and YAML: no key given twice ------------------------------------


class DuplicateKey(ValueError):
    """A JSON member or YAML key given twice in one object."""


def unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a member name given twice: json.loads would keep the last,
    so the file a person reads would differ from what is enforced. For ``json.loads``'s
    ``object_pairs_hook``."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise DuplicateKey(f"duplicate member {k!r} in an object")
        out[k] = v
    return out


def unique_keys_loader(yaml: Any) -> Any:
    """PyYAML's SafeLoader, refusing a mapping key given twice (as :func:`unique_members`)."""

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    line = key_node.start_mark.line + 1
                    raise DuplicateKey(f"duplicate key {key!r} at line {line}")
                seen.add(key)
            return super().construct_mapping(node, deep)

    return UniqueKeys
