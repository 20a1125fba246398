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
from typing import Any

from registry.records import ACLAuthMethod, ACLBindingRule

from ..durations import parse_duration_ns
from ..errors import DurationError
from ..http import (
    JSONFields,
    Request,
    Response,
    decode_json_body,
)
from .acl_base import TENANCY, Kind, Ports, body_str, check_tenancy, decode_error, enabled

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
        *TENANCY,
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
        *TENANCY,
        *_STORED,
    )
)
BIND_VARS_FIELDS = JSONFields(("Name",))
LOGIN_FIELDS = JSONFields(("AuthMethod", "BearerToken", "Meta", *TENANCY))


def _duration(raw: Any, field: str) -> float:
    """A Go duration string or integer nanoseconds, in seconds."""
    if raw is None or raw == "":
        return 0.0
    if isinstance(raw, str):
        try:
            return parse_duration_ns(raw) / 1e9
        except DurationError as exc:
            raise decode_error(field, str(exc)) from None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw / 1e9
    raise decode_error(field, "must be a duration")


def auth_method_from_body(body: Mapping[str, Any]) -> ACLAuthMethod:
    """The auth method a PUT body describes; raises ``BadRequest``."""
    check_tenancy(body)
    config = body.get("Config") or {}
    if not isinstance(config, dict):
        raise decode_error("Config", "must be an object")
    return ACLAuthMethod(
        body_str(body, "Name"),
        type=body_str(body, "Type"),
        display_name=body_str(body, "DisplayName"),
        description=body_str(body, "Description"),
        max_token_ttl=_duration(body.get("MaxTokenTTL"), "MaxTokenTTL"),
        token_locality=body_str(body, "TokenLocality"),
        config=config,
    )


def binding_rule_from_body(body: Mapping[str, Any]) -> ACLBindingRule:
    """The binding rule a PUT body describes; raises ``BadRequest``."""
    check_tenancy(body)
    bind_vars = body.get("BindVars") or {}
    if not isinstance(bind_vars, dict):
        raise decode_error("BindVars", "must be an object")
    bind_vars = BIND_VARS_FIELDS.validate(bind_vars, path="BindVars")
    return ACLBindingRule(
        body_str(body, "ID"),
        description=body_str(body, "Description"),
        auth_method=body_str(body, "AuthMethod"),
        selector=body_str(body, "Selector"),
        bind_type=body_str(body, "BindType"),
        bind_name=body_str(body, "BindName"),
        bind_vars_name=body_str(bind_vars, "Name", "BindVars."),
    )


METHOD = Kind(
    "auth method",
    "method",
    "AuthMethod",
    "acl.auth_method",
    "acl.auth_methods",
    ACLAuthMethod,
    AUTH_METHOD_FIELDS,
    auth_method_from_body,
    "name",
    "Auth Method Name in URL and payload do not match",
    no_key_on_create=False,  # Consul's ACL.AuthMethodSet upserts by name
)
RULE = Kind(
    "binding rule",
    "rule",
    "BindingRule",
    "acl.binding_rule",
    "acl.binding_rules",
    ACLBindingRule,
    BINDING_RULE_FIELDS,
    binding_rule_from_body,
    "id",
    "BindingRule ID in URL and payload do not match",
    list_query=("authmethod",),
)
# The list of auth methods is of stubs (no Config); binding rules filter by ?authmethod=.
method_create, method_update, method_delete = METHOD.create, METHOD.update, METHOD.delete
method_read, method_list = METHOD.get, METHOD.list
rule_create, rule_update, rule_delete = RULE.create, RULE.update, RULE.delete
rule_read, rule_list = RULE.get, RULE.list


async def login(p: Ports, req: Request) -> Response:
    """``POST /v1/acl/login``: no token needed; the leader validates the JWT."""
    opts = enabled(p, req)
    body = decode_json_body(req, fields=LOGIN_FIELDS)
    check_tenancy(body)
    meta = body.get("Meta") or {}
    if not isinstance(meta, dict):
        raise decode_error("Meta", "must be an object")
    args = {
        "auth_method": body_str(body, "AuthMethod"),
        "bearer_token": body_str(body, "BearerToken"),
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
