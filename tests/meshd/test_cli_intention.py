"""``meshd intention`` against a real dev agent: Consul's messages and exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio

from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent

pytestmark = pytest.mark.e2e


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


async def wait_for_ca(api: APIClient) -> None:
    with trio.fail_after(10):
        while not (await api.get("/v1/connect/ca/roots")).json().get("TrustDomain"):
            await trio.sleep(0.05)


async def test_create_get_list_and_delete() -> None:
    async with dev_agent() as (_agent, api):
        result = await run_cli(["intention", "list", *addr(api)])
        assert (result.exit_code, result.stderr) == (2, "There are no intentions.\n")
        args = ["intention", "create", "-description", "reads", "-meta", "team=a", "web", "db"]
        result = await run_cli([*args, *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Created: web => db (allow)\n")
        result = await run_cli(["intention", "create", "--deny", "*", "db", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Created: * => db (deny)\n")

        result = await run_cli(["intention", "get", "web", "db", *addr(api)])
        assert result.exit_code == 0, result.output
        fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in result.stdout.splitlines())
        assert fields["Source:"] == "web" and fields["Destination:"] == "db"
        assert fields["Action:"] == "allow" and fields["Description:"] == "reads"
        assert fields["Meta[team]:"] == "a" and fields["Created At:"].count("-") == 2
        ixn_id = fields["ID:"]
        result = await run_cli(["intention", "get", ixn_id, "--format", "json", *addr(api)])
        assert json.loads(result.stdout)["SourceName"] == "web"

        result = await run_cli(["intention", "list", *addr(api)])
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["ID", "Source", "Action", "Destination", "Precedence"]
        assert [line.split()[1:] for line in lines[1:]] == [
            ["web", "allow", "db", "9"],
            ["*", "deny", "db", "8"],
        ]
        assert lines[1].split()[0] == ixn_id

        result = await run_cli(["intention", "delete", "web", "db", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Intention deleted.\n")
        line = one_error_line(await run_cli(["intention", "get", "web", "db", *addr(api)]))
        assert line == 'Intention with source "web" and destination "db" not found.'
        stars = (await api.get("/v1/connect/intentions")).json()
        result = await run_cli(["intention", "delete", stars[0]["ID"], *addr(api)])
        assert result.stdout == "Intention deleted.\n"
        assert (await api.get("/v1/connect/intentions")).json() == []


async def test_create_refuses_duplicates_unless_replace() -> None:
    async with dev_agent() as (_agent, api):
        assert (await run_cli(["intention", "create", "web", "db", *addr(api)])).exit_code == 0
        line = one_error_line(
            await run_cli(["intention", "create", "-deny", "web", "db", *addr(api)])
        )
        assert line.startswith('Error creating intention "web => db (deny)": ')
        assert "duplicate intention found" in line
        assert line.endswith(" (add --replace to replace it)")
        before = (await api.get("/v1/connect/intentions")).json()
        replace = ["intention", "create", "-deny", "-replace", "web", "db"]
        result = await run_cli([*replace, *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Created: web => db (deny)\n")
        after = (await api.get("/v1/connect/intentions")).json()
        assert [(i["ID"], i["Action"]) for i in after] == [(before[0]["ID"], "deny")]
        line = one_error_line(
            await run_cli(["intention", "create", "-allow", "-deny", "a", "b", *addr(api)])
        )
        assert line == "Only one of -allow or -deny may be specified."
        line = one_error_line(await run_cli(["intention", "create", "team/a", "b", *addr(api)]))
        assert line.startswith("Error: Invalid intention source: namespace 'team'")


async def test_check_exit_codes_and_reasons() -> None:
    async with dev_agent() as (_agent, api):
        await wait_for_ca(api)
        result = await run_cli(["intention", "check", "web", "db", *addr(api)])
        assert result.exit_code == 2
        first, reason = result.stdout.splitlines()
        assert first == "Denied" and "default_intention_policy (deny)" in reason
        await run_cli(["intention", "create", "web", "db", *addr(api)])
        ixn_id = (await api.get("/v1/connect/intentions")).json()[0]["ID"]
        result = await run_cli(["intention", "check", "web", "db", *addr(api)])
        assert result.exit_code == 0, result.output
        first, reason = result.stdout.splitlines()
        assert first == "Allowed"
        assert reason.startswith("Matched L4 intention") and ixn_id in reason
        await run_cli(["intention", "create", "-deny", "*", "db", *addr(api)])
        result = await run_cli(["intention", "check", "api", "db", "--format=json", *addr(api)])
        assert result.exit_code == 2
        answer = json.loads(result.stdout)
        assert answer["Allowed"] is False and "Action: DENY" in answer["Reason"]


async def test_check_without_a_ca_falls_back_to_the_check_endpoint(tmp_path: Path) -> None:
    path = tmp_path / "connect.json"
    connect = {"enabled": False, "default_intention_policy": "allow"}
    path.write_text(json.dumps({"connect": connect}))
    async with dev_agent(files=[str(path)]) as (_agent, api):
        result = await run_cli(["intention", "check", "web", "db", *addr(api)])
        assert result.exit_code == 0 and result.stdout.startswith("Allowed\n")
        await run_cli(["intention", "create", "-deny", "web", "db", *addr(api)])
        result = await run_cli(["intention", "check", "web", "db", *addr(api)])
        assert result.exit_code == 2
        assert result.stdout.splitlines()[0] == "Denied"
        assert "/v1/connect/intentions/check" in result.stdout


async def test_match_by_destination_and_source() -> None:
    async with dev_agent() as (_agent, api):
        for args in (["web", "db"], ["-deny", "*", "db"], ["web", "*"], ["api", "cache"]):
            assert (await run_cli(["intention", "create", *args, *addr(api)])).exit_code == 0
        result = await run_cli(["intention", "match", "db", *addr(api)])
        assert result.stdout.splitlines() == [
            "web => db (allow)",
            "* => db (deny)",
            "web => * (allow)",
        ]
        result = await run_cli(["intention", "match", "-source", "web", *addr(api)])
        assert result.stdout.splitlines() == [
            "web => db (allow)",
            "* => db (deny)",
            "web => * (allow)",
        ]
        result = await run_cli(["intention", "match", "--source", "api", *addr(api)])
        assert result.stdout.splitlines() == ["api => cache (allow)", "* => db (deny)"]
        result = await run_cli(["intention", "match", "--destination", "other", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "web => * (allow)\n")
        result = await run_cli(["intention", "match", "-source", "nobody", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "* => db (deny)\n")
        line = one_error_line(
            await run_cli(["intention", "match", "-source", "-destination", "x", *addr(api)])
        )
        assert line == "Error: only one of -source or -destination may be specified"


async def test_unreachable_agent_is_one_line() -> None:
    async with dev_agent() as (_agent, api):
        port = api.port
    result = await run_cli(["intention", "list", "-http-addr", f"127.0.0.1:{port}"])
    assert one_error_line(result).startswith("Error querying agent: connection refused")
