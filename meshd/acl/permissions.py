"""What a config entry or a transaction's KV op needs of a token.

The same decision at the HTTP edge (meshd.api.acl_rules) and on the servers
(meshd.agent.acl_commands, the commands client agents forward), so it lives
below both.
"""

from __future__ import annotations

from .authorizer import ACLAuthorizer, Permission

P = Permission
_KV_READ = frozenset({"get", "get-tree", "check-index", "check-session", "check-not-exists"})


_SERVICE_KINDS = ("service-defaults", "service-router", "service-splitter", "service-resolver")


def config_permission(kind: str, write: bool) -> Permission:
    """The permission a config entry of ``kind`` needs to be read or written
    (the same at the HTTP edge and on the servers)."""
    if kind in _SERVICE_KINDS:
        return P.SERVICE_WRITE if write else P.SERVICE_READ
    if kind == "service-intentions":
        return P.INTENTION_WRITE if write else P.INTENTION_READ
    return P.MESH_WRITE if write else P.MESH_READ


def config_entry_write(authz: ACLAuthorizer, kind: str, name: str) -> None:
    """Raise ``ACLPermissionDenied`` unless ``authz`` may write entry kind/name."""
    permission = config_permission(kind, True)
    authz.require(permission, "" if permission is P.MESH_WRITE else name)


def kv_txn_permission(verb: str) -> Permission:
    """What a transaction's KV op with ``verb`` needs on its key (Consul's
    txn endpoint): the same at the HTTP edge and on the servers."""
    if verb == "delete-tree":
        return P.KEY_WRITE_PREFIX
    if verb == "get-tree":
        return P.KEY_LIST
    return P.KEY_READ if verb in _KV_READ else P.KEY_WRITE
