"""Errors raised by registry/.

Two families, following the split raft/ uses:

* Input problems found at the API edge (``Command.validate()``) raise
  ``ValidationError(field, message)``; ``field`` is the Consul JSON name
  (``"Service.Port"``) so the HTTP layer can answer 400 naming it.
* Domain outcomes of a write (CAS mismatch, lock held, unknown session) are
  *not* raised by ``RegistryFSM.apply``: they come back as ``Result`` values
  carrying an ``ErrorCode``. ``Result.raise_for_error()`` turns one into the
  matching exception below for callers that prefer exceptions.
* ``CorruptCommandError`` / ``CorruptSnapshotError`` mean the replicated log
  or a snapshot can no longer be trusted: the node must stop.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    """Machine-readable reason carried by a failed ``Result``."""

    CAS_CONFLICT = "cas_conflict"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    INVALID_SESSION = "invalid_session"
    LOCK_HELD = "lock_held"
    LOCK_DELAY = "lock_delay"
    INVALID = "invalid"
    TXN_FAILED = "txn_failed"


class RegistryError(Exception):
    """Base class of every error registry/ raises on purpose."""

    code: ErrorCode = ErrorCode.INVALID


class ValidationError(RegistryError):
    """A command field is invalid; ``field`` uses Consul's JSON name."""

    code = ErrorCode.INVALID

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class NotFoundError(RegistryError):
    """The object a write refers to does not exist (node, session, intention...)."""

    code = ErrorCode.NOT_FOUND


class CASConflict(RegistryError):
    """A check-and-set index did not match the stored ModifyIndex."""

    code = ErrorCode.CAS_CONFLICT


class ConflictError(RegistryError):
    """A uniqueness rule was broken (duplicate intention, node ID in use...)."""

    code = ErrorCode.CONFLICT


class InvalidSessionError(RegistryError):
    """A lock or session operation named a session that does not exist."""

    code = ErrorCode.INVALID_SESSION


class LockHeldError(RegistryError):
    """The KV lock is held by another session, or released by a non-holder."""

    code = ErrorCode.LOCK_HELD


class LockDelayError(RegistryError):
    """The key is inside its lock-delay window after a session invalidation."""

    code = ErrorCode.LOCK_DELAY


class TxnFailedError(RegistryError):
    """A transaction was rolled back; the result lists the per-op errors."""

    code = ErrorCode.TXN_FAILED


class CorruptCommandError(RegistryError):
    """Bytes in the log do not decode to a known command: the log is corrupt (fatal)."""


class CorruptSnapshotError(RegistryError):
    """A snapshot does not decode to a registry state (fatal for the restore)."""


ERROR_TYPES: dict[ErrorCode, type[RegistryError]] = {
    ErrorCode.CAS_CONFLICT: CASConflict,
    ErrorCode.NOT_FOUND: NotFoundError,
    ErrorCode.CONFLICT: ConflictError,
    ErrorCode.INVALID_SESSION: InvalidSessionError,
    ErrorCode.LOCK_HELD: LockHeldError,
    ErrorCode.LOCK_DELAY: LockDelayError,
    ErrorCode.INVALID: RegistryError,
    ErrorCode.TXN_FAILED: TxnFailedError,
}
