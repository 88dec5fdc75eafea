"""ledger: an append-only, tamper-evident provenance ledger for ML model registries."""

from typing import TYPE_CHECKING, Any

from .errors import (
    CorruptLedgerError,
    InputError,
    KeyProblem,
    LedgerError,
    NotFoundError,
    RuleViolation,
    StorageError,
)
from .events import Draft
from .keys import SigningKey, load_signing_key
from .verify import Problem, VerifyReport

if TYPE_CHECKING:
    from .ledger import Ledger, Receipt

__all__ = [
    "CorruptLedgerError",
    "Draft",
    "InputError",
    "KeyProblem",
    "Ledger",
    "LedgerError",
    "NotFoundError",
    "Problem",
    "Receipt",
    "RuleViolation",
    "SigningKey",
    "StorageError",
    "VerifyReport",
    "load_signing_key",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The facade is imported on first use: verify's worker processes import
    # ledger.scanworkers, which must not pay for the whole facade (about 0.1 s each).
    if name in ("Ledger", "Receipt"):
        from . import ledger

        return getattr(ledger, name)
    raise AttributeError(f"module 'ledger' has no attribute {name!r}")
