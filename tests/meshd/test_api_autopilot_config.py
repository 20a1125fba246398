"""PUT/GET /v1/operator/autopilot/configuration: replicated, CAS, validated,
and used by the leader's health rule."""

from __future__ import annotations

from trio.testing import MockClock

from tests.meshd.inproc import inproc_agent

PATH = "/v1/operator/autopilot/configuration"


async def test_set_is_stored_and_read_back_with_indexes(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        default = (await api.get(PATH)).json()
        assert (default["CreateIndex"], default["ModifyIndex"]) == (0, 0)
        changed = {**default, "CleanupDeadServers": False, "MinQuorum": 3}
        changed["LastContactThreshold"] = "300ms"
        changed["RedundancyZoneTag"] = "zone"
        assert (await api.put(PATH, changed)).json() is True
        got = (await api.get(PATH)).json()
        assert got["CleanupDeadServers"] is False and got["MinQuorum"] == 3
        assert got["LastContactThreshold"] == "300ms" and got["RedundancyZoneTag"] == "zone"
        assert got["ServerStabilizationTime"] == "10s"
        assert 0 < got["CreateIndex"] == got["ModifyIndex"]
        # ?cas=: the stored ModifyIndex wins, a stale one answers false.
        stale = got["ModifyIndex"]
        assert (await api.put(f"{PATH}?cas={stale}", {**got, "MinQuorum": 5})).json() is True
        again = (await api.get(PATH)).json()
        assert again["MinQuorum"] == 5 and again["CreateIndex"] == got["CreateIndex"]
        assert again["ModifyIndex"] > stale
        assert (await api.put(f"{PATH}?cas={stale}", {**got, "MinQuorum": 7})).json() is False
        assert (await api.get(PATH)).json()["MinQuorum"] == 5


async def test_bad_values_answer_400_naming_the_field(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        before = (await api.get(PATH)).json()
        for body, field in (
            ({**before, "MinQuorum": -1}, "MinQuorum"),
            ({**before, "MaxTrailingLogs": "many"}, "MaxTrailingLogs"),
            ({**before, "CleanupDeadServers": "no"}, "CleanupDeadServers"),
            ({**before, "LastContactThreshold": "soon"}, "LastContactThreshold"),
            ({**before, "ServerStabilizationTime": "-1s"}, "ServerStabilizationTime"),
            ({**before, "ServerStabilizationTime": 5}, "ServerStabilizationTime"),
            ({"Bogus": 1}, "Bogus"),
        ):
            resp = await api.put(PATH, body)
            assert resp.status == 400 and field in resp.text, (body, resp.text)
        resp = await api.put(f"{PATH}?cas=x", before)
        assert resp.status == 400 and "cas" in resp.text
        assert (await api.get(PATH)).json() == before


async def test_the_health_rule_uses_the_stored_settings(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (agent, api):
        conf = (await api.get(PATH)).json()
        conf = {**conf, "LastContactThreshold": "250ms", "MaxTrailingLogs": 7}
        assert (await api.put(PATH, conf)).json() is True
        await api.get("/v1/operator/autopilot/health")
        settings = agent.server.autopilot.settings  # type: ignore[union-attr]
        assert (settings.last_contact_threshold, settings.max_trailing_logs) == (0.25, 7)
