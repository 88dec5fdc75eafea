"""The ``ledger`` command: a thin skin over :class:`ledger.Ledger`.

The group and its error handling are :mod:`ledger.cli.group`; each command module
(core, register, proofs, audit, lineage, policy) registers its commands on it when imported.
"""

from __future__ import annotations

from . import audit, core, lineage, policy, proofs, register  # noqa: F401  (they register commands)
from .group import INTERNAL_ERROR, LedgerGroup, cli

__all__ = ["INTERNAL_ERROR", "LedgerGroup", "cli", "main"]


def main() -> None:
    cli(prog_name="ledger")


if __name__ == "__main__":  # pragma: no cover
    main()
