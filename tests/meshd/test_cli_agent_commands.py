"""``meshd members``, ``info``, ``reload``, ``leave`` and ``version`` against a
real dev agent."""

from __future__ import annotations

import json

import pytest
import trio

from tests.meshd.cli_support import invoke, one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent

pytestmark = pytest.mark.e2e


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


async def test_members_table_detailed_status_filter_and_json() -> None:
    async with dev_agent() as (_agent, api):
        result = await run_cli(["members", *addr(api)])
        assert result.exit_code == 0, result.output
        header, *rows = [line.split() for line in result.stdout.splitlines()]
        assert header == ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC"]
        [row] = rows
        assert row[0] == "dev-node" and row[1].startswith("127.0.0.1:")
        assert row[2:4] == ["alive", "server"] and row[-1] == "dc1"
        result = await run_cli(["members", "-detailed", *addr(api)])
        assert result.stdout.splitlines()[0].split() == ["Node", "Address", "Status", "Tags"]
        [detail] = [line.split() for line in result.stdout.splitlines()[1:]]
        assert len(detail) == 4  # tags are one comma-separated column
        assert "role=consul" in detail[3].split(",") and "dc=dc1" in detail[3].split(",")
        result = await run_cli(["members", "-status", "failed|left", *addr(api)])
        assert result.stdout.splitlines() == ["Node  Address  Status  Type  Build  Protocol  DC"]
        result = await run_cli(["members", "--format", "json", *addr(api)])
        [member] = json.loads(result.stdout)
        assert member["Name"] == "dev-node"
        line = one_error_line(await run_cli(["members", "-status", "(", *addr(api)]))
        assert line.startswith("Error: invalid -status pattern '(':")


async def test_info_prints_sorted_sections_of_stats() -> None:
    async with dev_agent() as (_agent, api):
        result = await run_cli(["info", *addr(api)])
        assert result.exit_code == 0, result.output
        sections = [line[:-1] for line in result.stdout.splitlines() if not line.startswith("\t")]
        assert sections == sorted(sections)
        assert {"agent", "raft", "runtime"} <= set(sections)
        values = [line for line in result.stdout.splitlines() if line.startswith("\t")]
        assert values and all(" = " in line for line in values)
        result = await run_cli(["info", "-format", "json", *addr(api)])
        stats = json.loads(result.stdout)
        assert set(sections) == set(stats)


async def test_reload_then_leave_stops_the_agent() -> None:
    async with dev_agent() as (agent, api):
        result = await run_cli(["reload", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Configuration reload triggered\n")
        result = await run_cli(["leave", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Graceful leave complete\n")
        with trio.fail_after(10):
            await agent.shutdown.wait()
        assert agent.left


def test_version_needs_no_agent() -> None:
    result = invoke(["version"])
    assert result.exit_code == 0 and result.stdout.startswith("meshd v")
