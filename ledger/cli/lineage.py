"""Commands: lineage, impact and graph exports (issue 5)."""

from __future__ import annotations

from . import cli  # noqa: F401
