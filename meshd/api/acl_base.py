"""What every /v1/acl/* handler shares (api/acl.py, api/acl_auth.py): the
"ACL support disabled" answer, the caller's ``acl:read``/``acl:write``
checks, Consul's 403 ``ACL not found``, reads that redact ``SecretID``,
writes forwarded to the leader with the caller's token, and ``Kind``: the
create/update/read/delete/list handlers of policies, roles, auth methods and
binding rules, written once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from registry.codec import to_obj

from ..acl import ACLAuthorizer, Permission
from ..acl.request import authorizer
from ..errors import ACLDisabled, ACLNotFound
from ..http import BadRequest, JSONFields, QueryOptions, Request, Response, decode_json_body
from . import ports
from .common import check_dc, json_response, read

REDACTED = "<hidden>"
TENANCY = ("Namespace", "Partition")  # accepted when empty or "default"


def decode_error(field: str, what: str) -> BadRequest:
    """Consul's 400 ``Request decode failed: <field>: <what>``."""
    return BadRequest(f"Request decode failed: {field}: {what}", field)


def body_str(body: Mapping[str, Any], key: str, path: str = "") -> str:
    """``body[key]`` as a string ("" when absent); ``path`` prefixes the field named."""
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise decode_error(f"{path}{key}", "must be a string")
    return value


def check_tenancy(body: Mapping[str, Any], path: str = "") -> None:
    """A 400 for a namespace or partition other than the default (Enterprise only)."""
    for key in TENANCY:
        if body_str(body, key, path) not in ("", "default"):
            raise BadRequest(f"{key}s are a Consul Enterprise feature", f"{path}{key}")


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


@dataclass(frozen=True)
class Kind:
    """One /v1/acl object kind (policy, role, auth method, binding rule):
    its handlers are the methods below; Consul's texts are data."""

    kind: str  # "policy", as Consul's texts name it: "Missing policy Name"
    arg: str  # the RPC argument holding the record: "policy"
    rpc: str  # "Policy": ACL.PolicySet and ACL.PolicyDelete
    read: str  # "acl.policy": the read by key (and "<read>_by_name")
    list_read: str  # "acl.policies"
    record: type
    fields: JSONFields
    from_body: Callable[[Mapping[str, Any]], Any]
    key: str  # the record's key attribute and path parameter: "id" or "name"
    mismatch: str  # "Policy ID in URL and payload do not match"
    list_query: tuple[str, ...] = ()  # query parameters the list read takes
    no_key_on_create: bool = True  # a key in a create body is a 400

    async def create(self, p: Ports, req: Request) -> Response:
        enabled(p, req)
        record = self.from_body(decode_json_body(req, fields=self.fields))
        if self.no_key_on_create and getattr(record, self.key):
            raise BadRequest(f"Cannot specify the ID when creating a new {self.kind}", "ID")
        args = {self.arg: to_obj(record, self.record), "create": True}
        return await call(p, req, f"ACL.{self.rpc}Set", args)

    async def update(self, p: Ports, req: Request) -> Response:
        enabled(p, req)
        record = self.from_body(decode_json_body(req, fields=self.fields))
        key = req.path_params[self.key]
        if getattr(record, self.key) not in ("", key):
            raise BadRequest(self.mismatch)
        record = replace(record, **{self.key: key})
        return await call(p, req, f"ACL.{self.rpc}Set", {self.arg: to_obj(record, self.record)})

    async def get(self, p: Ports, req: Request) -> Response:
        authz = reader(p, req)
        args = {self.key: req.path_params[self.key]}
        return await read_one(p, req, self.read, args, authz)

    async def by_name(self, p: Ports, req: Request) -> Response:
        authz = reader(p, req)
        name = req.path_params["name"]
        if not name:
            raise BadRequest(f"Missing {self.kind} Name")
        return await read_one(p, req, f"{self.read}_by_name", {"name": name}, authz)

    async def delete(self, p: Ports, req: Request) -> Response:
        enabled(p, req)
        args = {self.key: req.path_params[self.key]}
        return await call(p, req, f"ACL.{self.rpc}Delete", args)

    async def list(self, p: Ports, req: Request) -> Response:
        authz = reader(p, req)
        args = {name: req.query_value(name) for name in self.list_query}
        return await read_list(p, req, self.list_read, args, authz)
