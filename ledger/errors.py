"""Errors, grouped by whose fault they are, each with the exit code the CLI uses.

Exit codes (documented in README.md):
    0  success
    1  verification failed (``verify``, ``verify-checkpoint`` or ``verify-evidence``
       printed FAIL), or a read with ``--require-verified`` found events that ``verify``
       has not accepted on this machine
    2  bad input: malformed arguments, names, values or files supplied by the user
    3  not found: unknown ledger, model, version or key
    4  refused by a rule: lifecycle or governance policy
    5  key problem: missing or unreadable key file, wrong passphrase, unsafe permissions,
       key lacking the role, revoked or unknown to the ledger
    6  the ledger on disk is corrupt or unreadable
    7  the operating system refused a write (disk full, read-only, lock timeout)
    8  an engine other than the built-in ones failed: ``verify --engine dask`` (not
       installed, scheduler unreachable, workers lost, a worker cannot open the ledger's
       files) or ``--engine spark`` (pyspark not installed, no Java, the Spark master
       unreachable, SQL the translation to Spark refuses)
"""

from __future__ import annotations

import errno


class LedgerError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        #: A stable machine-readable name for the failure, e.g. ``revoked_key``.
        self.kind = kind or type(self).__name__

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InputError(LedgerError):
    """The caller supplied a malformed value."""

    exit_code = 2


class NotFoundError(LedgerError):
    """A ledger, model, version or key that the caller named does not exist."""

    exit_code = 3


class RuleViolation(LedgerError):
    """The event is well formed but the ledger's rules forbid it."""

    exit_code = 4


class KeyProblem(LedgerError):
    """A signing key cannot be used: unreadable, unsafe, wrong passphrase or not authorised."""

    exit_code = 5


class CorruptLedgerError(LedgerError):
    """Data read from the ledger folder is damaged or inconsistent."""

    exit_code = 6


class StorageError(LedgerError):
    """The operating system refused an operation on the ledger folder."""

    exit_code = 7


def storage_error(exc: OSError, what: str) -> StorageError:
    """The :class:`StorageError` for ``exc``, raised trying to ``what``: "cannot WHAT:
    REASON", naming a full disk and a read-only folder as such."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        reason = f"{reason} (is the ledger folder read-only?)"
    return StorageError(f"cannot {what}: {reason}")


class EngineError(LedgerError):
    """The engine asked for (Dask for verify, Spark for queries) cannot do the work:
    not installed, unreachable, its workers lost, a worker unable to read the ledger, or
    SQL it cannot run."""

    exit_code = 8


class UnverifiedError(LedgerError):
    """A read was asked for verified data only, and some is not (see ledger/verified.py)."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="unverified")


class LedgerWarning(UserWarning):
    """Base class of the warnings this package gives; the CLI prints each as one line."""


class UnverifiedWarning(LedgerWarning):
    """A read answered from events that ``verify`` has not accepted on this machine."""
