"""DuckDB views over the live Parquet segments, point-in-time cutoffs and named audit queries.

Every call builds a fresh in-memory DuckDB connection whose views read the ledger's live
segments in place (the exact file list from ``Store.segments()``, never a glob, so a
writer's temporary file or a compaction leftover is never read). Nothing is copied or
cached, so no answer can drift from the events.

Point in time: every view is defined over ``events``, which keeps only the events with
``seq <= cutoff``. ``at_seq=N`` sets the cutoff to N; ``as_of=T`` sets it to the last
event whose ``ts <= T`` (timestamps never go backwards along the chain, so this is the
same as "every event with ts <= T", equal timestamps included). Two events with the same
timestamp can only be told apart with ``at_seq``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from . import events as E
from .errors import CorruptLedgerError, InputError, NotFoundError
from .inputs import instant, parse_instant, read_int, resolve_digest
from .store import Store
from .views import VIEWS

#: Where the named audit queries live: one ``NAME.sql`` file each.
#: The audit-query library, shipped inside the package (so a wheel install has it).
QUERIES_DIR = Path(__file__).resolve().parent / "queries"

# --- the views: the ledger's state defined once, in SQL ------------------------------------
# {source} is the events relation (read_parquet of the live segments, cut off at a seq);
# {as_of_ts} and {as_of_seq} are literals of the instant the views answer for.


# --- point in time -------------------------------------------------------------------------


@dataclass(frozen=True)
class Cutoff:
    """The instant views answer for: events with ``seq <= seq`` (None = all events)."""

    seq: int | None
    ts: int | None  # µs; the as-of instant, or the ts of event ``seq``; None = now
    label: str | None  # how the user asked, for titles: "as of …" / "at seq N"


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _sql_ts(micros: int) -> str:
    return f"make_timestamp({micros}::BIGINT)::TIMESTAMPTZ"


# --- named queries ---------------------------------------------------------------------------

#: (``digest``: text in which a digest is completed, see Session.complete_digests)
PARAM_TYPES = ("text", "int", "timestamp", "digest")
_PARAM_RE = re.compile(
    r"(?P<name>[a-z_][a-z0-9_]*)\s+(?P<type>text|int|timestamp|digest)"
    r"(?:\s+(?P<optional>optional)|\s*=\s*(?P<default>\S+))?\s*:\s+(?P<doc>.*)"
)
_NAME_RE = re.compile(r"[a-z][a-z0-9-]*")
_REF_RE = re.compile(r"\$([a-z_][a-z0-9_]*)")


@dataclass(frozen=True)
class Param:
    """A named parameter of a query: ``-- param: NAME TYPE [optional | = DEFAULT]: DOC``."""

    name: str
    type: str
    doc: str
    default: str | None = None
    optional: bool = False

    @property
    def required(self) -> bool:
        return self.default is None and not self.optional

    def convert(self, value: str | int | datetime | None, query: str) -> Any:
        if value is None:
            return None
        if self.type == "int":
            return read_int(value, f"parameter {self.name} of query {query}")
        if self.type == "timestamp":
            if isinstance(value, datetime):
                return value
            micros = parse_instant(str(value), f"parameter {self.name}")
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
        return str(value)


@dataclass(frozen=True)
class NamedQuery:
    """One audit query from ``ledger/queries/NAME.sql``."""

    name: str
    description: str
    params: tuple[Param, ...]
    sql: str
    path: Path

    @property
    def digests(self) -> list[str]:
        """The parameters that take a digest (a prefix of one is completed first)."""
        return [p.name for p in self.params if p.type == "digest"]

    def bind(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Check and convert the given parameters; fill in defaults."""
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        for k in given:
            if k not in known:
                names = ", ".join(known) or "none"
                raise InputError(f"query {self.name} has no parameter {k!r} (parameters: {names})")
        out = {}
        for p in self.params:
            if p.name in given:
                out[p.name] = p.convert(given[p.name], self.name)
            elif p.required:
                raise InputError(f"query {self.name} needs --param {p.name}=… ({p.type}): {p.doc}")
            else:
                out[p.name] = p.convert(p.default, self.name)
        # DuckDB refuses named parameters the statement does not use.
        used = set(_REF_RE.findall(self.sql))
        return {k: v for k, v in out.items() if k in used}


def parse_query_file(path: Path) -> NamedQuery:
    """Read a ``.sql`` file: ``-- name:``, description comments, ``-- param:`` lines, SQL."""
    text = path.read_text(encoding="utf-8")
    name = None
    doc: list[str] = []
    params: list[Param] = []
    body: list[str] = []
    header = True
    for line in text.splitlines():
        s = line.strip()
        if header and s.startswith("--"):
            c = s[2:].strip()
            if c.startswith("name:"):
                name = c[5:].strip()
            elif c.startswith("param:"):
                m = _PARAM_RE.fullmatch(c[6:].strip())
                if not m:
                    raise InputError(f"{path.name}: malformed parameter line {s!r}")
                params.append(
                    Param(
                        m["name"],
                        m["type"],
                        m["doc"].strip(),
                        m["default"],
                        bool(m["optional"]),
                    )
                )
            elif c:
                doc.append(c)
            continue
        if header and not s:
            continue
        header = False
        body.append(line)
    if not name or not _NAME_RE.fullmatch(name):
        raise InputError(f"{path.name}: the file must start with '-- name: <name>'")
    if name != path.stem:
        raise InputError(f"{path.name}: query name {name!r} differs from the file name")
    sql = "\n".join(body).strip().rstrip(";")
    declared = {p.name for p in params}
    for ref in sorted(set(_REF_RE.findall(sql)) - declared):
        raise InputError(f"{path.name}: ${ref} is used but not declared with '-- param:'")
    return NamedQuery(name, " ".join(doc), tuple(params), sql, path)


def load_queries(folder: Path = QUERIES_DIR) -> dict[str, NamedQuery]:
    """Every named query in ``folder``, by name."""
    if not folder.is_dir():
        return {}
    out = {}
    for p in sorted(folder.glob("*.sql")):
        q = parse_query_file(p)
        out[q.name] = q
    return out


def get_query(name: str, folder: Path = QUERIES_DIR) -> NamedQuery:
    queries = load_queries(folder)
    if name not in queries:
        raise NotFoundError(
            f"unknown query {name!r}; `ledger queries` lists them ({', '.join(queries)})",
            kind="unknown_query",
        )
    return queries[name]


# --- running ---------------------------------------------------------------------------------


def sandboxed(paths: Sequence[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that may read ``paths`` and nothing else.

    Every query (``ledger sql``, the named audit queries, the views) runs here: no other
    file (``read_csv('/etc/passwd')``, ``read_text``, ``glob``), no network (``https://``,
    ``s3://``), no ``COPY … TO``, ``ATTACH`` or ``EXPORT``, no extension install or load
    (DuckDB would otherwise fetch one for an ``https://`` path). The caller locks the
    configuration once its views exist, so ``SET`` cannot undo any of this."""
    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            "allow_unsigned_extensions": False,
        },
    )
    # Results carry UTC; threads stay at DuckDB's default (all cores).
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET allowed_paths = [" + ", ".join(_sql_str(p) for p in paths) + "]")
    con.execute("SET enable_external_access = false")
    return con


class Session:
    """One DuckDB connection with the views defined, at one point in time."""

    def __init__(
        self, store: Store, as_of: int | str | None = None, at_seq: int | None = None
    ) -> None:
        if as_of is not None and at_seq is not None:
            raise InputError("give --as-of or --at-seq, not both")
        self.store = store
        self.segments = store.segments()
        if not self.segments:
            raise CorruptLedgerError(f"{store.events_dir} holds no segments")
        self.con = sandboxed([str(s.path) for s in self.segments])
        paths = ", ".join(_sql_str(str(s.path)) for s in self.segments)
        scan = "read_parquet([" + paths + "], union_by_name = false)"
        last = self.segments[-1].last
        as_of = instant(as_of)
        if at_seq is not None:
            if type(at_seq) is not int or at_seq < 0:
                raise InputError(f"--at-seq must be a seq number >= 0, got {at_seq!r}")
            if at_seq > last:
                raise InputError(f"--at-seq {at_seq} is beyond the last event (seq {last})")
            found = self.con.execute(
                f"SELECT epoch_us(ts) FROM {scan} WHERE seq = {at_seq}"
            ).fetchone()
            self.cutoff = Cutoff(at_seq, found[0] if found else None, f"at seq {at_seq}")
        elif as_of is not None:
            row = self.con.execute(
                f"SELECT max(seq) FROM {scan} WHERE ts <= {_sql_ts(as_of)}"
            ).fetchone()
            seq = -1 if row is None or row[0] is None else row[0]
            self.cutoff = Cutoff(seq, as_of, f"as of {E.format_ts(as_of)}")
        else:
            self.cutoff = Cutoff(None, None, None)
        c = self.cutoff
        source = scan if c.seq is None else f"(SELECT * FROM {scan} WHERE seq <= {c.seq})"
        self.con.execute(
            VIEWS.format(
                source=source,
                as_of_seq=last if c.seq is None else c.seq,
                as_of_ts="now()" if c.ts is None else _sql_ts(c.ts),
            )
        )
        # From here on nothing can change a setting (the sandbox included).
        self.con.execute("SET lock_configuration = true")

    def complete_digests(self, params: Any, names: Sequence[str]) -> dict[str, Any] | None:
        """``params`` with each of ``names`` completed: a digest prefix to the one dataset or
        artifact digest the views record that starts with it (inputs.resolve_digest)."""

        def known(prefix: str) -> list[str]:
            return [r[0] for r in self.con.execute(_DIGESTS, {"p": prefix}).fetchall()]

        out = dict(params or {})
        for k in set(names) & set(out):
            out[k] = resolve_digest(out[k], known) or out[k]
        return out or None

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> pa.Table:
        return self.con.sql(sql, params=dict(params) if params else None).to_arrow_table()

    def close(self) -> None:
        self.con.close()


_DIGESTS = """SELECT d FROM (SELECT digest FROM datasets UNION SELECT artifact_digest
FROM registrations) AS t(d) WHERE starts_with(d, $p)"""


def _short(exc: BaseException) -> str:
    """DuckDB errors span lines (a caret under the SQL); keep the first."""
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def run(
    store: Store,
    sql: str,
    params: Mapping[str, Any] | None = None,
    as_of: int | str | None = None,
    at_seq: int | None = None,
    what: str = "query",
    digests: Sequence[str] = (),
) -> tuple[pa.Table, Cutoff]:
    """Run ``sql`` against the views; retries if a compaction swaps segments meanwhile.
    The ``digests`` parameters are completed first (:meth:`Session.complete_digests`)."""
    for attempt in range(5):
        with store.reading():
            try:
                session = Session(store, as_of, at_seq)
            except duckdb.IOException as exc:  # (the as-of cutoff reads the segments)
                if attempt < 4:
                    continue
                raise CorruptLedgerError(f"cannot read the segments: {_short(exc)}") from None
            try:
                return session.run(sql, session.complete_digests(params, digests)), session.cutoff
            except duckdb.IOException as exc:
                # A segment vanished under us (compaction): list again and retry.
                if attempt < 4 and [s.path for s in store.segments()] != [
                    s.path for s in session.segments
                ]:
                    continue
                raise CorruptLedgerError(f"cannot read the segments: {_short(exc)}") from None
            except (duckdb.PermissionException, duckdb.InvalidInputException) as exc:
                if "disabled" in str(exc) or "locked" in str(exc):
                    raise InputError(
                        f"{what} refused: it may read the ledger's views and nothing else"
                        f" ({_short(exc)})"
                    ) from None
                raise InputError(f"{what} failed: {_short(exc)}") from None
            except duckdb.Error as exc:
                raise InputError(f"{what} failed: {_short(exc)}") from None
            finally:
                session.close()
    raise CorruptLedgerError("segments kept changing while reading")  # pragma: no cover


def adhoc_check(sql: str) -> str:
    """``sql`` checked to be exactly one SELECT statement (no writes, no COPY), without
    its trailing ``;``."""
    try:
        statements = duckdb.connect(":memory:").extract_statements(sql)
    except duckdb.Error as exc:
        raise InputError(f"bad SQL: {_short(exc)}") from None
    if len(statements) != 1:
        raise InputError(f"give exactly one SQL statement, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        kind = statements[0].type.name
        raise InputError(f"only SELECT statements are allowed (got {kind})")
    return sql.strip().rstrip(";")


def adhoc(
    store: Store, sql: str, as_of: int | str | None = None, at_seq: int | None = None
) -> tuple[pa.Table, Cutoff]:
    """Run one ad-hoc SELECT against the views (no writes, no COPY, one statement)."""
    return run(store, adhoc_check(sql), None, as_of, at_seq, what="SQL")


def named(
    store: Store,
    name: str,
    params: Mapping[str, Any] | None = None,
    as_of: int | str | None = None,
    at_seq: int | None = None,
    folder: Path = QUERIES_DIR,
) -> tuple[pa.Table, Cutoff]:
    """Run the named audit query ``name`` with ``params``."""
    q = get_query(name, folder)
    return run(store, q.sql, q.bind(params), as_of, at_seq, f"query {name}", q.digests)


STATUS_MODELS = """
WITH reg AS (
    SELECT model, count(*) AS versions, max(version) AS latest
    FROM events WHERE action = 'register' AND ($model IS NULL OR model = $model)
    GROUP BY model),
fate AS (
    SELECT e.model, bool_or(e.action = 'deprecate') AS deprecated,
           bool_or(e.action = 'reject') AS rejected, bool_or(e.action = 'approve') AS approved
    FROM events e JOIN reg ON e.model = reg.model AND e.version = reg.latest
    WHERE e.action IN ('approve', 'reject', 'deprecate')
    GROUP BY e.model),
lv AS (
    SELECT model, string_agg(env || '=' || version, ' ' ORDER BY env) AS live
    FROM current_deployments WHERE action = 'deploy' GROUP BY model)
SELECT reg.model, reg.versions, reg.latest,
       CASE WHEN fate.deprecated THEN 'deprecated' WHEN fate.rejected THEN 'rejected'
            WHEN fate.approved THEN 'approved' ELSE 'registered' END AS latest_status,
       coalesce(lv.live, '') AS live
FROM reg LEFT JOIN fate USING (model) LEFT JOIN lv USING (model)
ORDER BY reg.model
"""

STATUS_VERSIONS = """
SELECT version, status, approved_for, live_in, aliases, registered_by, registered_at,
       artifact_digest
FROM model_versions WHERE model = $model
ORDER BY version
"""

STATUS_ENV = """
SELECT model, version, env, since, deployed_by, approved_by, rollback
FROM live WHERE env = $env AND ($model IS NULL OR model = $model)
ORDER BY model
"""

HISTORY = """
SELECT seq, ts, action, version, env, actor, key_id, comment
FROM events WHERE model = $model AND ($version IS NULL OR version = $version)
ORDER BY seq
"""


def status(
    store: Store,
    model: str | None = None,
    env: str | None = None,
    as_of: int | str | None = None,
    at_seq: int | None = None,
) -> tuple[pa.Table, Cutoff]:
    """The current-state table (see ``Ledger.status``)."""
    if model is not None:
        E.check_model_name(model)
    if env is not None:
        E.check_env(env)
        return run(store, STATUS_ENV, {"env": env, "model": model}, as_of, at_seq)
    if model is not None:
        return run(store, STATUS_VERSIONS, {"model": model}, as_of, at_seq)
    return run(store, STATUS_MODELS, {"model": None}, as_of, at_seq)


def history(
    store: Store,
    model: str,
    version: int | None = None,
    as_of: int | str | None = None,
    at_seq: int | None = None,
) -> tuple[pa.Table, Cutoff]:
    """Every event of ``model`` (or of one version), in order."""
    E.check_model_name(model)
    return run(store, HISTORY, {"model": model, "version": version}, as_of, at_seq)
