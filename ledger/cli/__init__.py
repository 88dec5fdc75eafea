"""The ``ledger`` command: a thin skin over :class:`ledger.Ledger`.

The group and its error handling are :mod:`ledger.cli.group`; each command module
(core, register, keys, registry, proofs, audit, lineage, policy, report, mlflow) registers its commands on it when imported.
"""

from __future__ import annotations

import sys

from . import (  # noqa: F401  (they register commands)
    audit,
    core,
    keys,
    lineage,
    mlflow,
    policy,
    proofs,
    register,
    registry,
    report,
)
from .group import INTERNAL_ERROR, LedgerGroup, cli

__all__ = ["INTERNAL_ERROR", "LedgerGroup", "cli", "main"]


#: Commands that run MLflow's client, which uses pandas.
USES_PANDAS = frozenset({"import", "mlflow"})


def main() -> None:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
    if command not in USES_PANDAS:
        from ..compat import hide_pandas

        hide_pandas()
    cli(prog_name="ledger")


if __name__ == "__main__":  # pragma: no cover
    main()
