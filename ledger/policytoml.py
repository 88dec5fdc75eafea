"""A policy document written back as TOML (pure, no I/O): what ``ledger policy show``
prints, in a form :func:`ledger.policydoc.parse_policy` reads back."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def to_toml(doc: Mapping[str, Any]) -> str:
    """Render a policy document as TOML that :func:`ledger.policydoc.parse_policy` reads back."""
    head, body = [], []
    for k, v in doc.items():
        if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()):
            # a table of tables (promotion_criteria.ENV): one [k.kk] section each
            for kk, x in v.items():
                body.append(f"\n[{_toml_key(k)}.{_toml_key(kk)}]")
                body += [
                    f"{_toml_key(n)} = {_toml_value(y)}" for n, y in x.items() if y is not None
                ]
        elif isinstance(v, dict):
            body.append(f"\n[{_toml_key(k)}]")
            body += [
                f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None
            ]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                body.append(f"\n[[{_toml_key(k)}]]")
                body += [
                    f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in x.items() if vv is not None
                ]
        elif v is not None:
            head.append(f"{_toml_key(k)} = {_toml_value(v)}")
    return "\n".join(head + body) + "\n"


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.fullmatch(k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        inner = ", ".join(
            f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items() if x is not None
        )
        return "{ " + inner + " }" if inner else "{}"
    return json.dumps(str(v), ensure_ascii=False)
