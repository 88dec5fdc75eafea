"""ledger: an append-only, tamper-evident provenance ledger for ML model registries."""

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
from .ledger import Ledger, Receipt
from .verify import Problem, VerifyReport

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
