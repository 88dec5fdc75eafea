"""Lineage: every model version's family tree as a networkx ``MultiDiGraph``, built from events.

The graph (its node ids and kinds, edge kinds and attributes) is described in
:mod:`ledger.lineage.graph`. It is built from plain rows (:func:`build`, the reference,
in :mod:`ledger.lineage.build`) or from an Arrow table of the ledger's columns
(:func:`from_table`, the fast path, in :mod:`ledger.lineage.fast` and
:mod:`ledger.lineage.fastcols`; it returns an identical graph, insertion order
included). ``as_of`` / ``at_seq`` are honoured by filtering the events before building
(:func:`select`), so the graph is the ledger as it stood then, including which
deployments were live. The questions asked of it (up, down, context, impact, ...) are in
:mod:`ledger.lineage.questions`; the terminal tree of ``ledger lineage`` is the command
line's (:mod:`ledger.cli.lineagetree`).

Every name is importable from here, as it was from the single module this package
replaced.
"""

from __future__ import annotations

from .build import _Builder as _Builder
from .build import build
from .fast import _Columns as _Columns
from .fast import from_table
from .fastcols import _Irregular as _Irregular
from .graph import (
    ACTOR,
    APPROVED_BY,
    BUILT_FROM,
    COLUMNS,
    COMMIT,
    DATASET,
    DEPLOYED_TO,
    DEPRECATED,
    DERIVED_FROM,
    ENV,
    LINEAGE_KINDS,
    MODEL,
    REGISTERED_BY,
    REJECTED_BY,
    TRAINED_ON,
    Adjacency,
    actor_id,
    commit_id,
    dataset_id,
    env_id,
    model_id,
    select,
)
from .questions import (
    Impact,
    context,
    down,
    edge_word,
    find_commits,
    find_datasets,
    impact,
    live_deployments,
    no_dataset,
    up,
    version_node,
)
from .questions import _via as _via

__all__ = [
    "ACTOR",
    "APPROVED_BY",
    "BUILT_FROM",
    "COLUMNS",
    "COMMIT",
    "DATASET",
    "DEPLOYED_TO",
    "DEPRECATED",
    "DERIVED_FROM",
    "ENV",
    "LINEAGE_KINDS",
    "MODEL",
    "REGISTERED_BY",
    "REJECTED_BY",
    "TRAINED_ON",
    "Adjacency",
    "Impact",
    "actor_id",
    "build",
    "commit_id",
    "context",
    "dataset_id",
    "down",
    "edge_word",
    "env_id",
    "find_commits",
    "find_datasets",
    "from_table",
    "impact",
    "live_deployments",
    "model_id",
    "no_dataset",
    "select",
    "up",
    "version_node",
]
