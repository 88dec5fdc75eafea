"""The registry's everyday metadata on the facade: aliases, tags, descriptions, and the
end of a version's life (reject, deprecate) kept consistent with where it is live.

:class:`RegistryMethods` is a part of :class:`ledger.Ledger` (a mixin, so that the facade
stays one class with one method per operation, in modules of one job each). Every method
writes signed events through ``Ledger.append_many`` under the same rules, roles and
policy as every other event; the drafts are :mod:`ledger.actions`'.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from . import actions
from . import events as E
from .keys import SigningKey
from .readgate import checked

if TYPE_CHECKING:
    from .reads import PointReads
    from .state import State
    from .store import Store
    from .writer import Receipt

_TS = pa.timestamp("us", tz="UTC")
ALIASES = pa.schema(
    [
        ("alias", pa.string()),
        ("version", pa.int64()),
        ("since", _TS),
        ("set_by", pa.string()),
        ("set_seq", pa.int64()),
    ]
)


class RegistryMethods:
    """Aliases, tags and descriptions (each a signed event), and reject / deprecate."""

    # (provided by Ledger)
    _points: PointReads
    store: Store

    def append_many(
        self, drafts: Iterable[E.Draft], key: SigningKey, *, enforce_policy: bool = True
    ) -> list[Receipt]:
        raise NotImplementedError

    def state(self, models: set[str] | None = None, at_seq: int | None = None) -> State:
        raise NotImplementedError

    def _registered(self, model: str, version: int | None) -> None:
        raise NotImplementedError

    # --- aliases --------------------------------------------------------------------------
    def set_alias(
        self,
        model: str,
        version: int | str,
        alias: str,
        *,
        key: SigningKey,
        comment: str | None = None,
    ) -> Receipt:
        """Point ``alias`` (e.g. ``champion``) of ``model`` at ``version`` (an int, or
        ``"@other"`` for the version another alias names), moving it from any other
        version. Policy governs an alias as an environment of its name."""
        return self.append_many([actions.alias_set(model, version, alias, comment)], key)[0]

    def delete_alias(
        self, model: str, alias: str, *, key: SigningKey, comment: str | None = None
    ) -> Receipt:
        """Remove ``alias`` of ``model`` (the event names the version it pointed at)."""
        return self.append_many([actions.alias_delete(model, alias, comment)], key)[0]

    @checked
    def aliases(
        self, model: str, *, as_of: int | str | None = None, at_seq: int | None = None
    ) -> pa.Table:
        """Where each alias of ``model`` points (now, or as of an instant or a seq):
        alias, version, since, set_by, set_seq."""
        from .pointread import current_aliases

        E.check_model_name(model)
        self._registered(model, None)
        rows = sorted(current_aliases(self._points.rows(model, as_of, at_seq)).items())
        out = [(a, r["version"], r["ts"], r["actor"], r["seq"]) for a, r in rows]
        cols = list(zip(*out, strict=True)) if out else [()] * 5
        arrays = [
            pa.array(list(c), pa.int64()).view(_TS) if f.type == _TS else pa.array(list(c), f.type)
            for c, f in zip(cols, ALIASES, strict=True)
        ]
        return pa.Table.from_arrays(arrays, schema=ALIASES)

    # --- tags and descriptions ------------------------------------------------------------
    def set_tags(
        self, model: str, version: int | str | None = None, *, tags: Any, key: SigningKey
    ) -> Receipt:
        """Set ``tags`` (a dict, or ``KEY=VALUE`` specs) on ``model:version``, or on the
        model itself when ``version`` is None (as MLflow has both)."""
        return self.append_many([actions.tag_set(model, version, tags)], key)[0]

    def delete_tags(
        self,
        model: str,
        version: int | str | None = None,
        *,
        keys: Iterable[str],
        key: SigningKey,
    ) -> Receipt:
        """Remove the tags ``keys`` from ``model:version`` (or the model); each must be set."""
        return self.append_many([actions.tag_delete(model, version, keys)], key)[0]

    def describe(
        self, model: str, version: int | str | None = None, *, text: str, key: SigningKey
    ) -> Receipt:
        """Set the description of ``model:version``, or of the model (history is kept)."""
        return self.append_many([actions.describe(model, version, text)], key)[0]

    # --- show and search ----------------------------------------------------------------------
    @checked
    def show(self, model: str, version: int | str | None = None) -> dict[str, Any]:
        """Everything about ``model:version`` (or ``"@alias"``), or about the model when
        ``version`` is None, as one JSON-ready document: metrics, params, tags,
        description, datasets, code, artifact, environment, parents and children,
        approvals (and whether they count now), deployments past and present, aliases,
        overrides, and the seq and hash of each event it rests on."""
        from . import show

        E.check_model_name(model)
        if version is None:
            return show.model_document(self, model)
        return show.version_document(self, model, version)

    @checked
    def models(
        self,
        *,
        name: str | None = None,
        tags: Iterable[str] = (),
        registered_by: str | None = None,
        since: int | str | None = None,
        until: int | str | None = None,
        live_in: str | None = None,
        alias: str | None = None,
        metrics: Iterable[str] = (),
        as_of: int | str | None = None,
        at_seq: int | None = None,
    ) -> pa.Table:
        """The versions every given filter holds for: ``name`` a glob (``fraud.*``),
        ``tags`` ``KEY=VALUE`` (the version's or its model's), ``since``/``until`` on the
        registration time, ``live_in`` an environment, ``alias`` a name, ``metrics`` such
        as ``"auc>=0.9"``; now, or ``as_of`` an instant / ``at_seq``."""
        from .search import Filters, search

        f = Filters(name, tuple(tags), registered_by, since, until, live_in, alias, tuple(metrics))
        return search(self.store, f, as_of, at_seq)[0]

    # --- the end of a version's life --------------------------------------------------------
    def reject(
        self,
        model: str,
        version: int | str,
        *,
        key: SigningKey,
        comment: str | None = None,
        undeploy: bool = False,
    ) -> Receipt:
        """Reject ``model:version``: it can no longer be approved or deployed. Refused while
        it is live somewhere, unless ``undeploy``: then its undeploys are written first, in
        the same atomic batch."""
        return self._retire(E.REJECT, model, version, key, comment, undeploy)

    def deprecate(
        self,
        model: str,
        version: int | str,
        *,
        key: SigningKey,
        comment: str | None = None,
        undeploy: bool = False,
    ) -> Receipt:
        """Deprecate ``model:version``: it can no longer be deployed. Refused while it is
        live somewhere, unless ``undeploy`` (as :meth:`reject`)."""
        return self._retire(E.DEPRECATE, model, version, key, comment, undeploy)

    def _retire(
        self,
        action: str,
        model: str,
        version: int | str,
        key: SigningKey,
        comment: str | None,
        undeploy: bool,
    ) -> Receipt:
        draft = replace(
            actions.model_action(action, model, version, comment=comment), unless_live=True
        )
        drafts = [draft]
        if undeploy:
            # What is live now; the writer checks again under the lock (a deploy in
            # between makes the batch fail, never leaves a live rejected version).
            state = self.state(models={model})
            n = draft.version
            if n is None:
                n = state.aliases.get((model, draft.alias or ""))
            v = state.versions.get((model, n)) if n is not None else None
            for env in sorted(v.live) if v is not None else ():
                drafts.insert(-1, E.Draft(E.UNDEPLOY, {"env": env}, model, v.version))  # type: ignore[union-attr]
        return self.append_many(drafts, key)[-1]
