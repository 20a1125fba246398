"""``meshd top --once`` against a real dev agent fed with proxy-stats pushes,
and its one-line errors."""

from __future__ import annotations

import pytest

from connect.proxy.l7_stats import EdgeStats
from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import dev_agent, free_port

pytestmark = pytest.mark.e2e


async def test_top_once_prints_the_busiest_edges_per_subset() -> None:
    async with dev_agent() as (_agent, api):
        stats = EdgeStats()
        for i in range(50):  # web -> api: 40 to v1 (one 503), 10 to v2
            subset = "v2" if i % 5 == 0 else "v1"
            stats.request("source", "web", "api", subset, 503 if i == 1 else 200, set(), 3.0)
        for _ in range(10):
            stats.request("source", "api", "db", "", 200, set(), 30.0)
        stats.started_at = stats.wall()  # born now: the window's rate is count / 10 s
        assert (await api.put("/v1/internal/telemetry/proxy-stats", stats.snapshot())).status == 200
        addr = ["-http-addr", f"{api.host}:{api.port}"]
        result = await run_cli(["top", "--once", "--window", "10s", *addr])
        assert result.exit_code == 0, result.output
        title, header, *lines = result.stdout.splitlines()
        assert title.startswith("Busiest edges over the last 10s (")
        assert header.split() == [
            "SOURCE", "DESTINATION", "SUBSET", "RPS", "SUCCESS%", "P50", "P99", "MTLS"
        ]  # fmt: skip
        assert [line.split() for line in lines] == [
            ["web", "api", "v1", "4.0", "97.50", "3.0ms", "5.0ms", "yes"],
            ["api", "db", "-", "1.0", "100.00", "37.5ms", "49.8ms", "yes"],
            ["web", "api", "v2", "1.0", "100.00", "3.0ms", "5.0ms", "yes"],
        ]
        result = await run_cli(["top", "--once", "-n", "1", "--service", "db", *addr])
        assert [line.split()[:3] for line in result.stdout.splitlines()[2:]] == [["api", "db", "-"]]
        bad = await run_cli(["top", "--once", "--window", "2h", *addr])
        assert "window" in one_error_line(bad)


async def test_top_says_the_agent_is_unreachable_in_one_line() -> None:
    port = free_port()
    result = await run_cli(["top", "--once", "-http-addr", f"127.0.0.1:{port}"])
    line = one_error_line(result)
    assert line.startswith("Error querying agent:") and str(port) in line
