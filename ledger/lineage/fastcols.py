"""The column-wise steps of the Arrow fast path (:mod:`ledger.lineage.fast`), each a
function of Arrow columns: register payloads through Arrow's JSON reader with a fixed
schema, version ids, the valid actions and their environments, parents, datasets and code
flattened, timestamps and hashes as text. Each computes what the reference builder
(:mod:`ledger.lineage.build`) derives row by row, or raises :class:`_Irregular` where it
cannot vouch for the same answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import events as E
from ..compat import indices_nonzero


class _Irregular(Exception):
    """The table holds something only :func:`build` handles (see :func:`from_table`)."""


def _take(values: list[Any], index: Iterable[int]) -> list[Any]:
    return list(map(values.__getitem__, index))


#: An approve/deploy/undeploy payload that is exactly {"env": NAME}: the common case, and
#: unambiguous (anything else is parsed with json.loads, as build does).
_ENV_ONLY = E.ENV_ONLY_ANCHORED
#: Register payload text that Arrow's JSON reader could read otherwise than json.loads:
#: a raw line break (the payloads are read as newline-delimited JSON), a null parents or
#: datasets list (build fails on it), anything not shaped like one object.
_ODD_REGISTER = r'[\r\n]|"(?:parents|datasets)":null|^[^{]|[^}]$'
#: Years 1000-9999 in µs: there strftime and Arrow's cast write a ts the same way.
_TS_RANGE = (-30_610_224_000_000_000, 253_402_300_799_999_999)


def _register_schema() -> Any:
    """The part of a register payload the graph uses. Arrow's JSON reader refuses any
    other type at these paths (and a repeated key), where build would differ."""
    import pyarrow as pa

    s = pa.string()
    return pa.schema(
        [
            ("artifact", pa.struct([("digest", s), ("uri", s)])),
            ("description", s),
            (
                "parents",
                pa.list_(pa.struct([("model", s), ("version", pa.int64()), ("relation", s)])),
            ),
            ("datasets", pa.list_(pa.struct([("uri", s), ("digest", s), ("name", s)]))),
            ("code", pa.struct([("repo", s), ("commit", s)])),
        ]
    )


def _register_payloads(payload: Any) -> Any:
    """The register payloads parsed by Arrow's JSON reader (in C++, on its threads) into
    a table of :func:`_register_schema`, one row per payload."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.json as pj

    schema = _register_schema()
    if len(payload) == 0:
        return schema.empty_table()
    if pc.any(pc.match_substring_regex(payload, _ODD_REGISTER)).as_py():
        raise _Irregular("register payload")
    lines = pc.binary_join_element_wise(payload, "\n", "")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    off = memoryview(lines.buffers()[1]).cast("i")
    text = lines.buffers()[2][off[lines.offset] : off[lines.offset + len(lines)]]
    try:
        parsed = pj.read_json(
            pa.BufferReader(text),
            parse_options=pj.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
    except pa.ArrowException as exc:
        raise _Irregular("register payload") from exc
    if parsed.num_rows != len(payload):
        raise _Irregular("register payload")
    return parsed.combine_chunks()


def _array(x: Any) -> Any:
    import pyarrow as pa

    return x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x


def _env_only(payload: Any) -> Any:
    """NAME where a payload is exactly {"env": NAME}, else null."""
    import pyarrow.compute as pc

    return pc.struct_field(pc.extract_regex(payload, _ENV_ONLY), [0]).combine_chunks()


def _ts_texts(ts: Any) -> Any:
    """RFC 3339 text of a timestamp[us, UTC] column, as E.format_ts writes it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # "2025-01-06 00:01:09.258275" -> "2025-01-06T00:01:09.258275Z"
    text = pc.cast(ts.cast(pa.timestamp("us")), pa.string())
    return pc.binary_join_element_wise(pc.utf8_replace_slice(text, 10, 11, "T"), "Z", "")


def _version_ids(reg: Any) -> Any:
    """``model:NAME:VERSION`` of each register row; irregular if one is missing or twice."""
    import pyarrow.compute as pc

    if reg["model"].null_count or reg["version"].null_count:
        raise _Irregular("register without model or version")
    vid = _model_ids(reg["model"], reg["version"]).combine_chunks()
    if pc.count_distinct(vid).as_py() != len(vid):
        raise _Irregular("a version registered twice")
    return vid


def _model_ids(model: Any, version: Any) -> Any:
    """:func:`model_id`, column-wise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.binary_join_element_wise("model:", model, ":", pc.cast(version, pa.string()), "")


def _valid_actions(act: Any, rows: Any, envs: Any, vids: Any, reg_rows: Any) -> tuple[Any, ...]:
    """The actions build applies (on a version registered before them): their columns,
    rows, version indices, actions, env where the payload is exactly {"env": NAME}, and
    where an env action's payload is something else. ``envs`` and ``vids`` are futures
    (of _env_only and _version_ids, submitted before this)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    vid = _model_ids(act["model"], act["version"])
    k = pc.index_in(vid, value_set=vids.result())
    ok = _array(pc.fill_null(pc.less(pc.take(reg_rows, k), rows), False))
    act = act.filter(ok).combine_chunks()
    rows, k = pc.filter(rows, ok), pc.filter(k, ok)
    action = act["action"].combine_chunks()
    is_env = pc.is_in(action, pa.array([E.APPROVE, E.DEPLOY, E.UNDEPLOY]))
    env = _array(pc.filter(envs.result(), ok))
    slow = _array(pc.and_(is_env, pc.is_null(env)))
    return act, rows, k, action, env, slow


def _parent_columns(lists: Any, vids: Any, reg_rows: Any) -> tuple[Any, ...]:
    """The parents of the register payloads that build links (registered before the
    child, or the child itself: a loop), flattened: (rows, child index, parent index,
    relation)."""
    import pyarrow.compute as pc

    flat = lists.flatten()
    if flat.null_count or any(flat.field(i).null_count for i in range(3)):
        raise _Irregular("a parent without model, version or relation")
    k = pc.list_parent_indices(lists)
    pid = _model_ids(flat.field("model"), flat.field("version"))
    pk = pc.index_in(pid, value_set=vids)
    rows = pc.take(reg_rows, k)
    ok = pc.fill_null(pc.less_equal(pc.take(reg_rows, pk), rows), False)
    return tuple(pc.filter(x, ok) for x in (rows, k, pk, flat.field("relation")))


def _dataset_columns(lists: Any) -> tuple[Any, ...]:
    """The datasets of the register payloads, flattened: (register index, uri, digest,
    name, node id, the ids dictionary-encoded in order of first mention)."""
    import pyarrow.compute as pc

    flat = lists.flatten()
    if flat.null_count or flat.field("uri").null_count:
        raise _Irregular("a dataset without a URI")
    k = pc.list_parent_indices(lists)
    uri, digest, name = flat.field("uri"), flat.field("digest"), flat.field("name")
    did = pc.if_else(  # dataset_id(), column-wise
        pc.fill_null(pc.not_equal(digest, ""), False),  # build tests `if digest:`
        pc.binary_join_element_wise("dataset:", uri, "@", digest, ""),
        pc.binary_join_element_wise("dataset:", uri, ""),
    )
    return k, uri, digest, name, did, pc.dictionary_encode(did)


def _code_columns(code: Any) -> tuple[Any, ...]:
    """The registers naming a code repository and commit (build tests both for truth):
    (register index, repo, commit, node id, the ids dictionary-encoded)."""
    import pyarrow.compute as pc

    repo, commit = pc.struct_field(code, [0]), pc.struct_field(code, [1])
    ok = pc.fill_null(pc.and_(pc.not_equal(repo, ""), pc.not_equal(commit, "")), False)
    repo, commit = pc.filter(repo, ok), pc.filter(commit, ok)
    cid = pc.binary_join_element_wise("commit:", repo, "@", commit, "")  # commit_id()
    return indices_nonzero(ok), repo, commit, cid, pc.dictionary_encode(cid)


def _concat(arrays: list[Any], type_: Any) -> Any:
    import pyarrow as pa

    chunks: list[Any] = []
    for a in arrays:
        chunks.extend(c.cast(type_) for c in (a.chunks if isinstance(a, pa.ChunkedArray) else [a]))
    return pa.chunked_array(chunks, type_).combine_chunks()


def _ints(values: Iterable[int]) -> Any:
    import pyarrow as pa

    return pa.array(values, pa.int64())


def _hex32(column: Any) -> list[str]:
    """Hex text of a fixed_size_binary(32) column: one hexlify of the data buffer, viewed
    as a string array of 64-character values (no per-row Python work but the str objects)."""
    import array
    import binascii

    import pyarrow as pa

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    if arr.null_count or not pa.types.is_fixed_size_binary(arr.type) or arr.type.byte_width != 32:
        return [h.hex() if h is not None else "" for h in arr.to_pylist()]
    if n == 0:
        return []
    raw = memoryview(arr.buffers()[1])[arr.offset * 32 : (arr.offset + n) * 32]
    text = pa.py_buffer(binascii.hexlify(raw))
    if len(text) >= 2**31:
        return [h.hex() for h in arr.to_pylist()]
    offsets = pa.py_buffer(array.array("i", range(0, 64 * n + 1, 64)))
    return pa.StringArray.from_buffers(n, offsets, text).to_pylist()
