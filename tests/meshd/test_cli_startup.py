"""The CLI loads only what the invoked command needs, ``meshd --version``
works, and every command reports the same protocol numbers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from meshd.cli import COMMANDS, cli
from meshd.version import PROTOCOL_MAX, PROTOCOL_MIN, PROTOCOL_VERSION, RAFT_PROTOCOL
from tests.meshd.cli_support import invoke, run_cli
from tests.meshd.harness import dev_agent

PROBE = """
import sys
from click.testing import CliRunner
from meshd.cli import cli
result = CliRunner().invoke(cli, sys.argv[1:])
assert result.exit_code == 0, result.output
heavy = ["trio", "cryptography", "meshd.agent.agent", "meshd.config", "registry", "raft", "lark"]
print(sorted(m for m in heavy if m in sys.modules))
"""


@pytest.mark.parametrize(
    "args",
    [["kv", "get", "--help"], ["members", "-h"], ["explain", "-h"], ["--version"], ["version"]],
)
def test_a_command_imports_neither_the_agent_nor_trio(args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_lazily_registered_command_resolves_and_is_listed() -> None:
    result = invoke(["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        command = cli.get_command(None, name)  # type: ignore[arg-type]
        assert command is not None and command.name == name
        assert f"  {name} " in result.stdout


def test_version_flag_prints_the_version_and_protocols() -> None:
    for args in (["--version"], ["-version"], ["version"]):
        result = invoke(args)
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0].startswith("meshd v")
        assert lines[1].startswith(
            f"Protocol {PROTOCOL_VERSION} spoken by default, understands "
            f"{PROTOCOL_MIN} to {PROTOCOL_MAX}"
        )
        assert lines[2].startswith(f"Raft protocol {RAFT_PROTOCOL}")


@pytest.mark.e2e
async def test_version_members_list_peers_and_info_agree_on_protocols() -> None:
    async with dev_agent() as (_agent, api):
        addr = f"-http-addr={api.host}:{api.port}"
        members = await run_cli(["members", addr])
        header, row = (line.split() for line in members.stdout.splitlines())
        assert row[header.index("Protocol")] == str(PROTOCOL_VERSION)
        detailed = json.loads((await run_cli(["members", "-format=json", addr])).stdout)
        tags = detailed[0]["Tags"]
        assert (tags["vsn"], tags["vsn_min"], tags["vsn_max"], tags["raft_vsn"]) == (
            str(PROTOCOL_VERSION),
            str(PROTOCOL_MIN),
            str(PROTOCOL_MAX),
            str(RAFT_PROTOCOL),
        )
        peers = await run_cli(["operator", "raft", "list-peers", addr])
        header, row = (line.split() for line in peers.stdout.splitlines())
        assert row[header.index("RaftProtocol")] == str(RAFT_PROTOCOL)
        stats = json.loads((await run_cli(["info", "-format=json", addr])).stdout)
        assert stats["raft"]["protocol_version"] == str(RAFT_PROTOCOL)
        version = invoke(["version"]).stdout
        assert f"Protocol {PROTOCOL_VERSION} spoken" in version
        assert f"Raft protocol {RAFT_PROTOCOL}" in version


def test_a_test_command_without_an_address_never_reaches_port_8500() -> None:
    line = invoke(["members"]).stderr
    assert "Error querying agent: connection refused (127.0.0.1:" in line
    assert ":8500)" not in line


def test_subcommands_from_other_modules_are_attached_to_their_group() -> None:
    for args, word in ((["acl", "--help"], "auth-method"), (["acl", "-h"], "binding-rule")):
        result = invoke(args)
        assert result.exit_code == 0 and f"  {word} " in result.stdout, result.output
    result = invoke(["operator", "--help"])
    assert "  autopilot " in result.stdout
