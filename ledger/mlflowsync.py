"""``ledger import mlflow`` and ``ledger mlflow diff``: a whole MLflow registry against the
ledger (docs/mlflow.md). Needs MLflow's client (``ledger[mlflow]``)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import events as E
from . import mlflowmap as M
from .errors import InputError
from .keys import SigningKey
from .ledger import Ledger

IMPORTED = "imported from MLflow, which does not record who acted or the states it overwrote"
#: Events per append while importing (each one durable segment).
BATCH = 5000


@dataclass
class Pending:
    """An MLflow write the store committed whose ledger events may not be written."""

    model: str
    method: str
    comment: str


@dataclass
class DiffReport:
    differences: list[M.Difference] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    #: why pending writes could not be listed (a tracking server URL has no outbox)
    pending_unknown: str | None = None

    @property
    def clean(self) -> bool:
        return not self.differences and not self.pending


@dataclass
class ImportReport:
    models: int = 0
    versions: int = 0
    events: int = 0
    skipped: list[M.Difference] = field(default_factory=list)


def plain_uri(uri: str) -> str:
    """The registry URI MLflow's own client reads (the store plugin's ``ledger+`` scheme
    and its ledger parameters taken off)."""
    if uri.startswith("ledger+"):
        from .mlflowstore import parse_store_uri

        return parse_store_uri(uri, env={"LEDGER_PATH": "-", "LEDGER_KEY": "-"}).db_uri
    return uri


def shown_uri(uri: str) -> str:
    """``uri`` without a password, for the events."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


def _client(registry_uri: str, tracking_uri: str | None) -> Any:
    import logging

    from mlflow.tracking import MlflowClient

    uri = plain_uri(registry_uri)
    _check_exists(uri)
    if tracking_uri:
        _check_exists(tracking_uri)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # (its table set-up notes)
    # An unreachable server is an error in seconds, not after minutes of retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    return MlflowClient(tracking_uri=tracking_uri or uri, registry_uri=uri)


def _check_exists(uri: str) -> None:
    """Refuse a SQLite URI whose file does not exist: MLflow would create the folder and
    an empty registry there, and an import would take every model as deleted."""
    if not uri.startswith("sqlite:"):
        return
    import sqlalchemy as sa

    try:
        path = sa.engine.make_url(uri).database
    except sa.exc.ArgumentError as exc:
        raise InputError(f"registry URI {uri!r}: {exc}") from None
    if not path or path == ":memory:" or not Path(path).is_file():
        raise InputError(f"no MLflow database at {path or uri} (from {uri})")


def _from_mlflow(led: Ledger) -> set[str]:
    """The ledger's models that came from MLflow (made by a model_create event, as the
    store and import make every model). Only these can have been deleted in MLflow:
    the others (``ledger register``) are the ledger's own and not compared."""
    import pyarrow.compute as pc

    t = led.events(columns=["action", "model"])
    made = t.filter(pc.equal(t["action"], E.MODEL_CREATE))["model"]
    return set(pc.unique(made).to_pylist())


def _read(registry_uri: str, tracking_uri: str | None) -> tuple[Any, dict[str, M.MModel]]:
    from mlflow.exceptions import MlflowException

    from .mlflowread import models_from_client

    try:
        client = _client(registry_uri, tracking_uri)
        return client, models_from_client(client)
    except (MlflowException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read the MLflow registry at {registry_uri}: {first}") from None


def diff(led: Ledger, registry_uri: str, tracking_uri: str | None = None) -> DiffReport:
    """Every way the ledger's state differs from MLflow's registry now, and the writes
    the store committed whose events it has not yet written."""
    _, mlflow_models = _read(registry_uri, tracking_uri)
    state = led.state()
    ledger_side = M.ledger_models(state, set(mlflow_models) | _from_mlflow(led))
    report = DiffReport()
    for name in sorted(set(mlflow_models) | set(ledger_side)):
        report.differences += M.differences(
            mlflow_models.get(name),
            ledger_side.get(name),
            run_facts=lambda mv: None,
            comment="",
            via={},
            parent_of=lambda mv: M.parent_in(state, mv.source),
        )
    report.pending, report.pending_unknown = _pending(led, registry_uri)
    return report


def _pending(led: Ledger, registry_uri: str) -> tuple[list[Pending], str | None]:
    """The outbox rows whose write's last event is not in the ledger."""
    uri = plain_uri(registry_uri)
    if urlsplit(uri).scheme.split("+")[0] not in ("sqlite", "postgresql", "mysql", "mssql"):
        return [], f"{registry_uri} is not a database; the store's pending writes are not listed"
    import sqlalchemy as sa

    from .mlflowstore import OUTBOX, Call

    engine = sa.create_engine(uri)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(OUTBOX):
                return [], None
            rows = conn.execute(sa.text(f"SELECT name, call, hash FROM {OUTBOX} ORDER BY id")).all()
    finally:
        engine.dispose()
    out = []
    for name, text, last in rows:
        if bytes.fromhex(last) in set(led.events(name, columns=["hash"])["hash"].to_pylist()):
            continue  # (complete; the store deletes the row with its next write)
        call = Call.from_document(text)
        out.append(Pending(name, call.method, call.comment))
    return out, None


def import_registry(
    led: Ledger, registry_uri: str, key: SigningKey, tracking_uri: str | None = None
) -> ImportReport:
    """Bring the ledger to MLflow's registry: the events of every difference, signed by
    ``key``, with MLflow's times where it has them, marked as imported. Models that
    cannot be mapped are left out and reported. Run again, it records what changed."""
    from .mlflowread import runs_by_id

    client, mlflow_models = _read(registry_uri, tracking_uri)
    state = led.state()
    ours = _from_mlflow(led)
    ledger_side = M.ledger_models(state, set(mlflow_models) | ours)
    live = {m for m in ours if m in ledger_side and not ledger_side[m].deleted}
    if live and not mlflow_models:
        raise InputError(
            f"the MLflow registry at {registry_uri} holds no registered models, and the"
            f" ledger has {len(live)} from MLflow: importing would record every one of them"
            " deleted; check --registry-uri"
        )
    new_runs = [
        mv.run_id
        for name, m in mlflow_models.items()
        for n, mv in m.versions.items()
        if mv.run_id and n > (ledger_side[name].latest if name in ledger_side else 0)
    ]
    runs = runs_by_id(client, new_runs)
    via = {"imported": True, "registry": shown_uri(plain_uri(registry_uri))}
    report = ImportReport()
    timed: list[tuple[int, int, E.Draft]] = []
    for name in sorted(set(mlflow_models) | set(ledger_side)):
        ml, lm = mlflow_models.get(name), ledger_side.get(name)
        diffs = M.differences(
            ml,
            lm,
            run_facts=lambda mv: runs.get(mv.run_id or ""),
            comment=IMPORTED,
            via=via,
            parent_of=lambda mv: M.parent_in(state, mv.source),
        )
        bad = M.unmappable(diffs)
        if bad is not None:
            report.skipped.append(bad)
            continue
        drafts = M.drafts_of(diffs)
        if not drafts:
            continue
        report.models += 1
        report.versions += sum(d.action == E.REGISTER for d in drafts)
        timed += _with_times(drafts, ml)
    # In time order across models (each model's own order kept: its later events carry
    # no MLflow time and go last), never before the ledger's last event.
    timed.sort(key=lambda t: (t[0], t[1]))
    _, _, floor = led.store.tail()
    drafts = []
    for ts, _, d in timed:
        if ts < _NOW:
            floor = max(floor, ts)
            d = replace(d, ts=floor)
        drafts.append(d)
    for i in range(0, len(drafts), BATCH):
        report.events += len(led.append_many(drafts[i : i + BATCH], key, enforce_policy=False))
    return report


_NOW = 2**62  # (sorts after every MLflow time: the writer stamps these events)


def _with_times(drafts: Iterable[E.Draft], ml: M.MModel | None) -> list[tuple[int, int, E.Draft]]:
    """Each draft with the MLflow time it happened at in µs (creation of the model or
    of the version; the rest have none), and its place in the model's order."""
    out = []
    start = 0
    for i, d in enumerate(drafts):
        ts = _NOW
        if ml is not None and d.action == E.MODEL_CREATE:
            ts = (ml.creation_time or 0) * 1000
        elif ml is not None and d.action == E.REGISTER:
            known = ml.versions.get(d.version or 0)
            created = known.creation_time if known is not None else None
            ts = max((created or 0) * 1000, start)  # (registers stay in version order)
        if ts != _NOW:
            start = max(start, ts)
        out.append((ts, i, d))
    return out
