"""A Consul client nobody here wrote (py-consul) against a real dev agent:
catalog, health, KV and sessions must work unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import consul
import pytest
import trio

from tests.meshd.harness import dev_agent

pytestmark = pytest.mark.e2e


async def in_thread(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    return await trio.to_thread.run_sync(lambda: fn(*args, **kw))


async def test_py_consul_catalog_health_kv_and_sessions() -> None:
    async with dev_agent() as (_agent, api):
        c = consul.Consul(host=api.host, port=api.port)

        # agent + catalog + health
        assert await in_thread(
            c.agent.service.register, "web", service_id="web-1", port=8080, tags=["v1"]
        )
        _, services = await in_thread(c.catalog.services)
        assert services["web"] == ["v1"]
        index, nodes = await in_thread(c.catalog.service, "web")
        assert [n["ServicePort"] for n in nodes] == [8080] and int(index) > 0
        _, healthy = await in_thread(c.health.service, "web", passing=True)
        assert [h["Service"]["ID"] for h in healthy] == ["web-1"]
        assert "web-1" in await in_thread(c.agent.services)

        # KV with CAS and recursion
        assert await in_thread(c.kv.put, "app/config", "v1") is True
        _, item = await in_thread(c.kv.get, "app/config")
        assert item["Value"] == b"v1"
        assert await in_thread(c.kv.put, "app/config", "v2", cas=item["ModifyIndex"]) is True
        assert await in_thread(c.kv.put, "app/config", "v3", cas=item["ModifyIndex"]) is False
        await in_thread(c.kv.put, "app/other", "x")
        _, items = await in_thread(c.kv.get, "app/", recurse=True)
        assert [i["Key"] for i in items] == ["app/config", "app/other"]
        _, keys = await in_thread(c.kv.get, "app/", keys=True)
        assert keys == ["app/config", "app/other"]
        assert await in_thread(c.kv.delete, "app/", recurse=True) is True
        _, gone = await in_thread(c.kv.get, "app/config")
        assert gone is None

        # sessions and locks (defaults need the node's serfHealth check)
        sid = await in_thread(c.session.create, name="lock-holder", ttl=30)
        other = await in_thread(c.session.create, name="contender")
        _, info = await in_thread(c.session.info, sid)
        assert info["Name"] == "lock-holder" and info["TTL"] == "30s"
        assert await in_thread(c.kv.put, "locks/leader", "me", acquire=sid) is True
        assert await in_thread(c.kv.put, "locks/leader", "you", acquire=other) is False
        _, lock = await in_thread(c.kv.get, "locks/leader")
        assert lock["Session"] == sid
        assert await in_thread(c.kv.put, "locks/leader", "me", release=sid) is True
        _, sessions = await in_thread(c.session.list)
        assert {s["ID"] for s in sessions} == {sid, other}
        assert await in_thread(c.session.destroy, sid) is True
        _, sessions = await in_thread(c.session.list)
        assert [s["ID"] for s in sessions] == [other]
