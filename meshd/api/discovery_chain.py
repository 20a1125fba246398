"""/v1/discovery-chain/:service
(https://developer.hashicorp.com/consul/api-docs/discovery-chain).

Follows Consul's agent/discovery_chain_endpoint.go: ``GET`` compiles the
chain from the stored config entries, ``POST`` takes the overrides body
(``OverrideProtocol``, ``OverrideConnectTimeout``, ``OverrideMeshGateway``;
snake_case accepted); ``?compile-dc`` names the datacenter to compile for
(only the local one exists). Both block with ``?index=``/``?wait=`` on the
config entries. A missing name is 400 ``Missing chain name``, a body that
does not decode 400 ``Request decoding failed: ...``, a graph that does not
compile 500 with Consul's graph error text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connect.l7.chain import parse_overrides
from connect.l7.decode import ValidationError

from ..errors import Internal
from ..http import BadRequest, Request, Response, Router, decode_json_body
from .common import json_response, read

if TYPE_CHECKING:
    from ..agent.agent import Agent


def _overrides(req: Request) -> Any:
    if req.method != "POST":
        return None
    body = decode_json_body(req, allow_empty=True)
    try:
        parse_overrides(body)
    except ValidationError as exc:
        if exc.field == "OverrideMeshGateway.Mode":
            raise BadRequest(str(exc)) from None
        raise BadRequest(f"Request decoding failed: {exc}", exc.field) from None
    return body


def register(router: Router, agent: Agent) -> None:
    """Add the discovery-chain routes to the one route table."""

    async def chain(req: Request) -> Response:
        name = req.path_params.get("service", "")
        if not name:
            raise BadRequest("Missing chain name")
        dc = req.query_value("compile-dc", "") or agent.datacenter
        if dc != agent.datacenter:
            raise BadRequest(f"No path to datacenter: {dc!r} is not {agent.datacenter!r}")
        args = {"name": name, "datacenter": dc, "overrides": _overrides(req)}
        result, opts = await read(agent, req, "discovery_chain", args)
        value = result.value or {}
        if "Error" in value:
            raise Internal(str(value["Error"]))
        return json_response(value, result, opts)

    router.add(["GET", "POST"], "/v1/discovery-chain/*service", chain, name="discovery_chain")
