"""Built-in policies, reserved IDs and identity templates.

Copied from Consul's agent/structs/acl.go and acl_ce.go (1.13+, where
``mesh`` and ``peering`` joined global-management): the builtin
``global-management`` and ``builtin/global-read-only`` policies, the
anonymous token's accessor ID, and the rules Consul synthesises for a token's
service identities and node identities
(developer.hashicorp.com/consul/docs/security/acl/acl-roles#service-identities).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable

from meshd.acl.authorizer import manage_all
from meshd.acl.errors import ANONYMOUS_TOKEN_ACCESSOR_ID, IdentityError
from meshd.acl.rules import Policy, parse_rules

__all__ = [
    "ANONYMOUS_TOKEN_ACCESSOR_ID",
    "GLOBAL_MANAGEMENT_POLICY_DESCRIPTION",
    "GLOBAL_MANAGEMENT_POLICY_ID",
    "GLOBAL_MANAGEMENT_POLICY_NAME",
    "GLOBAL_MANAGEMENT_RULES",
    "GLOBAL_READ_ONLY_POLICY_DESCRIPTION",
    "GLOBAL_READ_ONLY_POLICY_ID",
    "GLOBAL_READ_ONLY_POLICY_NAME",
    "GLOBAL_READ_ONLY_RULES",
    "RESERVED_ID_PREFIX",
    "global_management_policy",
    "global_read_only_policy",
    "is_reserved_id",
    "manage_all",
    "node_identity_policy",
    "node_identity_rules",
    "service_identity_policy",
    "service_identity_rules",
    "validate_identity_name",
]

GLOBAL_MANAGEMENT_POLICY_ID = "00000000-0000-0000-0000-000000000001"
GLOBAL_MANAGEMENT_POLICY_NAME = "global-management"
GLOBAL_MANAGEMENT_POLICY_DESCRIPTION = "Builtin Policy that grants unlimited access"
GLOBAL_MANAGEMENT_RULES = """
acl = "write"
agent_prefix "" {
  policy = "write"
}
event_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "write"
}
keyring = "write"
node_prefix "" {
  policy = "write"
}
operator = "write"
mesh = "write"
peering = "write"
query_prefix "" {
  policy = "write"
}
service_prefix "" {
  policy = "write"
  intentions = "write"
}
session_prefix "" {
  policy = "write"
}"""

GLOBAL_READ_ONLY_POLICY_ID = "00000000-0000-0000-0000-000000000002"
GLOBAL_READ_ONLY_POLICY_NAME = "builtin/global-read-only"
GLOBAL_READ_ONLY_POLICY_DESCRIPTION = (
    "Builtin Policy that grants unlimited read-only access to all components"
)
# Consul's text is global-management's with every "write" made "read".
GLOBAL_READ_ONLY_RULES = GLOBAL_MANAGEMENT_RULES.replace('"write"', '"read"')

# Policy, role and token IDs with this prefix belong to Consul (and meshd).
RESERVED_ID_PREFIX = "00000000-0000-0000-0000-0000000000"

_IDENTITY_NAME = re.compile(r"[a-z0-9](?:[a-z0-9\-_]*[a-z0-9])?")
_IDENTITY_NAME_MAX = 256

_SERVICE_IDENTITY_TEMPLATE = """
service {name} {{
  policy = "write"
}}
service {sidecar} {{
  policy = "write"
}}
service_prefix "" {{
  policy = "read"
}}
node_prefix "" {{
  policy = "read"
}}"""

# A node needs node:write on itself (register, coordinates, anti-entropy
# deletes) and service:read to diff its services against the catalog.
_NODE_IDENTITY_TEMPLATE = """
node {name} {{
  policy = "write"
}}
service_prefix "" {{
  policy = "read"
}}"""


def is_reserved_id(identifier: str) -> bool:
    """Whether ``identifier`` is in the ID range kept for builtin objects."""
    return identifier.startswith(RESERVED_ID_PREFIX)


@functools.cache
def global_management_policy() -> Policy:
    """The rules of the builtin ``global-management`` policy: write on everything."""
    return parse_rules(GLOBAL_MANAGEMENT_RULES)


@functools.cache
def global_read_only_policy() -> Policy:
    """The rules of ``builtin/global-read-only``: read on everything."""
    return parse_rules(GLOBAL_READ_ONLY_RULES)


def validate_identity_name(kind: str, name: str) -> None:
    """Raise IdentityError unless ``name`` is a valid identity name
    (lowercase alphanumerics, ``-`` and ``_``, not starting or ending with
    ``-``/``_``, at most 256 characters). ``kind`` is ``Service`` or ``Node``."""
    if len(name) > _IDENTITY_NAME_MAX or _IDENTITY_NAME.fullmatch(name) is None:
        raise IdentityError(kind, name)


def service_identity_rules(name: str) -> str:
    """The HCL rules Consul synthesises for service identity ``name``: write
    on the service and its sidecar proxy, read on all services and nodes.
    Raises IdentityError for a bad name."""
    validate_identity_name("Service", name)
    return _SERVICE_IDENTITY_TEMPLATE.format(
        name=json.dumps(name), sidecar=json.dumps(f"{name}-sidecar-proxy")
    )


def service_identity_policy(name: str, datacenters: Iterable[str] = ()) -> Policy:
    """The synthetic policy of service identity ``name``, in force only in
    ``datacenters`` (all when empty). Raises IdentityError."""
    policy = parse_rules(service_identity_rules(name))
    return dataclasses.replace(policy, datacenters=frozenset(datacenters))


def node_identity_rules(name: str) -> str:
    """The HCL rules Consul synthesises for node identity ``name``: write on
    the node, read on all services. Raises IdentityError."""
    validate_identity_name("Node", name)
    return _NODE_IDENTITY_TEMPLATE.format(name=json.dumps(name))


def node_identity_policy(name: str, datacenter: str) -> Policy:
    """The synthetic policy of node identity ``name``; a node identity is
    always scoped to its one ``datacenter``. Raises IdentityError for a bad
    name or an empty datacenter (Consul requires one)."""
    if not datacenter:
        raise IdentityError("Node", name, "Node identity is missing the datacenter field")
    policy = parse_rules(node_identity_rules(name))
    return dataclasses.replace(policy, datacenters=frozenset({datacenter}))
