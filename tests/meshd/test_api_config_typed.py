"""/v1/config with typed entries and whole-graph checks, and meshd's atomic
batch write (PUT /v1/internal/config/batch), in-process
(tests/meshd/inproc.py) under the autojump clock.

Texts are Consul's (agent/structs/config_entry*.go, agent/consul/discoverychain);
Consul answers some with 500, meshd with 400 (bad input is never a 5xx).
"""

from __future__ import annotations

from typing import Any

import pytest

from meshd.api import config_entries
from tests.meshd.inproc import InprocClient, inproc_agent

BATCH = "/v1/internal/config/batch"
WEB_HTTP = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}
API_HTTP = {"Kind": "service-defaults", "Name": "api", "Protocol": "http"}
WEB_ROUTER = {
    "Kind": "service-router",
    "Name": "web",
    "Routes": [{"Match": {"HTTP": {"PathPrefix": "/api"}}, "Destination": {"Service": "api"}}],
}
WEB_SPLITTER = {
    "Kind": "service-splitter",
    "Name": "web",
    "Splits": [{"Weight": 90}, {"Weight": 10, "Service": "api"}],
}
TCP_ROUTING = (
    'discovery chain "web" uses a protocol "tcp" that does not permit advanced '
    "routing or splitting behavior"
)


async def stored(api: InprocClient) -> list[tuple[str, str]]:
    """Every stored (Kind, Name) of the kinds these tests write."""
    out: list[tuple[str, str]] = []
    for kind in ("service-defaults", "service-router", "service-splitter", "service-resolver"):
        r = await api.get(f"/v1/config/{kind}")
        assert r.status == 200, r.text
        out += [(e["Kind"], e["Name"]) for e in r.json()]
    return out


async def put(api: InprocClient, body: Any) -> tuple[int, str]:
    r = await api.put("/v1/config", body)
    return r.status, r.text


async def test_typed_validation_answers_consuls_texts(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        bad_key = {**WEB_HTTP, "Bogus": 1}
        assert await put(api, bad_key) == (
            400,
            'Request decoding failed: invalid config key "Bogus"',
        )
        router = {"Kind": "service-router", "Name": "web", "Routes": [{"Match": {"HTTP": {}}}]}
        router["Routes"][0]["Match"]["HTTP"]["PathPrefix"] = "api"
        status, text = await put(api, router)
        assert status == 400
        assert text.startswith("Route[0] PathPrefix doesn't start with '/': \"api\"")
        resolver = {
            "Kind": "service-resolver",
            "Name": "db",
            "Subsets": {"v1": {"Filter": "Service.Meta.version =="}},
        }
        status, text = await put(api, resolver)
        assert status == 400
        assert text.startswith('Filter for subset "v1" is not a valid expression: ')
        assert await stored(api) == []
        resolver["Subsets"] = {"v1": {"Filter": "Service.Meta.version == v1"}}
        assert await put(api, resolver) == (200, "true")
        assert await stored(api) == [("service-resolver", "db")]


async def test_snake_case_input_is_stored_camel_case(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        body = {
            "kind": "service-defaults",
            "name": "web",
            "protocol": "http",
            "local_connect_timeout_ms": 5000,
        }
        assert await put(api, body) == (200, "true")
        got = (await api.get("/v1/config/service-defaults/web")).json()
        assert got["Protocol"] == "http" and got["LocalConnectTimeoutMs"] == 5000
        assert not {"protocol", "local_connect_timeout_ms", "kind", "name"} & set(got)
        assert (got["Kind"], got["Name"]) == ("service-defaults", "web")


async def test_router_on_a_tcp_service_is_refused(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        assert await put(api, WEB_ROUTER) == (400, TCP_ROUTING)
        assert await stored(api) == []


async def test_write_breaking_another_services_chain_is_refused(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        for body in (WEB_HTTP, API_HTTP, WEB_ROUTER):
            assert await put(api, body) == (200, "true")
        before = (await api.get("/v1/config/service-defaults/api")).json()
        # api's own chain is fine as tcp; web's router sends http to it.
        status, text = await put(api, {**API_HTTP, "Protocol": "tcp"})
        assert (status, text) == (
            400,
            'discovery chain "web" uses inconsistent protocols; '
            'service "api" has "tcp" which is not "http"',
        )
        after = (await api.get("/v1/config/service-defaults/api")).json()
        assert after == before  # nothing stored


async def test_delete_breaking_a_chain_is_refused(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        for body in (WEB_HTTP, API_HTTP, WEB_ROUTER):
            assert await put(api, body) == (200, "true")
        r = await api.delete("/v1/config/service-defaults/web")
        assert r.status == 400 and "inconsistent protocols" in r.text
        assert ("service-defaults", "web") in await stored(api)
        # Without the router the protocol can go.
        assert (await api.delete("/v1/config/service-router/web")).status == 200
        r = await api.delete("/v1/config/service-defaults/web")
        assert (r.status, r.json()) == (200, {})
        assert await stored(api) == [("service-defaults", "api")]


async def test_batch_applies_what_single_writes_in_that_order_refuse(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (_agent, api):
        # Router first, as single writes: refused at the router.
        assert await put(api, WEB_ROUTER) == (400, TCP_ROUTING)
        assert await stored(api) == []
        # The same entries in the same order as one batch: the graph after
        # the batch is valid, so all are stored, at one index.
        r = await api.put(BATCH, [WEB_ROUTER, WEB_SPLITTER, WEB_HTTP, API_HTTP])
        assert (r.status, r.text) == (200, "true")
        assert sorted(await stored(api)) == [
            ("service-defaults", "api"),
            ("service-defaults", "web"),
            ("service-router", "web"),
            ("service-splitter", "web"),
        ]
        indexes = set()
        for kind in ("service-defaults", "service-router", "service-splitter"):
            got = (await api.get(f"/v1/config/{kind}/web")).json()
            indexes.add(got["ModifyIndex"])
        assert len(indexes) == 1  # one Raft command


async def test_batch_with_one_invalid_entry_stores_nothing(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        bad_router = {"Kind": "service-router", "Name": "web", "Routes": [{"Nope": 1}]}
        r = await api.put(BATCH, [WEB_HTTP, API_HTTP, bad_router])
        assert r.status == 400 and r.text.startswith("Entries[2]: Request decoding failed: ")
        # A batch whose graph is broken as a whole: web's router without http.
        local_router = {**WEB_ROUTER, "Routes": [{"Match": {"HTTP": {"PathPrefix": "/a"}}}]}
        r = await api.put(BATCH, [API_HTTP, local_router])
        assert (r.status, r.text) == (400, TCP_ROUTING)
        r = await api.put(BATCH, [WEB_HTTP, {**WEB_HTTP, "Protocol": "grpc"}])
        assert r.status == 400 and "duplicate config entry service-defaults/web" in r.text
        for body in ({}, [], WEB_HTTP):
            r = await api.put(BATCH, body)
            assert r.status == 400 and "non-empty JSON array" in r.text
        assert await stored(api) == []


async def test_batch_keeps_untyped_kinds_as_given(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        mesh = {"Kind": "mesh", "Name": "mesh", "TransparentProxy": {"MeshDestinationsOnly": True}}
        r = await api.put(BATCH, [mesh, WEB_HTTP])
        assert (r.status, r.text) == (200, "true")
        got = (await api.get("/v1/config/mesh/mesh")).json()
        assert got["TransparentProxy"] == {"MeshDestinationsOnly": True}


async def test_a_write_racing_a_conflicting_one_is_revalidated(
    autojump_clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The router is validated against a graph where api is http; before it
    is stored, another write makes api tcp. The guarded write notices the
    graph moved, re-validates and refuses, so no broken chain is stored."""
    async with inproc_agent() as (_agent, api):
        for body in (WEB_HTTP, API_HTTP):
            assert await put(api, body) == (200, "true")
        real = config_entries.load_graph
        raced: list[int] = []

        async def racing_load(agent: Any) -> Any:
            graph = await real(agent)
            if not raced:
                raced.append(1)
                assert await put(api, {**API_HTTP, "Protocol": "tcp"}) == (200, "true")
            return graph

        monkeypatch.setattr(config_entries, "load_graph", racing_load)
        status, text = await put(api, WEB_ROUTER)
        assert raced and status == 400 and "inconsistent protocols" in text
        assert ("service-router", "web") not in await stored(api)
