"""How a server's errors cross its RPC boundary: the exception a handler
raised mapped to the ``RPCError`` its caller gets (``_to_rpc``), and an
answered error mapped back to the local exception (``error_from_rpc``,
``http_error_from_rpc``). Moved out of server.py (``MeshServer``), which
re-exports them."""

from __future__ import annotations

from raft.errors import NotLeaderError, RaftError
from registry.errors import ValidationError

from ..acl.errors import ACLPermissionDenied
from ..errors import (
    Internal,
    InvalidArgument,
    NoLeaderError,
    PermissionDenied,
    RemoteError,
    RequestError,
    request_error,
)
from ..filter import FilterError
from ..rpc import RPCError
from ..wire import UnknownRead

# hashicorp/raft's ErrLeadershipLost text, which Consul answers with (HTTP 500).
LEADERSHIP_LOST = "leadership lost while committing log"


def _to_rpc(exc: BaseException) -> RPCError | None:
    """Map a handler's exception to the RPC error the caller will re-raise."""
    if isinstance(exc, RequestError):
        return RPCError(exc.code, exc.message, {"field": exc.field} if exc.field else None)
    if isinstance(exc, ValidationError):
        return RPCError("Validation", exc.message, {"field": exc.field})
    if isinstance(exc, ACLPermissionDenied):
        return RPCError(PermissionDenied.code, str(exc))
    if isinstance(exc, UnknownRead):
        return RPCError("UnknownMethod", f"unknown read {exc.args[0]!r}")
    if isinstance(exc, NotLeaderError):
        return RPCError("NotLeader", str(exc), {"leader": exc.leader_addr})
    if isinstance(exc, RaftError):
        return RPCError("Internal", str(exc))
    if isinstance(exc, RemoteError):  # passed on with its code, as the leader answered it
        return RPCError(exc.code, exc.message)
    if isinstance(exc, FilterError):
        return RPCError(InvalidArgument.code, str(exc), {"field": "filter"})
    return None


def _leadership_lost() -> Internal:
    """The write was in the log when leadership moved: it may or may not
    commit. Consul answers the caller with hashicorp/raft's
    ``ErrLeadershipLost`` (HTTP 500) rather than retrying, which could apply
    it twice; the caller decides (e.g. reads back, or repeats an idempotent
    write)."""
    return Internal(LEADERSHIP_LOST)


def error_from_rpc(exc: RPCError) -> Exception:
    """The local exception for an error a server answered."""
    if exc.code == "Validation":
        return ValidationError(str(exc.details.get("field", "")), exc.message)
    if exc.code == NoLeaderError.code:
        return NoLeaderError(exc.message or None)
    if exc.code == "NotLeader":
        return NoLeaderError()
    if exc.code == InvalidArgument.code and exc.details.get("field") == "filter":
        return InvalidArgument(exc.message, field="filter")
    return RemoteError(exc.code, exc.message)


def http_error_from_rpc(exc: RPCError) -> Exception:
    """Like ``error_from_rpc``, but a ``RequestError`` the server raised comes
    back as the same error (its code names it), not as a ``RemoteError``."""
    if exc.code not in ("Validation", "NotLeader"):
        field = exc.details.get("field")
        same = request_error(exc.code, exc.message, str(field) if field else None)
        if same is not None:
            return same
    return error_from_rpc(exc)
