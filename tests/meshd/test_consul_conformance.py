"""Conformance with Consul's documented HTTP API, per endpoint family.

Each test drives a real dev agent with the py-consul client (a Consul client
nobody here wrote) and with raw HTTP, and compares status codes, the
``X-Consul-*`` headers Consul sends (``X-Consul-Index`` on blocking reads,
``X-Consul-KnownLeader`` and ``X-Consul-LastContact`` with them) and the key
sets of the bodies with Consul's API docs
(https://developer.hashicorp.com/consul/api-docs). Families: agent, catalog,
health, kv, session, txn, acl, config, connect, operator, status, snapshot,
event, coordinate, discovery-chain.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Callable
from typing import Any

import consul
import pytest
import trio

from tests.meshd.harness import HTTPResult, dev_agent

pytestmark = pytest.mark.e2e

BLOCKING_HEADERS = {"x-consul-index", "x-consul-knownleader", "x-consul-lastcontact"}
NODE_KEYS = {
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "Meta",
    "CreateIndex",
    "ModifyIndex",
}
SERVICE_NODE_KEYS = {
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "NodeMeta",
    "ServiceKind",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "ServiceAddress",
    "ServiceTaggedAddresses",
    "ServiceWeights",
    "ServiceMeta",
    "ServicePort",
    "ServiceEnableTagOverride",
    "ServiceProxy",
    "ServiceConnect",
    "CreateIndex",
    "ModifyIndex",
}
CHECK_KEYS = {
    "Node",
    "CheckID",
    "Name",
    "Status",
    "Notes",
    "Output",
    "ServiceID",
    "ServiceName",
    "ServiceTags",
    "Type",
    "ExposedPort",
    "Definition",
    "CreateIndex",
    "ModifyIndex",
}
AGENT_SERVICE_KEYS = {
    "ID",
    "Service",
    "Tags",
    "Meta",
    "Port",
    "Address",
    "TaggedAddresses",
    "Weights",
    "EnableTagOverride",
    "Datacenter",
}
MEMBER_KEYS = {
    "Name",
    "Addr",
    "Port",
    "Tags",
    "Status",
    "ProtocolMin",
    "ProtocolMax",
    "ProtocolCur",
    "DelegateMin",
    "DelegateMax",
    "DelegateCur",
}
SESSION_KEYS = {
    "ID",
    "Name",
    "Node",
    "LockDelay",
    "Behavior",
    "TTL",
    "NodeChecks",
    "ServiceChecks",
    "CreateIndex",
    "ModifyIndex",
}
EVENT_KEYS = {
    "ID",
    "Name",
    "Payload",
    "NodeFilter",
    "ServiceFilter",
    "TagFilter",
    "Version",
    "LTime",
}


async def call(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """A py-consul call (blocking HTTP) in a worker thread."""
    return await trio.to_thread.run_sync(lambda: fn(*args, **kw))


def blocking(r: HTTPResult) -> None:
    """Consul's headers on a blocking read."""
    assert r.status == 200, r.text
    assert set(r.headers) >= BLOCKING_HEADERS, r.headers
    assert int(r.headers["x-consul-index"]) > 0
    assert r.headers["x-consul-knownleader"] in ("true", "false")
    assert r.headers["x-consul-lastcontact"].isdigit()


def keys_of(value: Any) -> set[str]:
    assert isinstance(value, dict), value
    return set(value)


async def test_agent_family() -> None:
    async with dev_agent() as (_agent, api):
        c = consul.Consul(host=api.host, port=api.port)
        assert await call(
            c.agent.service.register,
            "web",
            service_id="web-1",
            port=80,
            check=consul.Check.ttl("30s"),
        )
        me = await call(c.agent.self)
        assert {"Config", "DebugConfig", "Coord", "Member", "Stats", "Meta", "xDS"} <= set(me)
        assert {"Datacenter", "NodeName", "NodeID", "Server", "Version"} <= set(me["Config"])
        [member] = await call(c.agent.members)
        assert set(member) == MEMBER_KEYS and member["Status"] == 1
        services = await call(c.agent.services)
        assert keys_of(services["web-1"]) >= AGENT_SERVICE_KEYS
        checks = await call(c.agent.checks)
        assert keys_of(checks["service:web-1"]) >= CHECK_KEYS
        r = await api.get("/v1/agent/service/web-1")
        assert r.status == 200 and keys_of(r.json()) >= AGENT_SERVICE_KEYS
        assert (await api.get("/v1/agent/service/nope")).status == 404
        r = await api.get("/v1/agent/health/service/id/web-1?format=text")
        assert (r.status, r.text) == (503, "critical")  # a TTL check starts critical
        assert (await api.put("/v1/agent/check/pass/service:web-1")).status == 200
        assert (await api.get("/v1/agent/health/service/id/web-1")).status == 200
        r = await api.put("/v1/agent/service/deregister/web-1")
        assert (r.status, r.body) == (200, b"")
        r = await api.get("/v1/agent/metrics")
        assert r.status == 200 and {
            "Timestamp",
            "Gauges",
            "Points",
            "Counters",
            "Samples",
        } <= keys_of(r.json())


async def test_catalog_family() -> None:
    async with dev_agent() as (_agent, api):
        c = consul.Consul(host=api.host, port=api.port)
        assert await call(
            c.catalog.register, "ext", "10.0.0.9", service={"Service": "db", "Port": 5432}
        )
        assert await call(c.catalog.datacenters) == ["dc1"]
        index, nodes = await call(c.catalog.nodes)
        assert int(index) > 0 and all(set(n) == NODE_KEYS for n in nodes)
        _, rows = await call(c.catalog.service, "db")
        assert [set(r) >= SERVICE_NODE_KEYS for r in rows] == [True]
        _, node = await call(c.catalog.node, "ext")
        assert set(node) == {"Node", "Services"} and "db" in node["Services"]
        for path in (
            "/v1/catalog/nodes",
            "/v1/catalog/services",
            "/v1/catalog/service/db",
            "/v1/catalog/node/ext",
        ):
            blocking(await api.get(path))
        r = await api.get("/v1/catalog/node/nope")  # Consul: 200 with null
        assert (r.status, r.json()) == (200, None) and "x-consul-index" in r.headers
        assert await call(c.catalog.gateway_services, "none") is not None
        assert await call(c.catalog.deregister, "ext")


async def test_health_family() -> None:
    async with dev_agent() as (_agent, api):
        c = consul.Consul(host=api.host, port=api.port)
        await call(c.agent.service.register, "web", port=80, check=consul.Check.ttl("30s"))
        _, entries = await call(c.health.service, "web")
        assert [set(e) for e in entries] == [{"Node", "Service", "Checks"}]
        _, passing = await call(c.health.service, "web", passing=True)
        assert passing == []
        _, checks = await call(c.health.checks, "web")
        assert all(set(ch) >= CHECK_KEYS for ch in checks)
        _, critical = await call(c.health.state, "critical")
        assert "service:web" in {ch["CheckID"] for ch in critical}
        _, ingress = await call(c.health.ingress, "web")
        assert ingress == []
        for path in (
            "/v1/health/service/web",
            "/v1/health/checks/web",
            "/v1/health/state/any",
            "/v1/health/node/dev-node",
            "/v1/health/connect/web",
            "/v1/health/ingress/web",
        ):
            blocking(await api.get(path))
        assert (await api.get("/v1/health/state/bogus")).status == 400


async def test_kv_session_and_txn_families() -> None:
    async with dev_agent() as (_agent, api):
        c = consul.Consul(host=api.host, port=api.port)
        assert await call(c.kv.put, "k", "v") is True
        _index, item = await call(c.kv.get, "k")
        assert {"LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"} <= set(item)
        blocking(await api.get("/v1/kv/k"))
        r = await api.get("/v1/kv/missing")
        assert r.status == 404 and "x-consul-index" in r.headers
        sid = await call(c.session.create, ttl=30)
        _, info = await call(c.session.info, sid)
        assert set(info) == SESSION_KEYS and info["TTL"] == "30s"
        blocking(await api.get("/v1/session/list"))
        renewed = await call(c.session.renew, sid)
        assert set(renewed) == SESSION_KEYS
        assert await call(c.session.destroy, sid) is True
        result = await call(c.txn.put, [{"KV": {"Verb": "get", "Key": "k"}}])
        assert set(result) == {"Results", "Errors"} and result["Errors"] is None
        r = await api.put(
            "/v1/txn", [{"KV": {"Verb": "cas", "Key": "k", "Index": 1, "Value": "eA=="}}]
        )
        assert r.status == 409 and set(r.json()) == {"Results", "Errors"}


async def test_acl_family_without_acls() -> None:
    async with dev_agent() as (_agent, api):
        for method, path in (
            ("GET", "/v1/acl/tokens"),
            ("GET", "/v1/acl/policies"),
            ("GET", "/v1/acl/token/self"),
            ("PUT", "/v1/acl/bootstrap"),
        ):
            r = await api.request(method, path)
            assert (r.status, r.text) == (401, "ACL support disabled"), path


async def test_config_family() -> None:
    async with dev_agent() as (_agent, api):
        c = consul.Consul(host=api.host, port=api.port)
        assert await call(c.config.set, "service-defaults", "web", {"Protocol": "http"}) is True
        entry = await call(c.config.get, "service-defaults", "web")
        assert {"Kind", "Name", "Protocol", "CreateIndex", "ModifyIndex"} <= set(entry)
        assert [e["Name"] for e in await call(c.config.list, "service-defaults")] == ["web"]
        assert await call(c.config.set, "service-defaults", "web", {}, cas=0) is False
        blocking(await api.get("/v1/config/service-defaults"))
        blocking(await api.get("/v1/config/service-defaults/web"))
        assert (
            await call(c.config.delete, "service-defaults", "web", cas=entry["ModifyIndex"]) is True
        )


async def test_connect_family() -> None:
    async with dev_agent() as (_agent, api):
        with trio.fail_after(30):  # the CA is initialised just after the leader is elected
            while not (r := await api.get("/v1/connect/ca/roots")).json()["Roots"]:
                await trio.sleep(0.1)
        blocking(r)
        roots = r.json()
        assert {"ActiveRootID", "TrustDomain", "Roots"} <= set(roots)
        assert {"ID", "Name", "RootCert", "Active"} <= set(roots["Roots"][0])
        r = await api.request(
            "POST",
            "/v1/connect/intentions",
            {"SourceName": "web", "DestinationName": "db", "Action": "allow"},
        )
        assert r.status == 200 and set(r.json()) == {"ID"}
        r = await api.get("/v1/connect/intentions")
        blocking(r)
        assert {"ID", "SourceName", "DestinationName", "Action", "Precedence"} <= set(r.json()[0])
        r = await api.get("/v1/connect/intentions/check?source=web&destination=db")
        assert r.json() == {"Allowed": True}
        r = await api.get("/v1/connect/ca/configuration")
        assert r.status == 200 and {"Provider", "Config"} <= set(r.json())


async def test_operator_and_status_families() -> None:
    async with dev_agent() as (agent, api):
        c = consul.Consul(host=api.host, port=api.port)
        conf = await call(c.operator.raft_config)
        assert set(conf) == {"Servers", "Index"}
        assert {"ID", "Node", "Address", "Leader", "ProtocolVersion", "Voter"} <= set(
            conf["Servers"][0]
        )
        health = await call(c.operator.autopilot_health)
        assert {"Healthy", "FailureTolerance", "Servers"} <= set(health)
        usage = await call(c.operator.usage)
        assert "dc1" in usage["Usage"]
        with pytest.raises(consul.ConsulException, match="Keyring is empty"):
            await call(c.operator.keyring_list)
        leader = await call(c.status.leader)
        assert leader == f"127.0.0.1:{agent.config.ports.server}"
        assert await call(c.status.peers) == [leader]


async def test_snapshot_event_and_coordinate_families() -> None:
    async with dev_agent() as (_agent, api):
        c = consul.Consul(host=api.host, port=api.port)
        r = await api.get("/v1/snapshot")
        assert r.status == 200 and int(r.headers["x-consul-index"]) > 0
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(r.body))) as tar:
            assert tar.getnames() == ["meta.json", "state.bin", "SHA256SUMS"]
        assert await call(c.snapshot.restore, r.body) is True
        event = await call(c.event.fire, "deploy", "v2")
        assert set(event) == EVENT_KEYS
        blocking(await api.get("/v1/event/list"))
        _, events = await call(c.event.list)
        assert [e["Name"] for e in events] == ["deploy"]
        dcs = await call(c.coordinate.datacenters)
        assert set(dcs[0]) == {"Datacenter", "AreaID", "Coordinates"}
        coord = {"Vec": [0.0] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5}
        await call(c.coordinate.update, "dev-node", coord)
        with trio.fail_after(20):  # batched into the next Raft write
            while not (await api.get("/v1/coordinate/nodes")).json():
                await trio.sleep(0.1)
        _, nodes = await call(c.coordinate.nodes)
        assert [set(n) for n in nodes] == [{"Node", "Segment", "Coord"}]
        blocking(await api.get("/v1/coordinate/nodes"))


async def test_discovery_chain_answers_consuls_chain_shape() -> None:
    async with dev_agent() as (_agent, api):
        r = await api.get("/v1/discovery-chain/web")
        assert r.status == 200, r.text
        blocking(r)
        chain = r.json()["Chain"]
        assert {"ServiceName", "Namespace", "Datacenter", "Protocol", "StartNode", "Nodes"} <= set(
            chain
        )
        assert chain["ServiceName"] == "web" and chain["Protocol"] == "tcp"
        assert chain["StartNode"] == "resolver:web.default.default.dc1"
        assert set(chain["Targets"]) == {"web.default.default.dc1"}
