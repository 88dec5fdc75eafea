"""Commands: governance policy commands (issue 6)."""

from __future__ import annotations

from . import cli  # noqa: F401
