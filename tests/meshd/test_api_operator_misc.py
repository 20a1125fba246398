"""Endpoints Consul clients call that meshd answers as Consul does:
/v1/operator/usage, /v1/operator/keyring (no gossip encryption),
PUT /v1/coordinate/update, /v1/agent/health/service/{id,name}/*,
/v1/catalog/gateway-services/:gateway, /v1/health/ingress/:service, ?peer=."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from tests.meshd.inproc import InprocClient, inproc_agent


async def ok(api: InprocClient, path: str, body: object) -> None:
    r = await api.put(path, body)
    assert r.status == 200, (path, r.status, r.text)


async def test_operator_usage_counts_the_catalog(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await ok(api, "/v1/agent/service/register", {"Name": "web", "Port": 80})
        await ok(api, "/v1/agent/service/register", {"Name": "web", "ID": "web2", "Port": 81})
        await ok(api, "/v1/agent/service/register", {"Name": "igw", "Kind": "ingress-gateway"})
        r = await api.get("/v1/operator/usage")
        assert r.status == 200 and int(r.headers["x-consul-index"]) > 0
        body = r.json()
        assert {"Usage", "Index", "LastContact", "KnownLeader"} <= set(body)
        usage = body["Usage"]["dc1"]
        assert set(usage) == {
            "Services",
            "ServiceInstances",
            "ConnectServiceInstances",
            "BillableServiceInstances",
            "Nodes",
        }
        assert usage["ConnectServiceInstances"]["ingress-gateway"] == 1
        # Two web instances (the consul service, where registered, is not billable).
        assert usage["BillableServiceInstances"] == 2 and usage["Nodes"] == 1


async def test_keyring_answers_as_consul_without_gossip_encryption(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        for method in ("GET", "POST", "PUT", "DELETE"):
            r = await api.request(method, "/v1/operator/keyring", {"Key": "x"})
            assert r.status == 500
            assert r.text == (
                "2 errors occurred:\n\t* dc1 (LAN) error: 1/1 nodes reported failure\n"
                "\t* dev-node: Keyring is empty (encryption not enabled)\n\n"
            )


async def test_coordinate_update_is_validated_and_read_back(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        coord = {"Vec": [0.1] * 8, "Error": 1.5, "Adjustment": 0.0, "Height": 1e-5}
        r = await api.put("/v1/coordinate/update", {"Node": "dev-node", "Coord": coord})
        assert (r.status, r.body) == (200, b"")
        # Batched into the next Raft write (about a second later).
        with trio.fail_after(20):
            while not (await api.get("/v1/coordinate/nodes")).json():
                await trio.sleep(0.1)
        [got] = (await api.get("/v1/coordinate/nodes")).json()
        assert got == {"Node": "dev-node", "Segment": "", "Coord": coord}
        assert (await api.get("/v1/coordinate/node/dev-node")).json() == [got]
        bad = [
            {"Node": "dev-node", "Coord": {**coord, "Vec": [0.1, 0.2]}},
            {"Node": "dev-node", "Coord": {**coord, "Error": "x"}},
            {"Coord": coord},
        ]
        for body in bad:
            assert (await api.put("/v1/coordinate/update", body)).status == 400


async def test_agent_health_by_service_status_codes_and_text(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await ok(
            api,
            "/v1/agent/service/register",
            {"Name": "web", "Check": {"TTL": "60s", "Status": "passing"}},
        )
        r = await api.get("/v1/agent/health/service/id/web")
        assert r.status == 200
        assert set(r.json()) == {"AggregatedStatus", "Service", "Checks"}
        assert r.json()["AggregatedStatus"] == "passing" and r.json()["Service"]["ID"] == "web"
        await ok(api, "/v1/agent/check/warn/service:web", None)
        r = await api.get("/v1/agent/health/service/name/web?format=text")
        assert (r.status, r.text) == (429, "warning")
        await ok(api, "/v1/agent/check/fail/service:web", None)
        r = await api.get("/v1/agent/health/service/name/web")
        assert r.status == 503 and [i["AggregatedStatus"] for i in r.json()] == ["critical"]
        await ok(api, "/v1/agent/check/pass/service:web", None)
        await ok(api, "/v1/agent/service/maintenance/web?enable=true", None)
        r = await api.get("/v1/agent/health/service/id/web?format=text")
        assert (r.status, r.text) == (503, "maintenance")
        r = await api.get("/v1/agent/health/service/id/nope")
        assert r.status == 404 and r.json() == {
            "AggregatedStatus": "critical",
            "Service": None,
            "Checks": None,
        }
        r = await api.get("/v1/agent/health/service/name/nope?format=text")
        assert (r.status, r.text) == (404, "ServiceName nope Not Found")


async def test_gateway_services_and_ingress_health(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await ok(api, "/v1/agent/service/register", {"Name": "web", "Port": 80})
        await ok(
            api,
            "/v1/agent/service/register",
            {"Name": "igw", "Kind": "ingress-gateway", "Port": 8080},
        )
        listener = {
            "Port": 8080,
            "Protocol": "http",
            "Services": [{"Name": "web", "Hosts": ["web.example"]}],
        }
        await ok(
            api, "/v1/config", {"Kind": "ingress-gateway", "Name": "igw", "Listeners": [listener]}
        )
        await ok(
            api,
            "/v1/config",
            {"Kind": "terminating-gateway", "Name": "tgw", "Services": [{"Name": "*"}]},
        )
        r = await api.get("/v1/catalog/gateway-services/igw")
        assert r.status == 200 and int(r.headers["x-consul-index"]) > 0
        [row] = r.json()
        assert row["Gateway"] == {"Name": "igw"} and row["Service"] == {"Name": "web"}
        assert (row["GatewayKind"], row["Port"], row["Protocol"]) == (
            "ingress-gateway",
            8080,
            "http",
        )
        assert row["Hosts"] == ["web.example"] and row["FromWildcard"] is False
        rows = (await api.get("/v1/catalog/gateway-services/tgw")).json()
        assert {r["Service"]["Name"] for r in rows} >= {"web"} and all(
            r["FromWildcard"] for r in rows
        )
        assert (await api.get("/v1/catalog/gateway-services/none")).json() == []
        [entry] = (await api.get("/v1/health/ingress/web")).json()
        assert (
            entry["Service"]["Service"] == "igw" and entry["Service"]["Kind"] == "ingress-gateway"
        )
        assert {"Node", "Service", "Checks"} <= set(entry)
        assert (await api.get("/v1/health/ingress/other")).json() == []


async def test_peer_query_parameter(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await ok(api, "/v1/agent/service/register", {"Name": "web", "Port": 80})
        for path in ("/v1/health/service/web", "/v1/catalog/service/web", "/v1/catalog/nodes"):
            r = await api.get(f"{path}?peer=")
            assert r.status == 200 and r.json(), path  # empty peer: this cluster
            r = await api.get(f"{path}?peer=elsewhere")
            assert (r.status, r.json()) == (200, []), path  # a peer meshd does not have
            assert "x-consul-index" in r.headers
        assert (await api.get("/v1/catalog/services?peer=elsewhere")).json() == {}
