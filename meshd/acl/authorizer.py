"""Deciding ACL permissions, with Consul's policy-authorizer semantics.

Mirrors Consul's acl/policy_authorizer.go, static_authorizer.go and
chained_authorizer.go:

* A ``PolicyEnforcer`` answers ``ALLOW``, ``DENY`` or ``DEFAULT`` ("no rule
  says") from one merged policy. For a named resource the exact rule wins,
  else the longest matching prefix rule (Consul's ``getPolicy`` radix walk).
  A rule grants: write -> read, list and write; list -> read and list;
  read -> read; deny -> nothing, and stops the chain (Consul's ``enforce``).
* A service rule's ``intentions`` defaults to read when its policy is read or
  write, else deny. ``mesh`` and ``peering`` fall back to ``operator`` when the
  policy does not set them.
* A ``StaticEnforcer`` is the ``acl.default_policy`` (allow or deny); like
  Consul's ``allowAll`` it never grants ``acl:*`` or snapshots, which need a
  management policy or ``manage_all()``.
* An ``ACLAuthorizer`` asks its chain in order and takes the first decision that
  is not ``DEFAULT``; if none decides, the answer is deny.

Lookups are dictionary probes: exact names in one dict, prefix rules in
another probed once per distinct prefix length (longest first), so a decision
costs a handful of slices and hash lookups whatever the rule count.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

from meshd.acl.errors import ACLPermissionDenied
from meshd.acl.rules import Access, Policy, Resource, Rule, merge_policies

__all__ = [
    "ACLAuthorizer",
    "Decision",
    "Enforcer",
    "Permission",
    "PolicyEnforcer",
    "StaticEnforcer",
    "allow_all",
    "deny_all",
    "enforce",
    "manage_all",
]


class Decision(enum.Enum):
    """Consul's ``EnforcementDecision``."""

    ALLOW = "allow"
    DENY = "deny"
    DEFAULT = "default"


class Permission(enum.Enum):
    """Every check an ACLAuthorizer answers. ``label`` is what an ACLPermissionDenied
    message names (the aggregate checks report the permission they stand
    for, as Consul's endpoints do)."""

    ACL_READ = "acl:read"
    ACL_WRITE = "acl:write"
    AGENT_READ = "agent:read"
    AGENT_WRITE = "agent:write"
    EVENT_READ = "event:read"
    EVENT_WRITE = "event:write"
    INTENTION_READ = "intention:read"
    INTENTION_WRITE = "intention:write"
    KEY_READ = "key:read"
    KEY_LIST = "key:list"
    KEY_WRITE = "key:write"
    KEY_WRITE_PREFIX = "key:write-prefix"
    KEYRING_READ = "keyring:read"
    KEYRING_WRITE = "keyring:write"
    MESH_READ = "mesh:read"
    MESH_WRITE = "mesh:write"
    NODE_READ = "node:read"
    NODE_READ_ALL = "node:read-all"
    NODE_WRITE = "node:write"
    OPERATOR_READ = "operator:read"
    OPERATOR_WRITE = "operator:write"
    PEERING_READ = "peering:read"
    PEERING_WRITE = "peering:write"
    QUERY_READ = "query:read"
    QUERY_WRITE = "query:write"
    SERVICE_READ = "service:read"
    SERVICE_READ_ALL = "service:read-all"
    SERVICE_WRITE = "service:write"
    SERVICE_WRITE_ANY = "service:write-any"
    SESSION_READ = "session:read"
    SESSION_WRITE = "session:write"
    SNAPSHOT = "snapshot"

    @property
    def label(self) -> str:
        """Consul's ``resource:access`` text, e.g. ``key:write`` for KEY_WRITE_PREFIX."""
        return _LABELS.get(self, self.value)


_LABELS = {
    Permission.KEY_WRITE_PREFIX: "key:write",
    Permission.NODE_READ_ALL: "node:read",
    Permission.SERVICE_READ_ALL: "service:read",
    Permission.SERVICE_WRITE_ANY: "service:write",
    # Consul's snapshot endpoint requires acl:write (policy_authorizer Snapshot).
    Permission.SNAPSHOT: "acl:write",
}

# Permissions only a management authorizer grants by default (Consul's
# StaticAuthorizer.allowManage).
_MANAGEMENT = frozenset({Permission.ACL_READ, Permission.ACL_WRITE, Permission.SNAPSHOT})


def enforce(rule: Access | None, required: Access) -> Decision:
    """What a rule of access ``rule`` says about ``required`` (Consul's ``enforce``)."""
    if rule is None:
        return Decision.DEFAULT
    if rule is Access.WRITE:
        return Decision.ALLOW
    if rule is Access.LIST:
        allowed = required is Access.LIST or required is Access.READ
        return Decision.ALLOW if allowed else Decision.DENY
    if rule is Access.READ:
        return Decision.ALLOW if required is Access.READ else Decision.DENY
    return Decision.DENY


class _Leaf:
    """The exact and prefix rule stored at one name (Consul's radix leaf)."""

    __slots__ = ("exact", "prefix")

    def __init__(self) -> None:
        self.exact: Access | None = None
        self.prefix: Access | None = None


class _Table:
    """The rules of one segmented resource."""

    def __init__(self, entries: Iterable[tuple[str, bool, Access]]) -> None:
        self.leaves: dict[str, _Leaf] = {}
        for name, prefix, access in entries:
            leaf = self.leaves.setdefault(name, _Leaf())
            if prefix:
                leaf.prefix = access
            else:
                leaf.exact = access
        self.exact = {n: leaf.exact for n, leaf in self.leaves.items() if leaf.exact is not None}
        self.prefix = {n: leaf.prefix for n, leaf in self.leaves.items() if leaf.prefix is not None}
        self.lengths = sorted({len(n) for n in self.prefix}, reverse=True)
        self.names = sorted(self.leaves)

    def lookup(self, name: str) -> Access | None:
        """The exact rule for ``name``, else the longest prefix rule, else None."""
        access = self.exact.get(name)
        if access is not None:
            return access
        return self.longest_prefix(name)

    def longest_prefix(self, name: str) -> Access | None:
        """The access of the longest prefix rule matching ``name``."""
        prefix, size = self.prefix, len(name)
        for length in self.lengths:
            if length <= size:
                access = prefix.get(name[:length])
                if access is not None:
                    return access
        return None

    def under(self, prefix: str) -> Iterator[_Leaf]:
        """Leaves whose name starts with ``prefix`` (including ``prefix`` itself)."""
        names = self.names
        for index in range(bisect.bisect_left(names, prefix), len(names)):
            if not names[index].startswith(prefix):
                return
            yield self.leaves[names[index]]


def _all_allowed(table: _Table, required: Access) -> Decision:
    """Consul's ``allAllowed``: allow only if nothing in the table denies."""
    decision = Decision.DEFAULT
    root = table.leaves.get("")
    if root is not None and root.prefix is not None:
        decision = enforce(root.prefix, required)
        if decision is Decision.DENY:
            return decision
    for leaf in table.leaves.values():
        prefix_decision = enforce(leaf.prefix, required)
        leaf_decision = prefix_decision
        if prefix_decision is not Decision.DENY and leaf.exact is not None:
            leaf_decision = enforce(leaf.exact, required)
        if leaf_decision is Decision.DENY:
            return Decision.DENY
    return decision


def _any_allowed(table: _Table, required: Access) -> Decision:
    """Consul's ``anyAllowed``: allow if some rule in the table allows."""
    decision = Decision.DEFAULT
    root = table.leaves.get("")
    if root is not None and root.prefix is not None:
        decision = enforce(root.prefix, required)
        if decision is Decision.ALLOW:
            return decision
    for leaf in table.leaves.values():
        if Decision.ALLOW in (enforce(leaf.prefix, required), enforce(leaf.exact, required)):
            return Decision.ALLOW
    return decision


class Enforcer(Protocol):
    """One link of an ACLAuthorizer's chain."""

    def decide(self, permission: Permission, name: str) -> Decision:
        """ALLOW, DENY, or DEFAULT to let the next link decide."""
        ...


_Decider = Callable[[str], Decision]


def _intention_rules(rules: Iterable[Rule]) -> Iterator[tuple[str, bool, Access]]:
    for rule in rules:
        intentions = rule.intentions
        if intentions is None:
            read_or_write = rule.access in (Access.READ, Access.WRITE)
            intentions = Access.READ if read_or_write else Access.DENY
        yield rule.name, rule.prefix, intentions


class PolicyEnforcer:
    """Decisions from one policy (Consul's ``policyAuthorizer``).

    Build it from an already merged policy (``merge_policies``); the
    decisions for the aggregate checks (service/node read-all, service
    write-any) are computed once here.
    """

    def __init__(self, policy: Policy) -> None:
        by_resource: dict[Resource, list[Rule]] = {}
        for rule in policy.rules:
            by_resource.setdefault(rule.resource, []).append(rule)

        def table(resource: Resource) -> _Table:
            rules = by_resource.get(resource, [])
            return _Table((r.name, r.prefix, r.access) for r in rules)

        self.policy = policy
        self.key = table(Resource.KEY)
        self.service = table(Resource.SERVICE)
        self.node = table(Resource.NODE)
        self.intention = _Table(_intention_rules(by_resource.get(Resource.SERVICE, [])))
        self._service_read_all = _all_allowed(self.service, Access.READ)
        self._node_read_all = _all_allowed(self.node, Access.READ)
        self._service_write_any = _any_allowed(self.service, Access.WRITE)
        tables = {
            Resource.AGENT: table(Resource.AGENT),
            Resource.EVENT: table(Resource.EVENT),
            Resource.QUERY: table(Resource.QUERY),
            Resource.SESSION: table(Resource.SESSION),
            Resource.KEY: self.key,
            Resource.NODE: self.node,
            Resource.SERVICE: self.service,
        }
        self._dispatch = self._build_dispatch(tables)

    def _build_dispatch(self, tables: dict[Resource, _Table]) -> dict[Permission, _Decider]:
        dispatch: dict[Permission, _Decider] = {}
        for permission in Permission:
            resource_name, _, level = permission.value.partition(":")
            if level in ("read", "write", "list") and Resource(resource_name) in tables:
                table = tables[Resource(resource_name)]
                dispatch[permission] = _lookup(table, Access(level))
        policy = self.policy
        single = {
            Permission.ACL_READ: (policy.acl, Access.READ),
            Permission.ACL_WRITE: (policy.acl, Access.WRITE),
            Permission.SNAPSHOT: (policy.acl, Access.WRITE),
            Permission.KEYRING_READ: (policy.keyring, Access.READ),
            Permission.KEYRING_WRITE: (policy.keyring, Access.WRITE),
            Permission.OPERATOR_READ: (policy.operator, Access.READ),
            Permission.OPERATOR_WRITE: (policy.operator, Access.WRITE),
            # Consul: MeshRead/PeeringRead fall back to OperatorRead when unset.
            Permission.MESH_READ: (policy.mesh or policy.operator, Access.READ),
            Permission.MESH_WRITE: (policy.mesh or policy.operator, Access.WRITE),
            Permission.PEERING_READ: (policy.peering or policy.operator, Access.READ),
            Permission.PEERING_WRITE: (policy.peering or policy.operator, Access.WRITE),
        }
        for permission, (access, required) in single.items():
            dispatch[permission] = _constant(enforce(access, required))
        dispatch[Permission.SERVICE_READ_ALL] = _constant(self._service_read_all)
        dispatch[Permission.NODE_READ_ALL] = _constant(self._node_read_all)
        dispatch[Permission.SERVICE_WRITE_ANY] = _constant(self._service_write_any)
        dispatch[Permission.INTENTION_READ] = self._intention_read
        dispatch[Permission.INTENTION_WRITE] = self._intention_write
        dispatch[Permission.KEY_WRITE_PREFIX] = self._key_write_prefix
        return dispatch

    def decide(self, permission: Permission, name: str) -> Decision:
        """The decision of this policy alone (DEFAULT when no rule applies)."""
        return self._dispatch[permission](name)

    def _intention_read(self, name: str) -> Decision:
        # Consul: "*" asks whether any intention at all may be read.
        if name == "*":
            return _any_allowed(self.intention, Access.READ)
        return enforce(self.intention.lookup(name), Access.READ)

    def _intention_write(self, name: str) -> Decision:
        # Consul: "*" asks whether every intention may be written.
        if name == "*":
            return _all_allowed(self.intention, Access.WRITE)
        return enforce(self.intention.lookup(name), Access.WRITE)

    def _key_write_prefix(self, prefix: str) -> Decision:
        """Consul's KeyWritePrefix: the prefix rule covering ``prefix`` must
        grant write and no rule at or below ``prefix`` may withhold it."""
        base = self.key.longest_prefix(prefix)
        if base is not None and base is not Access.WRITE:
            return Decision.DENY
        for leaf in self.key.under(prefix):
            for access in (leaf.prefix, leaf.exact):
                if access is not None and access is not Access.WRITE:
                    return Decision.DENY
        return Decision.DEFAULT if base is None else Decision.ALLOW


def _lookup(table: _Table, required: Access) -> _Decider:
    lookup = table.lookup

    def decide(name: str) -> Decision:
        return enforce(lookup(name), required)

    return decide


def _constant(decision: Decision) -> _Decider:
    def decide(_name: str) -> Decision:
        return decision

    return decide


class StaticEnforcer:
    """Allows or denies everything (Consul's StaticAuthorizer): the
    ``acl.default_policy`` at the end of a chain. ``manage`` also grants the
    ``acl:*`` permissions and snapshots, which a plain allow never does."""

    def __init__(self, default_allow: bool, manage: bool = False) -> None:
        self.default_allow = default_allow
        self.manage = manage

    def decide(self, permission: Permission, name: str) -> Decision:
        """ALLOW or DENY, never DEFAULT."""
        allowed = self.manage if permission in _MANAGEMENT else self.default_allow
        return Decision.ALLOW if allowed else Decision.DENY


class ACLAuthorizer:
    """A chain of enforcers answering permission checks for one token.

    ``decide`` asks each enforcer in order and returns the first decision that
    is not DEFAULT, or DENY when none decides (Consul's ChainedAuthorizer).
    The named methods (``service_write(name)``, ``operator_read()``) return
    bools; ``require`` raises ACLPermissionDenied for route tables. Pure and
    immutable: safe to share between requests.
    """

    __slots__ = ("_chain", "_memo", "accessor_id")

    # Decisions are remembered per (permission, name): list answers ask the
    # same few names on every request, and the authorizer never changes.
    MEMO_LIMIT = 4096

    def __init__(self, chain: Sequence[Enforcer], accessor_id: str = "") -> None:
        self._chain = tuple(chain)
        self._memo: dict[tuple[Permission, str], Decision] = {}
        self.accessor_id = accessor_id

    @classmethod
    def from_policies(
        cls,
        policies: Iterable[Policy],
        *,
        default_allow: bool,
        datacenter: str | None = None,
        accessor_id: str = "",
    ) -> ACLAuthorizer:
        """The authorizer of a token holding ``policies``: their merge (only
        those in force in ``datacenter``), then the ``acl.default_policy``."""
        merged = merge_policies(p for p in policies if p.applies_in(datacenter))
        return cls([PolicyEnforcer(merged), StaticEnforcer(default_allow)], accessor_id)

    def for_accessor(self, accessor_id: str) -> ACLAuthorizer:
        """The same decisions, reporting denials against ``accessor_id``."""
        return ACLAuthorizer(self._chain, accessor_id)

    def decide(self, permission: Permission, name: str = "") -> Decision:
        """ALLOW or DENY for ``permission`` on resource ``name``."""
        key = (permission, name)
        memo = self._memo
        found = memo.get(key)
        if found is not None:
            return found
        decision = self._decide(permission, name)
        if len(memo) >= self.MEMO_LIMIT:
            memo.clear()
        memo[key] = decision
        return decision

    def _decide(self, permission: Permission, name: str) -> Decision:
        for enforcer in self._chain:
            decision = enforcer.decide(permission, name)
            if decision is not Decision.DEFAULT:
                return decision
        return Decision.DENY

    def allowed(self, permission: Permission, name: str = "") -> bool:
        """Whether ``permission`` on ``name`` is granted."""
        found = self._memo.get((permission, name))
        if found is None:
            found = self.decide(permission, name)
        return found is Decision.ALLOW

    def allowed_names(self, permission: Permission, names: Iterable[str]) -> list[bool]:
        """``allowed(permission, n)`` for each of ``names``, in one call: list
        answers are filtered with it on every request."""
        memo, decide, allow = self._memo, self.decide, Decision.ALLOW
        out = []
        for name in names:
            found = memo.get((permission, name))
            if found is None:
                found = decide(permission, name)
            out.append(found is allow)
        return out

    def require(self, permission: Permission, name: str = "") -> None:
        """Return if ``permission`` on ``name`` is granted; raise
        ACLPermissionDenied (naming ``accessor_id``) otherwise."""
        if self.decide(permission, name) is not Decision.ALLOW:
            raise ACLPermissionDenied(self.accessor_id, permission.label, name)

    def acl_read(self) -> bool:
        """Reading ACL tokens, policies and roles."""
        return self.allowed(Permission.ACL_READ)

    def acl_write(self) -> bool:
        """Changing ACL tokens, policies and roles."""
        return self.allowed(Permission.ACL_WRITE)

    def agent_read(self, node: str) -> bool:
        """Reading the agent endpoints of ``node``."""
        return self.allowed(Permission.AGENT_READ, node)

    def agent_write(self, node: str) -> bool:
        """Changing the agent of ``node`` (join, leave, maintenance)."""
        return self.allowed(Permission.AGENT_WRITE, node)

    def event_read(self, name: str) -> bool:
        """Listing user events called ``name``."""
        return self.allowed(Permission.EVENT_READ, name)

    def event_write(self, name: str) -> bool:
        """Firing user events called ``name``."""
        return self.allowed(Permission.EVENT_WRITE, name)

    def intention_read(self, destination: str) -> bool:
        """Reading intentions to ``destination`` ("*": any intention at all)."""
        return self.allowed(Permission.INTENTION_READ, destination)

    def intention_write(self, destination: str) -> bool:
        """Changing intentions to ``destination`` ("*": every intention)."""
        return self.allowed(Permission.INTENTION_WRITE, destination)

    def key_read(self, key: str) -> bool:
        """Reading the KV entry ``key``."""
        return self.allowed(Permission.KEY_READ, key)

    def key_list(self, prefix: str) -> bool:
        """Listing keys under ``prefix``."""
        return self.allowed(Permission.KEY_LIST, prefix)

    def key_write(self, key: str) -> bool:
        """Writing or deleting the KV entry ``key``."""
        return self.allowed(Permission.KEY_WRITE, key)

    def key_write_prefix(self, prefix: str) -> bool:
        """Deleting everything under ``prefix``: no rule below may deny write."""
        return self.allowed(Permission.KEY_WRITE_PREFIX, prefix)

    def keyring_read(self) -> bool:
        """Listing gossip encryption keys."""
        return self.allowed(Permission.KEYRING_READ)

    def keyring_write(self) -> bool:
        """Changing gossip encryption keys."""
        return self.allowed(Permission.KEYRING_WRITE)

    def mesh_read(self) -> bool:
        """Reading mesh configuration (falls back to operator)."""
        return self.allowed(Permission.MESH_READ)

    def mesh_write(self) -> bool:
        """Changing mesh configuration (falls back to operator)."""
        return self.allowed(Permission.MESH_WRITE)

    def peering_read(self) -> bool:
        """Reading peerings (falls back to operator)."""
        return self.allowed(Permission.PEERING_READ)

    def peering_write(self) -> bool:
        """Changing peerings (falls back to operator)."""
        return self.allowed(Permission.PEERING_WRITE)

    def node_read(self, name: str) -> bool:
        """Discovering node ``name``."""
        return self.allowed(Permission.NODE_READ, name)

    def node_read_all(self) -> bool:
        """Reading every node: lets catalog listings skip per-node filtering."""
        return self.allowed(Permission.NODE_READ_ALL)

    def node_write(self, name: str) -> bool:
        """Registering or changing node ``name``."""
        return self.allowed(Permission.NODE_WRITE, name)

    def operator_read(self) -> bool:
        """Reading cluster-level operator state (raft, autopilot)."""
        return self.allowed(Permission.OPERATOR_READ)

    def operator_write(self) -> bool:
        """Changing cluster-level operator state."""
        return self.allowed(Permission.OPERATOR_WRITE)

    def query_read(self, name: str) -> bool:
        """Reading the prepared query ``name``."""
        return self.allowed(Permission.QUERY_READ, name)

    def query_write(self, name: str) -> bool:
        """Creating, changing or deleting the prepared query ``name``."""
        return self.allowed(Permission.QUERY_WRITE, name)

    def service_read(self, name: str) -> bool:
        """Discovering service ``name``."""
        return self.allowed(Permission.SERVICE_READ, name)

    def service_read_all(self) -> bool:
        """Reading every service: lets catalog listings skip per-service filtering."""
        return self.allowed(Permission.SERVICE_READ_ALL)

    def service_write(self, name: str) -> bool:
        """Registering or changing service ``name``."""
        return self.allowed(Permission.SERVICE_WRITE, name)

    def service_write_any(self) -> bool:
        """Whether some service may be written (the token is a service's)."""
        return self.allowed(Permission.SERVICE_WRITE_ANY)

    def session_read(self, node: str) -> bool:
        """Reading sessions on ``node``."""
        return self.allowed(Permission.SESSION_READ, node)

    def session_write(self, node: str) -> bool:
        """Creating or destroying sessions on ``node``."""
        return self.allowed(Permission.SESSION_WRITE, node)

    def snapshot(self) -> bool:
        """Saving or restoring snapshots (needs acl write)."""
        return self.allowed(Permission.SNAPSHOT)


_ALLOW_ALL = ACLAuthorizer([StaticEnforcer(default_allow=True)])
_DENY_ALL = ACLAuthorizer([StaticEnforcer(default_allow=False)])
_MANAGE_ALL = ACLAuthorizer([StaticEnforcer(default_allow=True, manage=True)])


def allow_all() -> ACLAuthorizer:
    """Allows everything except acl:* and snapshots (Consul's AllowAll)."""
    return _ALLOW_ALL


def deny_all() -> ACLAuthorizer:
    """Denies everything (Consul's DenyAll)."""
    return _DENY_ALL


def manage_all() -> ACLAuthorizer:
    """Allows everything, management included (Consul's ManageAll)."""
    return _MANAGE_ALL
