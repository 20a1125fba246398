"""What a token must hold for a replicated write a client agent sends.

Client agents forward writes to the servers as encoded commands over RPC
(``Registry.Apply``), with the token of the request (or, for the agent's own
anti-entropy, the service's registration token or ``acl.tokens.agent``).
The receiving server checks the command against that token here, as
Consul's RPC endpoints check their ACLs, so a client agent cannot write
past the caller's permissions. Commands only servers issue (liveness,
tombstone reaping, CA and ACL state, bootstrap) need management rights.
"""

from __future__ import annotations

from registry import queries as q
from registry.commands import (
    AutopilotConfigSet,
    CanarySet,
    Command,
    ConfigEntryBatch,
    ConfigEntryRequest,
    DeregisterRequest,
    IntentionDelete,
    IntentionUpsert,
    KVRequest,
    RegisterRequest,
    SessionCreate,
    SessionDestroy,
    TxnOp,
    TxnRequest,
)
from registry.state.store import StateStore

from ..acl import ACLAuthorizer, Permission
from ..acl.errors import ACLPermissionDenied
from ..acl.permissions import config_entry_write, kv_txn_permission

P = Permission


def _existing_service(store: StateStore | None, node: str, service_id: str) -> str | None:
    """The name of the service registered as ``service_id`` on ``node``."""
    if store is None or not service_id:
        return None
    _, found = q.catalog_node(store, None, node)
    for svc in found.services if found is not None else ():
        if svc.id == service_id:
            return svc.service
    return None


def _register(authz: ACLAuthorizer, cmd: RegisterRequest, store: StateStore | None) -> None:
    """Consul's vetRegisterWithACL: writing a service ID that exists on the
    node replaces that service, so it needs service:write on the existing
    name too; a check on another registered service needs write on that
    service (issue 13 item 4, through the catalog)."""
    if not cmd.skip_node_update:
        authz.require(P.NODE_WRITE, cmd.node)
    if cmd.service is not None:
        authz.require(P.SERVICE_WRITE, cmd.service.service)
        other = _existing_service(store, cmd.node, cmd.service.id)
        if other is not None and other != cmd.service.service:
            authz.require(P.SERVICE_WRITE, other)
    for check in cmd.checks:
        if check.service_name:
            authz.require(P.SERVICE_WRITE, check.service_name)
        elif not check.service_id:
            authz.require(P.NODE_WRITE, cmd.node)
        if check.service_id and (cmd.service is None or check.service_id != cmd.service.id):
            other = _existing_service(store, cmd.node, check.service_id)
            authz.require(P.SERVICE_WRITE, other or check.service_name or check.service_id)


def _txn_op(authz: ACLAuthorizer, op: TxnOp, store: StateStore | None) -> None:
    if op.kv is not None:
        authz.require(kv_txn_permission(op.kv.verb), op.kv.key)
    if op.node is not None:
        perm = P.NODE_READ if op.node.verb == "get" else P.NODE_WRITE
        authz.require(perm, op.node.node.node)
    if op.service is not None:
        perm = P.SERVICE_READ if op.service.verb == "get" else P.SERVICE_WRITE
        authz.require(perm, op.service.service.service)
        other = _existing_service(store, op.service.node, op.service.service.id)
        if other is not None and other != op.service.service.service:
            authz.require(perm, other)  # a set or delete replaces that service
    if op.check is not None:
        read = op.check.verb == "get"
        if op.check.check.service_name:
            perm = P.SERVICE_READ if read else P.SERVICE_WRITE
            authz.require(perm, op.check.check.service_name)
        else:
            authz.require(P.NODE_READ if read else P.NODE_WRITE, op.check.check.node)


def authorize_command(authz: ACLAuthorizer, cmd: Command, store: StateStore) -> None:
    """Return if ``authz`` may apply ``cmd``; raise ``ACLPermissionDenied``.
    ``store`` resolves what a command names only by ID (a session's node,
    an intention's destination)."""
    if isinstance(cmd, RegisterRequest):
        _register(authz, cmd, store)
    elif isinstance(cmd, DeregisterRequest):
        authz.require(P.NODE_WRITE, cmd.node)
    elif isinstance(cmd, KVRequest):
        perm = P.KEY_WRITE_PREFIX if cmd.op == "delete-tree" else P.KEY_WRITE
        authz.require(perm, cmd.key)
    elif isinstance(cmd, SessionCreate):
        authz.require(P.SESSION_WRITE, cmd.node)
    elif isinstance(cmd, TxnRequest):
        for op in cmd.ops:
            _txn_op(authz, op, store)
    elif isinstance(cmd, SessionDestroy):
        _, found = q.session_info(store, None, cmd.id)
        authz.require(P.SESSION_WRITE, found.node if found is not None else "")
    elif isinstance(cmd, IntentionUpsert):
        authz.require(P.INTENTION_WRITE, cmd.intention.destination_name)
        if cmd.intention.id:
            # An update by ID may move the intention off another destination.
            _, old = q.intention_get(store, None, cmd.intention.id)
            if old is not None:
                authz.require(P.INTENTION_WRITE, old.destination_name)
    elif isinstance(cmd, ConfigEntryRequest):
        # Consul's ConfigEntry.Apply/Delete: the entry's CanWrite.
        config_entry_write(authz, cmd.entry.kind, cmd.entry.name)
    elif isinstance(cmd, ConfigEntryBatch):
        # meshd's atomic multi-entry write: each entry as its single PUT.
        for entry in cmd.entries:
            config_entry_write(authz, entry.kind, entry.name)
    elif isinstance(cmd, IntentionDelete):
        if cmd.id:
            _, ixn = q.intention_get(store, None, cmd.id)
            dest = ixn.destination_name if ixn is not None else ""
        else:
            dest = cmd.destination
        authz.require(P.INTENTION_WRITE, dest)
    elif isinstance(cmd, CanarySet):
        # POST/PUT /v1/internal/canary/:service: service:write on the service,
        # and the splitter it carries as its own config entry write.
        authz.require(P.SERVICE_WRITE, cmd.canary.service)
        if cmd.splitter is not None:
            config_entry_write(authz, cmd.splitter.kind, cmd.splitter.name)
    elif isinstance(cmd, AutopilotConfigSet):
        # Consul's Operator.AutopilotSetConfiguration: operator:write.
        authz.require(P.OPERATOR_WRITE, "")
    elif not authz.allowed(P.ACL_WRITE):
        # Liveness, tombstone reaping, CA and ACL state: only
        # servers issue these; over RPC only a management token may.
        raise ACLPermissionDenied(authz.accessor_id, "acl:write", "")
