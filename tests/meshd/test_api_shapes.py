"""Shapes and types Consul normalises or accepts on registration, and
``?filter=`` checked against each endpoint's fields as Consul checks them
(https://developer.hashicorp.com/consul/api-docs/agent/service#register-service,
https://developer.hashicorp.com/consul/api-docs/features/filtering)."""

from __future__ import annotations

from urllib.parse import quote

from trio.testing import MockClock

from tests.meshd.inproc import InprocClient, inproc_agent

WEB = {
    "Name": "web",
    "Port": 80,
    "TaggedAddresses": {
        "lan": {"address": "10.0.0.1", "port": 8080},
        "wan": {"Address": "1.2.3.4", "Port": 80},
    },
    "Locality": {"Region": "us-east-1", "Zone": "us-east-1a"},
}
NORMALISED = {
    "lan": {"Address": "10.0.0.1", "Port": 8080},
    "wan": {"Address": "1.2.3.4", "Port": 80},
}


async def ok(api: InprocClient, path: str, body: object) -> None:
    r = await api.put(path, body)
    assert r.status == 200, (path, r.status, r.text)


async def test_service_tagged_addresses_are_address_and_port_everywhere(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        await ok(api, "/v1/agent/service/register", WEB)
        assert (await api.get("/v1/agent/service/web")).json()["TaggedAddresses"] == NORMALISED
        assert (await api.get("/v1/agent/services")).json()["web"]["TaggedAddresses"] == NORMALISED
        [row] = (await api.get("/v1/catalog/service/web")).json()
        assert row["ServiceTaggedAddresses"] == NORMALISED
        [entry] = (await api.get("/v1/health/service/web")).json()
        assert entry["Service"]["TaggedAddresses"] == NORMALISED
        # The catalog and txn registrations normalise the same way.
        body = {
            "Node": "ext",
            "Address": "10.9.9.9",
            "Service": {"Service": "db", "TaggedAddresses": {"lan_ipv4": {"address": "10.9.9.9"}}},
        }
        await ok(api, "/v1/catalog/register", body)
        [row] = (await api.get("/v1/catalog/service/db")).json()
        assert row["ServiceTaggedAddresses"] == {"lan_ipv4": {"Address": "10.9.9.9", "Port": 0}}
        op = {
            "Service": {
                "Verb": "set",
                "Node": "ext",
                "Service": {"ID": "q", "Service": "queue", "TaggedAddresses": {"lan": {"port": 1}}},
            }
        }
        r = await api.put("/v1/txn", [op])
        assert r.status == 200, r.text
        [row] = (await api.get("/v1/catalog/service/queue")).json()
        assert row["ServiceTaggedAddresses"] == {"lan": {"Address": "", "Port": 1}}
        body = {"Name": "x", "TaggedAddresses": {"lan": "1.1.1.1", "wan": ["bad"]}}
        r = await api.put("/v1/agent/service/register", body)
        assert r.status == 400 and "TaggedAddresses.wan" in r.text
        body = {"Name": "x", "TaggedAddresses": {"lan": "1.1.1.1"}}  # a bare address
        await ok(api, "/v1/agent/service/register", body)
        got = (await api.get("/v1/agent/service/x")).json()["TaggedAddresses"]
        assert got == {"lan": {"Address": "1.1.1.1", "Port": 0}}


async def test_locality_is_accepted_stored_and_returned(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await ok(api, "/v1/agent/service/register", WEB)
        locality = {"Region": "us-east-1", "Zone": "us-east-1a"}
        assert (await api.get("/v1/agent/service/web")).json()["Locality"] == locality
        [entry] = (await api.get("/v1/health/service/web")).json()
        assert entry["Service"]["Locality"] == locality
        r = await api.put("/v1/agent/service/register", {"Name": "y", "Locality": {"Planet": "x"}})
        assert r.status == 400 and "Locality" in r.text


async def test_check_durations_as_integer_nanoseconds(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        check = {
            "Name": "tcp",
            "TCP": "127.0.0.1:1",
            "Interval": 10_000_000_000,
            "Timeout": 1_500_000_000,
        }
        await ok(api, "/v1/agent/check/register", check)
        got = (await api.get("/v1/agent/checks")).json()["tcp"]
        assert (got["Interval"], got["Timeout"]) == ("10s", "1.5s")
        svc = {
            "Name": "s",
            "Check": {"TTL": 30_000_000_000, "DeregisterCriticalServiceAfter": 60_000_000_000},
        }
        await ok(api, "/v1/agent/service/register", svc)
        assert "service:s" in (await api.get("/v1/agent/checks")).json()
        r = await api.put("/v1/agent/check/register", {"Name": "n", "TTL": -5})
        assert r.status == 400 and "TTL" in r.text


async def test_a_check_for_a_missing_service_id_fails_with_consuls_text(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.put(
            "/v1/agent/check/register", {"Name": "c", "TTL": "10s", "ServiceID": "nope"}
        )
        assert r.status == 400 and r.text == 'ServiceID "nope" does not exist'
        assert "c" not in (await api.get("/v1/agent/checks")).json()


async def _filter(api: InprocClient, path: str, expr: str) -> tuple[int, object]:
    r = await api.get(f"{path}?filter={quote(expr)}")
    return r.status, (r.json() if r.status == 200 else r.text)


async def test_filters_follow_consuls_field_lists(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await ok(
            api, "/v1/agent/service/register", {**WEB, "Check": {"TTL": "30s", "Status": "passing"}}
        )
        await ok(api, "/v1/agent/service/register", {"Name": "other", "Port": 81})
        cases = [
            ("/v1/catalog/service/web", 'ServiceTaggedAddresses.lan.Address == "10.0.0.1"', 1),
            ("/v1/catalog/service/web", "ServicePort == 80", 1),
            ("/v1/catalog/service/web", 'ServiceWeights.Passing == "1"', 1),
            ("/v1/health/service/web", "Checks.Status == passing", 1),
            ("/v1/health/service/web", "Service.TaggedAddresses.wan.Port == 80", 1),
            ("/v1/catalog/nodes", "Meta is not empty", 1),
        ]
        for path, expr, count in cases:
            status, body = await _filter(api, path, expr)
            assert status == 200 and isinstance(body, list) and len(body) == count, (expr, body)
        status, body = await _filter(api, "/v1/agent/services", "Port == 81")
        assert status == 200 and list(body) == ["other"]  # type: ignore[call-overload]
        status, body = await _filter(api, "/v1/agent/checks", "ServiceName == web")
        assert status == 200 and list(body) == ["service:web"]  # type: ignore[call-overload]
        # Unknown selectors and values of the wrong type are Consul's 400s.
        for path, expr, needle in [
            ("/v1/catalog/service/web", "Port == 80", 'Selector "Port" is not valid'),
            ("/v1/health/service/web", "Service.Nope == x", "is not valid"),
            ("/v1/catalog/nodes", "Node.Node == x", "is not valid"),
            ("/v1/agent/services", "ServicePort == 80", "is not valid"),
            ("/v1/agent/checks", "Bogus == 1", "is not valid"),
            ("/v1/catalog/service/web", "ServicePort == eighty", "not a valid int"),
        ]:
            status, body = await _filter(api, path, expr)
            assert status == 400 and needle in str(body), (expr, status, body)


async def test_filter_on_catalog_services_and_node_services(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await ok(api, "/v1/agent/service/register", {"Name": "web", "Port": 80, "Tags": ["a"]})
        await ok(api, "/v1/agent/service/register", {"Name": "db", "Port": 5432, "Tags": ["b"]})
        status, body = await _filter(api, "/v1/catalog/services", "ServicePort == 80")
        assert (status, body) == (200, {"web": ["a"]})
        status, body = await _filter(api, "/v1/catalog/services", "Port == 80")
        assert status == 400 and 'Selector "Port" is not valid' in str(body)
        status, body = await _filter(api, "/v1/catalog/node/dev-node", "Service == db")
        assert status == 200 and list(body["Services"]) == ["db"]  # type: ignore[index]
        status, body = await _filter(api, "/v1/catalog/node-services/dev-node", "Port == 5432")
        assert status == 200 and [s["Service"] for s in body["Services"]] == ["db"]  # type: ignore[index]


async def test_proxy_blocks_in_snake_or_camel_case_are_consuls_camel_case(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        proxy = {
            "destination_service_name": "web",
            "local_service_port": 8080,
            "upstreams": [{"destination_name": "db", "localBindPort": 9191, "config": {"a_b": 1}}],
        }
        body = {"Name": "web-proxy", "Kind": "connect-proxy", "Port": 21000, "Proxy": proxy}
        await ok(api, "/v1/agent/service/register", body)
        got = (await api.get("/v1/agent/service/web-proxy")).json()["Proxy"]
        assert got["DestinationServiceName"] == "web" and got["LocalServicePort"] == 8080
        assert got["Upstreams"] == [
            {"DestinationName": "db", "LocalBindPort": 9191, "Config": {"a_b": 1}}
        ]
