"""The gate every read of the facade passes (docs/guarantees.md, "Reads over verified
data"): under the store's readers' gate (no segment it reads is merged away meanwhile),
then, for the outermost read of a call, checked against the record of what ``verify``
accepted (:mod:`ledger.verified`): an ``UnverifiedWarning``, or with
``require_verified`` an ``UnverifiedError``, when some events are not verified."""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from . import verified
from .errors import UnverifiedError, UnverifiedWarning

_T = TypeVar("_T")


def reading(method: Callable[..., _T]) -> Callable[..., _T]:
    """Run a read under the store's readers' gate (``Store.reading``): no segment it may
    read is deleted by a merge meanwhile."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> _T:
        with self.store.reading():
            return method(self, *args, **kwargs)

    return wrapper


def checked(method: Callable[..., _T]) -> Callable[..., _T]:
    """A read that answers from the ledger's events: under the readers' gate, and then
    (for the outermost read of a call) checked against the record of what ``verify``
    accepted (ledger/verified.py): an ``UnverifiedWarning``, or with
    ``require_verified`` an ``UnverifiedError``, when some events are not verified.
    The check runs after the read and inside the gate, so it covers every segment the
    read could have seen (one appended meanwhile included)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> _T:
        depth = getattr(self._reads, "depth", 0)
        self._reads.depth = depth + 1
        try:
            with self.store.reading():
                out = method(self, *args, **kwargs)
                if depth == 0:
                    check_verified(self)
        finally:
            self._reads.depth = depth
        return out

    return wrapper


def check_verified(led: Any) -> None:
    """Warn (or raise, with ``led.require_verified``) if a read saw unverified events;
    the warning points at the caller of the facade method (``stacklevel``)."""
    problem = verified.check(led)
    if problem is None:
        return
    if led.require_verified:
        raise UnverifiedError(problem)
    warnings.warn(UnverifiedWarning(problem), stacklevel=3)


@contextlib.contextmanager
def unchecked(led: Any) -> Iterator[None]:
    """Reads made by a write (the state a break-glass grant needs) are not checked."""
    depth = getattr(led._reads, "depth", 0)
    led._reads.depth = depth + 1
    try:
        yield
    finally:
        led._reads.depth = depth
