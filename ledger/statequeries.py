"""A ledger's state views, as-of state and audit queries (issue 4), each an Arrow table:
:class:`StateQueries`, mixed into :class:`ledger.ledger.Ledger`. One model's status
and history are point reads (ledger/pointread.py); the rest are SQL over the views, on
DuckDB (ledger/query.py) or on Spark (ledger/sparkquery.py)."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa

from . import events as E
from .errors import InputError, NotFoundError
from .readgate import checked as _checked
from .reads import PointReads
from .store import Store

#: The engines ``Ledger.query`` and ``Ledger.sql`` run on.
ENGINES = ("duckdb", "spark")


def _engine(name: str) -> str:
    if name not in ENGINES:
        raise InputError(f"unknown engine {name!r} (engines: {', '.join(ENGINES)})")
    return name


class StateQueries:
    """``status``, ``history``, ``queries``, ``query`` and ``sql``. ``as_of`` (µs or a
    timestamp string) answers as the ledger stood after every event with ts <= as_of;
    ``at_seq`` after event N."""

    # (provided by Ledger)
    store: Store
    _points: PointReads
    _reads: threading.local

    @_checked
    def status(
        self,
        model: str | None = None,
        env: str | None = None,
        *,
        version: int | str | None = None,
        as_of: int | str | None = None,
        at_seq: int | None = None,
    ) -> pa.Table:
        """Current state: one row per model; per version of ``model`` (or only
        ``version``); or what is live in ``env`` (with who deployed and approved it).
        About one ``model`` it is a point read of that model's events in the index
        (ledger/pointread.py), kept in memory by a long-lived Ledger while the ledger does
        not change. A model (or version) the ledger never registered is NotFoundError."""
        from . import pointread

        if model is not None:
            E.check_model_name(model)
            if env is not None:
                E.check_env(env)
            rows = self._points.rows(model, as_of, at_seq)
            version = self._version_in(model, version, rows, as_of or at_seq is not None)
            table = pointread.versions(rows) if env is None else pointread.live(rows, model, env)
            if version is not None and "version" in table.column_names:
                import pyarrow.compute as pc  # (not for a plain status: start-up time)

                table = table.filter(pc.equal(table["version"], version))
            return table
        from .query import status

        return status(self.store, model, env, as_of, at_seq)[0]

    @_checked
    def history(
        self,
        model: str,
        version: int | str | None = None,
        *,
        as_of: int | str | None = None,
        at_seq: int | None = None,
    ) -> pa.Table:
        """Every event of ``model`` (or of one version), in order (a point read, as
        :meth:`status` of one model is)."""
        from . import pointread

        E.check_model_name(model)
        rows = self._points.rows(model, as_of, at_seq)
        cut = as_of or at_seq is not None
        return pointread.history(rows, self._version_in(model, version, rows, cut))

    def _version_in(
        self, model: str, version: int | str | None, rows: list[dict[str, Any]], cut: Any = False
    ) -> int | None:
        """``version`` checked registered; ``"@alias"`` read as the version the alias named
        in ``rows`` (the model's events up to the cut of an as-of read)."""
        if not isinstance(version, str):
            self._registered(model, version)
            return version
        from .pointread import current_aliases

        self._registered(model, None)
        alias = E.check_alias(version.removeprefix("@"))
        hit = current_aliases(rows).get(alias)
        if hit is None:
            then = " at the point in time asked" if cut else ""
            raise NotFoundError(f"model {model} has no alias {alias}{then}", kind="unknown_alias")
        return int(hit["version"])

    def _registered(self, model: str, version: int | None) -> None:
        """NotFoundError unless the ledger registered ``model`` (and ``version``) at all
        (as of a past instant it may not have yet: that is an empty answer, not an error)."""
        regs = [r["version"] for r in self._points.rows(model) if r["action"] == E.REGISTER]
        if not regs:
            raise NotFoundError(f"model {model} is not registered", kind="unknown_model")
        if version is not None and version not in regs:
            raise NotFoundError(
                f"{model}:{version} is not registered (latest is {model}:{max(regs)})",
                kind="unknown_version",
            )

    def queries(self) -> list[Any]:
        """The named audit queries (``ledger.query.NamedQuery``), sorted by name."""
        from .query import load_queries

        return list(load_queries().values())

    @_checked
    def query(
        self,
        name: str,
        params: dict[str, Any] | None = None,
        *,
        as_of: int | str | None = None,
        at_seq: int | None = None,
        engine: str = "duckdb",
        master: str | None = None,
    ) -> pa.Table:
        """Run the named audit query ``name`` (``ledger/queries/NAME.sql``) with ``params``;
        ``engine="spark"`` runs it on Spark SQL (``master``: local[2] by default)."""
        if _engine(engine) == "spark":
            from . import sparkquery

            return sparkquery.named(self.store, name, params, as_of, at_seq, master)[0]
        from .query import named

        return named(self.store, name, params, as_of, at_seq)[0]

    @_checked
    def sql(
        self,
        text: str,
        *,
        as_of: int | str | None = None,
        at_seq: int | None = None,
        engine: str = "duckdb",
        master: str | None = None,
    ) -> pa.Table:
        """Run one ad-hoc SELECT against the views (events, model_versions, deployments,
        live, approvals, keys, registrations, lineage, datasets, as_of); DuckDB SQL, which
        ``engine="spark"`` translates and runs on Spark SQL."""
        if _engine(engine) == "spark":
            from . import sparkquery

            return sparkquery.adhoc(self.store, text, as_of, at_seq, master)[0]
        from .query import adhoc

        return adhoc(self.store, text, as_of, at_seq)[0]
