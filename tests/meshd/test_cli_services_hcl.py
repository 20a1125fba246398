"""``meshd services register`` takes Consul's HCL service definitions."""

from __future__ import annotations

from pathlib import Path

import pytest

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
