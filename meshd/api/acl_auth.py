"""/v1/acl/auth-method*, /v1/acl/binding-rule*, /v1/acl/login and /logout.

https://developer.hashicorp.com/consul/api-docs/acl/auth-methods,
.../acl/binding-rules and .../acl#login-to-auth-method. Reads need
``acl:read``, writes ``acl:write``; login needs no token (the bearer JWT is
the credential) and logout acts on the request's own token. Bodies are
decoded here (unknown fields are a 400 naming the field); the leader
(meshd/agent/acl_login.py) validates against the state and writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from registry.codec import to_obj
from registry.records import ACLAuthMethod, ACLBindingRule

from ..durations import parse_duration_ns
from ..errors import DurationError
from ..http import (
    BadRequest,
    JSONFields,
    Request,
    Response,
    decode_json_body,
)
from .acl_base import Ports, call, enabled, read_list, read_one, reader

_TENANCY = ("Namespace", "Partition")
_STORED = ("CreateIndex", "ModifyIndex")
AUTH_METHOD_FIELDS = JSONFields(
    (
        "Name",
        "Type",
        "DisplayName",
        "Description",
        "MaxTokenTTL",
        "TokenLocality",
        "Config",
        "NamespaceRules",
        *_TENANCY,
        *_STORED,
    )
)
BINDING_RULE_FIELDS = JSONFields(
    (
        "ID",
        "Description",
        "AuthMethod",
        "Selector",
        "BindType",
        "BindName",
        "BindVars",
        *_TENANCY,
        *_STORED,
    )
)
BIND_VARS_FIELDS = JSONFields(("Name",))
LOGIN_FIELDS = JSONFields(("AuthMethod", "BearerToken", "Meta", *_TENANCY))


def _str(body: Mapping[str, Any], key: str, path: str = "") -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"Request decode failed: {path}{key}: must be a string", f"{path}{key}")
    return value


def _tenancy(body: Mapping[str, Any]) -> None:
    for key in _TENANCY:
        if _str(body, key) not in ("", "default"):
            raise BadRequest(f"{key}s are a Consul Enterprise feature", key)


def _duration(raw: Any, field: str) -> float:
    """A Go duration string or integer nanoseconds, in seconds."""
    if raw is None or raw == "":
        return 0.0
    if isinstance(raw, str):
        try:
            return parse_duration_ns(raw) / 1e9
        except DurationError as exc:
            raise BadRequest(f"Request decode failed: {field}: {exc}", field) from None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw / 1e9
    raise BadRequest(f"Request decode failed: {field}: must be a duration", field)


def auth_method_from_body(body: Mapping[str, Any]) -> ACLAuthMethod:
    """The auth method a PUT body describes; raises ``BadRequest``."""
    _tenancy(body)
    config = body.get("Config") or {}
    if not isinstance(config, dict):
        raise BadRequest("Request decode failed: Config: must be an object", "Config")
    return ACLAuthMethod(
        _str(body, "Name"),
        type=_str(body, "Type"),
        display_name=_str(body, "DisplayName"),
        description=_str(body, "Description"),
        max_token_ttl=_duration(body.get("MaxTokenTTL"), "MaxTokenTTL"),
        token_locality=_str(body, "TokenLocality"),
        config=config,
    )


def binding_rule_from_body(body: Mapping[str, Any]) -> ACLBindingRule:
    """The binding rule a PUT body describes; raises ``BadRequest``."""
    _tenancy(body)
    bind_vars = body.get("BindVars") or {}
    if not isinstance(bind_vars, dict):
        raise BadRequest("Request decode failed: BindVars: must be an object", "BindVars")
    bind_vars = BIND_VARS_FIELDS.validate(bind_vars, path="BindVars")
    return ACLBindingRule(
        _str(body, "ID"),
        description=_str(body, "Description"),
        auth_method=_str(body, "AuthMethod"),
        selector=_str(body, "Selector"),
        bind_type=_str(body, "BindType"),
        bind_name=_str(body, "BindName"),
        bind_vars_name=_str(bind_vars, "Name", "BindVars."),
    )


async def method_create(p: Ports, req: Request) -> Response:
    """``PUT /v1/acl/auth-method``."""
    enabled(p, req)
    method = auth_method_from_body(decode_json_body(req, fields=AUTH_METHOD_FIELDS))
    args = {"method": to_obj(method, ACLAuthMethod), "create": True}
    return await call(p, req, "ACL.AuthMethodSet", args)


async def method_update(p: Ports, req: Request) -> Response:
    """``PUT /v1/acl/auth-method/:name``."""
    enabled(p, req)
    method = auth_method_from_body(decode_json_body(req, fields=AUTH_METHOD_FIELDS))
    name = req.path_params["name"]
    if method.name and method.name != name:
        raise BadRequest("Auth Method Name in URL and payload do not match")
    method = replace(method, name=name)
    return await call(p, req, "ACL.AuthMethodSet", {"method": to_obj(method, ACLAuthMethod)})


async def method_read(p: Ports, req: Request) -> Response:
    """``GET /v1/acl/auth-method/:name``."""
    authz = reader(p, req)
    return await read_one(p, req, "acl.auth_method", {"name": req.path_params["name"]}, authz)


async def method_delete(p: Ports, req: Request) -> Response:
    """``DELETE /v1/acl/auth-method/:name``."""
    enabled(p, req)
    return await call(p, req, "ACL.AuthMethodDelete", {"name": req.path_params["name"]})


async def method_list(p: Ports, req: Request) -> Response:
    """``GET /v1/acl/auth-methods`` (stubs, no Config)."""
    return await read_list(p, req, "acl.auth_methods", {}, reader(p, req))


async def rule_create(p: Ports, req: Request) -> Response:
    """``PUT /v1/acl/binding-rule``."""
    enabled(p, req)
    rule = binding_rule_from_body(decode_json_body(req, fields=BINDING_RULE_FIELDS))
    if rule.id:
        raise BadRequest("Cannot specify the ID when creating a new binding rule", "ID")
    args = {"rule": to_obj(rule, ACLBindingRule), "create": True}
    return await call(p, req, "ACL.BindingRuleSet", args)


async def rule_update(p: Ports, req: Request) -> Response:
    """``PUT /v1/acl/binding-rule/:id``."""
    enabled(p, req)
    rule = binding_rule_from_body(decode_json_body(req, fields=BINDING_RULE_FIELDS))
    rule_id = req.path_params["id"]
    if rule.id and rule.id != rule_id:
        raise BadRequest("BindingRule ID in URL and payload do not match")
    rule = replace(rule, id=rule_id)
    return await call(p, req, "ACL.BindingRuleSet", {"rule": to_obj(rule, ACLBindingRule)})


async def rule_read(p: Ports, req: Request) -> Response:
    """``GET /v1/acl/binding-rule/:id``."""
    authz = reader(p, req)
    return await read_one(p, req, "acl.binding_rule", {"id": req.path_params["id"]}, authz)


async def rule_delete(p: Ports, req: Request) -> Response:
    """``DELETE /v1/acl/binding-rule/:id``."""
    enabled(p, req)
    return await call(p, req, "ACL.BindingRuleDelete", {"id": req.path_params["id"]})


async def rule_list(p: Ports, req: Request) -> Response:
    """``GET /v1/acl/binding-rules[?authmethod=]``."""
    authz = reader(p, req)
    args = {"authmethod": req.query_value("authmethod")}
    return await read_list(p, req, "acl.binding_rules", args, authz)


async def login(p: Ports, req: Request) -> Response:
    """``POST /v1/acl/login``: no token needed; the leader validates the JWT."""
    opts = enabled(p, req)
    body = decode_json_body(req, fields=LOGIN_FIELDS)
    _tenancy(body)
    meta = body.get("Meta") or {}
    if not isinstance(meta, dict):
        raise BadRequest("Request decode failed: Meta: must be an object", "Meta")
    args = {
        "auth_method": _str(body, "AuthMethod"),
        "bearer_token": _str(body, "BearerToken"),
        "meta": {str(k): str(v) for k, v in meta.items()},
    }
    token = await p.server_call("ACL.Login", args)
    return Response.json(token, pretty=opts.pretty)


async def logout(p: Ports, req: Request) -> Response:
    """``POST /v1/acl/logout``: deletes the request's own (login) token."""
    opts = enabled(p, req)
    value = await p.server_call("ACL.Logout", {"auth_token": req.token})
    p.acl.forget(req.token)
    return Response.json(value, pretty=opts.pretty)
