"""Consul JSON shapes: field names and encodings the HTTP layer relies on."""

from __future__ import annotations

import json

from registry import shapes
from registry.records import (
    ACLLink,
    ACLNodeIdentity,
    ACLPolicy,
    ACLRole,
    ACLServiceIdentity,
    ACLToken,
    KVEntry,
    Node,
    NodeServices,
    ServiceInstance,
)
from registry.results import TxnResponse, TxnResult


def test_kv_value_is_base64_or_null_and_session_only_when_held() -> None:
    assert shapes.kv_json(KVEntry("k", b"hi", 1, "", 0, 3, 4)) == {
        "Key": "k",
        "CreateIndex": 3,
        "ModifyIndex": 4,
        "LockIndex": 0,
        "Flags": 1,
        "Value": "aGk=",
    }
    assert shapes.kv_json(KVEntry("k"))["Value"] is None
    assert shapes.kv_json(KVEntry("k", b"x", session="s"))["Session"] == "s"
    assert shapes.kv_json(KVEntry("k", b"x"), with_value=False)["Value"] is None


def test_node_services_list_and_proxy_service() -> None:
    proxy = ServiceInstance(
        "web-proxy", id="p", kind="connect-proxy", proxy={"DestinationServiceName": "web"}
    )
    ns = NodeServices(Node("n1", address="a"), (proxy,))
    body = shapes.node_services_list_json(ns)
    assert body["Node"]["Node"] == "n1"
    assert body["Services"][0]["Kind"] == "connect-proxy"
    assert body["Services"][0]["Proxy"] == {"DestinationServiceName": "web"}
    json.dumps(body)


def test_acl_shapes() -> None:
    token = ACLToken(
        "acc",
        "sec",
        policies=(ACLLink("p", "read"),),
        service_identities=(ACLServiceIdentity("web", ("dc1",)),),
        node_identities=(ACLNodeIdentity("n1", "dc1"),),
        expiration_time="2030-01-01T00:00:00Z",
    )
    body = shapes.acl_token_json(token)
    assert body["AccessorID"] == "acc" and body["ExpirationTime"].startswith("2030")
    assert body["ServiceIdentities"] == [{"ServiceName": "web", "Datacenters": ["dc1"]}]
    assert body["NodeIdentities"] == [{"NodeName": "n1", "Datacenter": "dc1"}]
    assert shapes.acl_policy_json(ACLPolicy("p", "read", rules="x"))["Rules"] == "x"
    assert shapes.acl_role_json(ACLRole("r", "ops"))["Policies"] == []


def test_txn_results_shape() -> None:
    resp = TxnResponse(results=(TxnResult(node=Node("n1")), TxnResult(kv=KVEntry("k"))))
    body = shapes.txn_response_json(resp)
    assert body["Errors"] is None
    assert [set(r) for r in body["Results"]] == [{"Node"}, {"KV"}]


def test_rfc3339() -> None:
    assert shapes.rfc3339(0) == "1970-01-01T00:00:00Z"
