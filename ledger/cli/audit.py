"""Commands: status, history, queries, query and sql (issue 4)."""

from __future__ import annotations

from . import cli  # noqa: F401
