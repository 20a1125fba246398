"""``meshd services register`` takes Consul's HCL service definitions."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshd.cli.errors import CLIError
from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import dev_agent

pytestmark = pytest.mark.e2e

REDIS_HCL = """
service {
  name = "redis"
  id   = "redis-1"
  port = 6379
  tags = ["primary"]
  meta {
    version = "7"
  }
  check {
    id  = "redis-ttl"
    ttl = "30s"
  }
  check {
    id  = "redis-ttl-2"
    ttl = "60s"
  }
}
service {
  name = "redis-sentinel"
  port = 26379
}
"""


async def test_services_register_hcl_file_with_repeated_blocks(tmp_path: Path) -> None:
    path = tmp_path / "redis.hcl"
    path.write_text(REDIS_HCL)
    async with dev_agent() as (_agent, api):
        address = f"-http-addr={api.host}:{api.port}"
        result = await run_cli(["services", "register", str(path), address])
        assert result.exit_code == 0, result.output
        assert result.stdout == "Registered service: redis\nRegistered service: redis-sentinel\n"
        services = (await api.get("/v1/agent/services")).json()
        redis = services["redis-1"]
        assert (redis["Port"], redis["Tags"], redis["Meta"]) == (
            6379,
            ["primary"],
            {"version": "7"},
        )
        assert services["redis-sentinel"]["Port"] == 26379
        checks = (await api.get("/v1/agent/checks")).json()
        assert {"redis-ttl", "redis-ttl-2"} <= set(checks)
        assert checks["redis-ttl"]["ServiceID"] == "redis-1"


async def test_services_register_bad_hcl_is_one_line_with_position(tmp_path: Path) -> None:
    path = tmp_path / "broken.hcl"
    path.write_text('service {\n  name = "web"\n  port = 80\n')
    line = one_error_line(await run_cli(["services", "register", str(path)]))
    assert line == (
        f"Error: {path}: invalid HCL at line 4, column 1: unexpected end of file, expected }}"
    )


def test_config_write_reads_an_hcl_config_entry(tmp_path: Path) -> None:
    from meshd.cli.config import _load_entry

    path = tmp_path / "web-defaults.hcl"
    path.write_text(
        'Kind     = "service-defaults"\nName     = "web"\nProtocol = "http"\n'
        'MeshGateway {\n  Mode = "local"\n}\n'
    )
    assert _load_entry(str(path)) == {
        "Kind": "service-defaults",
        "Name": "web",
        "Protocol": "http",
        "MeshGateway": {"Mode": "local"},
    }
    path.write_text('Kind = "service-defaults"\nName = \n')
    with pytest.raises(CLIError, match=r"invalid HCL at line 2, column 8: unexpected end of line"):
        _load_entry(str(path))
