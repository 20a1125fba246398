"""``meshd ca`` against a real dev agent (Consul's ``consul connect ca``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent

pytestmark = pytest.mark.e2e


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


async def active_root(api: APIClient) -> dict[str, str]:
    with trio.fail_after(10):
        while True:
            body = (await api.get("/v1/connect/ca/roots")).json()
            active = [r for r in body.get("Roots") or [] if r.get("Active")]
            if active:
                root: dict[str, str] = active[0]
                return root
            await trio.sleep(0.05)


async def test_roots_table_and_json() -> None:
    async with dev_agent() as (_agent, api):
        root = await active_root(api)
        result = await run_cli(["ca", "roots", *addr(api)])
        assert result.exit_code == 0, result.output
        header, *rows = result.stdout.splitlines()
        assert header.split() == ["ID", "Name", "Active", "NotAfter"]
        assert len(rows) == 1
        assert rows[0].startswith(root["ID"]) and rows[0].split()[-2:] == [
            "true",
            root["NotAfter"],
        ]
        result = await run_cli(["ca", "roots", "--format", "json", *addr(api)])
        body = json.loads(result.stdout)
        assert body["ActiveRootID"] == root["ID"] and body["TrustDomain"].endswith(".consul")


async def test_get_config_prints_json_without_the_private_key() -> None:
    async with dev_agent() as (_agent, api):
        await active_root(api)
        result = await run_cli(["ca", "get-config", *addr(api)])
        assert result.exit_code == 0, result.output
        config = json.loads(result.stdout)
        assert config["Provider"] == "consul" and config["ClusterID"]
        assert "LeafCertTTL" in config["Config"] and "PrivateKey" not in config["Config"]


async def test_set_config_updates_the_configuration(tmp_path: Path) -> None:
    async with dev_agent() as (_agent, api):
        await active_root(api)
        path = tmp_path / "ca.json"
        path.write_text(
            json.dumps(
                {
                    "Provider": "consul",
                    "Config": {
                        "LeafCertTTL": "36h",
                        "PrivateKeyType": "ec",
                        "PrivateKeyBits": 256,
                        "RootCertTTL": "87600h",
                        "IntermediateCertTTL": "8760h",
                    },
                }
            )
        )
        result = await run_cli(["ca", "set-config", "-config-file", str(path), *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Configuration updated!\n"), result.output
        config = (await api.get("/v1/connect/ca/configuration")).json()
        assert config["Config"]["LeafCertTTL"] in ("36h", "36h0m0s")  # Go's spelling
        result = await run_cli(["ca", "set-config", "--config-file", str(path), *addr(api)])
        assert result.exit_code == 0, result.output


async def test_set_config_file_errors_are_one_line(tmp_path: Path) -> None:
    async with dev_agent() as (_agent, api):
        line = one_error_line(await run_cli(["ca", "set-config", *addr(api)]))
        assert line == "-config-file is required"
        missing = tmp_path / "none.json"
        line = one_error_line(
            await run_cli(["ca", "set-config", "-config-file", str(missing), *addr(api)])
        )
        assert line == f"Error reading config file: {missing}: No such file or directory"
        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        line = one_error_line(
            await run_cli(["ca", "set-config", "-config-file", str(bad), *addr(api)])
        )
        assert line.startswith("Error parsing config file: ")
        bad.write_text(json.dumps({"Provider": "consul", "Config": {"LeafCertTTL": "soon"}}))
        line = one_error_line(
            await run_cli(["ca", "set-config", "-config-file", str(bad), *addr(api)])
        )
        assert line.startswith("Error setting CA configuration: Unexpected response code: 400")
