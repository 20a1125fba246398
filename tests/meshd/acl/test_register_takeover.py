"""The servers' rule for catalog writes by ID (issue 13 item 4 through the
catalog and txn, over RPC from any agent): re-registering or deleting a
service ID that exists on the node needs service:write on the service the
ID belongs to, as Consul's vetRegisterWithACL."""

from __future__ import annotations

import pytest

from meshd.acl import ACLAuthorizer, parse_rules
from meshd.acl.errors import ACLPermissionDenied
from meshd.agent.acl_commands import authorize_command
from registry.commands import RegisterRequest, TxnOp, TxnRequest, TxnServiceOp
from registry.fsm import RegistryFSM
from registry.records import HealthCheck, ServiceInstance

WEB = parse_rules('service "web" { policy = "write" }\nnode "ext" { policy = "write" }\n')


def _web() -> ACLAuthorizer:
    return ACLAuthorizer.from_policies([WEB], default_allow=False, datacenter="dc1")


def _store_with_api() -> RegistryFSM:
    fsm = RegistryFSM()
    api = ServiceInstance(service="api", id="api-1", node="ext", port=1)
    result = fsm.apply_command(1, RegisterRequest(node="ext", address="10.0.0.1", service=api))
    assert result.ok, result
    return fsm


def _register(service_id: str, name: str) -> RegisterRequest:
    svc = ServiceInstance(service=name, id=service_id, node="ext", port=2)
    return RegisterRequest(node="ext", address="10.0.0.1", service=svc)


def test_registering_another_services_id_needs_write_on_it() -> None:
    store = _store_with_api().store
    with pytest.raises(ACLPermissionDenied) as exc:
        authorize_command(_web(), _register("api-1", "web"), store)
    assert "api" in str(exc.value)
    authorize_command(_web(), _register("web-1", "web"), store)  # its own ID


def test_a_check_on_another_registered_service_needs_write_on_it() -> None:
    store = _store_with_api().store
    check = HealthCheck(check_id="c", node="ext", name="c", status="passing", service_id="api-1")
    cmd = RegisterRequest(node="ext", address="10.0.0.1", checks=(check,))
    with pytest.raises(ACLPermissionDenied):
        authorize_command(_web(), cmd, store)


@pytest.mark.parametrize("verb", ["set", "delete", "cas", "delete-cas"])
def test_a_txn_service_op_on_another_services_id_needs_write_on_it(verb: str) -> None:
    store = _store_with_api().store
    svc = ServiceInstance(service="web", id="api-1", node="ext")
    cmd = TxnRequest(ops=(TxnOp(service=TxnServiceOp(verb=verb, node="ext", service=svc)),))
    with pytest.raises(ACLPermissionDenied):
        authorize_command(_web(), cmd, store)
    mine = ServiceInstance(service="web", id="web-1", node="ext")
    own = TxnRequest(ops=(TxnOp(service=TxnServiceOp(verb="set", node="ext", service=mine)),))
    authorize_command(_web(), own, store)
