"""What every /v1/acl/* handler shares (api/acl.py, api/acl_auth.py): the
"ACL support disabled" answer, the caller's ``acl:read``/``acl:write``
checks, Consul's 403 ``ACL not found``, reads that redact ``SecretID``, and
writes forwarded to the leader with the caller's token."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ..acl import ACLAuthorizer, Permission
from ..acl.request import authorizer
from ..errors import ACLDisabled, ACLNotFound
from ..http import QueryOptions, Request, Response
from . import ports
from .common import check_dc, json_response, read

REDACTED = "<hidden>"


class Ports(ports.Registry, ports.Servers, ports.Configured, ports.ACL, ports.Tokens, Protocol):
    """What the ACL handlers need from the agent."""


def enabled(p: Ports, req: Request) -> QueryOptions:
    """The request's options; 401 ``ACL support disabled`` without ACLs."""
    if not p.config.acl.enabled:
        raise ACLDisabled()
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    return opts


def require(req: Request, permission: Permission) -> ACLAuthorizer:
    authz = authorizer(req)
    authz.require(permission)
    return authz


def reader(p: Ports, req: Request) -> ACLAuthorizer:
    """``acl:read`` for the caller, or ``PermissionDenied``."""
    enabled(p, req)
    return require(req, Permission.ACL_READ)


def redact(token: dict[str, Any], authz: ACLAuthorizer) -> dict[str, Any]:
    if "SecretID" in token and not authz.acl_write():
        return {**token, "SecretID": REDACTED}
    return token


async def read_one(
    p: Ports, req: Request, name: str, args: Mapping[str, Any], authz: ACLAuthorizer
) -> Response:
    result, opts = await read(p, req, name, args)
    if result.value is None:
        raise ACLNotFound()
    value = result.value
    if name.startswith("acl.token"):
        value = redact(value, authz)
    return json_response(value, result, opts)


async def read_list(
    p: Ports, req: Request, name: str, args: Mapping[str, Any], authz: ACLAuthorizer
) -> Response:
    result, opts = await read(p, req, name, args)
    items = result.value or []
    if name == "acl.tokens":
        items = [redact(t, authz) for t in items]
    return json_response(items, result, opts)


async def call(p: Ports, req: Request, method: str, args: Mapping[str, Any]) -> Response:
    opts = enabled(p, req)
    require(req, Permission.ACL_WRITE)
    # The servers check the token again (see ACLServer's ``resolve``).
    value = await p.server_call(method, {**args, "auth_token": req.token})
    return Response.json(value, pretty=opts.pretty)
