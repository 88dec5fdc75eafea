"""The Arrow fast path: the lineage graph from an Arrow table of the ledger's columns
(:func:`from_table`, over :class:`_Columns`), one kind of event at a time and column-wise.

Its reference is the reference builder, :func:`ledger.lineage.build.build` (one event at
a time, :class:`ledger.lineage.build._Builder`): ``from_table`` returns the graph
``build`` makes from the same rows, insertion order included, and hands ``build`` any
table it cannot vouch for. The differential test that holds them together is the section
"the fast path (from_table) equals the reference (build), order included" of
tests/test_lineage.py (``assert_fast_path_equals_build``,
``test_from_table_identical_to_build_*``), which compares the two node for node, edge
for edge and in order, on generated ledgers, their cuts and odd payloads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .. import events as E
from ..compat import graph_dicts, indices_nonzero
from ..gcpause import collector_paused
from .build import _payload, build
from .fastcols import (
    _TS_RANGE,
    _array,
    _code_columns,
    _concat,
    _dataset_columns,
    _env_only,
    _hex32,
    _ints,
    _Irregular,
    _parent_columns,
    _register_payloads,
    _take,
    _ts_texts,
    _valid_actions,
    _version_ids,
)
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
    MODEL,
    REGISTERED_BY,
    REJECTED_BY,
    TRAINED_ON,
    _multidigraph,
    actor_id,
    env_id,
)

if TYPE_CHECKING:  # networkx is imported when a graph is built (0.25 s of start-up)
    import networkx as nx


def from_table(table: Any) -> nx.MultiDiGraph:
    """Build the lineage graph from an Arrow table holding :data:`COLUMNS` (the fast path).

    The result is identical to :func:`build` over the same rows: the same nodes, edges,
    keys and attribute dicts, inserted in the same order. The work is done per kind of
    event and column-wise (see :class:`_Columns`). A table the fast path cannot vouch for
    (a null where the write path allows none, a payload of another shape, a version
    registered twice ...) is built by :func:`build` itself: odd ledgers are slower,
    never different.
    """
    import pyarrow as pa

    with collector_paused():  # only acyclic dicts: collector passes would triple the time
        try:
            return _Columns(table).graph()
        except (_Irregular, pa.ArrowException):  # (Arrow: e.g. a column over 2 GiB)
            return build(_table_rows(table))


def _table_rows(table: Any) -> Iterable[dict[str, Any]]:
    for batch in table.select(COLUMNS).to_batches():
        yield from batch.to_pylist()


#: Node kinds in the order build adds them within one event (a register adds its version,
#: then its registrant, datasets and commit; a deploy its deployer, then the environment).
_NODE_ORDER = (MODEL, ACTOR, DATASET, COMMIT, ENV)


class _Columns:
    """The fast path of :func:`from_table`, one kind of event at a time.

    Ids, validity (an action counts only on a version registered before it),
    environments, statuses and deployment spans are computed column-wise in Arrow;
    register payloads go through Arrow's JSON reader with a fixed schema. Each kind's
    attribute dicts are made by one comprehension over zipped lists, sharing the ``seq``,
    ``ts`` and ``hash`` objects of an event between its node and its edges. Edges are
    kept as (row, version index, target kind, target index) columns beside their dicts.
    :meth:`_fill` then puts nodes and edges in build's order (a stable sort on the row,
    the kinds being concatenated in the order build adds them within one event) and
    makes every adjacency dict in one C-level ``dict(zip(...))`` instead of one Python
    insertion per edge.
    """

    def __init__(self, table: Any) -> None:
        self.table = table
        #: kind -> (rows, ids, attrs) of its nodes, in any order (sorted in _fill)
        self.node_parts: dict[str, tuple[Any, list[str], list[dict[str, Any]]]] = {}
        #: (rows, version index, target kind, target index, keys, attrs), one edge kind each
        self.edge_parts: list[tuple[Any, Any, str, Any, list[Any], list[dict[str, Any]]]] = []
        self.actor_index: dict[str, int] = {}  # actor name -> index among actor nodes
        self.actor_first: dict[str, int] = {}  # actor name -> row first naming it
        self.roles: dict[str, str] = {}  # actor name -> roles, from key events
        self.pool: Any = None  # threads for Arrow work that can run beside the Python work

    def graph(self) -> nx.MultiDiGraph:
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow as pa
        import pyarrow.compute as pc

        g = _multidigraph()
        t = self.table
        if t.num_rows == 0:
            return g
        self._check()
        action = t["action"]
        is_reg = pc.equal(action, E.REGISTER)
        is_act = pc.is_in(action, pa.array(sorted(E.MODEL_ACTIONS - {E.REGISTER})))
        cols = t.select(["action", "model", "version", "actor", "payload"])
        reg, act = cols.filter(is_reg), cols.filter(is_act)
        # Arrow releases the GIL: parse the payloads on other threads meanwhile
        with ThreadPoolExecutor(2) as pool:
            self.pool = pool
            parsed = pool.submit(_register_payloads, reg["payload"])
            envs = pool.submit(_env_only, act["payload"])
            ts = pool.submit(_ts_texts, t["ts"])
            reg = reg.combine_chunks()
            self.reg_rows = rows = indices_nonzero(is_reg)
            vid = pool.submit(_version_ids, reg)
            acts = pool.submit(_valid_actions, act, indices_nonzero(is_act), envs, vid, rows)
            self._rows(ts)
            self._keys(pc.is_in(action, pa.array([E.GENESIS, E.KEY_ADD])))
            self.vid_arr = vid.result()
            self._registers(reg, parsed.result())
            self._actions(*acts.result())
        self._versions()
        self._actors()
        self._fill(g)
        return g

    # -- checks and per-row lists ----------------------------------------------------------------

    def _check(self) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        t = self.table
        want = {
            "seq": pa.types.is_integer,
            "ts": lambda ty: ty == pa.timestamp("us", tz="UTC"),
            "action": pa.types.is_string,
            "model": pa.types.is_string,
            "version": pa.types.is_integer,
            "actor": pa.types.is_string,
            "payload": pa.types.is_string,
            "hash": lambda ty: ty == pa.binary(32),
        }
        for name, ok in want.items():
            if name not in t.column_names or not ok(t.schema.field(name).type):
                raise _Irregular(name)
        for name in ("seq", "ts", "action", "actor", "payload", "hash"):
            if t[name].null_count:
                raise _Irregular(name)
        lo, hi = pc.min_max(t["ts"].cast(pa.int64())).values()
        if lo.as_py() < _TS_RANGE[0] or hi.as_py() > _TS_RANGE[1]:
            raise _Irregular("ts")

    def _rows(self, ts: Any) -> None:
        """seq, ts text and hash text of every row, as Python lists whose objects every
        node and edge of the row shares."""
        t = self.table
        self.seq = t["seq"].to_pylist()
        self.hash = _hex32(t["hash"])
        self.ts = ts.result().to_pylist()

    def _sth(self, rows: list[int]) -> tuple[list[Any], list[str], list[str]]:
        return _take(self.seq, rows), _take(self.ts, rows), _take(self.hash, rows)

    def _actors_of(self, actors: Any, rows: Any) -> tuple[list[str], Any, Any]:
        """For a column of actor names: (distinct names, each row's index into them, each
        row's actor node index); notes the first of ``rows`` naming each actor."""
        import pyarrow.compute as pc

        enc = pc.dictionary_encode(actors)
        names = enc.dictionary.to_pylist()
        first = pc.take(rows, pc.index_in(enc.dictionary, value_set=actors)).to_pylist()
        index = []
        for name, r in zip(names, first, strict=True):
            if r < self.actor_first.get(name, r + 1):
                self.actor_first[name] = r
            index.append(self.actor_index.setdefault(name, len(self.actor_index)))
        return names, enc.indices, pc.take(_ints(index), enc.indices)

    def _edges(
        self, rows: Any, u: Any, kind: str, v: Any, keys: list[Any], ds: list[dict[str, Any]]
    ) -> None:
        self.edge_parts.append((rows, u, kind, v, keys, ds))

    # -- key events ------------------------------------------------------------------------------

    def _keys(self, is_key: Any) -> None:
        """Genesis and key_add: a handful, replayed one by one as _Builder.key_added."""
        import pyarrow.compute as pc

        from ..errors import CorruptLedgerError

        rows = indices_nonzero(is_key).to_pylist()
        texts = pc.filter(self.table["payload"], is_key).to_pylist()  # (a take would copy)
        for r, text in zip(rows, texts, strict=True):
            try:
                p = _payload(text, self.seq[r])
                name = p.get("actor")
                if not isinstance(name, str):
                    continue
                roles = sorted(set(self.roles.get(name, "").split(",") + list(p.get("roles", ()))))
                self.roles[name] = ",".join(x for x in roles if x)
            except (CorruptLedgerError, TypeError, AttributeError) as exc:
                raise _Irregular("key payload") from exc
            self.actor_first.setdefault(name, r)
            self.actor_index.setdefault(name, len(self.actor_index))

    # -- register --------------------------------------------------------------------------------

    def _registers(self, reg: Any, p: Any) -> None:
        import pyarrow.compute as pc

        vid, rows_arr = self.vid_arr, self.reg_rows
        parents = self.pool.submit(
            _parent_columns, p.column("parents").combine_chunks(), vid, rows_arr
        )
        datasets = self.pool.submit(_dataset_columns, p.column("datasets").combine_chunks())
        code = self.pool.submit(_code_columns, p.column("code").combine_chunks())
        rows = rows_arr.to_pylist()
        self.vids = vid.to_pylist()
        self.reg_sth = S, T, H = self._sth(rows)
        names, which, v = self._actors_of(reg["actor"].combine_chunks(), rows_arr)
        self.reg_actor = _take(names, which.to_pylist())
        self.reg_mv = reg["model"].to_pylist(), reg["version"].to_pylist()
        art = p.column("artifact").combine_chunks()
        self.reg_extra = [
            ("artifact_digest", pc.struct_field(art, [0]).to_pylist()),
            ("artifact_uri", pc.struct_field(art, [1]).to_pylist()),
            ("description", p.column("description").to_pylist()),
        ]
        by = [
            {"kind": REGISTERED_BY, "seq": s, "ts": t, "hash": h}
            for s, t, h in zip(S, T, H, strict=True)
        ]
        self._edges(rows_arr, _ints(range(len(rows))), ACTOR, v, S, by)
        self._parents(*parents.result())
        self._datasets(*datasets.result())
        self._code(*code.result())

    def _parents(self, rows: Any, k: Any, pk: Any, rel: Any) -> None:
        S, T, H = (_take(x, k.to_pylist()) for x in self.reg_sth)
        ds = [
            {"kind": DERIVED_FROM, "relation": r, "seq": s, "ts": t, "hash": h}
            for r, s, t, h in zip(rel.to_pylist(), S, T, H, strict=True)
        ]
        self._edges(rows, k, MODEL, pk, S, ds)

    def _datasets(self, k: Any, uri: Any, digest: Any, name: Any, did: Any, enc: Any) -> None:
        import pyarrow.compute as pc

        names = [x or None for x in name.to_pylist()]  # build tests `if name:`
        S, T, H = (_take(x, k.to_pylist()) for x in self.reg_sth)
        ds = [
            {"kind": TRAINED_ON, "seq": s, "ts": t, "hash": h, "name": nm}
            if nm
            else {"kind": TRAINED_ON, "seq": s, "ts": t, "hash": h}
            for nm, s, t, h in zip(names, S, T, H, strict=True)
        ]
        rows = pc.take(self.reg_rows, k)
        self._edges(rows, k, DATASET, enc.indices, S, ds)
        first = pc.index_in(enc.dictionary, value_set=did)
        uris, digests = uri.to_pylist(), digest.to_pylist()
        nodes = []
        for i in first.to_pylist():
            nm, dg = names[i], digests[i]
            d = {"kind": DATASET, "label": nm or uris[i], "uri": uris[i]}
            d["seq"], d["ts"], d["hash"] = S[i], T[i], H[i]
            if dg:
                d["digest"] = dg
            if nm:
                d["name"] = nm
            nodes.append(d)
        self.node_parts[DATASET] = (pc.take(rows, first), enc.dictionary.to_pylist(), nodes)

    def _code(self, k: Any, repo: Any, commit: Any, cid: Any, enc: Any) -> None:
        import pyarrow.compute as pc

        S, T, H = (_take(x, k.to_pylist()) for x in self.reg_sth)
        ds = [
            {"kind": BUILT_FROM, "seq": s, "ts": t, "hash": h}
            for s, t, h in zip(S, T, H, strict=True)
        ]
        rows = pc.take(self.reg_rows, k)
        self._edges(rows, k, COMMIT, enc.indices, S, ds)
        first = pc.index_in(enc.dictionary, value_set=cid)
        f = first.to_pylist()
        nodes = [
            {
                "kind": COMMIT,
                "label": f"{r}@{c[:12]}",
                "repo": r,
                "commit": c,
                "seq": S[i],
                "ts": T[i],
                "hash": H[i],
            }
            for r, c, i in zip(
                pc.take(repo, first).to_pylist(), pc.take(commit, first).to_pylist(), f, strict=True
            )
        ]
        self.node_parts[COMMIT] = (pc.take(rows, first), enc.dictionary.to_pylist(), nodes)

    # -- approve, reject, deploy, undeploy, deprecate --------------------------------------------

    def _actions(self, act: Any, rows_arr: Any, k: Any, action: Any, env: Any, slow: Any) -> None:
        """Approve, reject, deploy, undeploy, deprecate: the valid ones (_valid_actions)."""
        import pyarrow.compute as pc

        if pc.any(slow).as_py():
            env = _array(self._slow_envs(act["payload"], rows_arr, env, slow))
        has_env = pc.is_valid(env)
        names, which, actor_v = self._actors_of(act["actor"].combine_chunks(), rows_arr)
        S, T, H = self._sth(rows_arr.to_pylist())
        enc = pc.dictionary_encode(env)
        values = enc.dictionary.to_pylist()

        def at(kind: str, need_env: bool = False) -> tuple[Any, list[int]]:
            m = pc.equal(action, kind)
            pos = indices_nonzero(pc.and_(m, has_env) if need_env else m)
            return pos, pos.to_pylist()

        def edges(pos: Any, v_kind: str, v: Any, ds: list[dict[str, Any]], keys: list) -> None:
            self._edges(pc.take(rows_arr, pos), pc.take(k, pos), v_kind, v, keys, ds)

        dep_pos, dep = at(E.DEPLOY, True)
        until = self.pool.submit(self._until, act, action, has_env, enc.indices, dep_pos)
        pos, a = at(E.APPROVE, True)
        envs = _take(values, pc.take(enc.indices, pos).to_pylist())
        ds = [
            {"kind": APPROVED_BY, "env": e, "seq": S[i], "ts": T[i], "hash": H[i]}
            for e, i in zip(envs, a, strict=True)
        ]
        edges(pos, ACTOR, pc.take(actor_v, pos), ds, _take(S, a))
        self.approved = set(pc.take(k, pos).to_pylist())
        pos, r = at(E.REJECT)
        ds = [{"kind": REJECTED_BY, "seq": S[i], "ts": T[i], "hash": H[i]} for i in r]
        edges(pos, ACTOR, pc.take(actor_v, pos), ds, _take(S, r))
        self.rejected = set(pc.take(k, pos).to_pylist())
        pos, d = at(E.DEPRECATE)
        ds = [{"kind": DEPRECATED, "seq": S[i], "ts": T[i], "hash": H[i]} for i in d]
        edges(pos, ACTOR, pc.take(actor_v, pos), ds, _take(S, d))
        self.deprecated = set(pc.take(k, pos).to_pylist())
        # deployed_to
        pos, until = dep_pos, until.result()
        envs = _take(values, pc.take(enc.indices, pos).to_pylist())
        deployers = _take(names, pc.take(which, pos).to_pylist())
        ds = [
            {
                "kind": DEPLOYED_TO,
                "env": e,
                "actor": a,
                "live": True,
                "seq": S[i],
                "ts": T[i],
                "hash": H[i],
            }
            if j is None
            else {
                "kind": DEPLOYED_TO,
                "env": e,
                "actor": a,
                "live": False,
                "seq": S[i],
                "ts": T[i],
                "hash": H[i],
                "until_seq": S[j],
                "until_ts": T[j],
                "until_hash": H[j],
            }
            for e, a, i, j in zip(envs, deployers, dep, until, strict=True)
        ]
        env_dep = pc.take(env, pos)
        env_ids = pc.unique(env_dep)  # in order of first deploy
        edges(pos, ENV, pc.index_in(env_dep, value_set=env_ids), ds, _take(S, dep))
        first = pc.index_in(env_ids, value_set=env_dep).to_pylist()
        nodes = [
            {"kind": ENV, "label": e, "seq": S[dep[i]], "ts": T[dep[i]], "hash": H[dep[i]]}
            for e, i in zip(env_ids.to_pylist(), first, strict=True)
        ]
        self.node_parts[ENV] = (
            pc.take(rows_arr, pc.take(pos, _ints(first))),
            [env_id(x["label"]) for x in nodes],
            nodes,
        )

    def _slow_envs(self, payload: Any, rows_arr: Any, env: Any, slow: Any) -> Any:
        """The env of payloads that are not exactly {"env": NAME}, read as build reads it."""
        import pyarrow as pa
        import pyarrow.compute as pc

        from ..errors import CorruptLedgerError

        idx = indices_nonzero(slow)
        found = []
        for text, r in zip(
            payload.take(idx).to_pylist(), pc.take(rows_arr, idx).to_pylist(), strict=True
        ):
            try:
                e = _payload(text, self.seq[r]).get("env")
            except CorruptLedgerError as exc:
                raise _Irregular("payload") from exc
            found.append(e if isinstance(e, str) else None)
        return pc.replace_with_mask(env, slow, pa.array(found, pa.string()))

    @staticmethod
    def _until(act: Any, action: Any, has_env: Any, env_index: Any, deploys: Any) -> list[Any]:
        """For each deploy at ``deploys``: the position of the next deploy or undeploy of
        the same model in the same environment (any version: a deploy replaces the one
        live), or None while it is live."""
        import pyarrow as pa
        import pyarrow.compute as pc

        is_dep = pc.equal(action, E.DEPLOY)
        du = pc.and_(pc.or_(is_dep, pc.equal(action, E.UNDEPLOY)), has_env)
        model = pc.dictionary_encode(act["model"].combine_chunks()).indices
        key = pc.add(
            pc.multiply(pc.cast(model, pa.int64()), len(pc.unique(env_index)) + 1),
            pc.cast(env_index, pa.int64()),
        )
        t = pa.table({"key": pc.filter(key, du), "pos": indices_nonzero(du)})
        t = t.take(pc.sort_indices(t, [("key", "ascending"), ("pos", "ascending")]))
        key, pos = t["key"].combine_chunks(), t["pos"].combine_chunks()
        n = len(pos)
        same = pc.equal(key[1:], key[: max(n - 1, 0)])
        nxt = pc.if_else(same, pos[1:], pa.nulls(max(n - 1, 0), pos.type))
        nxt = pa.concat_arrays([nxt, pa.nulls(min(n, 1), pos.type)])
        t = pa.table({"pos": pos, "next": nxt}).filter(pc.is_in(pos, value_set=deploys))
        t = t.sort_by("pos")
        return t["next"].to_pylist()

    # -- nodes and the adjacency -----------------------------------------------------------------

    def _versions(self) -> None:
        S, T, H = self.reg_sth
        models, versions = self.reg_mv
        dep, rej, app = self.deprecated, self.rejected, self.approved
        # deprecated > rejected > approved > registered, whatever the order (_Builder.event)
        status = [
            "deprecated"
            if i in dep
            else "rejected"
            if i in rej
            else "approved"
            if i in app
            else "registered"
            for i in range(len(models))
        ]
        ds = [
            {
                "kind": MODEL,
                "label": f"{m}:{v}",
                "model": m,
                "version": v,
                "status": st,
                "actor": a,
                "seq": s,
                "ts": t,
                "hash": h,
            }
            for m, v, st, a, s, t, h in zip(
                models, versions, status, self.reg_actor, S, T, H, strict=True
            )
        ]
        for name, values in self.reg_extra:  # in build's order
            for d, x in zip(ds, values, strict=True):
                if x is not None:
                    d[name] = x
        self.node_parts[MODEL] = (self.reg_rows, self.vids, ds)

    def _actors(self) -> None:
        names = list(self.actor_index)  # in index order
        nodes = []
        for name in names:
            r = self.actor_first[name]
            d = {"kind": ACTOR, "label": name, "seq": self.seq[r], "ts": self.ts[r]}
            d["hash"] = self.hash[r]
            if name in self.roles:
                d["roles"] = self.roles[name]
            nodes.append(d)
        rows = _ints([self.actor_first[n] for n in names])
        self.node_parts[ACTOR] = (rows, [actor_id(n) for n in names], nodes)

    def _fill(self, g: nx.MultiDiGraph) -> None:
        """Nodes, then edges, in build's order: a stable sort on the row, the kinds having
        been concatenated in the order build adds them within one event."""
        import itertools

        import pyarrow as pa
        import pyarrow.compute as pc

        offset: dict[str, int] = {}
        ids: list[str] = []
        attrs: list[dict[str, Any]] = []
        rows: list[Any] = []
        for kind in _NODE_ORDER:
            r, i, a = self.node_parts.get(kind, (_ints([]), [], []))
            offset[kind] = len(ids)
            ids += i
            attrs += a
            rows.append(r)
        order = pc.sort_indices(_concat(rows, pa.int64())).to_pylist()
        ordered = _take(ids, order)
        # each node's adjacency dicts, by index (lists: no hashing in the loop below)
        out: list[dict[str, Any]] = [{} for _ in ids]
        into: list[dict[str, Any]] = [{} for _ in ids]
        node, succ, pred = graph_dicts(g)
        node.update(zip(ordered, _take(attrs, order), strict=True))
        succ.update(zip(ordered, _take(out, order), strict=True))
        pred.update(zip(ordered, _take(into, order), strict=True))
        parts = self.edge_parts
        perm = pc.sort_indices(_concat([p[0] for p in parts], pa.int64()))
        u = pc.take(_concat([p[1] for p in parts], pa.int64()), perm).to_pylist()
        v = _concat([pc.add(pc.cast(p[3], pa.int64()), offset[p[2]]) for p in parts], pa.int64())
        v = pc.take(v, perm).to_pylist()
        perm = perm.to_pylist()
        chain = itertools.chain.from_iterable
        keys = _take(list(chain(p[4] for p in parts)), perm)
        ds = _take(list(chain(p[5] for p in parts)), perm)
        for su, pv, a, b, key, d in zip(
            _take(out, u), _take(into, v), _take(ids, u), _take(ids, v), keys, ds, strict=True
        ):  # as _Builder.add_edge
            kd = su.get(b)
            if kd is None:
                su[b] = pv[a] = {key: d}
            else:
                kd[key] = d
