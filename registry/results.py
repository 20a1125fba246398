"""Values returned by ``RegistryFSM.apply``.

Domain errors are results, never exceptions (a raised exception out of apply
means a corrupt log to raft/). ``Result`` is truthy when the write took
effect, so a KV PUT maps to Consul's ``true``/``false`` body with ``bool()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ERROR_TYPES, ErrorCode, RegistryError, TxnFailedError
from .records import HealthCheck, KVEntry, Node, ServiceInstance


@dataclass(frozen=True, slots=True)
class Result:
    """Outcome of one applied command.

    ``ok`` False with ``error`` None is a plain "did not apply" answer (Consul's
    ``false`` for a failed CAS or a held lock); ``error`` set names why.
    ``value`` carries a payload (a session ID, a ``TxnResponse``...).
    """

    ok: bool
    value: Any = None
    error: ErrorCode | None = None
    message: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def raise_for_error(self) -> None:
        """Raise the ``RegistryError`` subclass matching ``error``; no-op when ok."""
        if self.ok:
            return
        if self.error is ErrorCode.TXN_FAILED:
            raise TxnFailedError(self.message)
        exc_type = ERROR_TYPES.get(self.error or ErrorCode.INVALID, RegistryError)
        raise exc_type(self.message or "not applied")


OK = Result(True)


def failed(code: ErrorCode, message: str) -> Result:
    """A result saying the command changed nothing because of ``code``."""
    return Result(False, None, code, message)


@dataclass(frozen=True, slots=True)
class TxnResult:
    """One op's result in a transaction (Consul's ``{"KV": ...}`` etc.)."""

    kv: KVEntry | None = None
    node: Node | None = None
    service: ServiceInstance | None = None
    check: HealthCheck | None = None


@dataclass(frozen=True, slots=True)
class TxnError:
    """One op's failure (Consul's ``{"OpIndex": i, "What": "..."}``)."""

    op_index: int
    what: str


@dataclass(frozen=True, slots=True)
class TxnResponse:
    """Consul's ``TxnResponse``: results when committed, errors when rolled back."""

    results: tuple[TxnResult, ...] = ()
    errors: tuple[TxnError, ...] = field(default=())
