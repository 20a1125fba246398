"""``?filter`` on the list endpoints that ignored it (issue 13 item 11):
/v1/catalog/services, /v1/catalog/node/:node (and node-services),
/v1/event/list and /v1/coordinate/nodes. Selectors follow the Filtering
tables of Consul's catalog page; a filter that does not parse or names an
unknown selector is 400.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import trio
from trio.testing import MockClock

from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent


def _q(expr: str) -> str:
    return "filter=" + quote(expr, safe="")


async def _register(
    api: APIClient | InprocClient, node: str, name: str, sid: str, tags: list[str], **kw: Any
) -> None:
    service = {"Service": name, "ID": sid, "Tags": tags, "Port": 80, **kw}
    body = {"Node": node, "Address": "10.0.0.1", "Service": service}
    r = await api.put("/v1/catalog/register", body)
    assert r.status == 200, r.text


async def _catalog(api: APIClient | InprocClient) -> None:
    await _register(api, "n1", "web", "web-1", ["v1"], Meta={"env": "prod"})
    await _register(api, "n2", "web", "web-2", ["v2"], Meta={"env": "dev"})
    await _register(api, "n1", "db", "db-1", ["primary"], Meta={"env": "prod"})


@pytest.mark.e2e
async def test_catalog_services_filters_over_service_instances() -> None:
    async with dev_agent() as (_agent, api):
        await _catalog(api)
        r = await api.get("/v1/catalog/services?" + _q('ServiceMeta.env == "prod"'))
        assert r.status == 200, r.text
        assert r.json() == {"web": ["v1"], "db": ["primary"]}
        r = await api.get("/v1/catalog/services?" + _q("v2 in ServiceTags"))
        assert r.json() == {"web": ["v2"]}
        r = await api.get("/v1/catalog/services?" + _q("Node == n2 and ServiceName == db"))
        assert r.json() == {}
        unfiltered = (await api.get("/v1/catalog/services")).json()
        assert unfiltered["web"] == ["v1", "v2"] and "db" in unfiltered


async def test_catalog_node_filters_each_service_of_the_node(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await _catalog(api)
        r = await api.get("/v1/catalog/node/n1?" + _q("Service == web"))
        assert r.status == 200, r.text
        assert set(r.json()["Services"]) == {"web-1"}
        assert r.json()["Node"]["Node"] == "n1"
        r = await api.get("/v1/catalog/node/n1?" + _q('Meta.env == "prod" and primary in Tags'))
        assert set(r.json()["Services"]) == {"db-1"}
        r = await api.get("/v1/catalog/node-services/n1?" + _q("Port != 80"))
        assert r.json()["Services"] == []
        assert len((await api.get("/v1/catalog/node/n1")).json()["Services"]) == 2


async def test_event_list_and_coordinate_nodes_apply_the_filter(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        for name in ("deploy", "restart", "deploy"):
            assert (await api.put(f"/v1/event/fire/{name}", raw=b"")).status == 200
        with trio.fail_after(10):
            while len((await api.get("/v1/event/list")).json()) < 3:
                await trio.sleep(0.05)
        r = await api.get("/v1/event/list?" + _q("Name == deploy"))
        assert r.status == 200, r.text
        assert [e["Name"] for e in r.json()] == ["deploy", "deploy"]
        r = await api.get("/v1/coordinate/nodes?" + _q('Node == "dev-node"'))
        assert (r.status, r.json()) == (200, [])


@pytest.mark.parametrize(
    "path",
    [
        "/v1/catalog/services",
        "/v1/catalog/node/n1",
        "/v1/catalog/node-services/n1",
        "/v1/event/list",
        "/v1/coordinate/nodes",
    ],
)
async def test_invalid_filters_are_400(autojump_clock: MockClock, path: str) -> None:
    async with inproc_agent() as (_agent, api):
        await _catalog(api)
        for expr, needle in (
            ("Name ==", ""),  # does not parse
            ("Bogus == x", 'Selector "Bogus" is not valid'),
            ("((", ""),
        ):
            r = await api.get(f"{path}?{_q(expr)}")
            assert r.status == 400, (path, expr, r.status, r.text)
            assert needle in r.text
