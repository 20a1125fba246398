"""/v1/connect/ca/* and /v1/agent/connect/ca/* (the built-in CA's HTTP side).

Shapes follow https://developer.hashicorp.com/consul/api-docs/connect/ca and
https://developer.hashicorp.com/consul/api-docs/agent/connect: roots never
carry private keys, ``PUT /v1/connect/ca/configuration`` runs on the leader
(a key change rotates the root), and the agent's leaf endpoint answers from
its leaf cache with blocking on ``ModifyIndex``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..defs.definitions import check_service_name
from ..http import (
    BadRequest,
    JSONFields,
    QueryOptions,
    Request,
    Response,
    decode_json_body,
)
from . import ports
from .common import check_dc, read, read_json, with_meta


class Ports(ports.Registry, ports.Servers, ports.ACL, ports.Connect, Protocol):
    """What this module needs from the agent."""


CA_CONFIG_FIELDS = JSONFields(
    (
        "Provider",
        "Config",
        "ForceWithoutCrossSigning",
        "ClusterID",
        "State",
        "CreateIndex",
        "ModifyIndex",
    )
)


def _roots_pem(value: Mapping[str, Any]) -> str:
    """``?pem=true``: every root and intermediate, PEM-concatenated."""
    out: list[str] = []
    for root in value.get("Roots") or []:
        out.append(str(root.get("RootCert", "")).strip())
        out.extend(str(c).strip() for c in root.get("IntermediateCerts") or [])
    return "\n".join(p for p in out if p) + "\n"


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def roots(p: Ports, req: Request) -> Response:
    if req.query_value("pem", "") in ("true", "1"):
        result, _ = await read(p, req, "ca.roots", {})
        resp = Response.text(_roots_pem(result.value or {}))
        resp.set_header("Content-Type", "application/pem-certificate-chain")
        return with_meta(resp, result)
    return await read_json(p, req, "ca.roots", {})


async def get_config(p: Ports, req: Request) -> Response:
    return await read_json(p, req, "ca.config", {})


async def set_config(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    body = decode_json_body(req, fields=CA_CONFIG_FIELDS)
    config = body.get("Config") or {}
    if not isinstance(config, Mapping):
        raise BadRequest("Config must be an object", "Config")
    provider = body.get("Provider") or "consul"
    if not isinstance(provider, str):
        raise BadRequest("Provider must be a string", "Provider")
    args = {
        "provider": provider,
        "config": dict(config),
        "force_without_cross_signing": bool(body.get("ForceWithoutCrossSigning")),
    }
    await p.server_call("ConnectCA.ConfigurationSet", args)
    return Response(200)


async def leaf(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    service = req.path_params["service"]
    # Refused before the leaf cache starts a signing task for it.
    check_service_name(service, "service")
    token = p.acl.effective_secret(req.token) if p.acl.enabled else ""
    cert = await p.leaf_cache.get(service, opts.index, opts.wait, token=token)
    resp = Response.json(cert, pretty=opts.pretty)
    resp.set_header("X-Consul-Index", str(cert["ModifyIndex"]))
    return resp
