"""Consul-compatible ACLs: the pure core.

``parse_rules`` turns HCL or JSON policy rules into a ``Policy``;
``ACLAuthorizer.from_policies`` builds the decisions of a token holding some
policies under an ``acl.default_policy``; ``builtin`` holds the builtin
policies and the service/node identity templates. No I/O, no clock: token
storage, resolution and replication live elsewhere.
"""

from __future__ import annotations

from meshd.acl.authorizer import (
    ACLAuthorizer,
    Decision,
    Enforcer,
    Permission,
    PolicyEnforcer,
    StaticEnforcer,
    allow_all,
    deny_all,
    enforce,
    manage_all,
)
from meshd.acl.builtin import (
    ANONYMOUS_TOKEN_ACCESSOR_ID,
    GLOBAL_MANAGEMENT_POLICY_ID,
    GLOBAL_MANAGEMENT_POLICY_NAME,
    global_management_policy,
    node_identity_policy,
    service_identity_policy,
)
from meshd.acl.errors import ACLError, ACLPermissionDenied, IdentityError, RulesError
from meshd.acl.rules import Access, Policy, Resource, Rule, merge_policies, parse_rules

__all__ = [
    "ANONYMOUS_TOKEN_ACCESSOR_ID",
    "GLOBAL_MANAGEMENT_POLICY_ID",
    "GLOBAL_MANAGEMENT_POLICY_NAME",
    "ACLAuthorizer",
    "ACLError",
    "ACLPermissionDenied",
    "Access",
    "Decision",
    "Enforcer",
    "IdentityError",
    "Permission",
    "Policy",
    "PolicyEnforcer",
    "Resource",
    "Rule",
    "RulesError",
    "StaticEnforcer",
    "allow_all",
    "deny_all",
    "enforce",
    "global_management_policy",
    "manage_all",
    "merge_policies",
    "node_identity_policy",
    "parse_rules",
    "service_identity_policy",
]
