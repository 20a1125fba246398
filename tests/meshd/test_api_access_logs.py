"""AccessLogs in proxy-defaults (Consul's) and service-defaults (meshd's
per-service switch) are validated at /v1/config, in process."""

from __future__ import annotations

from typing import Any

from tests.meshd.inproc import inproc_agent


async def test_access_logs_are_validated_with_the_field_named_and_stored_in_consuls_shape(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (_agent, api):
        bad = {"Kind": "proxy-defaults", "Name": "global", "AccessLogs": {"Type": "file"}}
        r = await api.put("/v1/config", bad)
        assert r.status == 400
        assert r.text == (
            'path must be specified when using file type access logs (field "AccessLogs.Path")'
        )
        web = {"Kind": "service-defaults", "Name": "web", "AccessLogs": {"Enabled": "yes"}}
        r = await api.put("/v1/config", web)
        assert (r.status, r.text) == (
            400,
            "Request decoding failed: AccessLogs.Enabled must be a boolean",
        )
        r = await api.put("/v1/config", {**web, "AccessLogs": {"Enabled": True, "Bogus": 1}})
        assert r.status == 400 and "AccessLogs.Bogus" in r.text
        assert (await api.get("/v1/config/proxy-defaults")).json() == []
        assert (await api.get("/v1/config/service-defaults")).json() == []
        on = {"Enabled": True, "Type": "file", "Path": "/var/log/web.log", "TextFormat": ""}
        r = await api.put("/v1/config", {**web, "AccessLogs": on})
        assert (r.status, r.text) == (200, "true")
        got = (await api.get("/v1/config/service-defaults/web")).json()
        assert got["AccessLogs"] == {"Enabled": True, "Type": "file", "Path": "/var/log/web.log"}
        r = await api.put("/v1/config", {**bad, "AccessLogs": {"Enabled": True}})
        assert (r.status, r.text) == (200, "true")
        got = (await api.get("/v1/config/proxy-defaults/global")).json()
        assert got["AccessLogs"] == {"Enabled": True}
