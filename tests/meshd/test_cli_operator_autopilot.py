"""``meshd operator autopilot get-config|set-config|state`` and the
autopilot endpoints they use, against a real dev agent."""

from __future__ import annotations

import json

import pytest

from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent

pytestmark = pytest.mark.e2e


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


async def test_get_config_prints_consul_key_value_lines() -> None:
    async with dev_agent() as (_agent, api):
        result = await run_cli(["operator", "autopilot", "get-config", *addr(api)])
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines() == [
            "CleanupDeadServers = true",
            "LastContactThreshold = 1s",
            "MaxTrailingLogs = 250",
            "MinQuorum = 0",
            "ServerStabilizationTime = 10s",
            'RedundancyZoneTag = ""',
            "DisableUpgradeMigration = false",
            'UpgradeVersionTag = ""',
        ]


async def test_set_config_changes_the_replicated_configuration() -> None:
    async with dev_agent() as (_agent, api):
        base = ["operator", "autopilot", "set-config", *addr(api)]
        result = await run_cli([*base, "-cleanup-dead-servers=false"])
        assert (result.exit_code, result.stdout) == (0, "Configuration updated!\n"), result.output
        result = await run_cli([*base, "-max-trailing-logs", "10"])
        assert result.exit_code == 0, result.output
        result = await run_cli(["operator", "autopilot", "get-config", *addr(api)])
        lines = result.stdout.splitlines()
        assert "CleanupDeadServers = false" in lines and "MaxTrailingLogs = 10" in lines
        assert "LastContactThreshold = 1s" in lines  # the CLI keeps what it did not set
        line = one_error_line(await run_cli([*base, "-last-contact-threshold", "soon"]))
        assert "LastContactThreshold" in line or "soon" in line
        # The endpoint itself: Consul's body, ?cas=, fields named in errors.
        path = "/v1/operator/autopilot/configuration"
        current = (await api.get(path)).json()
        assert current["CleanupDeadServers"] is False and current["ModifyIndex"] > 0
        assert (await api.put(f"{path}?cas={current['ModifyIndex']}", current)).json() is True
        assert (await api.put(f"{path}?cas=1", current)).json() is False
        resp = await api.put(path, {**current, "MinQuorum": -1})
        assert resp.status == 400 and "MinQuorum" in resp.text
        resp = await api.put(path, {"Bogus": 1})
        assert resp.status == 400 and "Bogus" in resp.text
        after = (await api.get(path)).json()
        assert after["ModifyIndex"] > current["ModifyIndex"]
        assert {k: v for k, v in after.items() if not k.endswith("Index")} == {
            k: v for k, v in current.items() if not k.endswith("Index")
        }


async def test_state_shows_the_leader_and_voters() -> None:
    async with dev_agent() as (_agent, api):
        result = await run_cli(["operator", "autopilot", "state", *addr(api)])
        assert result.exit_code == 0, result.output
        fields = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.strip().partition(":")
            if sep and value.strip():
                fields.setdefault(key, value.strip())
        assert fields["Healthy"] == "true" and fields["Failure Tolerance"] == "0"
        assert fields["Name"] == "dev-node" and fields["Status"] == "leader"
        assert fields["Node Type"] == "voter" and fields["Node Status"] == "alive"
        result = await run_cli(["operator", "autopilot", "state", "-format", "json", *addr(api)])
        state = json.loads(result.stdout)
        assert state["Voters"] == [state["Leader"]]
        server = state["Servers"][state["Leader"]]
        assert server["Healthy"] is True and server["Status"] == "leader"
        assert fields["Leader"] == state["Leader"]
