"""/v1/catalog against a real dev agent, asserting Consul's documented shapes."""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from tests.meshd.harness import dev_agent
from tests.meshd.inproc import inproc_agent

DB = {
    "Node": "ext-1",
    "Address": "10.1.1.1",
    "NodeMeta": {"rack": "r1"},
    "Service": {"Service": "db", "Port": 5432, "Tags": ["primary"], "Meta": {"v": "1"}},
    "Check": {"CheckID": "db-alive", "Name": "db alive", "Status": "passing", "ServiceID": "db"},
}


@pytest.mark.e2e
async def test_register_query_and_deregister() -> None:
    async with dev_agent() as (_agent, api):
        r = await api.put("/v1/catalog/register", DB)
        assert (r.status, r.json()) == (200, True)
        r = await api.get("/v1/catalog/services")
        assert r.json()["db"] == ["primary"]
        assert int(r.headers["x-consul-index"]) > 0
        assert r.headers["x-consul-knownleader"] == "true"
        r = await api.get("/v1/catalog/service/db?tag=primary")
        [row] = r.json()
        assert row["Node"] == "ext-1" and row["ServicePort"] == 5432
        assert row["ServiceMeta"] == {"v": "1"} and row["NodeMeta"] == {"rack": "r1"}
        assert row["Datacenter"] == "dc1"
        assert (await api.get("/v1/catalog/service/db?tag=replica")).json() == []
        r = await api.get("/v1/catalog/service/db?filter=ServiceMeta.v%20%3D%3D%20%222%22")
        assert r.json() == []
        r = await api.get("/v1/catalog/node/ext-1")
        assert r.json()["Services"]["db"]["Port"] == 5432
        r = await api.get("/v1/catalog/node-services/ext-1")
        assert r.json()["Services"][0]["Service"] == "db"
        assert (await api.get("/v1/catalog/node/nope")).json() is None
        nodes = {n["Node"] for n in (await api.get("/v1/catalog/nodes")).json()}
        assert nodes == {"dev-node", "ext-1"}
        r = await api.put("/v1/catalog/deregister", {"Node": "ext-1", "ServiceID": "db"})
        assert r.json() is True
        assert "db" not in (await api.get("/v1/catalog/services")).json()
        await api.put("/v1/catalog/deregister", {"Node": "ext-1"})
        nodes = {n["Node"] for n in (await api.get("/v1/catalog/nodes")).json()}
        assert nodes == {"dev-node"}


async def test_bad_input_gets_400_naming_the_problem_and_changes_nothing(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        before = (await api.get("/v1/catalog/nodes")).json()
        cases = [
            ({"Node": "x"}, "Address"),
            ({"Nod": "x"}, 'unknown field "Nod"'),
            ({"Node": "x", "Address": "a", "Service": {"Service": "s", "Port": 99999}}, "Port"),
        ]
        for body, needle in cases:
            r = await api.put("/v1/catalog/register", body)
            assert r.status == 400 and needle in r.text, (body, r.status, r.text)
        r = await api.put("/v1/catalog/register", raw=b"{not json")
        assert r.status == 400 and "Request decode failed" in r.text
        r = await api.get("/v1/catalog/service/db?index=abc")
        assert (r.status, r.text) == (400, "Invalid index")
        r = await api.get("/v1/catalog/service/db?wait=forever&index=1")
        assert r.status == 400 and "Invalid wait" in r.text
        r = await api.get("/v1/catalog/nodes?filter=Node%20%3D%3D")
        assert r.status == 400
        assert (await api.get("/v1/catalog/nodes")).json() == before
        assert (await api.get("/v1/nope")).status == 404


async def test_service_lookups_ignore_case_as_in_consul(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        body = {"Node": "ext-1", "Address": "10.1.1.1", "Service": {"Service": "web", "Port": 80}}
        assert (await api.put("/v1/catalog/register", body)).json() is True
        for path in ("/v1/catalog/service/Web", "/v1/health/service/WEB"):
            r = await api.get(path)
            assert r.status == 200, path
            assert len(r.json()) == 1, (path, r.json())
        [row] = (await api.get("/v1/catalog/service/Web")).json()
        assert row["ServiceName"] == "web"
