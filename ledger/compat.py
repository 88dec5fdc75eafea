"""Every use of a third-party library's private API, in one place.

Three fast paths reach inside libraries, each because the public API costs a multiple
of the work itself (the measurements are in the callers' docstrings):

* PyNaCl's cffi module ``nacl._sodium`` (``ffi``, ``lib``): libsodium's
  ``crypto_sign`` / ``crypto_sign_open`` with a reusable buffer (signing and verify's
  workers);
* networkx's adjacency dicts ``MultiDiGraph._node`` / ``_succ`` / ``_pred`` (``_adj`` is
  ``_succ``): the lineage graph is filled and walked directly (``add_edges_from``
  copies and validates every attribute dict);
* ``json.JSONDecoder.scan_once``: the C scanner behind ``json.loads`` without its
  whitespace handling, for canonical payloads.

One more entry is not a private API but a library's behaviour: :func:`hide_pandas`
keeps pyarrow from importing pandas in a command process.

:data:`CHECKED` lists the versions these were checked against; pyproject.toml pins them
as upper bounds, and ``tests/test_compat.py`` fails loudly, naming the API, if one of
them changes shape.
"""

from __future__ import annotations

import importlib.abc
import json
import sys
from collections.abc import Callable
from typing import Any

#: The newest release of each library whose private API below was checked.
CHECKED = {"pynacl": "1.6", "networkx": "3.6"}


def sodium() -> tuple[Any, Any]:
    """PyNaCl's cffi ``(ffi, lib)`` for libsodium."""
    from nacl._sodium import ffi, lib

    return ffi, lib


def graph_dicts(g: Any) -> tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any]]:
    """A networkx ``MultiDiGraph``'s (node -> attributes, node -> successor -> key ->
    attributes, node -> predecessor -> key -> attributes) dicts, to fill or walk
    directly. :class:`ledger.lineage.Adjacency` has the same three, by the same names."""
    return g._node, g._succ, g._pred


def json_scanner() -> Callable[[str, int], tuple[Any, int]]:
    """``scan(text, index) -> (value, end)``: one JSON value of ``text`` from ``index``,
    no whitespace allowed around it."""
    return json.decoder.JSONDecoder().scan_once  # type: ignore[attr-defined]


def nodes(g: Any) -> dict[Any, Any]:
    """``g._node``: node -> attributes (a MultiDiGraph or a lineage Adjacency)."""
    return g._node


def succ(g: Any) -> dict[Any, Any]:
    """``g._succ`` (networkx's ``_adj``): node -> successor -> key -> attributes."""
    return g._succ


def pred(g: Any) -> dict[Any, Any]:
    """``g._pred``: node -> predecessor -> key -> attributes."""
    return g._pred


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (a ledger command needs none)")


def hide_pandas() -> None:
    """Make ``import pandas`` fail in this process, as if pandas were not installed.

    For ledger command processes only: the package never uses pandas, but where it is
    installed (every MLflow user has it) pyarrow imports it the first time it converts
    Python values (``pa.array``, ``to_pylist``, a compute function given a scalar), to
    check whether they are pandas objects. That import is 0.4-0.5 s, half of a fresh
    ``ledger status MODEL`` (benchmarks/README.md). Not for library callers: their
    process may use pandas with pyarrow."""
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


def indices_nonzero(mask: Any) -> Any:
    """``pyarrow.compute.indices_nonzero``, but for a chunked array with no chunks too
    (what a compute function gives for an empty slice): pyarrow 25 crashes the process
    on that (tests/test_compat.py)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(mask, pa.ChunkedArray) and mask.num_chunks == 0:
        return pa.array([], pa.uint64())
    return pc.indices_nonzero(mask)
