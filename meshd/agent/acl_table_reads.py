"""Reads of the ACL tables behind /v1/acl/* (tokens, policies, roles, auth
methods, binding rules), as Consul JSON. Not ACL enforcement: the checks on
reads are in ``meshd.agent.rpc_rules`` and ``meshd.api.acl_rules``.

Entries for ``meshd.agent.reads.READS`` (merged there with
``READS.update(ACL_READS)``), in the same shape: ``fn(store, ws, args) ->
(index, json)``; each registers watches so all of them can block.

Token answers carry the real ``SecretID``: the HTTP edge redacts it to
``<hidden>`` for callers without ``acl:write`` (Consul's
``filterACLWithAuthorizer``). A token whose ``ExpirationTime`` is at or
before ``args["now"]`` (seconds since the epoch, chosen by the caller so the
read stays clock-free) is treated as absent, as Consul does until its reaper
deletes it. Shapes follow Consul's structs (agent/structs/acl.go): empty
link and identity lists are left out (``omitempty``), ``Hash`` is the
base64 BLAKE2b-256 of the fields Consul hashes (``SetHash``).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from registry import queries as q
from registry import shapes
from registry.records import (
    ACLAuthMethod,
    ACLBindingRule,
    ACLNodeIdentity,
    ACLPolicy,
    ACLRole,
    ACLServiceIdentity,
    ACLTemplatedPolicy,
    ACLToken,
)
from registry.state import acl as acl_state
from registry.state.store import StateStore
from registry.state.watch import WatchSet

from ..durations import format_duration

JSON = Any
# The same type as ``meshd.agent.reads.ReadFn``, spelt out here so that
# reads.py can import this module without an import cycle.
ReadFn = Callable[[StateStore, WatchSet | None, Mapping[str, Any]], tuple[int, JSON]]

_OMIT_EMPTY = (
    "Policies",
    "Roles",
    "ServiceIdentities",
    "NodeIdentities",
    "TemplatedPolicies",
    "Datacenters",
    "AuthMethod",
)


def _hash(parts: Iterable[str]) -> str:
    h = hashlib.blake2b(digest_size=32)
    for part in parts:
        h.update(part.encode())
    return base64.b64encode(h.digest()).decode()


def _identity_parts(
    services: Iterable[ACLServiceIdentity], nodes: Iterable[ACLNodeIdentity]
) -> list[str]:
    parts: list[str] = []
    for s in services:
        parts.append(s.service_name)
        parts.extend(s.datacenters)
    for n in nodes:
        parts.extend((n.node_name, n.datacenter))
    return parts


def _templated_parts(templated: Iterable[ACLTemplatedPolicy]) -> list[str]:
    parts: list[str] = []
    for tp in templated:
        parts.extend((tp.template_name, tp.name, *tp.datacenters))
    return parts


def templated_policies_json(templated: Iterable[ACLTemplatedPolicy]) -> list[JSON]:
    """``TemplatedPolicies`` as Consul writes them (``TemplateVariables`` and
    ``Datacenters`` left out when empty)."""
    out: list[JSON] = []
    for tp in templated:
        item: JSON = {"TemplateName": tp.template_name}
        if tp.name:
            item["TemplateVariables"] = {"Name": tp.name}
        if tp.datacenters:
            item["Datacenters"] = list(tp.datacenters)
        out.append(item)
    return out


def token_hash(t: ACLToken) -> str:
    """Consul's ``ACLToken.SetHash``: what the token grants, not who it is."""
    parts = [t.description, *(p.id for p in t.policies), *(r.id for r in t.roles)]
    parts += _identity_parts(t.service_identities, t.node_identities)
    parts += _templated_parts(t.templated_policies)
    parts.append("local" if t.local else "global")
    return _hash(parts)


def policy_hash(p: ACLPolicy) -> str:
    """Consul's ``ACLPolicy.SetHash``."""
    return _hash([p.name, p.description, p.rules, *p.datacenters])


def role_hash(r: ACLRole) -> str:
    """Consul's ``ACLRole.SetHash``."""
    parts = [r.name, r.description, *(p.id for p in r.policies)]
    parts += _templated_parts(r.templated_policies)
    return _hash(parts + _identity_parts(r.service_identities, r.node_identities))


def _omit_empty(obj: dict[str, Any]) -> dict[str, Any]:
    for key in _OMIT_EMPTY:
        if key in obj and not obj[key]:
            del obj[key]
    for ident in obj.get("ServiceIdentities", ()):
        if not ident.get("Datacenters"):
            ident.pop("Datacenters", None)
    return obj


def token_json(t: ACLToken) -> JSON:
    """A token as Consul's ``GET /v1/acl/token/:id`` answers (secret included)."""
    out = {
        **shapes.acl_token_json(t),
        "TemplatedPolicies": templated_policies_json(t.templated_policies),
        "AuthMethod": t.auth_method,
        "Hash": token_hash(t),
    }
    return _omit_empty(out)


def policy_json(p: ACLPolicy) -> JSON:
    """A policy as ``GET /v1/acl/policy/:id`` answers."""
    return _omit_empty({**shapes.acl_policy_json(p), "Hash": policy_hash(p)})


def policy_stub_json(p: ACLPolicy) -> JSON:
    """A policy as listed by ``GET /v1/acl/policies``: no ``Rules``."""
    out = policy_json(p)
    del out["Rules"]
    return out


def role_json(r: ACLRole) -> JSON:
    """A role as ``GET /v1/acl/role/:id`` answers."""
    out = {
        **shapes.acl_role_json(r),
        "TemplatedPolicies": templated_policies_json(r.templated_policies),
        "Hash": role_hash(r),
    }
    return _omit_empty(out)


def _live(token: ACLToken | None, a: Mapping[str, Any]) -> ACLToken | None:
    if token is None or token.expired(float(a.get("now") or 0.0)):
        return None
    return token


def acl_token(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    """The token with AccessorID ``a["id"]``, or None."""
    idx, token = q.acl_token_get(store, ws, a["id"])
    live = _live(token, a)
    return idx, None if live is None else token_json(live)


def acl_token_self(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """The token whose SecretID is ``a["secret"]``, or None."""
    idx, token = q.acl_token_by_secret(store, ws, a["secret"])
    live = _live(token, a)
    return idx, None if live is None else token_json(live)


def _token_matches(token: ACLToken, a: Mapping[str, Any]) -> bool:
    """Consul's token list filters (at most one is set, checked at the edge)."""
    policy, role = a.get("policy") or "", a.get("role") or ""
    method, service = a.get("authmethod") or "", a.get("servicename") or ""
    if policy and all(link.id != policy for link in token.policies):
        return False
    if role and all(link.id != role for link in token.roles):
        return False
    if method and token.auth_method != method:
        return False
    if service:
        names = {s.service_name for s in token.service_identities}
        names.update(
            tp.name for tp in token.templated_policies if tp.template_name == "builtin/service"
        )
        return service in names
    return True


def acl_tokens(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    """Every live token, by AccessorID; ``a["policy"]``/``a["role"]`` keep only
    tokens linking that policy/role ID, ``a["authmethod"]`` those created by
    a login through that auth method and ``a["servicename"]`` those with a
    service identity (or builtin/service templated policy) of that name
    (Consul's ``?policy=``, ``?role=``, ``?authmethod=``, ``?servicename=``)."""
    idx, tokens = q.acl_token_list(store, ws)
    out = []
    for token in tokens:
        if _live(token, a) is not None and _token_matches(token, a):
            out.append(token_json(token))
    return idx, out


def acl_policy(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    """The policy with ID ``a["id"]``, or None."""
    idx, policy = q.acl_policy_get(store, ws, a["id"])
    return idx, None if policy is None else policy_json(policy)


def acl_policy_by_name(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """The policy named ``a["name"]``, or None."""
    idx, policy = q.acl_policy_by_name(store, ws, a["name"])
    return idx, None if policy is None else policy_json(policy)


def acl_policies(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    """Every policy (without rules), by ID."""
    idx, policies = q.acl_policy_list(store, ws)
    return idx, [policy_stub_json(p) for p in policies]


def acl_role(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    """The role with ID ``a["id"]``, or None."""
    idx, role = q.acl_role_get(store, ws, a["id"])
    return idx, None if role is None else role_json(role)


def acl_role_by_name(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """The role named ``a["name"]``, or None."""
    idx, role = q.acl_role_by_name(store, ws, a["name"])
    return idx, None if role is None else role_json(role)


def acl_roles(store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]) -> tuple[int, JSON]:
    """Every role, by ID; ``a["policy"]`` keeps roles linking that policy ID."""
    idx, roles = q.acl_role_list(store, ws)
    policy = a.get("policy") or ""
    return idx, [
        role_json(r) for r in roles if not policy or any(p.id == policy for p in r.policies)
    ]


def auth_method_json(m: ACLAuthMethod, *, stub: bool = False) -> JSON:
    """An auth method as ``GET /v1/acl/auth-method/:name`` answers; the list's
    stub (Consul's ``ACLAuthMethodListStub``) leaves out ``Config``."""
    out: JSON = {
        "Name": m.name,
        "Type": m.type,
        "DisplayName": m.display_name,
        "Description": m.description,
        "MaxTokenTTL": format_duration(m.max_token_ttl) if m.max_token_ttl else "",
        "TokenLocality": m.token_locality,
        "CreateIndex": m.create_index,
        "ModifyIndex": m.modify_index,
    }
    if not stub:
        out["Config"] = m.config
    # Consul's struct tags: DisplayName, Description, MaxTokenTTL and
    # TokenLocality are omitempty.
    return {k: v for k, v in out.items() if v != "" or k in ("Name", "Type")}


def binding_rule_json(b: ACLBindingRule) -> JSON:
    """A binding rule as ``GET /v1/acl/binding-rule/:id`` answers."""
    out: JSON = {
        "ID": b.id,
        "Description": b.description,
        "AuthMethod": b.auth_method,
        "Selector": b.selector,
        "BindType": b.bind_type,
        "BindName": b.bind_name,
        "CreateIndex": b.create_index,
        "ModifyIndex": b.modify_index,
    }
    if b.bind_vars_name:
        out["BindVars"] = {"Name": b.bind_vars_name}
    return out


def acl_auth_method(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """The auth method named ``a["name"]``, or None."""
    idx, method = acl_state.acl_auth_method_get(store, ws, a["name"])
    return idx, None if method is None else auth_method_json(method)


def acl_auth_methods(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """Every auth method (stubs), by name."""
    idx, methods = acl_state.acl_auth_method_list(store, ws)
    return idx, [auth_method_json(m, stub=True) for m in methods]


def acl_binding_rule(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """The binding rule with ID ``a["id"]``, or None."""
    idx, rule = acl_state.acl_binding_rule_get(store, ws, a["id"])
    return idx, None if rule is None else binding_rule_json(rule)


def acl_binding_rules(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """Every binding rule, by ID; ``a["authmethod"]`` keeps that method's."""
    idx, rules = acl_state.acl_binding_rule_list(store, ws, a.get("authmethod") or "")
    return idx, [binding_rule_json(r) for r in rules]


ACL_READS: dict[str, ReadFn] = {
    "acl.auth_method": acl_auth_method,
    "acl.auth_methods": acl_auth_methods,
    "acl.binding_rule": acl_binding_rule,
    "acl.binding_rules": acl_binding_rules,
    "acl.token": acl_token,
    "acl.token_self": acl_token_self,
    "acl.tokens": acl_tokens,
    "acl.policy": acl_policy,
    "acl.policy_by_name": acl_policy_by_name,
    "acl.policies": acl_policies,
    "acl.role": acl_role,
    "acl.role_by_name": acl_role_by_name,
    "acl.roles": acl_roles,
}
