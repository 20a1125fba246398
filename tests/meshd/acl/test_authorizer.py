"""ACLAuthorizer decisions, following Consul's policy/static/chained authorizers."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from meshd.acl.authorizer import (
    ACLAuthorizer,
    Decision,
    Permission,
    PolicyEnforcer,
    allow_all,
    deny_all,
    enforce,
    manage_all,
)
from meshd.acl.errors import ACLPermissionDenied
from meshd.acl.rules import Access, Policy, parse_rules

P = Permission

EXACT_VS_PREFIX = """
service_prefix "" { policy = "read" }
service_prefix "web" { policy = "write" }
service_prefix "web-internal" { policy = "deny" }
service "web-internal-ok" { policy = "read" }
service "web" { policy = "deny" }
"""

KEYS = """
key_prefix "" { policy = "read" }
key_prefix "app/" { policy = "write" }
key "app/locked" { policy = "deny" }
key_prefix "logs/" { policy = "list" }
key_prefix "open/" { policy = "write" }
key_prefix "open/ro/" { policy = "read" }
key_prefix "free/" { policy = "write" }
key "free/also" { policy = "write" }
"""

INTENTIONS = """
service "web" { policy = "write" }
service "api" { policy = "read" }
service "db" { policy = "deny" }
service "cache" { policy = "read" intentions = "write" }
service "billing" { policy = "write" intentions = "deny" }
service_prefix "ops-" { policy = "write" intentions = "write" }
"""


@dataclass(frozen=True)
class Case:
    rules: str
    permission: Permission
    name: str
    expected: bool
    default_allow: bool = False


CASES: dict[str, Case] = {
    # exact beats prefix; longest prefix wins
    "prefix-empty-grants-read": Case(EXACT_VS_PREFIX, P.SERVICE_READ, "api", True),
    "prefix-empty-withholds-write": Case(EXACT_VS_PREFIX, P.SERVICE_WRITE, "api", False, True),
    "longer-prefix-wins": Case(EXACT_VS_PREFIX, P.SERVICE_WRITE, "web-frontend", True),
    "longest-prefix-deny-wins": Case(
        EXACT_VS_PREFIX, P.SERVICE_READ, "web-internal-x", False, True
    ),
    "exact-beats-longest-prefix": Case(EXACT_VS_PREFIX, P.SERVICE_READ, "web-internal-ok", True),
    "exact-read-withholds-write": Case(EXACT_VS_PREFIX, P.SERVICE_WRITE, "web-internal-ok", False),
    "exact-beats-same-prefix": Case(EXACT_VS_PREFIX, P.SERVICE_READ, "web", False, True),
    "prefix-equal-to-name-applies": Case(EXACT_VS_PREFIX, P.SERVICE_WRITE, "web-internal", False),
    "shorter-name-than-prefix": Case(EXACT_VS_PREFIX, P.SERVICE_WRITE, "we", False),
    # default policy fallthrough
    "no-rule-default-deny": Case('node "n1" { policy = "write" }', P.NODE_READ, "n2", False),
    "no-rule-default-allow": Case('node "n1" { policy = "write" }', P.NODE_WRITE, "n2", True, True),
    "deny-rule-beats-default-allow": Case(
        'node "n1" { policy = "deny" }', P.NODE_READ, "n1", False, True
    ),
    "read-rule-beats-default-allow": Case(
        'node "n1" { policy = "read" }', P.NODE_WRITE, "n1", False, True
    ),
    "write-rule-beats-default-deny": Case(
        'node "n1" { policy = "write" }', P.NODE_READ, "n1", True
    ),
    "empty-policy-default-allow": Case("", P.KEY_WRITE, "x", True, True),
    "default-allow-never-grants-acl": Case("", P.ACL_READ, "", False, True),
    "default-allow-never-grants-snapshot": Case("", P.SNAPSHOT, "", False, True),
    # keys: list, deny below a prefix, key_write_prefix
    "key-read-from-root": Case(KEYS, P.KEY_READ, "anything", True),
    "key-list-needs-list": Case(KEYS, P.KEY_LIST, "anything", False, True),
    "key-list-granted-by-list": Case(KEYS, P.KEY_LIST, "logs/2024", True),
    "key-read-granted-by-list": Case(KEYS, P.KEY_READ, "logs/2024", True),
    "key-write-refused-by-list": Case(KEYS, P.KEY_WRITE, "logs/2024", False, True),
    "key-list-granted-by-write": Case(KEYS, P.KEY_LIST, "app/x", True),
    "key-exact-deny-under-write": Case(KEYS, P.KEY_READ, "app/locked", False, True),
    "key-exact-deny-is-exact-only": Case(KEYS, P.KEY_WRITE, "app/locked2", True),
    "write-prefix-with-deny-below": Case(KEYS, P.KEY_WRITE_PREFIX, "app/", False, True),
    "write-prefix-deny-exactly-at": Case(KEYS, P.KEY_WRITE_PREFIX, "app/locked", False, True),
    "write-prefix-below-the-deny": Case(KEYS, P.KEY_WRITE_PREFIX, "app/other/", True),
    "write-prefix-read-prefix-below": Case(KEYS, P.KEY_WRITE_PREFIX, "open/", False, True),
    "write-prefix-all-write-below": Case(KEYS, P.KEY_WRITE_PREFIX, "free/", True),
    "write-prefix-covered-by-read": Case(KEYS, P.KEY_WRITE_PREFIX, "zzz/", False, True),
    "write-prefix-no-rules-default-allow": Case(
        'key "a" { policy = "write" }', P.KEY_WRITE_PREFIX, "b/", True, True
    ),
    "write-prefix-no-rules-default-deny": Case(
        'key "a" { policy = "write" }', P.KEY_WRITE_PREFIX, "b/", False
    ),
    "write-prefix-only-exact-write-below": Case(
        'key "a/b" { policy = "write" }', P.KEY_WRITE_PREFIX, "a/", False
    ),
    # intentions: explicit, or derived from the service policy
    "intention-read-from-service-write": Case(INTENTIONS, P.INTENTION_READ, "web", True),
    "intention-write-not-from-service-write": Case(
        INTENTIONS, P.INTENTION_WRITE, "web", False, True
    ),
    "intention-read-from-service-read": Case(INTENTIONS, P.INTENTION_READ, "api", True),
    "intention-denied-by-service-deny": Case(INTENTIONS, P.INTENTION_READ, "db", False, True),
    "intention-write-explicit": Case(INTENTIONS, P.INTENTION_WRITE, "cache", True),
    "intention-deny-explicit": Case(INTENTIONS, P.INTENTION_READ, "billing", False, True),
    "intention-service-write-kept": Case(INTENTIONS, P.SERVICE_WRITE, "billing", True),
    "intention-prefix": Case(INTENTIONS, P.INTENTION_WRITE, "ops-dash", True),
    "intention-unmatched-default": Case(INTENTIONS, P.INTENTION_READ, "other", True, True),
    "intention-read-star-any": Case(
        'service "web" { policy = "read" }', P.INTENTION_READ, "*", True
    ),
    "intention-write-star-all": Case(INTENTIONS, P.INTENTION_WRITE, "*", False, True),
    "intention-write-star-global": Case(
        'service_prefix "" { policy = "write" intentions = "write" }', P.INTENTION_WRITE, "*", True
    ),
    # single-valued resources, mesh/peering fall back to operator
    "operator-read": Case('operator = "read"', P.OPERATOR_READ, "", True),
    "operator-read-withholds-write": Case('operator = "read"', P.OPERATOR_WRITE, "", False, True),
    "mesh-falls-back-to-operator": Case('operator = "write"', P.MESH_WRITE, "", True),
    "mesh-falls-back-to-operator-deny": Case('operator = "deny"', P.MESH_READ, "", False, True),
    "mesh-overrides-operator": Case(
        'operator = "write"\nmesh = "read"', P.MESH_WRITE, "", False, True
    ),
    "mesh-alone": Case('mesh = "write"', P.MESH_WRITE, "", True),
    "peering-falls-back-to-operator": Case('operator = "read"', P.PEERING_READ, "", True),
    "peering-overrides-operator": Case(
        'operator = "write"\npeering = "deny"', P.PEERING_READ, "", False
    ),
    "acl-read": Case('acl = "read"', P.ACL_READ, "", True),
    "acl-read-withholds-write": Case('acl = "read"', P.ACL_WRITE, "", False),
    "snapshot-needs-acl-write": Case('acl = "write"', P.SNAPSHOT, "", True),
    "keyring-write": Case('keyring = "write"', P.KEYRING_WRITE, "", True),
    "keyring-deny": Case('keyring = "deny"', P.KEYRING_READ, "", False, True),
    # other segmented resources
    "agent-prefix": Case('agent_prefix "n" { policy = "read" }', P.AGENT_READ, "node1", True),
    "agent-write-refused": Case(
        'agent_prefix "n" { policy = "read" }', P.AGENT_WRITE, "node1", False
    ),
    "event-write": Case(
        'event_prefix "deploy" { policy = "write" }', P.EVENT_WRITE, "deploy-x", True
    ),
    "query-read": Case('query "q1" { policy = "read" }', P.QUERY_READ, "q1", True),
    "query-write-refused": Case('query "q1" { policy = "read" }', P.QUERY_WRITE, "q1", False),
    "session-write": Case('session_prefix "" { policy = "write" }', P.SESSION_WRITE, "n", True),
    # read-all / write-any aggregates
    "service-read-all-root-read": Case(
        'service_prefix "" { policy = "read" }', P.SERVICE_READ_ALL, "", True
    ),
    "service-read-all-deny-below": Case(
        'service_prefix "" { policy = "read" }\nservice "secret" { policy = "deny" }',
        P.SERVICE_READ_ALL,
        "",
        False,
        True,
    ),
    "service-read-all-no-root-default-deny": Case(
        'service "a" { policy = "write" }', P.SERVICE_READ_ALL, "", False
    ),
    "service-read-all-no-root-default-allow": Case(
        'service "a" { policy = "write" }', P.SERVICE_READ_ALL, "", True, True
    ),
    "node-read-all-root-read": Case(
        'node_prefix "" { policy = "read" }', P.NODE_READ_ALL, "", True
    ),
    "node-read-all-root-deny": Case(
        'node_prefix "" { policy = "deny" }\nnode "a" { policy = "read" }',
        P.NODE_READ_ALL,
        "",
        False,
        True,
    ),
    "service-write-any": Case('service "a" { policy = "write" }', P.SERVICE_WRITE_ANY, "", True),
    "service-write-any-none": Case(
        'service_prefix "" { policy = "read" }', P.SERVICE_WRITE_ANY, "", False
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decision_table(case: Case) -> None:
    authz = ACLAuthorizer.from_policies([parse_rules(case.rules)], default_allow=case.default_allow)
    assert authz.allowed(case.permission, case.name) is case.expected


# (merged rules, permission, name, expected) with default deny.
MERGE_CASES = [
    ('service "web" { policy = "write" }', P.SERVICE_WRITE, "web", False),  # deny wins
    ('service "api" { policy = "write" }', P.SERVICE_WRITE, "api", True),  # write beats read
    ('key "k" { policy = "list" }', P.KEY_LIST, "k", True),  # list beats read
    ('key "k" { policy = "list" }', P.KEY_WRITE, "k", True),  # write beats list
    ("", P.OPERATOR_WRITE, "", True),  # operator write beats read
]


def test_several_policies_merge_as_consul_does() -> None:
    policies = [
        parse_rules(
            'service "web" { policy = "write" }\nservice "api" { policy = "read" }\n'
            'operator = "read"'
        ),
        parse_rules(
            'service "web" { policy = "deny" }\nservice "api" { policy = "write" }\n'
            'key "k" { policy = "read" }'
        ),
        parse_rules('key "k" { policy = "list" }\noperator = "write"'),
        parse_rules('key "k" { policy = "write" }'),
    ]
    authz = ACLAuthorizer.from_policies(policies, default_allow=False)
    assert not authz.service_write("web")
    assert not authz.service_read("web")
    assert authz.service_write("api")
    assert authz.key_write("k")
    assert authz.operator_write()
    only_first_three = ACLAuthorizer.from_policies(policies[:3], default_allow=False)
    assert only_first_three.key_list("k")
    assert not only_first_three.key_write("k")


def test_policies_scoped_to_another_datacenter_are_ignored() -> None:
    scoped = Policy(operator=Access.WRITE, datacenters=frozenset({"dc2"}))
    assert not ACLAuthorizer.from_policies(
        [scoped], default_allow=False, datacenter="dc1"
    ).operator_read()
    assert ACLAuthorizer.from_policies(
        [scoped], default_allow=False, datacenter="dc2"
    ).operator_write()


def test_named_methods_match_the_permission_table() -> None:
    authz = ACLAuthorizer.from_policies(
        [
            parse_rules(
                'service "s" { policy = "write" }\nnode "n" { policy = "write" }\n'
                'key_prefix "k" { policy = "write" }\nagent "a" { policy = "write" }\n'
                'event "e" { policy = "write" }\nsession "n" { policy = "write" }\n'
                'query "q" { policy = "write" }\nacl = "write"\nkeyring = "write"\n'
                'operator = "write"\nmesh = "write"\npeering = "write"'
            )
        ],
        default_allow=False,
    )
    granted = [
        authz.service_read("s"), authz.service_write("s"), authz.node_read("n"),
        authz.node_write("n"), authz.key_read("k1"), authz.key_list("k"), authz.key_write("k2"),
        authz.key_write_prefix("k"), authz.agent_read("a"), authz.agent_write("a"),
        authz.event_read("e"), authz.event_write("e"), authz.session_read("n"),
        authz.session_write("n"), authz.query_read("q"), authz.query_write("q"),
        authz.acl_read(), authz.acl_write(), authz.snapshot(), authz.keyring_read(),
        authz.keyring_write(), authz.operator_read(), authz.operator_write(), authz.mesh_read(),
        authz.mesh_write(), authz.peering_read(), authz.peering_write(),
        authz.intention_read("s"), authz.service_write_any(),
    ]  # fmt: skip
    assert all(granted)
    refused = [
        authz.service_read("t"), authz.node_read("m"), authz.key_read("x"),
        authz.intention_write("s"), authz.service_read_all(), authz.node_read_all(),
    ]  # fmt: skip
    assert not any(refused)


def test_static_authorizers_follow_consul_allow_deny_manage() -> None:
    assert allow_all().service_write("x") and allow_all().key_write_prefix("")
    assert not allow_all().acl_write() and not allow_all().snapshot()
    assert not deny_all().service_read("x") and not deny_all().acl_read()
    assert manage_all().acl_write() and manage_all().snapshot() and manage_all().mesh_write()


def test_policy_enforcer_says_default_when_no_rule_applies() -> None:
    enforcer = PolicyEnforcer(parse_rules('service "a" { policy = "read" }'))
    assert enforcer.decide(P.SERVICE_READ, "a") is Decision.ALLOW
    assert enforcer.decide(P.SERVICE_WRITE, "a") is Decision.DENY
    assert enforcer.decide(P.SERVICE_READ, "b") is Decision.DEFAULT
    assert enforcer.decide(P.OPERATOR_READ, "") is Decision.DEFAULT


def test_chain_without_any_decision_denies() -> None:
    authz = ACLAuthorizer([PolicyEnforcer(Policy())])
    assert authz.decide(P.SERVICE_READ, "a") is Decision.DENY


@pytest.mark.parametrize(
    ("rule", "required", "expected"),
    [
        (Access.WRITE, Access.WRITE, Decision.ALLOW),
        (Access.WRITE, Access.LIST, Decision.ALLOW),
        (Access.LIST, Access.READ, Decision.ALLOW),
        (Access.LIST, Access.WRITE, Decision.DENY),
        (Access.READ, Access.LIST, Decision.DENY),
        (Access.READ, Access.READ, Decision.ALLOW),
        (Access.DENY, Access.READ, Decision.DENY),
        (None, Access.READ, Decision.DEFAULT),
    ],
)
def test_enforce_grants_as_consul(
    rule: Access | None, required: Access, expected: Decision
) -> None:
    assert enforce(rule, required) is expected


def test_require_raises_consul_permission_denied_text() -> None:
    authz = ACLAuthorizer.from_policies(
        [parse_rules('service_prefix "" { policy = "read" }')],
        default_allow=False,
        accessor_id="abc-123",
    )
    authz.require(P.SERVICE_READ, "db")
    with pytest.raises(ACLPermissionDenied) as err:
        authz.require(P.SERVICE_WRITE, "db")
    assert str(err.value) == (
        "Permission denied: token with AccessorID 'abc-123' "
        "lacks permission 'service:write' on \"db\""
    )
    with pytest.raises(ACLPermissionDenied) as err:
        authz.require(P.OPERATOR_READ)
    assert (
        str(err.value)
        == "Permission denied: token with AccessorID 'abc-123' lacks permission 'operator:read'"
    )


def test_require_reports_aggregate_permissions_by_their_consul_label() -> None:
    authz = deny_all().for_accessor("t1")
    with pytest.raises(ACLPermissionDenied) as err:
        authz.require(P.KEY_WRITE_PREFIX, "app/")
    assert (err.value.permission, err.value.resource) == ("key:write", "app/")
    with pytest.raises(ACLPermissionDenied) as err:
        authz.require(P.SNAPSHOT)
    assert (
        str(err.value)
        == "Permission denied: token with AccessorID 't1' lacks permission 'acl:write'"
    )


def test_for_accessor_keeps_decisions() -> None:
    authz = ACLAuthorizer.from_policies([parse_rules('acl = "read"')], default_allow=False)
    other = authz.for_accessor("x")
    assert other.accessor_id == "x"
    assert other.acl_read() and not other.acl_write()
