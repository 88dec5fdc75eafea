"""The ``ledger`` command: a thin skin over :class:`ledger.Ledger`.

The group and its error handling are :mod:`ledger.cli.group`; each command module
(core, register, keys, registry, proofs, audit, lineage, policy, report) registers its commands on it when imported.
"""

from __future__ import annotations

from . import audit, core, keys, lineage, policy, proofs, register, registry, report  # noqa: F401  (they register commands)
from .group import INTERNAL_ERROR, LedgerGroup, cli

__all__ = ["INTERNAL_ERROR", "LedgerGroup", "cli", "main"]


def main() -> None:
    cli(prog_name="ledger")


if __name__ == "__main__":  # pragma: no cover
    main()
