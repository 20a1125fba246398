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
from typing import TYPE_CHECKING, Any

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

from ..acl import ACLAuthorizer, Permission, parse_rules
from ..acl.errors import RulesError
from ..acl.templated import TEMPLATES, TemplateError, templated_policy_rules
from ..agent.acl_table_reads import policy_hash
from ..durations import parse_duration_ns
from ..errors import ACLDisabled, ACLNotFound, DurationError, Internal
from ..http import (
    BadRequest,
    JSONFields,
    QueryOptions,
    Request,
    Response,
    Router,
    decode_json_body,
)
from . import acl_auth
from .acl_context import authorizer
from .common import check_dc, json_response, read

if TYPE_CHECKING:
    from ..agent.agent import Agent

REDACTED = "<hidden>"
_TENANCY = ("Namespace", "Partition")
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
        *_TENANCY,
        *_STORED,
    )
)
POLICY_FIELDS = JSONFields(
    ("ID", "Name", "Description", "Rules", "Datacenters", *_TENANCY, *_STORED)
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
        *_TENANCY,
        *_STORED,
    )
)
LINK_FIELDS = JSONFields(("ID", "Name", *_TENANCY))
SERVICE_IDENTITY_FIELDS = JSONFields(("ServiceName", "Datacenters"))
NODE_IDENTITY_FIELDS = JSONFields(("NodeName", "Datacenter"))
TEMPLATED_POLICY_FIELDS = JSONFields(("TemplateName", "TemplateVariables", "Datacenters"))
TEMPLATE_VARIABLE_FIELDS = JSONFields(("Name",))
PREVIEW_FIELDS = JSONFields(("Name",))


# --------------------------------------------------------------------- decoding


def _decode_error(field: str, what: str) -> BadRequest:
    return BadRequest(f"Request decode failed: {field}: {what}", field)


def _str(body: Mapping[str, Any], key: str, path: str = "") -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _decode_error(f"{path}{key}", "must be a string")
    return value


def _str_list(body: Mapping[str, Any], key: str, path: str = "") -> tuple[str, ...]:
    value = body.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _decode_error(f"{path}{key}", "must be a list of strings")
    return tuple(value)


def _objects(body: Mapping[str, Any], key: str, fields: JSONFields) -> list[dict[str, Any]]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _decode_error(key, "must be a list of objects")
    return [fields.validate(item, path=f"{key}[{i}]") for i, item in enumerate(value)]


def _check_tenancy(body: Mapping[str, Any], path: str = "") -> None:
    for key in _TENANCY:
        if _str(body, key, path) not in ("", "default"):
            raise BadRequest(f"{key}s are a Consul Enterprise feature", f"{path}{key}")


def _links(body: Mapping[str, Any], key: str) -> tuple[ACLLink, ...]:
    out = []
    for i, item in enumerate(_objects(body, key, LINK_FIELDS)):
        path = f"{key}[{i}]."
        _check_tenancy(item, path)
        out.append(ACLLink(_str(item, "ID", path), _str(item, "Name", path)))
    return tuple(out)


def _identities(
    body: Mapping[str, Any],
) -> tuple[tuple[ACLServiceIdentity, ...], tuple[ACLNodeIdentity, ...]]:
    services = tuple(
        ACLServiceIdentity(
            _str(item, "ServiceName", f"ServiceIdentities[{i}]."),
            _str_list(item, "Datacenters", f"ServiceIdentities[{i}]."),
        )
        for i, item in enumerate(_objects(body, "ServiceIdentities", SERVICE_IDENTITY_FIELDS))
    )
    nodes = tuple(
        ACLNodeIdentity(
            _str(item, "NodeName", f"NodeIdentities[{i}]."),
            _str(item, "Datacenter", f"NodeIdentities[{i}]."),
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
            raise _decode_error(f"{path}TemplateVariables", "must be an object")
        variables = TEMPLATE_VARIABLE_FIELDS.validate(variables, path=f"{path}TemplateVariables")
        out.append(
            ACLTemplatedPolicy(
                _str(item, "TemplateName", path),
                _str(variables, "Name", f"{path}TemplateVariables."),
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
            raise _decode_error("ExpirationTTL", str(exc)) from None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return raw / 1e9
    raise _decode_error("ExpirationTTL", "must be a duration")


def token_from_body(body: Mapping[str, Any]) -> tuple[ACLToken, float | None]:
    """The token a PUT body describes (links may name policies/roles by name
    only) and its ``ExpirationTTL`` in seconds. Raises ``BadRequest``."""
    _check_tenancy(body)
    local = body.get("Local", False)
    if not isinstance(local, bool):
        raise _decode_error("Local", "must be a boolean")
    services, nodes = _identities(body)
    token = ACLToken(
        _str(body, "AccessorID"),
        _str(body, "SecretID"),
        _str(body, "Description"),
        policies=_links(body, "Policies"),
        roles=_links(body, "Roles"),
        service_identities=services,
        node_identities=nodes,
        templated_policies=_templated(body),
        local=local,
        expiration_time=_str(body, "ExpirationTime"),
        auth_method=_str(body, "AuthMethod"),
    )
    return token, _ttl_seconds(body.get("ExpirationTTL"))


def policy_from_body(body: Mapping[str, Any]) -> ACLPolicy:
    """The policy a PUT body describes; raises ``BadRequest``."""
    _check_tenancy(body)
    return ACLPolicy(
        _str(body, "ID"),
        name=_str(body, "Name"),
        description=_str(body, "Description"),
        rules=_str(body, "Rules"),
        datacenters=_str_list(body, "Datacenters"),
    )


def role_from_body(body: Mapping[str, Any]) -> ACLRole:
    """The role a PUT body describes; raises ``BadRequest``."""
    _check_tenancy(body)
    services, nodes = _identities(body)
    return ACLRole(
        _str(body, "ID"),
        name=_str(body, "Name"),
        description=_str(body, "Description"),
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
        rules = templated_policy_rules(name, _str(variables, "Name"))
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


# ----------------------------------------------------------------------- routes


def _require(req: Request, permission: Permission) -> ACLAuthorizer:
    authz = authorizer(req)
    authz.require(permission)
    return authz


def _redact(token: dict[str, Any], authz: ACLAuthorizer) -> dict[str, Any]:
    if "SecretID" in token and not authz.acl_write():
        return {**token, "SecretID": REDACTED}
    return token


def register(router: Router, agent: Agent) -> None:
    """Add the /v1/acl routes to the one route table."""

    def enabled(req: Request) -> QueryOptions:
        if not agent.config.acl.enabled:
            raise ACLDisabled()
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        return opts

    async def read_one(
        req: Request, name: str, args: Mapping[str, Any], authz: ACLAuthorizer
    ) -> Response:
        result, opts = await read(agent, req, name, args)
        if result.value is None:
            raise ACLNotFound()
        value = result.value
        if name.startswith("acl.token"):
            value = _redact(value, authz)
        return json_response(value, result, opts)

    async def read_list(
        req: Request, name: str, args: Mapping[str, Any], authz: ACLAuthorizer
    ) -> Response:
        result, opts = await read(agent, req, name, args)
        items = result.value or []
        if name == "acl.tokens":
            items = [_redact(t, authz) for t in items]
        return json_response(items, result, opts)

    async def call(req: Request, method: str, args: Mapping[str, Any]) -> Response:
        opts = enabled(req)
        _require(req, Permission.ACL_WRITE)
        # The servers check the token again (see ACLServer's ``resolve``).
        value = await agent.server_call(method, {**args, "auth_token": req.token})
        return Response.json(value, pretty=opts.pretty)

    # -- bootstrap and tokens

    async def bootstrap(req: Request) -> Response:
        opts = enabled(req)
        token = await agent.server_call("ACL.Bootstrap", {})
        # Consul still sends the pre-1.4 ``ID`` (the secret) next to the token.
        return Response.json({"ID": token["SecretID"], **token}, pretty=opts.pretty)

    async def token_self(req: Request) -> Response:
        enabled(req)
        secret = req.token or agent.tokens.get("default")
        if not secret:
            raise ACLNotFound()
        result, opts = await read(
            agent, req, "acl.token_self", {"secret": secret, "now": time.time()}
        )
        if result.value is None:
            raise ACLNotFound()
        return json_response(result.value, result, opts)

    async def token_create(req: Request) -> Response:
        enabled(req)
        body = decode_json_body(req, fields=TOKEN_FIELDS, allow_empty=True) or {}
        token, ttl = token_from_body(body)
        if token.auth_method:
            raise BadRequest("AuthMethod field is disallowed outside of login", "AuthMethod")
        args = {"token": to_obj(token, ACLToken), "ttl": ttl, "create": True}
        return await call(req, "ACL.TokenSet", args)

    async def token_read(req: Request) -> Response:
        enabled(req)
        authz = _require(req, Permission.ACL_READ)
        args = {"id": req.path_params["id"], "now": time.time()}
        return await read_one(req, "acl.token", args, authz)

    async def token_update(req: Request) -> Response:
        enabled(req)
        body = decode_json_body(req, fields=TOKEN_FIELDS, allow_empty=True) or {}
        token, ttl = token_from_body(body)
        accessor = _matching_id(token.accessor_id, req.path_params["id"], "Token Accessor")
        token = replace(token, accessor_id=accessor)
        args = {"token": to_obj(token, ACLToken), "ttl": ttl, "create": False}
        return await call(req, "ACL.TokenSet", args)

    async def token_delete(req: Request) -> Response:
        enabled(req)
        args = {"id": req.path_params["id"], "caller": req.token}
        return await call(req, "ACL.TokenDelete", args)

    async def token_clone(req: Request) -> Response:
        enabled(req)
        body = decode_json_body(req, fields=TOKEN_FIELDS, allow_empty=True) or {}
        args = {"id": req.path_params["id"], "description": _str(body, "Description")}
        return await call(req, "ACL.TokenClone", args)

    async def token_list(req: Request) -> Response:
        enabled(req)
        authz = _require(req, Permission.ACL_READ)
        filters = {k: req.query_value(k) for k in ("policy", "role", "authmethod", "servicename")}
        if sum(1 for v in filters.values() if v) > 1:
            # Consul's state.ACLTokenList refuses the combination (there as a 500).
            raise BadRequest(
                "can only filter by one of policy, role, serviceName, or methodName at a time"
            )
        args = {**filters, "now": time.time()}
        return await read_list(req, "acl.tokens", args, authz)

    # -- policies

    async def policy_create(req: Request) -> Response:
        enabled(req)
        policy = policy_from_body(decode_json_body(req, fields=POLICY_FIELDS))
        if policy.id:
            raise BadRequest("Cannot specify the ID when creating a new policy", "ID")
        args = {"policy": to_obj(policy, ACLPolicy), "create": True}
        return await call(req, "ACL.PolicySet", args)

    async def policy_update(req: Request) -> Response:
        enabled(req)
        policy = policy_from_body(decode_json_body(req, fields=POLICY_FIELDS))
        policy_id = _matching_id(policy.id, req.path_params["id"], "Policy")
        policy = replace(policy, id=policy_id)
        return await call(req, "ACL.PolicySet", {"policy": to_obj(policy, ACLPolicy)})

    async def policy_read(req: Request) -> Response:
        enabled(req)
        authz = _require(req, Permission.ACL_READ)
        return await read_one(req, "acl.policy", {"id": req.path_params["id"]}, authz)

    async def policy_by_name(req: Request) -> Response:
        enabled(req)
        authz = _require(req, Permission.ACL_READ)
        name = req.path_params["name"]
        if not name:
            raise BadRequest("Missing policy Name")
        return await read_one(req, "acl.policy_by_name", {"name": name}, authz)

    async def policy_delete(req: Request) -> Response:
        enabled(req)
        return await call(req, "ACL.PolicyDelete", {"id": req.path_params["id"]})

    async def policy_list(req: Request) -> Response:
        enabled(req)
        authz = _require(req, Permission.ACL_READ)
        return await read_list(req, "acl.policies", {}, authz)

    # -- roles

    async def role_create(req: Request) -> Response:
        enabled(req)
        role = role_from_body(decode_json_body(req, fields=ROLE_FIELDS))
        if role.id:
            raise BadRequest("Cannot specify the ID when creating a new role", "ID")
        return await call(req, "ACL.RoleSet", {"role": to_obj(role, ACLRole), "create": True})

    async def role_update(req: Request) -> Response:
        enabled(req)
        role = role_from_body(decode_json_body(req, fields=ROLE_FIELDS))
        role_id = _matching_id(role.id, req.path_params["id"], "Role")
        role = replace(role, id=role_id)
        return await call(req, "ACL.RoleSet", {"role": to_obj(role, ACLRole)})

    async def role_read(req: Request) -> Response:
        enabled(req)
        authz = _require(req, Permission.ACL_READ)
        return await read_one(req, "acl.role", {"id": req.path_params["id"]}, authz)

    async def role_by_name(req: Request) -> Response:
        enabled(req)
        authz = _require(req, Permission.ACL_READ)
        name = req.path_params["name"]
        if not name:
            raise BadRequest("Missing role Name")
        return await read_one(req, "acl.role_by_name", {"name": name}, authz)

    async def role_delete(req: Request) -> Response:
        enabled(req)
        return await call(req, "ACL.RoleDelete", {"id": req.path_params["id"]})

    async def role_list(req: Request) -> Response:
        enabled(req)
        authz = _require(req, Permission.ACL_READ)
        return await read_list(req, "acl.roles", {"policy": req.query_value("policy")}, authz)

    # -- templated policies

    async def templated_list(req: Request) -> Response:
        opts = enabled(req)
        _require(req, Permission.ACL_READ)
        out = {name: templated_policy_json(name) for name in TEMPLATES}
        return Response.json(out, pretty=opts.pretty)

    async def templated_read(req: Request) -> Response:
        opts = enabled(req)
        _require(req, Permission.ACL_READ)
        return Response.json(templated_policy_json(req.path_params["name"]), pretty=opts.pretty)

    async def templated_preview(req: Request) -> Response:
        opts = enabled(req)
        _require(req, Permission.ACL_READ)
        body = decode_json_body(req, fields=PREVIEW_FIELDS, allow_empty=True) or {}
        preview = preview_templated_policy(req.path_params["name"], body)
        return Response.json(preview, pretty=opts.pretty)

    acl_auth.register(
        router, agent, enabled=enabled, call=call, read_one=read_one, read_list=read_list
    )
    add = router.add
    add("PUT", "/v1/acl/bootstrap", bootstrap, name="acl.bootstrap")
    add("GET", "/v1/acl/token/self", token_self, name="acl.token.self")
    add("PUT", "/v1/acl/token", token_create, name="acl.token.create")
    add("GET", "/v1/acl/token/:id", token_read, name="acl.token.read")
    add("PUT", "/v1/acl/token/:id", token_update, name="acl.token.update")
    add("DELETE", "/v1/acl/token/:id", token_delete, name="acl.token.delete")
    add("PUT", "/v1/acl/token/:id/clone", token_clone, name="acl.token.clone")
    add("GET", "/v1/acl/tokens", token_list, name="acl.token.list")
    add("PUT", "/v1/acl/policy", policy_create, name="acl.policy.create")
    add("GET", "/v1/acl/policy/name/:name", policy_by_name, name="acl.policy.by_name")
    add("GET", "/v1/acl/policy/:id", policy_read, name="acl.policy.read")
    add("PUT", "/v1/acl/policy/:id", policy_update, name="acl.policy.update")
    add("DELETE", "/v1/acl/policy/:id", policy_delete, name="acl.policy.delete")
    add("GET", "/v1/acl/policies", policy_list, name="acl.policy.list")
    add("PUT", "/v1/acl/role", role_create, name="acl.role.create")
    add("GET", "/v1/acl/role/name/:name", role_by_name, name="acl.role.by_name")
    add("GET", "/v1/acl/role/:id", role_read, name="acl.role.read")
    add("PUT", "/v1/acl/role/:id", role_update, name="acl.role.update")
    add("DELETE", "/v1/acl/role/:id", role_delete, name="acl.role.delete")
    add("GET", "/v1/acl/roles", role_list, name="acl.role.list")
    add("GET", "/v1/acl/templated-policies", templated_list, name="acl.templated.list")
    add("GET", "/v1/acl/templated-policy/name/*name", templated_read, name="acl.templated.read")
    add(
        "POST",
        "/v1/acl/templated-policy/preview/*name",
        templated_preview,
        name="acl.templated.preview",
    )
