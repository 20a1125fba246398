"""IDs and names that contain ``/``: Consul's handlers take the rest of the
path (``strings.TrimPrefix``), so ``/v1/agent/service/deregister/a/b``
deregisters service ``a/b``; meshd routes these with a trailing ``*rest``
parameter."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from meshd.api.routes import build_router
from meshd.http import Router
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent

SVC = {
    "ID": "team/web-1",
    "Name": "web",
    "Port": 8080,
    "Check": {"CheckID": "team/web-ttl", "Name": "web ttl", "TTL": "30s"},
}


async def _wait_catalog(api: APIClient | InprocClient, path: str, pred: object) -> object:
    with trio.fail_after(10):
        while True:
            r = await api.get(path)
            if r.status == 200 and pred(r.json()):  # type: ignore[operator]
                return r.json()
            await trio.sleep(0.05)


@pytest.mark.e2e
async def test_agent_service_and_check_ids_with_slashes_are_routed() -> None:
    async with dev_agent() as (_agent, api):
        assert (await api.put("/v1/agent/service/register", SVC)).status == 200
        r = await api.get("/v1/agent/service/team/web-1")
        assert r.status == 200 and r.json()["ID"] == "team/web-1"
        for verb, status in (("warn", "warning"), ("fail", "critical"), ("pass", "passing")):
            r = await api.put(f"/v1/agent/check/{verb}/team/web-ttl?note={verb}")
            assert r.status == 200, (verb, r.status, r.text)
            check = (await api.get("/v1/agent/checks")).json()["team/web-ttl"]
            assert check["Status"] == status
        r = await api.put("/v1/agent/check/update/team/web-ttl", {"Status": "warning"})
        assert r.status == 200
        assert (await api.get("/v1/agent/checks")).json()["team/web-ttl"]["Status"] == "warning"
        r = await api.put("/v1/agent/service/maintenance/team/web-1?enable=true&reason=x")
        assert r.status == 200
        assert "_service_maintenance:team/web-1" in (await api.get("/v1/agent/checks")).json()
        r = await api.put("/v1/agent/service/maintenance/team/web-1?enable=false")
        assert r.status == 200
        await _wait_catalog(
            api,
            "/v1/health/node/dev-node",
            lambda b: any(c["CheckID"] == "team/web-ttl" for c in b),
        )
        r = await api.put("/v1/agent/service/deregister/team/web-1")
        assert r.status == 200, r.text
        assert (await api.get("/v1/agent/services")).json() == {}
        assert (await api.get("/v1/agent/service/team/web-1")).status == 404

        body = {"Name": "disk/root", "TTL": "30s"}
        assert (await api.put("/v1/agent/check/register", body)).status == 200
        assert (await api.put("/v1/agent/check/deregister/disk/root")).status == 200
        assert "disk/root" not in (await api.get("/v1/agent/checks")).json()


async def test_catalog_and_health_names_with_slashes_are_routed(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        reg = {
            "Node": "rack/a/node-1",
            "Address": "10.0.0.1",
            "Service": {"ID": "s1", "Service": "db", "Port": 5432},
        }
        assert (await api.put("/v1/catalog/register", reg)).status == 200
        node = (await api.get("/v1/catalog/node/rack/a/node-1")).json()
        assert node is not None and node["Node"]["Node"] == "rack/a/node-1"
        ns = (await api.get("/v1/catalog/node-services/rack/a/node-1")).json()
        assert ns is not None and ns["Node"]["Node"] == "rack/a/node-1"
        rows = (await api.get("/v1/health/node/rack/a/node-1")).json()
        assert rows == []
        assert (await api.get("/v1/coordinate/node/rack/a/node-1")).status in (200, 404)
        rows = (await api.get("/v1/session/node/rack/a/node-1")).json()
        assert rows == []


def test_every_id_route_takes_the_rest_of_the_path() -> None:
    """Every agent/catalog/health/session route that ends in an ID or a name
    takes the rest of the path, as Consul's prefix handlers do."""

    class _A:
        proxy_ejections = None  # read when the routes are built, not used here

        class acl:
            enabled = False

        class config:
            class ui_config:
                enabled = True

    router: Router = build_router(_A())  # type: ignore[arg-type]
    families = ("/v1/agent/", "/v1/catalog/", "/v1/health/", "/v1/session/", "/v1/kv/")
    one_segment = [
        r.pattern
        for r in router.routes()
        if r.pattern.startswith(families) and r.pattern.rsplit("/", 1)[-1].startswith(":")
    ]
    # the agent's token kinds and join address are fixed words / addresses
    assert set(one_segment) <= {"/v1/agent/token/:kind", "/v1/agent/join/:address"}
