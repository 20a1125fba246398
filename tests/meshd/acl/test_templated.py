"""Templated policies render Consul's rules and are enforced; the new ACL
commands need acl:write when a client agent forwards them."""

from __future__ import annotations

import pytest

from meshd.acl import ACLAuthorizer, Permission, Policy, parse_rules
from meshd.acl.errors import ACLPermissionDenied
from meshd.acl.templated import TemplateError, templated_policy, templated_policy_rules
from meshd.agent.acl_commands import authorize_command
from registry.commands import ACLAuthMethodSet, ACLBindingRuleDelete
from registry.records import ACLAuthMethod
from registry.state.store import StateStore

P = Permission


def authz_of(*policies: Policy) -> ACLAuthorizer:
    return ACLAuthorizer.from_policies(list(policies), default_allow=False, datacenter="dc1")


def test_builtin_service_grants_the_service_and_its_sidecar_and_reads() -> None:
    authz = authz_of(templated_policy("builtin/service", "web"))
    assert authz.allowed(P.SERVICE_WRITE, "web")
    assert authz.allowed(P.SERVICE_WRITE, "web-sidecar-proxy")
    assert not authz.allowed(P.SERVICE_WRITE, "webx")
    assert authz.allowed(P.SERVICE_READ, "db") and authz.allowed(P.NODE_READ, "n1")
    assert not authz.allowed(P.NODE_WRITE, "n1")


def test_builtin_node_and_dns_and_datacenter_scope() -> None:
    node = authz_of(templated_policy("builtin/node", "n1"))
    assert node.allowed(P.NODE_WRITE, "n1") and not node.allowed(P.NODE_WRITE, "n2")
    dns = authz_of(templated_policy("builtin/dns", ""))
    assert dns.allowed(P.QUERY_READ, "q") and not dns.allowed(P.SERVICE_WRITE, "web")
    elsewhere = authz_of(templated_policy("builtin/service", "web", ("dc2",)))
    assert not elsewhere.allowed(P.SERVICE_WRITE, "web")


def test_bad_template_or_name_is_refused_with_consuls_text() -> None:
    with pytest.raises(TemplateError, match="Invalid templated policy Name: builtin/x"):
        templated_policy_rules("builtin/x", "a")
    with pytest.raises(TemplateError, match='"name" is required'):
        templated_policy_rules("builtin/service", "")
    with pytest.raises(TemplateError):
        templated_policy_rules("builtin/service", 'a" { policy = "write" } x "')


def test_auth_method_commands_need_acl_write_over_rpc() -> None:
    store = StateStore()
    writer = authz_of(parse_rules('acl = "write"'))
    reader = authz_of(parse_rules('acl = "read"'))
    for cmd in (
        ACLAuthMethodSet(methods=(ACLAuthMethod("m", type="jwt"),)),
        ACLBindingRuleDelete(ids=("x",)),
    ):
        authorize_command(writer, cmd, store)
        with pytest.raises(ACLPermissionDenied):
            authorize_command(reader, cmd, store)
