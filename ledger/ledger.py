"""The Ledger facade: every operation the CLI offers, as one method each."""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa

from . import actions, readgate, reads
from . import events as E
from .errors import InputError, NotFoundError
from .gcpause import collector_paused
from .governance import GovernanceMethods
from .keys import SigningKey, VerifierKey
from .opened import Opened, state_of
from .readgate import checked as _checked
from .readgate import reading as _reading
from .registry import RegistryMethods
from .state import KeyRecord, State
from .statequeries import ENGINES as ENGINES
from .statequeries import StateQueries
from .store import COLUMNS, Store
from .verify import Problem, VerifyReport
from .writer import Receipt, Writer, _Columns

_T = TypeVar("_T")


class Ledger(StateQueries, RegistryMethods, GovernanceMethods, Opened):
    """A ledger folder. Create one with ``Ledger.init``, open one with ``Ledger.open``.

    Reads warn (``ledger.errors.UnverifiedWarning``) when they answer from events that
    ``verify`` has not accepted on this machine; with ``require_verified`` they raise
    ``ledger.errors.UnverifiedError`` instead (see docs/guarantees.md, "Reads over
    verified data")."""

    def __init__(
        self, store: Store, identity: dict[str, Any], *, require_verified: bool = False
    ) -> None:
        super().__init__(store, identity)
        #: Reads raise UnverifiedError instead of warning.
        self.require_verified = require_verified
        self._writer = Writer(store, identity["origin"])
        self._points = reads.PointReads(store)
        self._reads = threading.local()

    # --- lifecycle of the folder -----------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        require_verified: bool | None = None,
        journal: bool = False,
    ) -> Ledger:
        """Open the ledger folder ``path``. ``require_verified`` (default:
        ``$LEDGER_REQUIRE_VERIFIED``) makes reads of events that ``verify`` has not
        accepted raise ``UnverifiedError`` instead of warning. ``journal`` makes small
        appends durable in the journal (docs/FORMAT.md §5.4: one record and one fsync,
        moved into a segment every 256 events): for a process that appends a few events
        at a time for long, such as the MLflow store."""
        from .verified import require_from_env

        if require_verified is None:
            require_verified = require_from_env()
        store = Store(path, journal=journal)
        return cls(store, store.read_identity(), require_verified=require_verified)

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        key: SigningKey | Callable[[], SigningKey],
        actor: str,
        roles: Sequence[str] | str = (E.ADMIN,),
        origin: str | None = None,
        ts: int | None = None,
    ) -> Ledger:
        """Create a ledger whose genesis event registers ``key`` for ``actor``: a key, or a
        function making one, called once the folder is known to be free (so that no key
        file is made for a folder init refuses). ``ts`` (µs since the epoch) lets an
        importer start the ledger at a historical time."""
        store = Store(path)
        store.check_new()
        key = key if isinstance(key, SigningKey) else key()
        origin = origin or f"ledger.local/{uuid.uuid4().hex}"
        when = E.now_micros() if ts is None else ts
        ev = actions.genesis(key.public_key, key.key_id, actor, roles, origin, when)
        State().step(ev)
        cols = _Columns()
        h = cols.add(ev, key)
        identity = {"format": E.FORMAT, "origin": origin, "genesis_hash": h.hex()}
        store.create(identity, cols.table())
        return cls(store, identity)

    # --- appending -----------------------------------------------------------------------
    def append(self, draft: E.Draft, key: SigningKey) -> Receipt:
        """Sign and durably append one event; returns after fsync."""
        return self.append_many([draft], key)[0]

    def append_many(
        self, drafts: Iterable[E.Draft], key: SigningKey, *, enforce_policy: bool = True
    ) -> list[Receipt]:
        """Sign and append a batch atomically checked: if any draft breaks a rule, nothing
        is written. Register drafts without a version get the next one.
        ``enforce_policy=False`` is for importing history that happened elsewhere: the
        governance policy is not checked (``verify --policy`` still reports breaches).
        Safe to call from many threads: batches waiting together are committed in one
        segment (ledger/writer.py), each acknowledged once durable."""
        return self._writer.append_many(drafts, key, enforce_policy)

    def append_planned(
        self,
        models: set[str],
        plan: Callable[[State], Iterable[E.Draft]],
        key: SigningKey,
        before_write: Callable[[list[Receipt]], None],
        *,
        enforce_policy: bool = True,
    ) -> list[Receipt]:
        """Append the drafts ``plan(state)`` makes, under the writer lock, calling
        ``before_write(receipts)`` after they are checked and signed and before they are
        written (ledger/writer.py, Writer.append_planned): the hook by which another
        store commits its own transaction in step with the ledger."""
        return self._writer.append_planned(models, plan, key, before_write, enforce_policy)

    # --- model actions -------------------------------------------------------------------
    def register(
        self,
        model: str,
        *,
        key: SigningKey,
        artifact: str | os.PathLike[str] | dict[str, Any] | None = None,
        artifact_uri: str | None = None,
        datasets: Iterable[str | dict[str, Any]] = (),
        code: str | dict[str, Any] | None = None,
        parents: Iterable[str | dict[str, Any]] = (),
        metrics: Any = None,
        params: Any = None,
        tags: Any = None,
        metadata: dict[str, Any] | None = None,
        description: str | None = None,
        requirements: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
        conda: str | os.PathLike[str] | None = None,
        python: str | None = None,
    ) -> Receipt:
        """Register the next version of ``model``. ``artifact``: a local file or folder
        (digested here) or a ready ``{"digest": "sha256:…", …}`` object; ``requirements``
        files, a ``conda`` file and a ``python`` version declare where it runs."""
        draft = actions.register(
            model,
            artifact=artifact,
            artifact_uri=artifact_uri,
            datasets=datasets,
            code=code,
            parents=parents,
            metrics=metrics,
            params=params,
            tags=tags,
            metadata=metadata,
            description=description,
            requirements=requirements,
            conda=conda,
            python=python,
        )
        return self.append(draft, key)

    def _model_action(
        self, action: str, model: str, version: int | str, key: SigningKey, **fields: Any
    ) -> Receipt:
        return self.append(actions.model_action(action, model, version, **fields), key)

    def approve(
        self,
        model: str,
        version: int | str,
        env: str,
        *,
        key: SigningKey,
        comment: str | None = None,
    ) -> Receipt:
        """Record that the key's actor approves ``model:version`` for ``env`` (or for the
        alias ``env``: policy governs an alias as an environment). ``version`` is an int,
        or ``"@alias"`` for the version that alias names when the event is written."""
        return self._model_action(E.APPROVE, model, version, key, env=env, comment=comment)

    def deploy(
        self,
        model: str,
        version: int | str,
        env: str,
        *,
        key: SigningKey,
        comment: str | None = None,
    ) -> Receipt:
        """Make ``model:version`` the live version in ``env`` (replacing any other)."""
        return self._model_action(E.DEPLOY, model, version, key, env=env, comment=comment)

    def undeploy(
        self,
        model: str,
        version: int | str,
        env: str,
        *,
        key: SigningKey,
        comment: str | None = None,
    ) -> Receipt:
        """Take ``model:version`` out of ``env``, where it must be live."""
        return self._model_action(E.UNDEPLOY, model, version, key, env=env, comment=comment)

    # --- keys ------------------------------------------------------------------------------
    def add_key(
        self, public_key: bytes, actor: str, roles: Sequence[str] | str, *, key: SigningKey
    ) -> Receipt:
        """Register ``public_key`` for ``actor`` with ``roles``; signed by an admin key."""
        return self.append(actions.key_add(public_key, actor, roles), key)

    def revoke_key(self, kid: str, *, key: SigningKey, reason: str | None = None) -> Receipt:
        """Revoke key ``kid`` from this event on; signed by an admin key."""
        return self.append(actions.key_revoke(kid, reason), key)

    @_checked
    def keys(self) -> list[KeyRecord]:
        """Every key ever registered, in the order added."""
        return sorted(self.state(models=set()).keys.values(), key=lambda k: k.added_seq)

    # --- reading ---------------------------------------------------------------------------
    @_checked
    def events(
        self,
        model: str | None = None,
        columns: Sequence[str] | None = None,
        last: int | None = None,
    ) -> pa.Table:
        """All events (or one model's) as an Arrow table in seq order; with ``last``,
        only the last ``last`` of them (reading the newest segments only)."""
        if last is not None and last < 1:
            raise InputError(f"the number of events to show must be at least 1, got {last}")
        return self.store.read(columns or COLUMNS, model=model, last=last)

    @_checked
    def state(self, models: set[str] | None = None, at_seq: int | None = None) -> State:
        """Replay the typed columns into a State. ``models`` limits the replay to those
        models' events (plus every key event), which is all a write needs."""
        return state_of(self, models, at_seq)

    # --- verification and maintenance -------------------------------------------------------
    @_reading
    def verify(
        self,
        progress: Callable[[int, int], None] | None = None,
        *,
        jobs: int | None = None,
        trusted: str | os.PathLike[str] | None = None,
        since: str | os.PathLike[str] | None = None,
        trusted_keys: Sequence[bytes | VerifierKey] = (),
        engine: str = "local",
        scheduler: str | None = None,
    ) -> VerifyReport:
        """Check every segment, event, hash, signature, key and rule, the Merkle tree and
        the stored checkpoints; stop at the first problem (see ledger/scan.py).

        ``jobs`` worker processes check signatures (default: every core). With
        ``engine="dask"`` the signature and hash work runs on a Dask cluster instead
        (ledger/scandask.py; same verdicts): the one at ``scheduler``
        (``tcp://HOST:PORT``; its workers must see this ledger at the same path), or a
        LocalCluster of ``jobs`` worker processes started for the call. ``trusted`` is
        a checkpoint file kept from earlier: the ledger must extend it (else a
        ``truncated`` or ``forked`` verdict). ``since`` is a trusted checkpoint file
        after which alone events are checked, plus the consistency proof.
        ``progress(done, total)`` is called after each segment.

        An OK verdict is recorded outside the ledger folder, so that later reads can
        tell the segments it accepted (ledger/verified.py); a FAIL replaces the record."""
        from . import scan

        if trusted is not None and since is not None:
            raise InputError("give --trusted or --since, not both")
        pools: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if engine != "local" or scheduler is not None:
            from . import scandask

            scandask.check_choice(engine, scheduler, jobs)
            pools = scandask.dask_pool(scheduler, jobs or scan.default_jobs())
        from . import verified

        before = verified.listing(self.store)
        since_cp = self.open_checkpoint(since, trusted_keys) if since is not None else None
        cp = self.open_checkpoint(trusted, trusted_keys) if trusted is not None else None
        with pools as pool:
            if since_cp is not None:
                report = scan.verify_since(self, since_cp, progress, jobs, pool)
            else:
                report = scan.verify_full(self, progress, jobs, cp, pool)
        verified.accept(self, report, before)
        return report

    @_reading
    def unverified(self) -> str | None:
        """What a read would warn about now (one line), or None when every live segment
        is one ``verify`` accepted on this machine, or verifies on the fly now (which
        extends the record). Never raises for unverified data."""
        from . import verified

        return verified.check(self)

    def _unchecked(self) -> contextlib.AbstractContextManager[None]:
        """Reads made by a write (the state a break-glass grant needs) are not checked."""
        return readgate.unchecked(self)

    def compact(self) -> tuple[int, int]:
        """Merge small segments; returns (segments before, after). Event bytes unchanged."""
        with self.store.lock():
            return self.store.compact()

    # --- Merkle tree, checkpoints, proofs, evidence (issue 3) -------------------------------
    def checkpoint(self, key: SigningKey) -> Any:
        """Verify what is new since the last checkpoint, then sign (with a key holding
        ``checkpointer``) and store a checkpoint of the whole tree. See ledger/issue.py."""
        from .issue import issue

        return issue(self, key)

    @_checked
    def checkpoints(self) -> list[Any]:
        """Every stored checkpoint that verifies, smallest tree first."""
        from . import checkpoints

        return checkpoints.stored(self)

    def open_checkpoint(
        self, path: str | os.PathLike[str], trusted_keys: Sequence[bytes | VerifierKey] = ()
    ) -> Any:
        """Read and verify a checkpoint file of this ledger (signed by one of its
        checkpointer keys, or by one of ``trusted_keys``: raw public keys or
        :class:`~ledger.keys.VerifierKey`, e.g. from C2SP verifier keys)."""
        from . import checkpoints

        return checkpoints.open_file(self, path, trusted_keys)

    @_checked
    def prove(
        self,
        seq: int,
        checkpoint: str | os.PathLike[str] | None = None,
        trusted_keys: Sequence[bytes | VerifierKey] = (),
    ) -> dict[str, Any]:
        """Inclusion proof of event ``seq`` against a checkpoint file (default: the
        latest stored checkpoint), as a JSON-ready dict."""
        from . import checkpoints as C

        cp = (
            self.open_checkpoint(checkpoint, trusted_keys)
            if checkpoint is not None
            else C.latest(self)
        )
        return C.inclusion(self, seq, cp)

    @_checked
    def prove_consistency(
        self,
        old: str | os.PathLike[str],
        new: str | os.PathLike[str],
        trusted_keys: Sequence[bytes | VerifierKey] = (),
    ) -> dict[str, Any]:
        """Consistency proof between two checkpoint files of this ledger (each signed by
        one of its checkpointer keys, or by one of ``trusted_keys``)."""
        from . import checkpoints as C

        return C.consistency(
            self, self.open_checkpoint(old, trusted_keys), self.open_checkpoint(new, trusted_keys)
        )

    def conflict_evidence(
        self, report: VerifyReport, trusted: str | os.PathLike[str] | None, out_dir: str
    ) -> list[Path]:
        """After a rollback or fork verdict against ``trusted``, write both conflicting
        checkpoints into ``out_dir``; returns the files written (none otherwise)."""
        from . import checkpoints

        return checkpoints.conflict_evidence(self, report, trusted, out_dir)

    @_checked
    def evidence(
        self, model: str, version: int, checkpoint: str | os.PathLike[str] | None = None
    ) -> dict[str, Any]:
        """An offline evidence bundle for ``model:version`` (see ledger/evidence.py)."""
        from . import evidence

        return evidence.build(self, model, version, checkpoint)

    @_checked
    def deployment_evidence(
        self, model: str, env: str, checkpoint: str | os.PathLike[str] | None = None
    ) -> dict[str, Any]:
        """An offline evidence bundle for ``model``'s whole deployment history in ``env``
        (what was live there at any instant up to the checkpoint; ledger/evidence.py)."""
        from . import evidence

        return evidence.build_deployments(self, model, env, checkpoint)

    # --- lineage graph (issue 5) -------------------------------------------------------------
    @_checked
    def lineage_graph(self, as_of: int | str | None = None, at_seq: int | None = None) -> Any:
        """The lineage graph (a networkx MultiDiGraph, see ``ledger.lineage``) as the
        ledger stood at ``as_of`` (µs since the epoch or text) / ``at_seq``, or now."""
        from . import lineage

        table = lineage.select(self.events(columns=lineage.COLUMNS), as_of, at_seq)
        return lineage.from_table(table)

    @_checked
    def family_graph(
        self,
        ref: str | None = None,
        direction: str = "up",
        *,
        dataset: str | None = None,
        commit: str | None = None,
        as_of: int | str | None = None,
        at_seq: int | None = None,
        networkx: bool = True,
    ) -> Any:
        """The part of the lineage graph one question reaches, built from that family's
        events alone (found in the event index, see ledger/family.py): around
        ``MODEL:VERSION`` ``ref`` (its ancestors with ``up``, descendants with ``down``),
        or downstream of a ``dataset`` or ``commit``. On the nodes that question reaches
        (``up``/``down``/``impact`` and ``context``), it is :meth:`lineage_graph`.
        ``networkx=False`` returns a ``ledger.lineage.Adjacency`` instead (no networkx
        import), which the tree and impact questions take as well."""
        from . import lineage

        if direction not in ("up", "down"):
            raise InputError("direction must be up or down")
        from . import family as F

        rows = F.question_rows(
            self._family(as_of, at_seq), ref, direction, dataset=dataset, commit=commit
        )
        with collector_paused():
            return lineage.build(rows, graph=None if networkx else lineage.Adjacency())

    def _family(self, as_of: int | str | None, at_seq: int | None) -> Any:
        return reads.family_at(self.store, as_of, at_seq)

    @_checked
    def lineage(
        self,
        ref: str,
        direction: str = "up",
        depth: int | None = None,
        as_of: int | str | None = None,
        at_seq: int | None = None,
    ) -> Any:
        """The subgraph of ``MODEL:VERSION``'s ancestors (``up``) or descendants
        (``down``) within ``depth`` hops, with their actors and environments."""
        from . import lineage

        g = self.family_graph(ref, direction, as_of=as_of, at_seq=at_seq)
        node = lineage.version_node(g, ref)
        walk = lineage.up if direction == "up" else lineage.down
        return lineage.context(g, walk(g, node, depth))

    @_checked
    def impact(
        self,
        *,
        dataset: str | None = None,
        model: str | None = None,
        commit: str | None = None,
        as_of: int | str | None = None,
        at_seq: int | None = None,
    ) -> Any:
        """Every version downstream of a dataset (URI or digest), a ``MODEL:VERSION`` or
        a commit, and their live deployments (``ledger.lineage.Impact``)."""
        from . import family as F

        return F.impact(self._family(as_of, at_seq), dataset=dataset, model=model, commit=commit)

    # --- the audit report (issue 17) ----------------------------------------------------------
    @_checked
    def report(
        self,
        ref: str | None = None,
        *,
        env: str | None = None,
        as_of: int | str | None = None,
        at_seq: int | None = None,
        out: str | os.PathLike[str] | None = None,
    ) -> str:
        """A self-contained HTML audit report (ledger/report.py) of ``MODEL:VERSION`` ``ref``,
        or of every version live in ``env`` at ``as_of``/``at_seq``; written to ``out`` too."""
        from . import report

        return report.make(self, ref, env=env, as_of=as_of, at_seq=at_seq, out=out)


__all__ = ["Ledger", "NotFoundError", "Problem", "Receipt"]
