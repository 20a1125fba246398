"""``meshd join``, ``force-leave``, ``maint``, ``event``, ``validate``, the
``connect`` aliases, ``-token-file`` and the grouped ``--help``, against a
real dev agent where they need one."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import click
import pytest

from tests.meshd.cli_support import invoke, one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent, free_port
from tests.meshd.test_api_acl import ROOT, acl_agent


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


@pytest.mark.e2e
async def test_join_reports_contacted_servers_and_failures() -> None:
    async with dev_agent() as (agent, api):
        own = f"127.0.0.1:{agent.config.ports.server}"
        result = await run_cli(["join", own, *addr(api)])
        assert (result.exit_code, result.stdout) == (
            0,
            "Successfully joined cluster by contacting 1 nodes.\n",
        )
        dead = f"127.0.0.1:{free_port()}"
        result = await run_cli(["join", dead, own, *addr(api)])  # one of two is enough
        assert result.stdout == "Successfully joined cluster by contacting 1 nodes.\n"
        assert result.stderr.startswith(f"Error joining address '{dead}': Unexpected response")
        result = await run_cli(["join", dead, *addr(api)])
        assert result.exit_code == 1
        assert result.stderr.splitlines()[-1] == "Failed to join any nodes."
        line = one_error_line(await run_cli(["join", *addr(api)]))
        assert line == "At least one address to join must be specified."


@pytest.mark.e2e
async def test_force_leave_errors_name_the_node_and_prints_nothing_on_success() -> None:
    async with dev_agent() as (_agent, api):
        line = one_error_line(await run_cli(["force-leave", "ghost", *addr(api)]))
        assert line.startswith("Error force leaving: Unexpected response code: 500")
        assert "ghost" in line
        line = one_error_line(await run_cli(["force-leave", *addr(api)]))
        assert line == "A node name must be specified to force leave."
        # A node known only to the catalog is removed; success prints nothing.
        await api.put("/v1/catalog/register", {"Node": "old-box", "Address": "10.0.0.9"})
        result = await run_cli(["force-leave", "-prune", "old-box", *addr(api)])
        assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
        nodes = [n["Node"] for n in (await api.get("/v1/catalog/nodes")).json()]
        assert "old-box" not in nodes


@pytest.mark.e2e
async def test_maint_node_and_service_enable_list_disable() -> None:
    async with dev_agent() as (_agent, api):
        await api.put("/v1/agent/service/register", {"Name": "redis", "ID": "redis1"})
        result = await run_cli(["maint", "-enable", "-reason", "disk swap", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Node entered maintenance mode\n")
        result = await run_cli(["maint", "-enable", "-service", "redis1", *addr(api)])
        assert result.stdout == "Service entered maintenance mode: redis1\n"
        checks = (await api.get("/v1/agent/checks")).json()
        assert checks["_node_maintenance"]["Status"] == "critical"
        assert checks["_node_maintenance"]["Notes"] == "disk swap"
        assert checks["_service_maintenance:redis1"]["ServiceID"] == "redis1"
        result = await run_cli(["maint", *addr(api)])
        lines = result.stdout.splitlines()
        assert lines[:3] == ["Node:", "  Name:   dev-node", "  Reason: disk swap"]
        assert lines[4:6] == ["Service:", "  ID:     redis1"]
        result = await run_cli(["maint", "-disable", "-service", "redis1", *addr(api)])
        assert result.stdout == "Service left maintenance mode: redis1\n"
        result = await run_cli(["maint", "-disable", *addr(api)])
        assert result.stdout == "Node left maintenance mode\n"
        checks = (await api.get("/v1/agent/checks")).json()
        assert not [c for c in checks if "maintenance" in c]
        result = await run_cli(["maint", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "")
        line = one_error_line(await run_cli(["maint", "-enable", "-service", "nope", *addr(api)]))
        assert line.startswith("Error enabling service maintenance: Unexpected response code: 404")
        line = one_error_line(await run_cli(["maint", "-enable", "-disable", *addr(api)]))
        assert line == "Only one of -enable or -disable may be provided"
        line = one_error_line(await run_cli(["maint", "-reason", "x", *addr(api)]))
        assert line == "Reason may only be provided with -enable"


@pytest.mark.e2e
async def test_event_fires_with_payload_and_filters() -> None:
    async with dev_agent() as (_agent, api):
        # The agent lists the events whose filters accept it: it runs web v2.
        await api.put("/v1/agent/service/register", {"Name": "web", "Tags": ["v2"]})
        result = await run_cli(
            ["event", "-name", "deploy", "-service", "web", "-tag", "v2", "build-42", *addr(api)]
        )
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("Event ID: ")
        event_id = result.stdout.split(": ", 1)[1].strip()
        [fired] = (await api.get("/v1/event/list?name=deploy")).json()
        assert fired["ID"] == event_id
        assert base64.b64decode(fired["Payload"]) == b"build-42"
        assert (fired["ServiceFilter"], fired["TagFilter"]) == ("web", "v2")
        line = one_error_line(await run_cli(["event", "payload", *addr(api)]))
        assert line == "Event name must be specified"
        line = one_error_line(await run_cli(["event", "-name", "x", "-tag", "v1", *addr(api)]))
        assert line == "Cannot provide tag filter without service filter."
        line = one_error_line(await run_cli(["event", "-name", "x", "-node", "(", *addr(api)]))
        assert line.startswith("Failed to compile node filter regexp: ")
        assert len((await api.get("/v1/event/list")).json()) == 1  # nothing else fired


def test_validate_accepts_good_files_and_dirs(tmp_path: Path) -> None:
    good = tmp_path / "agent.json"
    good.write_text(json.dumps({"datacenter": "east", "data_dir": str(tmp_path / "data")}))
    conf_dir = tmp_path / "conf.d"
    conf_dir.mkdir()
    (conf_dir / "web.json").write_text(json.dumps({"services": [{"name": "web", "port": 80}]}))
    result = invoke(["validate", str(good), str(conf_dir)])
    assert (result.exit_code, result.stdout) == (0, "Configuration is valid!\n")
    result = invoke(["validate", "-quiet", str(good)])
    assert (result.exit_code, result.stdout) == (0, "")


def test_validate_errors_are_one_line_naming_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"datacenter": "east", "log_level": "loud"}))
    line = one_error_line(invoke(["validate", str(bad)]))
    assert line.startswith("Config validation failed: ")
    assert "bad.json" in line and "log_level" in line
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    line = one_error_line(invoke(["validate", str(broken)]))
    assert line.startswith("Config validation failed: ") and "broken.json" in line
    svc = tmp_path / "svc.json"
    svc.write_text(json.dumps({"services": [{"name": "web", "port": "eighty"}]}))
    line = one_error_line(invoke(["validate", str(svc)]))
    assert line.startswith("Config validation failed: ")
    line = one_error_line(invoke(["validate", str(tmp_path / "missing.json")]))
    assert line.endswith("missing.json: no such file or directory")
    line = one_error_line(invoke(["validate"]))
    assert line == "Must specify at least one config file or directory"
    no_data_dir = tmp_path / "nodd.json"
    no_data_dir.write_text(json.dumps({"server": True}))  # as the agent, Consul requires it
    line = one_error_line(invoke(["validate", str(no_data_dir)]))
    assert line.startswith("Config validation failed: ") and "data_dir" in line


def test_connect_ca_and_proxy_are_the_same_commands() -> None:
    from meshd.cli import cli
    from meshd.cli.ca import ca
    from meshd.cli.proxy import proxy

    connect = cli.get_command(click.Context(cli), "connect")  # loaded on first use
    assert isinstance(connect, type(cli)) or hasattr(connect, "commands")
    assert connect.commands["ca"] is ca  # type: ignore[attr-defined]
    assert connect.commands["proxy"] is proxy  # type: ignore[attr-defined]
    result = invoke(["connect", "ca", "get-config", "-http-addr", f"127.0.0.1:{free_port()}"])
    assert "Error querying agent: connection refused" in result.stderr


def test_help_lists_commands_in_sections() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    out = result.stdout
    titles = [
        "Agent & cluster commands:",
        "Catalog & KV commands:",
        "Connect commands:",
        "ACL commands:",
        "Operator commands:",
    ]
    positions = [out.index(t) for t in titles]
    assert positions == sorted(positions)
    sections = dict(zip(titles, out.split("\n\n")[-len(titles) :], strict=True))

    def names(title: str) -> list[str]:
        return [line.split()[0] for line in sections[title].splitlines()[1:]]

    assert {"monitor", "join", "force-leave", "maint", "validate"} <= set(names(titles[0]))
    assert {"kv", "watch", "lock", "event", "config"} <= set(names(titles[1]))
    assert {"connect", "intention", "ca", "proxy"} <= set(names(titles[2]))
    assert {"acl", "login", "logout"} <= set(names(titles[3]))
    assert "operator" in names(titles[4])
    listed = [n for t in titles for n in names(t)]
    assert len(listed) == len(set(listed))  # each command once


@pytest.mark.e2e
async def test_token_file_flag_and_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(ROOT + "\n")
    async with acl_agent(tmp_path, monkeypatch) as (_agent, api):
        await api.put("/v1/kv/secret", raw=b"s3cret")
        base = ["kv", "get", "secret", *addr(api)]
        line = one_error_line(await run_cli(base))
        assert "403" in line  # no token: denied
        result = await run_cli([*base, "-token-file", str(token_file)])
        assert (result.exit_code, result.stdout) == (0, "s3cret\n")
        result = await run_cli(base, env={"CONSUL_HTTP_TOKEN_FILE": str(token_file)})
        assert result.stdout == "s3cret\n"
        result = await run_cli(base, env={"MESHD_HTTP_TOKEN_FILE": str(token_file)})
        assert result.stdout == "s3cret\n"
        # The file wins over a token variable; -token on the command line wins over the file.
        env = {"CONSUL_HTTP_TOKEN": "not-a-token", "CONSUL_HTTP_TOKEN_FILE": str(token_file)}
        assert (await run_cli(base, env=env)).stdout == "s3cret\n"
        line = one_error_line(await run_cli([*base, "-token", "not-a-token"], env=env))
        assert "403" in line or "ACL not found" in line
        missing = tmp_path / "none"
        line = one_error_line(await run_cli([*base, "-token-file", str(missing)]))
        assert line == f"Error loading token file {missing}: No such file or directory"
        empty = tmp_path / "empty"
        empty.write_text("\n")
        line = one_error_line(await run_cli([*base, "-token-file", str(empty)]))
        assert line == f"Error loading token file {empty}: the file is empty"
