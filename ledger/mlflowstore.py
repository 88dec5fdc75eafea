"""An MLflow model registry store that records every registry write as signed ledger
events (docs/mlflow.md). Installed by ``pip install 'ledger[mlflow]'``, which registers it
for the URI schemes ``ledger+sqlite``, ``ledger+postgresql`` and ``ledger+mysql``::

    mlflow server --registry-store-uri 'ledger+sqlite:///mlflow.db?ledger=/srv/ledger&key=/srv/server.pem'
    MlflowClient(registry_uri="ledger+sqlite:///mlflow.db")   # LEDGER_PATH, LEDGER_KEY

It is MLflow's own SQLAlchemy registry store; reads are untouched. Each write runs
MLflow's code in its database transaction, then, before that transaction commits:

1. under the ledger's writer lock, the touched model is read back from the transaction
   and compared with the ledger's state (ledger/mlflowmap.py); the differences must be
   what the call does (anything else is drift, refused until ``ledger import mlflow``
   records it); their events are checked against the ledger's rules and policy and
   signed, or the write is refused with the ledger's message and rolled back;
2. the MLflow transaction commits together with an outbox row naming the model and the
   hash of the write's last event;
3. the events are appended (durable before the call returns); the row is deleted in the
   store's next write transaction (a row whose hash is in the ledger is complete).

A crash after 2 and before 3 leaves an outbox row: the store, when it next starts (and
``ledger mlflow diff``, which lists such rows), brings that model's ledger state to
MLflow's, so that MLflow and the ledger agree. The ledger never holds an event whose
MLflow change was rolled back.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import socket
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2 as codes
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

from . import events as E
from . import mlflowmap as M
from .errors import InputError, KeyProblem, LedgerError, NotFoundError, RuleViolation
from .keys import SigningKey, load_signing_key
from .ledger import Ledger
from .mlflowread import model_from_session, newest_source
from .state import State

PREFIX = "ledger+"
OUTBOX = "ledger_mlflow_outbox"
APPROVE_TAG = M.APPROVE_PREFIX
_meta = sa.MetaData()
outbox = sa.Table(
    OUTBOX,
    _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("call", sa.Text, nullable=False),  # JSON: the Call, to redo its checks
    sa.Column("created", sa.BigInteger, nullable=False),
    # The hash of the write's last event: in the ledger once the write is complete.
    sa.Column("hash", sa.String(64), nullable=False),
)
# (built once: SQLAlchemy finds each one's compiled form by its cached key)
_OUTBOX_ALL = sa.select(outbox.c.id, outbox.c.name, outbox.c.call)
_OUTBOX_OF = sa.select(outbox.c.id).where(outbox.c.name == sa.bindparam("name"))
_OUTBOX_ADD = outbox.insert()
_OUTBOX_DONE = outbox.delete().where(outbox.c.id.in_(sa.bindparam("ids", expanding=True)))


# --- configuration ----------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """What a ``ledger+…`` URI names: MLflow's database and the ledger's side."""

    db_uri: str
    ledger: str
    key: str
    users: str | None = None


def parse_store_uri(uri: str, env: dict[str, str] | None = None) -> Config:
    """``ledger+DIALECT://…?ledger=FOLDER&key=FILE&users=FILE`` → Config; the ledger
    parameters default to ``$LEDGER_PATH``, ``$LEDGER_KEY`` and ``$LEDGER_MLFLOW_USERS``
    and are taken out of the URI MLflow's database sees (any others stay)."""
    env = dict(os.environ) if env is None else env
    if not uri.startswith(PREFIX):
        raise InputError(f"registry store URI {uri!r} does not start with {PREFIX!r}")
    # (by hand: urllib would turn sqlite:////abs/path into sqlite://abs/path)
    base, _, query = uri[len(PREFIX) :].partition("?")
    params = parse_qsl(query, keep_blank_values=True)
    own = {k: v for k, v in params if k in ("ledger", "key", "users")}
    rest = [(k, v) for k, v in params if k not in own]
    db_uri = base + (f"?{urlencode(rest)}" if rest else "")
    ledger = own.get("ledger") or env.get("LEDGER_PATH")
    key = own.get("key") or env.get("LEDGER_KEY")
    if not ledger:
        raise InputError(f"registry store URI {uri!r}: no ledger folder (?ledger= or $LEDGER_PATH)")
    if not key:
        raise InputError(f"registry store URI {uri!r}: no signing key (?key= or $LEDGER_KEY)")
    return Config(db_uri, ledger, key, own.get("users") or env.get("LEDGER_MLFLOW_USERS"))


def load_key(path: str) -> SigningKey:
    """A key file, decrypted with ``$LEDGER_PASSPHRASE`` if it is encrypted (a server
    has no terminal to ask)."""
    return load_signing_key(path, os.environ.get("LEDGER_PASSPHRASE"))


def load_users(path: str) -> dict[str, str]:
    """The users file: MLflow user name → the key file that signs their writes::

    [users]
    alice = "/srv/keys/alice.pem"
    """
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"users file {path}: {exc}") from None
    users = doc.get("users")
    if not isinstance(users, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in users.items()
    ):
        raise InputError(f'users file {path}: expected a [users] table of name = "key file"')
    base = Path(path).parent
    return {name: str(base / file) for name, file in users.items()}


# --- what a call may change --------------------------------------------------------------
@dataclass
class Call:
    """One MLflow registry write: its name, model, arguments, and who made it."""

    method: str
    model: str
    version: int | None = None
    key: str | None = None  # the tag key, or the alias
    archive: bool = False
    user: str | None = None  # the MLflow user whose key signs, if mapped
    comment: str = ""
    via: dict[str, Any] = field(default_factory=dict)

    def covers(self, d: M.Difference, before: int) -> bool:
        """Whether difference ``d`` is one this call makes (``before``: the ledger's
        highest version of the model when the call began)."""
        what, v = d.what, d.version
        if self.method == "delete_registered_model":
            return True
        if self.method == "create_registered_model":
            return v is None
        if self.method == "update_registered_model":
            return v is None and what == "description"
        if self.method in ("set_registered_model_tag", "delete_registered_model_tag"):
            return v is None and what == f"tag {self.key}"
        if self.method == "create_model_version":
            return v is not None and v > before
        if self.method == "update_model_version":
            return v == self.version and what == "description"
        if self.method in ("set_model_version_tag", "delete_model_version_tag"):
            return v == self.version and what == f"tag {self.key}"
        if self.method == "transition_model_version_stage":
            return what.startswith("live in ") or (
                what == "stage" and (self.archive or v == self.version)
            )
        if self.method == "delete_model_version":
            return v == self.version or what.startswith(("live in ", "alias "))
        if self.method in ("set_registered_model_alias", "delete_registered_model_alias"):
            return what == f"alias {self.key}"
        return False

    def document(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_document(cls, text: str) -> Call:
        return cls(**json.loads(text))


#: The writes that change versions or aliases only (the model exists, its own tags and
#: description stay), and those of them that move aliases.
_VERSION_WRITES = frozenset({
    "create_model_version", "update_model_version", "transition_model_version_stage",
    "delete_model_version", "set_model_version_tag", "delete_model_version_tag",
    "set_registered_model_alias", "delete_registered_model_alias",
})  # fmt: skip
_ALIAS_WRITES = frozenset(
    {"delete_model_version", "set_registered_model_alias", "delete_registered_model_alias"}
)


def _refusal(exc: LedgerError) -> MlflowException:
    """The ledger's error as MLflow reports it to its caller (and as an HTTP status)."""
    code = {
        RuleViolation: codes.PERMISSION_DENIED,
        KeyProblem: codes.PERMISSION_DENIED,
        InputError: codes.INVALID_PARAMETER_VALUE,
        NotFoundError: codes.RESOURCE_DOES_NOT_EXIST,
    }.get(type(exc), codes.INTERNAL_ERROR)
    return MlflowException(str(exc), error_code=code)


class LedgerRegistryStore(SqlAlchemyStore):
    """MLflow's SQLAlchemy registry store, each write also a signed ledger event."""

    def __init__(self, store_uri: str, tracking_uri: str | None = None) -> None:
        try:
            self.config = parse_store_uri(store_uri)
            self.ledger = Ledger.open(self.config.ledger, journal=True)
            self.server_key = load_key(self.config.key)
            self.users = load_users(self.config.users) if self.config.users else {}
            self._user_keys: dict[str, SigningKey] = {}
        except LedgerError as exc:
            raise _refusal(exc) from None
        self.tracking_uri = tracking_uri
        self._local = threading.local()
        #: outbox rows of this store's complete writes, deleted with its next write
        self._done: set[int] = set()
        self._done_lock = threading.Lock()
        super().__init__(self.config.db_uri)
        _meta.create_all(self.engine, checkfirst=True)
        inner = self.ManagedSessionMaker
        self.ManagedSessionMaker = self._recording(inner)
        self.recover()

    # --- the write methods: each names what it may change ------------------------------
    def create_registered_model(self, name: Any, tags: Any = None, description: Any = None,
                                deployment_job_id: Any = None) -> Any:  # fmt: skip
        with self._call("create_registered_model", name):
            return super().create_registered_model(name, tags, description, deployment_job_id)

    def update_registered_model(self, name: Any, description: Any, deployment_job_id: Any = None) -> Any:  # fmt: skip
        with self._call("update_registered_model", name):
            return super().update_registered_model(name, description, deployment_job_id)

    def rename_registered_model(self, name: Any, new_name: Any) -> Any:
        raise MlflowException(
            f"registered model {name} cannot be renamed: the ledger keeps every event under"
            f" the name it was made with; register the versions under {new_name} instead",
            error_code=codes.INVALID_PARAMETER_VALUE,
        )

    def delete_registered_model(self, name: Any) -> Any:
        with self._call("delete_registered_model", name):
            return super().delete_registered_model(name)

    def set_registered_model_tag(self, name: Any, tag: Any) -> Any:
        with self._call("set_registered_model_tag", name, key=tag.key):
            return super().set_registered_model_tag(name, tag)

    def delete_registered_model_tag(self, name: Any, key: Any) -> Any:
        with self._call("delete_registered_model_tag", name, key=key):
            return super().delete_registered_model_tag(name, key)

    def create_model_version(self, name: Any, source: Any, run_id: Any = None, tags: Any = None,
                             run_link: Any = None, description: Any = None,
                             local_model_path: Any = None, model_id: Any = None) -> Any:  # fmt: skip
        with self._call("create_model_version", name):
            return super().create_model_version(
                name, source, run_id, tags, run_link, description, local_model_path, model_id
            )

    def update_model_version(self, name: Any, version: Any, description: Any = None) -> Any:
        with self._call("update_model_version", name, version):
            return super().update_model_version(name, version, description)

    def transition_model_version_stage(self, name: Any, version: Any, stage: Any,
                                       archive_existing_versions: Any) -> Any:  # fmt: skip
        with self._call("transition_model_version_stage", name, version,
                        archive=bool(archive_existing_versions)):  # fmt: skip
            return super().transition_model_version_stage(
                name, version, stage, archive_existing_versions
            )

    def delete_model_version(self, name: Any, version: Any) -> Any:
        with self._call("delete_model_version", name, version):
            return super().delete_model_version(name, version)

    def set_model_version_tag(self, name: Any, version: Any, tag: Any) -> Any:
        with self._call("set_model_version_tag", name, version, key=tag.key):
            return super().set_model_version_tag(name, version, tag)

    def delete_model_version_tag(self, name: Any, version: Any, key: Any) -> Any:
        with self._call("delete_model_version_tag", name, version, key=key):
            return super().delete_model_version_tag(name, version, key)

    def set_registered_model_alias(self, name: Any, alias: Any, version: Any) -> Any:
        with self._call("set_registered_model_alias", name, version, key=alias):
            return super().set_registered_model_alias(name, alias, version)

    def delete_registered_model_alias(self, name: Any, alias: Any) -> Any:
        with self._call("delete_registered_model_alias", name, key=alias):
            return super().delete_registered_model_alias(name, alias)

    # --- the hook in MLflow's write session -----------------------------------------------
    @contextmanager
    def _call(self, method: str, name: Any, version: Any = None, key: Any = None,
              archive: bool = False) -> Iterator[None]:  # fmt: skip
        v = int(version) if version is not None and str(version).isdigit() else None
        call = Call(method, str(name), v, None if key is None else str(key), archive)
        self._who(call)
        if self._pending_of(call.model):
            # A crashed write of this model came first; recorded before MLflow's session
            # opens (it would hold the database lock recovery needs).
            self.recover()
        self._local.call = call
        try:
            yield
        finally:
            self._local.call = None

    def _recording(self, inner: Callable[..., Any]) -> Callable[..., Any]:
        @contextmanager
        def session_maker(read_only: bool = True) -> Iterator[Any]:
            call = None if read_only else getattr(self._local, "call", None)
            with inner(read_only=read_only) as session:
                yield session
                if call is not None:
                    self._local.call = None  # (once per call: MLflow opens one write session)
                    self._record(session, call)

        return session_maker

    def _record(self, session: Any, call: Call) -> None:
        """Bring the ledger to what ``session`` holds for the call's model, committing
        ``session`` between the ledger's decision and its durable write."""
        key = self._key_of(call)
        state_box: dict[str, int] = {}
        committed = []

        def plan(state: State) -> list[E.Draft]:
            return self.plan(session, call, state)

        def before_write(receipts: list[Any]) -> None:
            if receipts:
                # The rows of this store's complete writes go in this same transaction
                # (a transaction of their own would cost a commit per write).
                with self._done_lock:
                    done = sorted(self._done)
                conn = session.connection()  # (the session's transaction: flushed by plan)
                if done:
                    conn.execute(_OUTBOX_DONE, {"ids": done})
                row = conn.execute(_OUTBOX_ADD, {"name": call.model, "call": call.document(),
                                                 "created": E.now_micros(),
                                                 "hash": receipts[-1].hash})  # fmt: skip
                state_box["outbox"] = row.inserted_primary_key[0]
                session.commit()
                with self._done_lock:
                    self._done.difference_update(done)
            else:
                session.commit()
            committed.append(True)

        try:
            self.ledger.append_planned(self.models_of(session, call), plan, key, before_write)
        except LedgerError as exc:
            if not committed:
                raise _refusal(exc) from None
            raise MlflowException(
                f"the MLflow change to {call.model} is committed but its ledger events are"
                f" not yet written ({exc}); the store writes them when it next starts, and"
                " `ledger mlflow diff` lists the model until then",
                # (409, which MLflow's client does not retry: a retry would repeat the write)
                error_code=codes.ABORTED,
            ) from None
        if "outbox" in state_box:
            with self._done_lock:
                self._done.add(state_box["outbox"])

    def models_of(self, session: Any, call: Call) -> set[str]:
        """The models a call's events may name: its own and a new version's parent."""
        out = {call.model}
        if call.method == "create_model_version":
            newest = newest_source(session, call.model, self._get_active_workspace())
            parent = M.parent_source(newest)
            if parent is not None:
                out.add(parent[0])
        return out

    def plan(self, session: Any, call: Call, state: State) -> list[E.Draft]:
        """The drafts that bring the ledger to MLflow's state of the call's model, or
        a LedgerError if the ledger cannot or must not record it."""
        # The model's own parts first, without its versions (building every version's
        # view would cost a write time in proportion to the model's versions).
        led = M.ledger_models(state, [call.model], versions=()).get(call.model)
        before = led.latest if led is not None else 0
        # Only the versions the call may change and those it may move (mlflowmap.scope,
        # of the whole model): the whole model for a deletion.
        wanted = None
        if call.method != "delete_registered_model":
            wanted = M.scope(led, {}, [call.version] if call.version else [])
            wanted |= M.staged(state, call.model)
        # A version or alias write succeeded, so the model exists and its own tags and
        # description are as they were: they are the ledger's (and its aliases too
        # unless the call moves them). Drift in them is `ledger mlflow diff`'s to find.
        known = led if call.method in _VERSION_WRITES and led is not None else None
        ml = model_from_session(
            session, call.model, wanted, newer_than=before, known=known,
            aliases=call.method in _ALIAS_WRITES, workspace=self._get_active_workspace(),
        )  # fmt: skip
        if wanted is not None:
            wanted |= set(ml.versions) if ml is not None else set()
        led = M.ledger_models(state, [call.model], versions=wanted).get(call.model)
        diffs = M.differences(
            ml,
            led,
            run_facts=lambda mv: self.run_facts(mv, call.via),
            comment=call.comment,
            via=call.via,
            parent_of=lambda mv: M.parent_in(state, mv.source),
            versions=wanted,
        )
        bad = M.unmappable(diffs)
        if bad is not None:
            raise RuleViolation(f"{bad.where}: {bad.unmappable}")
        drift = [d for d in diffs if not call.covers(d, before)]
        if drift:
            d = drift[0]
            raise RuleViolation(
                f"{d.where}: {d.what} is {d.mlflow} in MLflow and {d.ledger} in the ledger,"
                f" which {call.method} did not do ({len(drift)} such difference(s)): MLflow's"
                " database was changed behind the ledger; record it with `ledger import"
                " mlflow` (`ledger mlflow diff` lists it)"
            )
        drafts = M.drafts_of(diffs)
        if call.method == "set_model_version_tag" and (call.key or "").startswith(APPROVE_TAG):
            env = (call.key or "")[len(APPROVE_TAG) :]
            note = {"comment": call.comment} if call.comment else {}
            drafts.insert(0, E.Draft(E.APPROVE, {"env": env, **note}, call.model, call.version))
        return drafts

    def run_facts(self, mv: M.MVersion, via: dict[str, Any]) -> M.RunFacts | None:
        """The source run's facts, or None (and ``via``, which goes into the version's
        register payload, says why not)."""
        if not mv.run_id:
            return None
        from mlflow.tracking import MlflowClient

        from .mlflowread import run_facts

        uri = self.tracking_uri or os.environ.get("_MLFLOW_SERVER_FILE_STORE")
        try:
            return run_facts(MlflowClient(tracking_uri=uri).get_run(mv.run_id))
        except Exception as exc:  # (any failure to read the run: the version still registers)
            via["run_unavailable"] = f"{type(exc).__name__}: {exc}"[:500]
            return None

    # --- who is writing ------------------------------------------------------------------
    def _who(self, call: Call) -> None:
        """The caller: MLflow's authenticated user (whose key signs, if the users file
        maps them), else the user the request claims and its address, else this process."""
        user = claimed = addr = None
        # (a request needs MLflow's server, which has imported flask; an in-process
        # client has not, and need not pay for the import)
        flask = sys.modules.get("flask")
        if flask is not None and flask.has_request_context():
            user = getattr(flask.g, "mlflow_authenticated_user", None)
            request = flask.request
            auth = request.authorization
            claimed = auth.username if auth is not None and user is None else None
            addr = request.remote_addr
        if user is not None:
            call.via = {"user": user, "authenticated": True, "remote_addr": addr}
            call.user = user if user in self.users else None
            if self.users and call.user is None:
                raise MlflowException(
                    f"MLflow user {user!r} has no ledger key in {self.config.users}",
                    error_code=codes.PERMISSION_DENIED,
                )
        elif addr is not None:
            call.via = {"user": claimed, "authenticated": False, "remote_addr": addr}
        else:
            user, host = _this_process()
            call.via = {"user": user, "authenticated": False, "host": host}
        who = ", ".join(f"{k}={v}" for k, v in call.via.items() if v is not None)
        call.comment = f"mlflow {call.method} ({who})"

    def _key_of(self, call: Call) -> SigningKey:
        if call.user is None:
            return self.server_key
        if call.user not in self._user_keys:
            try:
                self._user_keys[call.user] = load_key(self.users[call.user])
            except LedgerError as exc:
                raise _refusal(exc) from None
        return self._user_keys[call.user]

    # --- recovery ------------------------------------------------------------------------
    def pending(self) -> list[tuple[int, str, Call]]:
        """The outbox rows but those of this store's complete writes: writes committed
        in MLflow whose events may not be written."""
        with self.engine.connect() as conn:
            rows = conn.execute(_OUTBOX_ALL).all()
        with self._done_lock:
            done = set(self._done)
        return [(int(i), n, Call.from_document(c)) for i, n, c in rows if int(i) not in done]

    def _pending_of(self, name: str) -> bool:
        """Whether :meth:`pending` has a row of model ``name`` (read by name alone: one
        small query before each write)."""
        with self.engine.connect() as conn:
            ids = conn.execute(_OUTBOX_OF, {"name": name}).scalars().all()
        with self._done_lock:
            return any(int(i) not in self._done for i in ids)

    def recover(self) -> int:
        """Write the events of every write an outbox row names (a crash came between
        MLflow's commit and the ledger's append); returns how many events it wrote."""
        written = 0
        for row_id, name, call in self.pending():
            Session = sa.orm.sessionmaker(bind=self.engine)
            with Session() as session:
                call.comment = f"{call.comment}; recovered after a crash".lstrip("; ")
                key = self._key_of(call)

                def plan(state: State, c: Call = call, s: Any = session) -> list[E.Draft]:
                    return self.plan(s, c, state)

                try:
                    receipts = self.ledger.append_planned({name}, plan, key, lambda r: None)
                except LedgerError as exc:
                    raise _refusal(exc) from None
                written += len(receipts)
            with self.engine.begin() as conn:
                conn.execute(outbox.delete().where(outbox.c.id == row_id))
        return written


@functools.cache
def _this_process() -> tuple[str | None, str]:
    """The operating system's user and host name (read once: getuser reads the
    environment and the password database)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = None
    return user, socket.gethostname()
