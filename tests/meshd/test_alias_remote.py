"""An alias check on another node's service follows that node's health,
through the agent's read path (blocking queries), on an in-process dev agent."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from tests.meshd.inproc import inproc_agent


def ext(status: str) -> dict[str, object]:
    return {
        "Node": "ext-db",
        "Address": "10.9.9.9",
        "Service": {"Service": "db", "ID": "db-1", "Port": 5432},
        "Check": {"CheckID": "db-ok", "Name": "db ok", "Status": status, "ServiceID": "db-1"},
    }


async def alias_status(api: object) -> str:
    r = await api.get("/v1/agent/checks")  # type: ignore[attr-defined]
    return str(r.json()["db-alias"]["Status"])


async def test_alias_of_a_service_on_another_node_follows_its_health(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        assert (await api.put("/v1/catalog/register", ext("passing"))).status == 200
        check = {
            "Name": "db-alias",
            "CheckID": "db-alias",
            "AliasNode": "ext-db",
            "AliasService": "db-1",
        }
        assert (await api.put("/v1/agent/check/register", check)).status == 200
        with trio.fail_after(5):
            while await alias_status(api) != "passing":
                await trio.sleep(0.05)
        assert (await api.put("/v1/catalog/register", ext("critical"))).status == 200
        with trio.fail_after(5):
            while await alias_status(api) != "critical":
                await trio.sleep(0.05)
        assert (await api.put("/v1/catalog/register", ext("passing"))).status == 200
        with trio.fail_after(5):
            while await alias_status(api) != "passing":
                await trio.sleep(0.05)
        # The aliased service disappearing makes the alias critical.
        await api.put("/v1/catalog/deregister", {"Node": "ext-db", "ServiceID": "db-1"})
        with trio.fail_after(5):
            while await alias_status(api) != "critical":
                await trio.sleep(0.05)
