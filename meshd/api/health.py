"""/v1/health/* (https://developer.hashicorp.com/consul/api-docs/health).

Every endpoint is a blocking read answered as a JSON list (``[]`` when
nothing matches, never null) with Consul's ``X-Consul-*`` headers. Query
parameters follow Consul's agent/health_endpoint.go: ``?tag=`` may repeat and
every tag must match, ``?node-meta=key:value`` may repeat, ``?passing`` is a
Go ``strconv.ParseBool`` flag (blank means true), ``?filter=`` is applied on
the server. ``/v1/health/ingress/:service`` lists the ingress gateways whose
config entry exposes the service (``meshd/agent/reads_gateways.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..http import BadRequest, QueryOptions, Request, Response
from .common import read_json

if TYPE_CHECKING:
    from .ports import Registry

CHECK_STATES = ("any", "passing", "warning", "critical")

# Go's strconv.ParseBool.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def passing_flag(req: Request) -> bool:
    """``?passing``: absent is false, blank is true, otherwise Go's ParseBool.

    Raises ``BadRequest("Invalid value for ?passing")`` as Consul does.
    """
    values = req.query.get("passing")
    if values is None:
        return False
    value = values[0]
    if value == "" or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BadRequest("Invalid value for ?passing", "passing")


def _path_param(req: Request, name: str, missing: str) -> str:
    value = req.path_params[name]
    if not value:
        raise BadRequest(missing, name)
    return value


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def node(p: Registry, req: Request) -> Response:
    name = _path_param(req, "node", "Missing node name")
    return await read_json(p, req, "health.node", {"name": name}, empty=[])


async def checks(p: Registry, req: Request) -> Response:
    name = _path_param(req, "service", "Missing service name")
    opts = QueryOptions.from_request(req)
    args = {"name": name, "node_meta": dict(opts.node_meta)}
    return await read_json(p, req, "health.checks", args, empty=[])


async def service_nodes(p: Registry, req: Request, connect: bool) -> Response:
    name = _path_param(req, "service", "Missing service name")
    opts = QueryOptions.from_request(req)
    args: dict[str, Any] = {
        "name": name,
        "passing": passing_flag(req),
        "tags": list(opts.tags),
        "node_meta": dict(opts.node_meta),
        "connect": connect,
    }
    return await read_json(p, req, "health.service", args, empty=[])


async def service(p: Registry, req: Request) -> Response:
    return await service_nodes(p, req, connect=False)


async def connect(p: Registry, req: Request) -> Response:
    return await service_nodes(p, req, connect=True)


async def state(p: Registry, req: Request) -> Response:
    name = _path_param(req, "state", "Missing check state")
    if name not in CHECK_STATES:
        raise BadRequest("Invalid check state", "state")
    opts = QueryOptions.from_request(req)
    args = {"state": name, "node_meta": dict(opts.node_meta)}
    return await read_json(p, req, "health.state", args, empty=[])


async def ingress(p: Registry, req: Request) -> Response:
    name = _path_param(req, "service", "Missing service name")
    opts = QueryOptions.from_request(req)
    args = {"name": name, "passing": passing_flag(req), "tags": list(opts.tags)}
    return await read_json(p, req, "health.ingress", args, empty=[])


async def gateway_services(p: Registry, req: Request) -> Response:
    name = _path_param(req, "gateway", "Missing gateway name")
    return await read_json(p, req, "catalog.gateway_services", {"name": name}, empty=[])


# Consul's catalog endpoint, served here with the other gateway read.
