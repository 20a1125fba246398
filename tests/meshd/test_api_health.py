"""/v1/health against a real dev agent, asserting Consul's documented shapes
(https://developer.hashicorp.com/consul/api-docs/health)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from trio.testing import MockClock

from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent

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
SERVICE_KEYS = {
    "ID",
    "Service",
    "Tags",
    "Address",
    "TaggedAddresses",
    "Meta",
    "Port",
    "Weights",
    "EnableTagOverride",
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
    "Interval",
    "Timeout",
    "ExposedPort",
    "Definition",
    "CreateIndex",
    "ModifyIndex",
}


def web(node: str, rack: str, tags: list[str], status: str, port: int = 80) -> dict[str, Any]:
    return {
        "Node": node,
        "Address": f"10.0.0.{port % 250}",
        "NodeMeta": {"rack": rack},
        "Service": {"Service": "web", "ID": "web", "Port": port, "Tags": tags},
        "Checks": [
            {"CheckID": "web-alive", "Name": "web alive", "Status": status, "ServiceID": "web"},
            {"CheckID": "disk", "Name": "disk", "Status": "passing"},
        ],
    }


async def register_two_webs(api: APIClient | InprocClient) -> None:
    for body in (
        web("n1", "r1", ["primary", "v1"], "passing", 8080),
        web("n2", "r2", ["v1"], "critical", 8081),
    ):
        r = await api.put("/v1/catalog/register", body)
        assert (r.status, r.json()) == (200, True)


def nodes_of(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(row["Node"]["Node"] for row in rows)


def assert_read_headers(headers: dict[str, str]) -> int:
    assert headers["content-type"] == "application/json"
    assert headers["x-consul-knownleader"] == "true"
    assert headers["x-consul-lastcontact"].isdigit()
    index = int(headers["x-consul-index"])
    assert index > 0
    return index


@pytest.mark.e2e
async def test_service_returns_node_service_and_checks_per_instance() -> None:
    async with dev_agent() as (_agent, api):
        await register_two_webs(api)
        r = await api.get("/v1/health/service/web")
        assert r.status == 200
        assert_read_headers(r.headers)
        rows = r.json()
        assert nodes_of(rows) == ["n1", "n2"]
        for row in rows:
            assert set(row) == {"Node", "Service", "Checks"}
            assert set(row["Node"]) == NODE_KEYS
            assert set(row["Service"]) >= SERVICE_KEYS
            # The node-level check comes first, then the instance's own.
            assert [c["CheckID"] for c in row["Checks"]] == ["disk", "web-alive"]
            assert all(set(c) == CHECK_KEYS for c in row["Checks"])
        n1 = next(row for row in rows if row["Node"]["Node"] == "n1")
        assert n1["Service"]["Port"] == 8080 and n1["Service"]["Tags"] == ["primary", "v1"]
        assert n1["Node"]["Meta"] == {"rack": "r1"} and n1["Node"]["Datacenter"] == "dc1"
        assert n1["Checks"][1]["ServiceName"] == "web" and n1["Checks"][1]["Status"] == "passing"


async def test_service_query_parameters_filter_instances(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await register_two_webs(api)

        async def nodes(query: str) -> list[str]:
            r = await api.get(f"/v1/health/service/web?{query}")
            assert r.status == 200, (query, r.status, r.text)
            return nodes_of(r.json())

        assert await nodes("passing") == ["n1"]
        assert await nodes("passing=true") == ["n1"]
        assert await nodes("passing=1") == ["n1"]
        assert await nodes("passing=false") == ["n1", "n2"]
        assert await nodes("tag=v1") == ["n1", "n2"]
        assert await nodes("tag=primary&tag=v1") == ["n1"]  # every tag must match
        assert await nodes("tag=primary&tag=v2") == []
        assert await nodes("node-meta=rack:r2") == ["n2"]
        assert await nodes("node-meta=rack:r2&passing") == []
        assert await nodes("filter=" + quote("Service.Port == 8081")) == ["n2"]
        r = await api.get("/v1/health/service/web?passing=maybe")
        assert (r.status, r.text) == (400, "Invalid value for ?passing")


async def test_empty_results_are_empty_lists_with_an_index(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        for path in (
            "/v1/health/service/nope",
            "/v1/health/connect/nope",
            "/v1/health/checks/nope",
            "/v1/health/node/nope",
            "/v1/health/state/warning",
        ):
            r = await api.get(path)
            assert (r.status, r.json()) == (200, []), path
            assert_read_headers(r.headers)


async def test_checks_node_and_state_endpoints(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await register_two_webs(api)
        r = await api.get("/v1/health/checks/web")
        checks = r.json()
        assert sorted((c["Node"], c["CheckID"]) for c in checks) == [
            ("n1", "web-alive"),
            ("n2", "web-alive"),
        ]
        assert all(set(c) == CHECK_KEYS for c in checks)
        r = await api.get("/v1/health/checks/web?node-meta=rack:r1")
        assert [c["Node"] for c in r.json()] == ["n1"]
        r = await api.get("/v1/health/node/n2")
        assert [(c["CheckID"], c["Status"]) for c in r.json()] == [
            ("disk", "passing"),
            ("web-alive", "critical"),
        ]
        r = await api.get("/v1/health/state/critical")
        assert [(c["Node"], c["CheckID"]) for c in r.json()] == [("n2", "web-alive")]
        r = await api.get("/v1/health/state/passing?node-meta=rack:r1")
        assert sorted(c["CheckID"] for c in r.json()) == ["disk", "web-alive"]
        r = await api.get("/v1/health/state/any")
        assert len([c for c in r.json() if c["Node"] in ("n1", "n2")]) == 4
        r = await api.get("/v1/health/state/any?filter=" + quote('Node == "n2"'))
        assert {c["Node"] for c in r.json()} == {"n2"}


async def test_connect_lists_proxies_of_a_service(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await register_two_webs(api)
        proxy = {
            "Node": "n1",
            "Address": "10.0.0.80",
            "NodeMeta": {"rack": "r1"},
            "Service": {
                "Service": "web-sidecar-proxy",
                "Kind": "connect-proxy",
                "Port": 21000,
                "Proxy": {"DestinationServiceName": "web"},
            },
        }
        r = await api.put("/v1/catalog/register", proxy)
        assert r.status == 200, r.text
        r = await api.get("/v1/health/connect/web")
        [row] = r.json()
        assert row["Service"]["Service"] == "web-sidecar-proxy"
        assert row["Service"]["Kind"] == "connect-proxy"
        assert row["Service"]["Port"] == 21000
        assert row["Node"]["Node"] == "n1"
        assert (await api.get("/v1/health/connect/web?passing")).json()[0]["Node"]["Node"] == "n1"
        assert (await api.get("/v1/health/connect/web?node-meta=rack:r2")).json() == []


async def test_bad_requests_get_400_with_consuls_text(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        cases = [
            ("/v1/health/state/bogus", "Invalid check state"),
            ("/v1/health/state/", "Missing check state"),
            ("/v1/health/service/", "Missing service name"),
            ("/v1/health/connect/", "Missing service name"),
            ("/v1/health/checks/", "Missing service name"),
            ("/v1/health/node/", "Missing node name"),
            ("/v1/health/service/web?index=abc", "Invalid index"),
            ("/v1/health/service/web?dc=dc9", "No path to datacenter"),
        ]
        for path, text in cases:
            r = await api.get(path)
            assert r.status == 400 and text in r.text, (path, r.status, r.text)
        r = await api.get("/v1/health/service/web?filter=" + quote("Service.Port =="))
        assert r.status == 400
        r = await api.put("/v1/health/service/web")
        assert r.status == 405
