"""/v1/acl/* (https://developer.hashicorp.com/consul/api-docs/acl and its
tokens, policies, roles and templated-policies pages).

Follows Consul's agent/acl_endpoint.go. With ``acl.enabled`` false every
endpoint answers 401 ``ACL support disabled``, as Consul's
``checkACLDisabled`` does. Reads need ``acl:read``, writes ``acl:write``
(checked here, on the caller's authorizer from ``acl_context``); a token's
``SecretID`` is shown only to callers with ``acl:write`` and is ``<hidden>``
otherwise, and ``GET /v1/acl/token/self`` needs only the token itself. A
missing token, policy or role is Consul's 403 ``ACL not found``
(``acl.ErrNotFound``); a bootstrap after the first is 403 ``Permission
denied: ACL bootstrap no longer allowed (reset index: N)``.

Bodies are decoded here into registry records (unknown fields are a 400
naming the field); names are resolved, IDs chosen and the rest validated by
the leader (meshd/agent/acl_server.py), where the state they depend on is.
Reads are the ``acl.*`` entries of the read table and block on ``?index=``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from registry.codec import to_obj
from registry.records import (
    ACLLink,
    ACLNodeIdentity,
    ACLPolicy,
    ACLRole,
    ACLServiceIdentity,
    ACLTemplatedPolicy,
    ACLToken,
)

from ..acl import Permission, parse_rules
from ..acl.errors import RulesError
from ..acl.templated import TEMPLATES, TemplateError, templated_policy_rules
from ..agent.acl_table_reads import policy_hash
from ..durations import parse_duration_ns
from ..errors import ACLNotFound, DurationError, Internal
from ..http import (
    BadRequest,
    JSONFields,
    Request,
    Response,
    decode_json_body,
)
from .acl_base import (
    TENANCY,
    Kind,
    Ports,
    body_str,
    call,
    check_tenancy,
    decode_error,
    enabled,
    read_list,
    read_one,
    require,
)
from .common import json_response, read

_STORED = ("Hash", "CreateIndex", "ModifyIndex")  # accepted (a GET body can be PUT back), ignored
TOKEN_FIELDS = JSONFields(
    (
        "AccessorID",
        "SecretID",
        "Description",
        "Policies",
        "Roles",
        "ServiceIdentities",
        "NodeIdentities",
        "TemplatedPolicies",
        "Local",
        "ExpirationTime",
        "ExpirationTTL",
        "CreateTime",
        "AuthMethod",
        *TENANCY,
        *_STORED,
    )
)
POLICY_FIELDS = JSONFields(
    ("ID", "Name", "Description", "Rules", "Datacenters", *TENANCY, *_STORED)
)
ROLE_FIELDS = JSONFields(
    (
        "ID",
        "Name",
        "Description",
        "Policies",
        "ServiceIdentities",
        "NodeIdentities",
        "TemplatedPolicies",
        *TENANCY,
        *_STORED,
    )
)
LINK_FIELDS = JSONFields(("ID", "Name", *TENANCY))
SERVICE_IDENTITY_FIELDS = JSONFields(("ServiceName", "Datacenters"))
NODE_IDENTITY_FIELDS = JSONFields(("NodeName", "Datacenter"))
TEMPLATED_POLICY_FIELDS = JSONFields(("TemplateName", "TemplateVariables", "Datacenters"))
TEMPLATE_VARIABLE_FIELDS = JSONFields(("Name",))
PREVIEW_FIELDS = JSONFields(("Name",))


# --------------------------------------------------------------------- decoding


def _str_list(body: Mapping[str, Any], key: str, path: str = "") -> tuple[str, ...]:
    value = body.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise decode_error(f"{path}{key}", "must be a list of strings")
    return tuple(value)


def _objects(body: Mapping[str, Any], key: str, fields: JSONFields) -> list[dict[str, Any]]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise decode_error(key, "must be a list of objects")
    return [fields.validate(item, path=f"{key}[{i}]") for i, item in enumerate(value)]


def _links(body: Mapping[str, Any], key: str) -> tuple[ACLLink, ...]:
    out = []
    for i, item in enumerate(_objects(body, key, LINK_FIELDS)):
        path = f"{key}[{i}]."
        check_tenancy(item, path)
        out.append(ACLLink(body_str(item, "ID", path), body_str(item, "Name", path)))
    return tuple(out)


def _identities(
    body: Mapping[str, Any],
) -> tuple[tuple[ACLServiceIdentity, ...], tuple[ACLNodeIdentity, ...]]:
    services = tuple(
        ACLServiceIdentity(
            body_str(item, "ServiceName", f"ServiceIdentities[{i}]."),
            _str_list(item, "Datacenters", f"ServiceIdentities[{i}]."),
        )
        for i, item in enumerate(_objects(body, "ServiceIdentities", SERVICE_IDENTITY_FIELDS))
    )
    nodes = tuple(
        ACLNodeIdentity(
            body_str(item, "NodeName", f"NodeIdentities[{i}]."),
            body_str(item, "Datacenter", f"NodeIdentities[{i}]."),
        )
        for i, item in enumerate(_objects(body, "NodeIdentities", NODE_IDENTITY_FIELDS))
    )
    return services, nodes


def _templated(body: Mapping[str, Any]) -> tuple[ACLTemplatedPolicy, ...]:
    """``TemplatedPolicies``: ``[{"TemplateName", "TemplateVariables": {"Name"},
    "Datacenters"}]`` (validated against the templates by the leader)."""
    out = []
    for i, item in enumerate(_objects(body, "TemplatedPolicies", TEMPLATED_POLICY_FIELDS)):
        path = f"TemplatedPolicies[{i}]."
        variables = item.get("TemplateVariables") or {}
        if not isinstance(variables, dict):
            raise decode_error(f"{path}TemplateVariables", "must be an object")
        variables = TEMPLATE_VARIABLE_FIELDS.validate(variables, path=f"{path}TemplateVariables")
        out.append(
            ACLTemplatedPolicy(
                body_str(item, "TemplateName", path),
                body_str(variables, "Name", f"{path}TemplateVariables."),
                _str_list(item, "Datacenters", path),
            )
        )
    return tuple(out)


def _ttl_seconds(raw: Any) -> float | None:
    """``ExpirationTTL``: a Go duration string or nanoseconds (Go's JSON form)."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        # Go's time.ParseDuration takes a sign; Consul then refuses a negative TTL.
        sign = -1 if raw.startswith("-") else 1
        try:
            return sign * parse_duration_ns(raw.removeprefix("-")) / 1e9
        except DurationError as exc:
            raise decode_error("ExpirationTTL", str(exc)) from None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return raw / 1e9
    raise decode_error("ExpirationTTL", "must be a duration")


def token_from_body(body: Mapping[str, Any]) -> tuple[ACLToken, float | None]:
    """The token a PUT body describes (links may name policies/roles by name
    only) and its ``ExpirationTTL`` in seconds. Raises ``BadRequest``."""
    check_tenancy(body)
    local = body.get("Local", False)
    if not isinstance(local, bool):
        raise decode_error("Local", "must be a boolean")
    services, nodes = _identities(body)
    token = ACLToken(
        body_str(body, "AccessorID"),
        body_str(body, "SecretID"),
        body_str(body, "Description"),
        policies=_links(body, "Policies"),
        roles=_links(body, "Roles"),
        service_identities=services,
        node_identities=nodes,
        templated_policies=_templated(body),
        local=local,
        expiration_time=body_str(body, "ExpirationTime"),
        auth_method=body_str(body, "AuthMethod"),
    )
    return token, _ttl_seconds(body.get("ExpirationTTL"))


def policy_from_body(body: Mapping[str, Any]) -> ACLPolicy:
    """The policy a PUT body describes; raises ``BadRequest``."""
    check_tenancy(body)
    return ACLPolicy(
        body_str(body, "ID"),
        name=body_str(body, "Name"),
        description=body_str(body, "Description"),
        rules=body_str(body, "Rules"),
        datacenters=_str_list(body, "Datacenters"),
    )


def role_from_body(body: Mapping[str, Any]) -> ACLRole:
    """The role a PUT body describes; raises ``BadRequest``."""
    check_tenancy(body)
    services, nodes = _identities(body)
    return ACLRole(
        body_str(body, "ID"),
        name=body_str(body, "Name"),
        description=body_str(body, "Description"),
        policies=_links(body, "Policies"),
        service_identities=services,
        node_identities=nodes,
        templated_policies=_templated(body),
    )


def _matching_id(given: str, url_id: str, what: str) -> str:
    if given and given != url_id:
        raise BadRequest(f"{what} ID in URL and payload do not match")
    return url_id


# ------------------------------------------------------------ templated policies


def templated_policy_json(name: str) -> dict[str, str]:
    """``{"TemplateName", "Schema", "Template", "Description"}``; raises ``BadRequest``."""
    found = TEMPLATES.get(name)
    if found is None:
        raise BadRequest(f"Invalid templated policy Name: {name}")
    return {
        "TemplateName": name,
        "Schema": found.schema,
        "Template": found.template,
        "Description": found.description,
    }


def preview_templated_policy(name: str, variables: Mapping[str, Any]) -> dict[str, Any]:
    """The synthetic policy ``name`` renders to with ``variables``, as Consul's
    ``POST /v1/acl/templated-policy/preview/:name``. Raises ``BadRequest``."""
    templated_policy_json(name)
    try:
        rules = templated_policy_rules(name, body_str(variables, "Name"))
    except TemplateError as exc:
        raise BadRequest(str(exc), "Name") from None
    try:
        parse_rules(rules)
    except RulesError as exc:  # a template bug, not the caller's
        raise Internal(f"templated policy {name}: {exc}") from None
    policy_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"meshd:{name}:{rules}"))
    policy = ACLPolicy(
        policy_id,
        name=f"synthetic-policy-{policy_id}",
        description=f"synthetic policy generated from templated policy: {name}",
        rules=rules,
    )
    return {
        "ID": policy.id,
        "Name": policy.name,
        "Description": policy.description,
        "Rules": policy.rules,
        "Hash": policy_hash(policy),
        "CreateIndex": 0,
        "ModifyIndex": 0,
    }


# ----------------------------------------------------------------------- handlers
# Module-level: each takes the ports it uses and the request; the rows of
# meshd/api/routes.py ROUTES add them with their paths, names and ACL rules.

# ----------------------------------------------------------- bootstrap and tokens


async def bootstrap(p: Ports, req: Request) -> Response:
    opts = enabled(p, req)
    token = await p.server_call("ACL.Bootstrap", {})
    # Consul still sends the pre-1.4 ``ID`` (the secret) next to the token.
    return Response.json({"ID": token["SecretID"], **token}, pretty=opts.pretty)


async def token_self(p: Ports, req: Request) -> Response:
    enabled(p, req)
    secret = req.token or p.tokens.get("default")
    if not secret:
        raise ACLNotFound()
    result, opts = await read(p, req, "acl.token_self", {"secret": secret, "now": time.time()})
    if result.value is None:
        raise ACLNotFound()
    return json_response(result.value, result, opts)


async def token_create(p: Ports, req: Request) -> Response:
    enabled(p, req)
    body = decode_json_body(req, fields=TOKEN_FIELDS, allow_empty=True) or {}
    token, ttl = token_from_body(body)
    if token.auth_method:
        raise BadRequest("AuthMethod field is disallowed outside of login", "AuthMethod")
    args = {"token": to_obj(token, ACLToken), "ttl": ttl, "create": True}
    return await call(p, req, "ACL.TokenSet", args)


async def token_read(p: Ports, req: Request) -> Response:
    enabled(p, req)
    authz = require(req, Permission.ACL_READ)
    args = {"id": req.path_params["id"], "now": time.time()}
    return await read_one(p, req, "acl.token", args, authz)


async def token_update(p: Ports, req: Request) -> Response:
    enabled(p, req)
    body = decode_json_body(req, fields=TOKEN_FIELDS, allow_empty=True) or {}
    token, ttl = token_from_body(body)
    accessor = _matching_id(token.accessor_id, req.path_params["id"], "Token Accessor")
    token = replace(token, accessor_id=accessor)
    args = {"token": to_obj(token, ACLToken), "ttl": ttl, "create": False}
    return await call(p, req, "ACL.TokenSet", args)


async def token_delete(p: Ports, req: Request) -> Response:
    enabled(p, req)
    args = {"id": req.path_params["id"], "caller": req.token}
    return await call(p, req, "ACL.TokenDelete", args)


async def token_clone(p: Ports, req: Request) -> Response:
    enabled(p, req)
    body = decode_json_body(req, fields=TOKEN_FIELDS, allow_empty=True) or {}
    args = {"id": req.path_params["id"], "description": body_str(body, "Description")}
    return await call(p, req, "ACL.TokenClone", args)


async def token_list(p: Ports, req: Request) -> Response:
    enabled(p, req)
    authz = require(req, Permission.ACL_READ)
    filters = {k: req.query_value(k) for k in ("policy", "role", "authmethod", "servicename")}
    if sum(1 for v in filters.values() if v) > 1:
        # Consul's state.ACLTokenList refuses the combination (there as a 500).
        raise BadRequest(
            "can only filter by one of policy, role, serviceName, or methodName at a time"
        )
    args = {**filters, "now": time.time()}
    return await read_list(p, req, "acl.tokens", args, authz)


# ----------------------------------------------------------- policies and roles

POLICY = Kind(
    "policy",
    "policy",
    "Policy",
    "acl.policy",
    "acl.policies",
    ACLPolicy,
    POLICY_FIELDS,
    policy_from_body,
    "id",
    "Policy ID in URL and payload do not match",
)
ROLE = Kind(
    "role",
    "role",
    "Role",
    "acl.role",
    "acl.roles",
    ACLRole,
    ROLE_FIELDS,
    role_from_body,
    "id",
    "Role ID in URL and payload do not match",
    list_query=("policy",),
)
policy_create, policy_update, policy_delete = POLICY.create, POLICY.update, POLICY.delete
policy_read, policy_by_name, policy_list = POLICY.get, POLICY.by_name, POLICY.list
role_create, role_update, role_delete = ROLE.create, ROLE.update, ROLE.delete
role_read, role_by_name, role_list = ROLE.get, ROLE.by_name, ROLE.list


# ----------------------------------------------------------- templated policies


async def templated_list(p: Ports, req: Request) -> Response:
    opts = enabled(p, req)
    require(req, Permission.ACL_READ)
    out = {name: templated_policy_json(name) for name in TEMPLATES}
    return Response.json(out, pretty=opts.pretty)


async def templated_read(p: Ports, req: Request) -> Response:
    opts = enabled(p, req)
    require(req, Permission.ACL_READ)
    return Response.json(templated_policy_json(req.path_params["name"]), pretty=opts.pretty)


async def templated_preview(p: Ports, req: Request) -> Response:
    opts = enabled(p, req)
    require(req, Permission.ACL_READ)
    body = decode_json_body(req, fields=PREVIEW_FIELDS, allow_empty=True) or {}
    preview = preview_templated_policy(req.path_params["name"], body)
    return Response.json(preview, pretty=opts.pretty)
