"""Commands: checkpoint, prove, evidence and verify-evidence (issue 3)."""

from __future__ import annotations

from . import cli  # noqa: F401
