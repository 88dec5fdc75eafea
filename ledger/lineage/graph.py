"""The lineage graph's vocabulary: node ids, node and edge kinds, the columns it is built
from, :class:`Adjacency` (the graph without networkx) and the as-of selection of events.
What both builders (:mod:`.build`, :mod:`.fast`) and the questions (:mod:`.questions`)
share.

Nodes (the id is prefixed by its kind, so no two kinds can collide)::

    model:NAME:VERSION        a registered model version        kind=model
    dataset:URI[@sha256:HEX]  a dataset, by URI and digest      kind=dataset
    commit:REPO@COMMIT        a code commit                     kind=commit
    actor:NAME                a person or service with a key    kind=actor
    env:NAME                  a deployment environment          kind=env

Edges point from the thing that depends to what it depends on (provenance style)::

    version -> parent version  derived_from   relation=finetune|distill|quantize|merge|…
    version -> dataset         trained_on     name=<the dataset's name in that register>
    version -> commit          built_from
    version -> actor           registered_by | approved_by (env=…) | rejected_by | deprecated
    version -> env             deployed_to    actor=…, live, until_seq/until_ts/until_hash

Every node and edge carries ``seq``, ``ts`` (RFC 3339) and ``hash`` (hex) of the event that
justifies it (for a node: the first event that names it), so each one points back to signed
evidence. Every attribute is a scalar (str, int or bool) and none is ``None``, so the graph
can be written to GraphML or GEXF as it is.

``as_of`` / ``at_seq`` are honoured by filtering the events before building
(:func:`select`), so the graph is the ledger as it stood then, including which
deployments were live.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..inputs import check_seq, instant

if TYPE_CHECKING:  # networkx is imported when a graph is built (0.25 s of start-up)
    import networkx as nx

#: The ledger columns the graph is built from.
COLUMNS = ["seq", "ts", "action", "model", "version", "actor", "payload", "hash"]

MODEL, DATASET, COMMIT, ACTOR, ENV = "model", "dataset", "commit", "actor", "env"
DERIVED_FROM, TRAINED_ON, BUILT_FROM = "derived_from", "trained_on", "built_from"
REGISTERED_BY, APPROVED_BY, REJECTED_BY = "registered_by", "approved_by", "rejected_by"
DEPLOYED_TO, DEPRECATED = "deployed_to", "deprecated"
#: Edge kinds that make up the family tree (followed by up, down and impact).
LINEAGE_KINDS = frozenset({DERIVED_FROM, TRAINED_ON, BUILT_FROM})


def model_id(model: str, version: int) -> str:
    return f"model:{model}:{version}"


def dataset_id(uri: str, digest: str | None) -> str:
    return f"dataset:{uri}@{digest}" if digest else f"dataset:{uri}"


def commit_id(repo: str, commit: str) -> str:
    return f"commit:{repo}@{commit}"


def actor_id(actor: str) -> str:
    return f"actor:{actor}"


def env_id(env: str) -> str:
    return f"env:{env}"


# --- as-of ------------------------------------------------------------------------------------


def select(table: Any, as_of: int | str | None = None, at_seq: int | None = None) -> Any:
    """The events of an Arrow ``table`` with ``ts <= as_of`` (µs or a timestamp string)
    and ``seq <= at_seq``."""
    as_of, at_seq = instant(as_of), check_seq(at_seq)
    if as_of is None and at_seq is None:
        return table
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = None
    if at_seq is not None:  # (a seq beyond the int64 Arrow compares with is beyond them all)
        mask = pc.less_equal(table["seq"], min(at_seq, 2**63 - 1))
    if as_of is not None:
        when = pa.scalar(as_of, pa.timestamp("us", tz="UTC"))
        m = pc.less_equal(table["ts"].cast(pa.timestamp("us", tz="UTC")), when)
        mask = m if mask is None else pc.and_(mask, m)
    return table.filter(mask)


# --- the graph without networkx ---------------------------------------------------------------


class Adjacency:
    """The lineage graph without networkx: the three dicts a networkx ``MultiDiGraph``
    keeps inside (``_node``: node -> attributes; ``_succ``/``_pred``: node -> neighbour
    -> edge key -> attributes), laid out alike, so that every question
    (:mod:`ledger.lineage.questions`) answers the same on either. The terminal tree
    (:mod:`ledger.cli.lineagetree`) and ``impact`` use it: importing networkx would cost
    a fresh ``ledger lineage`` more than answering it."""

    def __init__(self) -> None:
        self._node: dict[str, dict[str, Any]] = {}
        self._succ: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
        self._pred: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}

    def number_of_nodes(self) -> int:
        return len(self._node)


def _multidigraph() -> nx.MultiDiGraph:
    import networkx as nx

    return nx.MultiDiGraph()
