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
    BadRequest,
    JSONFields,
    Request,
    Response,
    decode_json_body,
)
from .acl_base import Kind, Ports, enabled

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
