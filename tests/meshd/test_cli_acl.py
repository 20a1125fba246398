"""``meshd acl`` against a real dev agent with ACLs on: Consul's output and messages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from meshd.acl import GLOBAL_MANAGEMENT_POLICY_ID
from meshd.cli.acl import load_rules, node_identities, service_identities
from meshd.cli.errors import CLIError
from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import APIClient
from tests.meshd.test_api_acl import ROOT, acl_agent

pytestmark = pytest.mark.e2e


def addr(api: APIClient, token: str = ROOT) -> list[str]:
    out = ["-http-addr", f"{api.host}:{api.port}"]
    return [*out, "-token", token] if token else out


def fields(text: str) -> dict[str, str]:
    """``Key:   value`` lines of a pretty block."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z][A-Za-z ]*):\s+(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


async def test_bootstrap_prints_the_token_then_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with acl_agent(tmp_path, monkeypatch, initial=None) as (_agent, api):
        result = await run_cli(["acl", "bootstrap", *addr(api, "")])
        assert result.exit_code == 0, result.output
        got = fields(result.stdout)
        assert got["Description"] == "Bootstrap Token (Global Management)"
        assert got["Local"] == "false" and got["Create Time"].endswith("+0000 UTC")
        assert re.fullmatch(r"[0-9a-f-]{36}", got["AccessorID"])
        assert re.fullmatch(r"[0-9a-f-]{36}", got["SecretID"])
        assert f"Policies:\n   {GLOBAL_MANAGEMENT_POLICY_ID} - global-management\n" in result.stdout
        line = one_error_line(await run_cli(["acl", "bootstrap", *addr(api, "")]))
        assert line.startswith(
            "Failed ACL bootstrapping: Unexpected response code: 403 "
            "(Permission denied: ACL bootstrap no longer allowed (reset index: "
        )
        # The bootstrap token works as the CLI's token.
        me = await run_cli(["acl", "token", "read", "-self", *addr(api, got["SecretID"])])
        assert fields(me.stdout)["AccessorID"] == got["AccessorID"]


async def test_token_create_list_read_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with acl_agent(tmp_path, monkeypatch) as (_agent, api):
        await api.put(
            "/v1/acl/policy", {"Name": "kv-reader", "Rules": 'key "" { policy = "read" }'}
        )
        result = await run_cli(
            [
                "acl",
                "token",
                "create",
                "-description",
                "web token",
                "-policy-name",
                "kv-reader",
                "-service-identity",
                "web:dc1,dc2",
                "-node-identity",
                "n1:dc1",
                *addr(api),
            ]
        )
        assert result.exit_code == 0, result.output
        created = fields(result.stdout)
        accessor, secret = created["AccessorID"], created["SecretID"]
        assert created["Description"] == "web token"
        assert "   web (Datacenters: dc1, dc2)" in result.stdout
        assert "   n1 (Datacenter: dc1)" in result.stdout
        assert " - kv-reader" in result.stdout

        for extra in ([], ["-format", "json"]):
            listed = await run_cli(["acl", "token", "list", *extra, *addr(api)])
            assert listed.exit_code == 0, listed.output
            assert accessor in listed.stdout and "web token" in listed.stdout
            assert secret not in listed.stdout and ROOT not in listed.stdout
            assert "anonymous" not in listed.stdout.replace("Anonymous Token", "")
            assert "SecretID" not in listed.stdout
        tokens = json.loads(
            (await run_cli(["acl", "token", "list", "-format", "json", *addr(api)])).stdout
        )
        assert {t["AccessorID"] for t in tokens} >= {accessor}

        read = await run_cli(["acl", "token", "read", "-id", accessor, *addr(api)])
        assert fields(read.stdout)["SecretID"] == secret

        updated = await run_cli(
            ["acl", "token", "update", "-id", accessor, "-description", "renamed", *addr(api)]
        )
        assert updated.exit_code == 0, updated.output
        assert fields(updated.stdout)["Description"] == "renamed"
        assert " - kv-reader" in updated.stdout  # links kept

        cloned = await run_cli(["acl", "token", "clone", "-id", accessor, *addr(api)])
        assert cloned.stdout.startswith("Token cloned successfully.\n")
        assert fields(cloned.stdout)["AccessorID"] != accessor

        deleted = await run_cli(["acl", "token", "delete", "-accessor-id", accessor, *addr(api)])
        assert (deleted.exit_code, deleted.stdout) == (
            0,
            f'Token "{accessor}" deleted successfully\n',
        )
        line = one_error_line(await run_cli(["acl", "token", "read", "-id", accessor, *addr(api)]))
        assert (
            line
            == f"Error reading token '{accessor}': Unexpected response code: 403 (ACL not found)"
        )


async def test_token_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with acl_agent(tmp_path, monkeypatch) as (_agent, api):
        env = {"CONSUL_HTTP_TOKEN": ROOT}
        result = await run_cli(["acl", "token", "read", "-self", *addr(api, "")], env=env)
        assert fields(result.stdout)["Description"] == "Initial Management Token"
        denied = await run_cli(["acl", "token", "list", *addr(api, "")])
        assert denied.exit_code == 1 and "403" in denied.stderr


async def test_policy_create_inline_and_from_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with acl_agent(tmp_path, monkeypatch) as (_agent, api):
        inline = 'service_prefix "" { policy = "read" }'
        result = await run_cli(
            ["acl", "policy", "create", "-name", "svc-read", "-rules", inline, *addr(api)]
        )
        assert result.exit_code == 0, result.output
        assert fields(result.stdout)["Name"] == "svc-read"
        assert result.stdout.rstrip().endswith(inline)

        rules_path = tmp_path / "kv.hcl"
        rules_path.write_text('key_prefix "app/" {\n  policy = "write"\n}\n')
        for name, how in (
            ("kv-at", ["-rules", f"@{rules_path}"]),
            ("kv-file", ["-rules-file", str(rules_path)]),
        ):
            made = await run_cli(["acl", "policy", "create", "-name", name, *how, *addr(api)])
            assert made.exit_code == 0, made.output
            stored = (await api.get(f"/v1/acl/policy/name/{name}")).json()
            assert stored["Rules"] == rules_path.read_text()

        read = await run_cli(["acl", "policy", "read", "-name", "kv-file", *addr(api)])
        assert 'key_prefix "app/"' in read.stdout and fields(read.stdout)["Name"] == "kv-file"
        listed = await run_cli(["acl", "policy", "list", *addr(api)])
        assert {"svc-read:", "kv-at:", "kv-file:", "global-management:"} <= set(
            listed.stdout.split()
        )

        bad = tmp_path / "bad.hcl"
        bad.write_text('key "a" {\n  policy = "nope"\n}\n')
        line = one_error_line(
            await run_cli(
                ["acl", "policy", "create", "-name", "bad", "-rules", f"@{bad}", *addr(api)]
            )
        )
        assert line.startswith(
            "Failed to create new policy: Unexpected response code: 400 "
            "(Invalid request: Rules: rules: line 2, column"
        )
        gone = await run_cli(["acl", "policy", "delete", "-name", "svc-read", *addr(api)])
        assert gone.exit_code == 0 and gone.stdout.endswith("deleted successfully\n")
        assert (await api.get("/v1/acl/policy/name/svc-read")).status == 403


async def test_role_create_and_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with acl_agent(tmp_path, monkeypatch) as (_agent, api):
        made = await run_cli(
            [
                "acl",
                "role",
                "create",
                "-name",
                "ops",
                "-policy-name",
                "global-management",
                *addr(api),
            ]
        )
        assert made.exit_code == 0, made.output
        read = await run_cli(["acl", "role", "read", "-name", "ops", *addr(api)])
        assert fields(read.stdout)["Name"] == "ops"
        assert f"   {GLOBAL_MANAGEMENT_POLICY_ID} - global-management" in read.stdout


async def test_set_agent_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with acl_agent(tmp_path, monkeypatch) as (agent, api):
        result = await run_cli(["acl", "set-agent-token", "agent", "tok-123", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, 'ACL token "agent" set successfully\n')
        assert agent.tokens.get("agent") == "tok-123"
        line = one_error_line(await run_cli(["acl", "set-agent-token", "bogus", "x", *addr(api)]))
        assert line.startswith("Failed setting token: Unexpected response code: 404")


def test_input_helpers() -> None:
    assert service_identities(("web", "db:dc1,dc2")) == [
        {"ServiceName": "web"},
        {"ServiceName": "db", "Datacenters": ["dc1", "dc2"]},
    ]
    assert node_identities(("n1:dc1",)) == [{"NodeName": "n1", "Datacenter": "dc1"}]
    with pytest.raises(CLIError):
        node_identities(("n1",))
    assert load_rules('acl = "read"', "") == 'acl = "read"'
    with pytest.raises(CLIError):
        load_rules("x", "y")
