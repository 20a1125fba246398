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

from ..http import BadRequest, QueryOptions, Request, Response, Router
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


def register(router: Router, agent: Registry) -> None:
    """Add the /v1/health routes to the one route table."""

    async def node(req: Request) -> Response:
        name = _path_param(req, "node", "Missing node name")
        return await read_json(agent, req, "health.node", {"name": name}, empty=[])

    async def checks(req: Request) -> Response:
        name = _path_param(req, "service", "Missing service name")
        opts = QueryOptions.from_request(req)
        args = {"name": name, "node_meta": dict(opts.node_meta)}
        return await read_json(agent, req, "health.checks", args, empty=[])

    async def service_nodes(req: Request, connect: bool) -> Response:
        name = _path_param(req, "service", "Missing service name")
        opts = QueryOptions.from_request(req)
        args: dict[str, Any] = {
            "name": name,
            "passing": passing_flag(req),
            "tags": list(opts.tags),
            "node_meta": dict(opts.node_meta),
            "connect": connect,
        }
        return await read_json(agent, req, "health.service", args, empty=[])

    async def service(req: Request) -> Response:
        return await service_nodes(req, connect=False)

    async def connect(req: Request) -> Response:
        return await service_nodes(req, connect=True)

    async def state(req: Request) -> Response:
        name = _path_param(req, "state", "Missing check state")
        if name not in CHECK_STATES:
            raise BadRequest("Invalid check state", "state")
        opts = QueryOptions.from_request(req)
        args = {"state": name, "node_meta": dict(opts.node_meta)}
        return await read_json(agent, req, "health.state", args, empty=[])

    async def ingress(req: Request) -> Response:
        name = _path_param(req, "service", "Missing service name")
        opts = QueryOptions.from_request(req)
        args = {"name": name, "passing": passing_flag(req), "tags": list(opts.tags)}
        return await read_json(agent, req, "health.ingress", args, empty=[])

    async def gateway_services(req: Request) -> Response:
        name = _path_param(req, "gateway", "Missing gateway name")
        return await read_json(agent, req, "catalog.gateway_services", {"name": name}, empty=[])

    router.add("GET", "/v1/health/ingress/*service", ingress, name="health.ingress")
    # Consul's catalog endpoint, served here with the other gateway read.
    router.add(
        "GET",
        "/v1/catalog/gateway-services/*gateway",
        gateway_services,
        name="catalog.gateway_services",
    )
    router.add("GET", "/v1/health/node/*node", node, name="health.node")
    router.add("GET", "/v1/health/checks/*service", checks, name="health.checks")
    router.add("GET", "/v1/health/service/*service", service, name="health.service")
    router.add("GET", "/v1/health/connect/*service", connect, name="health.connect")
    router.add("GET", "/v1/health/state/*state", state, name="health.state")
