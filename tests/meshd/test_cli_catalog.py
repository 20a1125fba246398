"""``meshd catalog`` and ``meshd services`` against a real dev agent."""

from __future__ import annotations

import json
from collections.abc import Set as AbstractSet
from pathlib import Path

import pytest
import trio

from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent

pytestmark = pytest.mark.e2e

DB = {
    "Node": "ext-1",
    "Address": "10.1.1.1",
    "NodeMeta": {"rack": "r1"},
    "Service": {"Service": "db", "Port": 5432, "Tags": ["primary", "v2"]},
}


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


async def test_catalog_services_lists_names_tags_and_json() -> None:
    async with dev_agent() as (_agent, api):
        assert (await api.put("/v1/catalog/register", DB)).status == 200
        result = await run_cli(["catalog", "services", *addr(api)])
        assert result.exit_code == 0, result.output
        assert "db" in result.stdout.splitlines()
        result = await run_cli(["catalog", "services", "-tags", *addr(api)])
        assert "db  primary,v2" in [
            line.replace("   ", "  ") for line in result.stdout.splitlines()
        ]
        [row] = [line for line in result.stdout.splitlines() if line.startswith("db ")]
        assert row.split() == ["db", "primary,v2"]
        result = await run_cli(["catalog", "services", "--format", "json", *addr(api)])
        assert json.loads(result.stdout)["db"] == ["primary", "v2"]
        result = await run_cli(["catalog", "services", "-node", "ext-1", *addr(api)])
        assert result.stdout == "db\n"
        result = await run_cli(["catalog", "services", "-node-meta", "rack=r9", *addr(api)])
        assert result.exit_code == 0 and result.stdout == ""
        assert result.stderr == "No services match the given query.\n"


async def test_catalog_nodes_table_detailed_service_filter_and_json() -> None:
    async with dev_agent() as (agent, api):
        await api.put("/v1/catalog/register", DB)
        result = await run_cli(["catalog", "nodes", *addr(api)])
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["Node", "ID", "Address", "DC"]
        rows = {line.split()[0]: line.split() for line in lines[1:]}
        assert rows["dev-node"][1:] == [agent.node_id[:8], "127.0.0.1", "dc1"]
        assert rows["ext-1"] == ["ext-1", "10.1.1.1", "dc1"]  # no node ID: an empty cell
        result = await run_cli(["catalog", "nodes", "-detailed", *addr(api)])
        assert result.stdout.splitlines()[0].split()[-2:] == ["TaggedAddresses", "Meta"]
        assert agent.node_id in result.stdout and "rack=r1" in result.stdout
        result = await run_cli(["catalog", "nodes", "-service", "db", *addr(api)])
        assert [line.split()[0] for line in result.stdout.splitlines()] == ["Node", "ext-1"]
        result = await run_cli(["catalog", "nodes", "--node-meta", "rack=r1", *addr(api)])
        assert [line.split()[0] for line in result.stdout.splitlines()] == ["Node", "ext-1"]
        result = await run_cli(["catalog", "nodes", "-format=json", *addr(api)])
        assert {n["Node"] for n in json.loads(result.stdout)} == {"dev-node", "ext-1"}
        result = await run_cli(["catalog", "datacenters", *addr(api)])
        assert result.stdout == "dc1\n"


async def wait_for_catalog(
    api: APIClient, present: set[str], absent: AbstractSet[str] = frozenset()
) -> None:
    """Anti-entropy copies the agent's services to the catalog shortly after."""
    with trio.fail_after(10):
        while True:
            names = set((await api.get("/v1/catalog/services")).json())
            if present <= names and not (absent & names):
                return
            await trio.sleep(0.05)


async def test_services_register_json_and_toml_files_then_deregister(tmp_path: Path) -> None:
    web = tmp_path / "web.json"
    web.write_text(
        json.dumps({"service": {"name": "web", "port": 8080, "tags": ["v1"], "meta": {"a_b": "1"}}})
    )
    api_toml = tmp_path / "api.toml"
    api_toml.write_text(
        '[[services]]\nname = "api"\nid = "api-1"\nport = 9090\n'
        "enable_tag_override = true\n"
        '[services.check]\nname = "api alive"\nttl = "30s"\n'
    )
    async with dev_agent() as (_agent, api):
        result = await run_cli(["services", "register", str(web), *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Registered service: web\n"), result.output
        result = await run_cli(["services", "register", str(api_toml), *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Registered service: api\n"), result.output
        svc = (await api.get("/v1/agent/service/api-1")).json()
        assert svc["Port"] == 9090 and svc["EnableTagOverride"] is True
        await wait_for_catalog(api, {"web", "api"})
        result = await run_cli(["catalog", "services", "-tags", *addr(api)])
        table = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
        assert table["web"] == ["v1"] and table["api"] == []
        [row] = (await api.get("/v1/catalog/service/web")).json()
        assert row["ServicePort"] == 8080 and row["ServiceMeta"] == {"a_b": "1"}

        result = await run_cli(["services", "deregister", "api-1", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Deregistered service: api-1\n")
        result = await run_cli(["services", "deregister", str(web), *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Deregistered service: web\n")
        await wait_for_catalog(api, set(), {"web", "api"})


async def test_services_register_from_flags_and_bare_definition(tmp_path: Path) -> None:
    bare = tmp_path / "cache.json"
    bare.write_text(json.dumps({"Name": "cache", "Port": 6379}))
    async with dev_agent() as (_agent, api):
        result = await run_cli(
            ["services", "register", "-name", "queue", "-port", "5672", "-tag", "amqp",
             "-meta", "team=core", *addr(api)]
        )  # fmt: skip
        assert result.stdout == "Registered service: queue\n", result.output
        result = await run_cli(["services", "register", str(bare), *addr(api)])
        assert result.stdout == "Registered service: cache\n", result.output
        services = (await api.get("/v1/agent/services")).json()
        assert services["queue"]["Tags"] == ["amqp"] and services["queue"]["Meta"] == {
            "team": "core"
        }
        assert services["cache"]["Port"] == 6379


async def test_services_bad_input_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"service": {"name": "web",,}}')
    bad_port = tmp_path / "bad.json"
    bad_port.write_text(json.dumps({"service": {"name": "web", "port": 70000}}))
    empty = tmp_path / "empty.toml"
    empty.write_text("x = 1\n")
    async with dev_agent() as (_agent, api):
        line = one_error_line(await run_cli(["services", "register", str(broken), *addr(api)]))
        assert line.startswith(f"Error: {broken} is not valid JSON: ")
        line = one_error_line(await run_cli(["services", "register", str(empty), *addr(api)]))
        assert line.startswith(f"Error: {empty}: no service definition")
        line = one_error_line(await run_cli(["services", "register", str(bad_port), *addr(api)]))
        assert line.startswith('Error registering service "web": Unexpected response code: 400 (')
        assert "Port" in line
        missing = str(tmp_path / "nope.json")
        line = one_error_line(await run_cli(["services", "register", missing, *addr(api)]))
        assert line == f"Error: cannot read {missing}: No such file or directory"
        line = one_error_line(await run_cli(["services", "register", *addr(api)]))
        assert line.startswith("Error: give a definition file or -name")
