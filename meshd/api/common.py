"""Pieces every API module uses: blocking reads with Consul's headers, the
datacenter check, and the mapping of agent and registry errors to HTTP."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from raft.errors import StorageError
from registry.errors import (
    CASConflict,
    ConflictError,
    NotFoundError,
    RegistryError,
    ValidationError,
)

from ..acl import ACLPermissionDenied
from ..errors import (
    Conflict,
    Internal,
    InvalidArgument,
    NoLeaderError,
    NotFound,
    PermissionDenied,
    RemoteError,
    RequestError,
)
from ..filter import FilterError
from ..http import (
    BadRequest,
    ErrorMapping,
    QueryOptions,
    Request,
    Response,
    error_response,
    set_meta_headers,
)
from ..wire import ReadOptions, ReadResult, UnknownRead

if TYPE_CHECKING:
    from .ports import Datacenter, Registry


FILTERED_HEADER = "X-Consul-Results-Filtered-By-ACLs"
NULL: Any = object()  # read_json(empty=NULL): a missing object is JSON null with 200


def read_options(opts: QueryOptions) -> ReadOptions:
    return ReadOptions(opts.index, opts.wait, opts.consistency, opts.max_stale)


def check_dc(agent: Datacenter, opts: QueryOptions) -> None:
    """Only the local datacenter exists (no WAN federation yet)."""
    if opts.dc and opts.dc != agent.datacenter:
        raise BadRequest(f"No path to datacenter: {opts.dc!r} is not {agent.datacenter!r}")


# Reads of endpoints that take Consul's ``?peer=`` (catalog and health).
PEERED_READS = frozenset(
    {
        "catalog.nodes",
        "catalog.services",
        "catalog.service",
        "catalog.connect",
        "catalog.node",
        "catalog.node_services",
        "health.node",
        "health.checks",
        "health.service",
        "health.state",
    }
)


def _nothing_like(value: Any) -> Any:
    if isinstance(value, list):
        return []
    if isinstance(value, dict):
        return {}
    return None


async def read(
    agent: Registry, req: Request, name: str, args: Mapping[str, Any]
) -> tuple[ReadResult, QueryOptions]:
    """Run the registry read ``name`` with the request's query options
    (``?index``/``?wait`` blocking, consistency, ``?filter``). ``?peer=``
    empty means this cluster, as in Consul; meshd has no cluster peerings, so
    any named peer has nothing (Consul's answer for a peer it does not know)."""
    opts = QueryOptions.from_request(req)
    check_dc(agent, opts)
    full = dict(args)
    if opts.filter:
        full["filter"] = opts.filter
    result = await agent.read(name, full, read_options(opts))
    if name in PEERED_READS and req.query_value("peer"):
        result = replace(result, value=_nothing_like(result.value), shared=None)
    return result, opts


# Encoded bodies of shared blocking-query answers, by (answer key, pretty):
# the waiters one change wakes send the same bytes, encoded once.
_SHARED_BODIES: dict[tuple[tuple[str, str, int], bool], bytes] = {}


def json_response(
    value: Any, result: ReadResult, opts: QueryOptions, status: int = 200
) -> Response:
    """``value`` as JSON with the X-Consul-* headers of ``result``."""
    shared = result.shared
    if shared is None or value is not result.value or status != 200:
        return with_meta(Response.json(value, status=status, pretty=opts.pretty), result)
    key = (shared, opts.pretty)
    body = _SHARED_BODIES.get(key)
    if body is None:
        body = Response.json(value, pretty=opts.pretty).body
        if len(_SHARED_BODIES) >= 256:
            _SHARED_BODIES.clear()
        _SHARED_BODIES[key] = body
    return with_meta(Response(200, [("Content-Type", "application/json")], body), result)


def with_meta(resp: Response, result: ReadResult) -> Response:
    """``resp`` with the X-Consul-* headers describing ``result``."""
    return set_meta_headers(
        resp,
        result.index,
        result.known_leader,
        result.last_contact,
        result.consistency,
        results_filtered_by_acls=result.filtered,
    )


async def read_json(
    agent: Registry, req: Request, name: str, args: Mapping[str, Any], *, empty: Any = None
) -> Response:
    """A read answered as JSON; a None result becomes ``empty`` (Consul sends
    ``[]`` for empty lists and 404 for a missing single object)."""
    result, opts = await read(agent, req, name, args)
    value = result.value
    if value is None:
        if empty is None:
            return with_meta(Response.text("", status=404), result)
        value = None if empty is NULL else empty
    return json_response(value, result, opts)


def no_leader_text(detail: str) -> str:
    """Consul's ``No cluster leader`` first (clients match on it), then what
    the server waits for, after ``: ``."""
    return f"No cluster leader: {detail}" if detail else "No cluster leader"


def error_mapping(no_leader_detail: Callable[[], str] | None = None) -> ErrorMapping:
    """Registry, registry and filter errors as Consul answers them;
    ``no_leader_detail`` says what a server without a leader waits for."""
    m = ErrorMapping()

    def no_leader(exc: NoLeaderError) -> Response:
        detail = no_leader_detail() if no_leader_detail is not None else ""
        return error_response(exc, no_leader_text(detail))

    def text(error: type[RequestError]) -> Callable[[Exception], Response]:
        return lambda e: error_response(error(str(e)))

    m.register(ACLPermissionDenied, text(PermissionDenied))
    m.register(ValidationError, lambda e: error_response(InvalidArgument(f"Invalid request: {e}")))
    m.register(FilterError, text(InvalidArgument))
    m.register(NotFoundError, text(NotFound))
    m.register(CASConflict, text(Conflict))
    m.register(ConflictError, text(Conflict))
    m.register(RegistryError, text(InvalidArgument))
    m.register(NoLeaderError, no_leader)
    m.register(RemoteError, lambda e: error_response(Internal(e.message)))
    m.register(UnknownRead, lambda e: error_response(Internal("unknown read")))
    # A leader that cannot persist its log (a full disk) refuses the write:
    # Consul's 500 for a failed apply, with the reason rather than "Internal error".
    m.register(StorageError, text(Internal))
    return m
