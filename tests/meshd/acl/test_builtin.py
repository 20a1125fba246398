"""Builtin policies and the service/node identity templates."""

from __future__ import annotations

import pytest

from meshd.acl.authorizer import ACLAuthorizer
from meshd.acl.builtin import (
    GLOBAL_MANAGEMENT_POLICY_ID,
    GLOBAL_MANAGEMENT_RULES,
    global_management_policy,
    global_read_only_policy,
    is_reserved_id,
    node_identity_policy,
    node_identity_rules,
    service_identity_policy,
    service_identity_rules,
)
from meshd.acl.errors import IdentityError
from meshd.acl.rules import Access, Resource, Rule, parse_rules

W, R = Access.WRITE, Access.READ


def test_global_management_grants_every_permission_under_default_deny() -> None:
    authz = ACLAuthorizer.from_policies([global_management_policy()], default_allow=False)
    checks = [
        authz.acl_write(), authz.snapshot(), authz.agent_write("n"), authz.event_write("e"),
        authz.key_write("k"), authz.key_write_prefix(""), authz.keyring_write(),
        authz.node_write("n"), authz.operator_write(), authz.mesh_write(), authz.peering_write(),
        authz.query_write("q"), authz.service_write("s"), authz.intention_write("s"),
        authz.intention_write("*"), authz.session_write("n"), authz.service_read_all(),
        authz.node_read_all(),
    ]  # fmt: skip
    assert all(checks)


def test_global_management_rules_match_consul() -> None:
    policy = global_management_policy()
    assert GLOBAL_MANAGEMENT_POLICY_ID == "00000000-0000-0000-0000-000000000001"
    assert policy == parse_rules(GLOBAL_MANAGEMENT_RULES)
    assert (policy.acl, policy.keyring, policy.operator, policy.mesh, policy.peering) == (
        W,
        W,
        W,
        W,
        W,
    )
    prefixes = {(rule.resource, rule.name, rule.prefix, rule.access) for rule in policy.rules}
    segmented = [Resource.AGENT, Resource.EVENT, Resource.KEY, Resource.NODE, Resource.QUERY,
                 Resource.SERVICE, Resource.SESSION]  # fmt: skip
    assert prefixes == {(res, "", True, W) for res in segmented}
    service = next(rule for rule in policy.rules if rule.resource is Resource.SERVICE)
    assert service.intentions is W


def test_global_read_only_reads_everything_and_writes_nothing() -> None:
    authz = ACLAuthorizer.from_policies([global_read_only_policy()], default_allow=True)
    assert authz.acl_read() and authz.service_read("x") and authz.intention_read("x")
    assert authz.key_read("a") and authz.mesh_read() and authz.operator_read()
    assert not authz.acl_write() and not authz.service_write("x") and not authz.key_write("a")
    assert not authz.key_list("a")


def test_service_identity_grants_service_and_sidecar_write_and_reads() -> None:
    policy = service_identity_policy("web", ["dc1"])
    assert set(policy.rules) == {
        Rule(Resource.SERVICE, "web", False, W),
        Rule(Resource.SERVICE, "web-sidecar-proxy", False, W),
        Rule(Resource.SERVICE, "", True, R),
        Rule(Resource.NODE, "", True, R),
    }
    assert policy.datacenters == frozenset({"dc1"})
    authz = ACLAuthorizer.from_policies([policy], default_allow=False, datacenter="dc1")
    assert authz.service_write("web") and authz.service_write("web-sidecar-proxy")
    assert authz.intention_read("web") and not authz.intention_write("web")
    assert authz.service_read("db") and not authz.service_write("db")
    assert authz.node_read("n1") and not authz.node_write("n1")
    elsewhere = ACLAuthorizer.from_policies([policy], default_allow=False, datacenter="dc2")
    assert not elsewhere.service_write("web")


def test_service_identity_without_datacenters_applies_everywhere() -> None:
    policy = service_identity_policy("api")
    assert policy.datacenters == frozenset()
    assert ACLAuthorizer.from_policies(
        [policy], default_allow=False, datacenter="dc9"
    ).service_write("api")


def test_service_identity_rules_are_consuls_template() -> None:
    assert service_identity_rules("web") == (
        '\nservice "web" {\n  policy = "write"\n}\nservice "web-sidecar-proxy" {\n'
        '  policy = "write"\n}\nservice_prefix "" {\n  policy = "read"\n}\n'
        'node_prefix "" {\n  policy = "read"\n}'
    )


def test_node_identity_grants_node_write_and_service_read_in_its_datacenter() -> None:
    policy = node_identity_policy("node-1", "dc1")
    assert set(policy.rules) == {
        Rule(Resource.NODE, "node-1", False, W),
        Rule(Resource.SERVICE, "", True, R),
    }
    assert policy.datacenters == frozenset({"dc1"})
    authz = ACLAuthorizer.from_policies([policy], default_allow=False, datacenter="dc1")
    assert authz.node_write("node-1") and not authz.node_write("node-2")
    assert authz.service_read("web") and not authz.node_read("node-2")
    assert 'node "node-1"' in node_identity_rules("node-1")


@pytest.mark.parametrize("name", ["Web", "web!", "-web", "web_", "", "a" * 257, 'x" { policy'])
def test_identity_names_consul_refuses_are_rejected(name: str) -> None:
    with pytest.raises(IdentityError) as err:
        service_identity_policy(name)
    assert str(err.value) == (
        f'Service identity "{name}" has an invalid name. '
        "Only lowercase alphanumeric characters, '-' and '_' are allowed"
    )
    with pytest.raises(IdentityError):
        node_identity_policy(name, "dc1")


def test_node_identity_needs_a_datacenter() -> None:
    with pytest.raises(IdentityError) as err:
        node_identity_policy("n1", "")
    assert str(err.value) == "Node identity is missing the datacenter field"


def test_reserved_ids() -> None:
    assert is_reserved_id("00000000-0000-0000-0000-000000000002")
    assert not is_reserved_id("10000000-0000-0000-0000-000000000002")
