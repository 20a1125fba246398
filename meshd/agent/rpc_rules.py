"""Which ACL permission every server RPC method needs: the one table.

As in Consul, the mTLS certificate only authenticates the transport: every
call carries the token it acts with (frame field ``t``: the HTTP request's
token forwarded by the agent making the call, else that agent's
``acl.tokens.agent``), and the server enforces here the same rule as the
HTTP endpoint the method backs, reusing ``meshd.api.acl_rules`` (its answer
filters) and ``meshd.agent.acl_commands`` (writes). ``MeshServer.register_rpc``
refuses a method that has no row in ``RULES``, so no RPC can ship without a
rule; tests/meshd/test_rpc_acl.py calls every registered method over the
real port with a client certificate and no token.

Who is a server: a peer whose verified certificate names
``server.<dc>.<domain>`` (``meshd tls cert create -server``; client
certificates name ``client.<dc>.<domain>``), the same test the Raft
transport applies. Servers may call the server-only methods (``Raft.ReadIndex``,
``Operator.JoinServer``) and send requests another server forwarded
(``fwd``: the forwarding server enforced the rule with the caller's token
and filters the answer itself); nobody else may, ACLs on or off. A server's
heartbeat for its own node needs no token either (``servers_pass``).

With ACLs enabled, an empty token is the anonymous token here (a server
never lends its own ``acl.tokens.default`` or recovery token to a remote
caller). Token ``SecretID``s in answers are ``<hidden>`` unless the token
has ``acl:write`` (or is the token read, for ``acl.token_self``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connect import ca as ca_core
from connect.errors import CSRError
from registry import queries as q
from registry.codec import CodecError, from_obj
from registry.commands import ForwardedBatch, TxnOp, TxnRequest, decode_command
from registry.errors import RegistryError

from ..acl import ACLAuthorizer, Permission
from ..acl.errors import ACLPermissionDenied
from ..acl.permissions import config_permission
from ..acl.read_filters import READ_FILTERS, filter_members, filter_read
from ..rpc import RPCError
from .acl_commands import authorize_command

P = Permission
REDACTED = "<hidden>"  # Consul's redacted SecretID
# Why a ForwardedBatch from outside is refused (here and in MeshServer): only
# the leader builds one, from commands it decoded and checked itself.
NO_BATCH = "cmd: a ForwardedBatch is built by the leader only"

# check(authz, args, token, store): raise ACLPermissionDenied unless allowed.
Check = Callable[[ACLAuthorizer, Mapping[str, Any], str, Any], None]
# answer(authz, args, token, result): the result as this token may see it.
Answer = Callable[[ACLAuthorizer, Mapping[str, Any], str, Any], Any]


@dataclass(frozen=True)
class RPCRule:
    """How one method is authorized: ``public`` (no token needed: the reason
    is in ``why``), ``server_only`` (a server certificate), else ``check``
    before the handler runs and ``answer`` on its result. ``token_arg``
    names an argument whose token, when set, the call acts with instead of
    the frame's (a leaf renewal runs outside any request, with the
    requester's token, on an agent's own connection). ``servers_pass``
    lets a server certificate through without a token (a server's own
    heartbeat: its certificate already admits it to Raft)."""

    why: str
    public: bool = False
    server_only: bool = False
    check: Check | None = None
    answer: Answer | None = None
    token_arg: str = ""
    servers_pass: bool = False


class UnruledRPC(ValueError):
    """A method without a row in ``RULES``: it must not be served."""


def rule_for(method: str) -> RPCRule:
    """The rule of ``method``; raises ``UnruledRPC`` when the table lacks it."""
    try:
        return RULES[method]
    except KeyError:
        raise UnruledRPC(
            f"RPC method {method!r} has no ACL rule in meshd/agent/rpc_rules.py"
        ) from None


def _need(
    permission: Permission, resource: Callable[[Mapping[str, Any]], str] | None = None
) -> Check:
    def check(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, store: Any) -> None:
        authz.require(permission, resource(args) if resource else "")

    return check


def _arg(name: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda args: str(args.get(name) or "")


def need(permission: Permission, why: str, resource: str = "") -> RPCRule:
    """``permission`` on the resource named by argument ``resource``."""
    return RPCRule(why, check=_need(permission, _arg(resource) if resource else None))


# ------------------------------------------------------------ registry writes


def _apply(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, store: Any) -> None:
    data = args.get("cmd")
    if not isinstance(data, bytes):
        return  # the handler answers BadRequest; nothing is applied
    try:
        cmd = decode_command(data)
    except RegistryError as exc:
        raise RPCError("InvalidArgument", f"cmd: {exc}", {"field": "cmd"}) from None
    if type(cmd) is ForwardedBatch:  # its commands would pass unchecked: the leader builds it
        raise RPCError("InvalidArgument", NO_BATCH)
    authorize_command(authz, cmd, store)


# ------------------------------------------------------------- registry reads


def _redact(token: Any, authz: ACLAuthorizer) -> Any:
    if isinstance(token, Mapping) and "SecretID" in token and not authz.acl_write():
        return {**token, "SecretID": REDACTED}
    return token


def _acl_read(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, value: Any) -> Any:
    authz.require(P.ACL_READ)
    return value


def _acl_token_read(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, value: Any) -> Any:
    authz.require(P.ACL_READ)
    if isinstance(value, list):
        return [_redact(t, authz) for t in value]
    return _redact(value, authz)


def _acl_token_self(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, value: Any) -> Any:
    if token and args.get("secret") == token:
        return value  # a token may read itself (it knows its secret already)
    return _acl_token_read(authz, args, token, value)


def _need_read(permission: Permission, key: str) -> Answer:
    def answer(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, value: Any) -> Any:
        authz.require(permission, str(args.get(key) or ""))
        return value

    return answer


def _intention_get(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, value: Any) -> Any:
    if isinstance(value, Mapping):
        authz.require(P.INTENTION_READ, str(value.get("DestinationName") or ""))
    return value


def _txn_read(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, value: Any) -> Any:
    try:
        ops = from_obj(args.get("ops") or [], tuple[TxnOp, ...])
    except CodecError:
        return value  # the read itself refused them; nothing was read
    # Only ops naming their resources reach a read-only txn: no store needed.
    authorize_command(authz, TxnRequest(ops=ops), None)  # type: ignore[arg-type]
    return value


def _public(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, value: Any) -> Any:
    return value


def _config_get(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, value: Any) -> Any:
    """GET /v1/config/:kind/:name: the kind's read permission on the entry."""
    permission = config_permission(str(args.get("kind") or ""), write=False)
    scoped = permission not in (P.MESH_READ, P.MESH_WRITE)
    authz.require(permission, str(args.get("name") or "") if scoped else "")
    return value


# Reads not filtered by READ_FILTERS: each checks (raising ACLPermissionDenied)
# or trims its answer, as the HTTP endpoint that serves it does.
READ_RULES: dict[str, Answer] = {
    "ca.roots": _public,  # GET /v1/connect/ca/roots is public
    "ca.config": _need_read(P.OPERATOR_READ, ""),
    "operator.autopilot_config": _need_read(P.OPERATOR_READ, ""),
    "coordinate.node": _need_read(P.NODE_READ, "node"),
    "txn.read": _txn_read,
    "intentions.get": _intention_get,
    "intentions.exact": _need_read(P.INTENTION_READ, "destination"),
    "intentions.check": _need_read(P.SERVICE_READ, "destination"),
    "intentions.decide": _need_read(P.SERVICE_WRITE, "destination"),  # connect/authorize
    "acl.token": _acl_token_read,
    "acl.tokens": _acl_token_read,
    "acl.token_self": _acl_token_self,
    "acl.policy": _acl_read,
    "acl.policy_by_name": _acl_read,
    "acl.policies": _acl_read,
    "acl.role": _acl_read,
    "acl.role_by_name": _acl_read,
    "acl.roles": _acl_read,
    "acl.auth_method": _acl_read,
    "acl.auth_methods": _acl_read,
    "acl.binding_rule": _acl_read,
    "acl.binding_rules": _acl_read,
    "config.get": _config_get,
    "catalog.gateway_services": _need_read(P.SERVICE_READ, "name"),
    "operator.usage": _need_read(P.OPERATOR_READ, ""),
    "discovery_chain": _need_read(P.SERVICE_READ, "name"),  # DiscoveryChain.Get
    "canary.get": _need_read(P.SERVICE_READ, "service"),
    "canary.record": _need_read(P.SERVICE_READ, "service"),
}


def _registry_read(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, result: Any) -> Any:
    """A ``Registry.Read`` answer as ``authz`` may see it; raises
    ``ACLPermissionDenied`` for a read it may not make (or one no rule names)."""
    name = str(args.get("name") or "")
    read_args = args.get("args") or {}
    if not isinstance(result, Mapping) or not isinstance(read_args, Mapping):
        return result
    value = result.get("r")
    if name in READ_FILTERS:
        value, dropped = filter_read(name, authz, value)
        return {**result, "r": value, "f": bool(result.get("f")) or dropped}
    rule = READ_RULES.get(name)
    if rule is None:  # fail closed: a read nobody wrote a rule for
        raise ACLPermissionDenied(authz.accessor_id, P.ACL_WRITE.label, "")
    return {**result, "r": rule(authz, read_args, token, value)}


# ------------------------------------------------------------------ others


def _members(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, result: Any) -> Any:
    return filter_members(authz, result)[0] if isinstance(result, list) else result


def _events(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, result: Any) -> Any:
    """Event.List's wire events (``n``: the name) that ``authz`` may read,
    as GET /v1/event/list filters them."""
    if not isinstance(result, Mapping):
        return result
    events = [e for e in result.get("events") or [] if authz.event_read(str(e.get("n") or ""))]
    return {**result, "events": events}


def _event_name(args: Mapping[str, Any]) -> str:
    event = args.get("event")
    return str(event.get("n") or "") if isinstance(event, Mapping) else ""


def _csr_service(args: Mapping[str, Any]) -> str:
    try:
        return ca_core.parse_csr(str(args.get("csr") or "")).spiffe.service
    except CSRError:
        return ""  # the handler answers 400 for it; nothing is signed


def _session_renew(authz: ACLAuthorizer, args: Mapping[str, Any], token: str, store: Any) -> None:
    """session:write on the node of the session renewed (PUT /v1/session/renew/:id)."""
    _, found = q.session_info(store, None, str(args.get("id") or ""))
    authz.require(P.SESSION_WRITE, found.node if found is not None else "")


PUBLIC_DISCOVERY = "cluster discovery before a token exists; no secrets (Consul's Status.*)"
SERVER = "server to server only; needs a server certificate"

RULES: dict[str, RPCRule] = {
    "Status.Ping": RPCRule(PUBLIC_DISCOVERY, public=True),
    "Status.Leader": RPCRule(PUBLIC_DISCOVERY, public=True),
    "Status.Peers": RPCRule(PUBLIC_DISCOVERY, public=True),
    "Raft.ReadIndex": RPCRule(SERVER, server_only=True),
    "Operator.JoinServer": RPCRule(SERVER, server_only=True),
    "Registry.Apply": RPCRule("the command's own rule (acl_commands)", check=_apply),
    # A follower's forwarded writes, each already checked there with its caller's token.
    "Registry.ApplyBatch": RPCRule(SERVER, server_only=True),
    "Registry.Read": RPCRule(
        "the read's HTTP rule (READ_FILTERS, READ_RULES)", answer=_registry_read
    ),
    "Operator.RaftConfiguration": need(P.OPERATOR_READ, "GET /v1/operator/raft/configuration"),
    "Operator.RaftRemovePeer": need(P.OPERATOR_WRITE, "DELETE /v1/operator/raft/peer"),
    "Operator.RaftTransferLeader": need(P.OPERATOR_WRITE, "POST /v1/operator/raft/transfer-leader"),
    "Coordinate.Update": need(P.NODE_WRITE, "PUT /v1/coordinate/update", "node"),
    "Operator.AutopilotHealth": need(P.OPERATOR_READ, "GET /v1/operator/autopilot/health"),
    "Operator.ForceLeave": need(P.OPERATOR_WRITE, "PUT /v1/agent/force-leave"),
    "Agent.Members": RPCRule("GET /v1/agent/members: node:read per member", answer=_members),
    "Snapshot.Save": need(P.SNAPSHOT, "GET /v1/snapshot"),
    "Snapshot.Chunk": need(P.SNAPSHOT, "GET /v1/snapshot (the rest of the archive)"),
    "Snapshot.Restore": need(P.SNAPSHOT, "PUT /v1/snapshot"),
    "Snapshot.Upload": need(P.SNAPSHOT, "PUT /v1/snapshot (an archive in chunks)"),
    "Event.Fire": RPCRule("PUT /v1/event/fire/:name", check=_need(P.EVENT_WRITE, _event_name)),
    "Event.List": RPCRule("GET /v1/event/list: event:read per event", answer=_events),
    "Node.Heartbeat": RPCRule(
        "node:write on the node (the agent token's, as anti-entropy), or a server",
        check=_need(P.NODE_WRITE, _arg("node")),
        servers_pass=True,
    ),
    "Node.HeartbeatBatch": RPCRule(SERVER, server_only=True),
    "ACL.Resolve": RPCRule(
        "answers only for the secret it is sent: the secret is the credential", public=True
    ),
    "ACL.Bootstrap": RPCRule("PUT /v1/acl/bootstrap: guarded by the bootstrap state", public=True),
    "ACL.TokenSet": need(P.ACL_WRITE, "PUT /v1/acl/token"),
    "ACL.TokenClone": need(P.ACL_WRITE, "PUT /v1/acl/token/:id/clone"),
    "ACL.TokenDelete": need(P.ACL_WRITE, "DELETE /v1/acl/token/:id"),
    "ACL.PolicySet": need(P.ACL_WRITE, "PUT /v1/acl/policy"),
    "ACL.PolicyDelete": need(P.ACL_WRITE, "DELETE /v1/acl/policy/:id"),
    "ACL.RoleSet": need(P.ACL_WRITE, "PUT /v1/acl/role"),
    "ACL.RoleDelete": need(P.ACL_WRITE, "DELETE /v1/acl/role/:id"),
    "Session.Renew": RPCRule("PUT /v1/session/renew/:uuid", check=_session_renew),
    "ACL.AuthMethodSet": need(P.ACL_WRITE, "PUT /v1/acl/auth-method"),
    "ACL.AuthMethodDelete": need(P.ACL_WRITE, "DELETE /v1/acl/auth-method/:name"),
    "ACL.BindingRuleSet": need(P.ACL_WRITE, "PUT /v1/acl/binding-rule"),
    "ACL.BindingRuleDelete": need(P.ACL_WRITE, "DELETE /v1/acl/binding-rule/:id"),
    "ACL.Login": RPCRule("POST /v1/acl/login: the bearer JWT is the credential", public=True),
    "ACL.Logout": RPCRule(
        "POST /v1/acl/logout: deletes only the login token it is sent (the credential)",
        public=True,
    ),
    "ConnectCA.Sign": RPCRule(
        "GET /v1/agent/connect/ca/leaf/:service: service:write on the CSR's service",
        check=_need(P.SERVICE_WRITE, _csr_service),
        token_arg="token",
    ),
    "ConnectCA.ConfigurationSet": need(P.OPERATOR_WRITE, "PUT /v1/connect/ca/configuration"),
}
