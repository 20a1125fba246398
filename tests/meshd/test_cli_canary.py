"""``meshd canary`` against a real dev agent: start, status (list and
detail), pause, resume, abort, JSON, and one-line errors naming the flag."""

from __future__ import annotations

import json

import pytest

from tests.meshd.cli_support import invoke, one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.test_api_canary import ENTRIES

pytestmark = pytest.mark.e2e


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--steps", "5,ten,100"], "--steps"),
        (["--interval", "30"], "--interval"),
        (["--max-error-rate", "120%"], "--max-error-rate"),
        (["--max-p99", "fast"], "--max-p99"),
        (["--min-requests", "-3"], "--min-requests"),
    ],
)
def test_bad_flag_values_are_one_line_naming_the_flag(args: list[str], flag: str) -> None:
    line = one_error_line(invoke(["canary", "start", "api", "--to", "v2", *args]))
    assert flag in line


async def test_start_status_pause_resume_abort() -> None:
    async with dev_agent() as (_agent, api):
        for entry in ENTRIES:
            assert (await api.put("/v1/config", entry)).status == 200
        args = ["canary", "start", "api", "--to", "v2", "--steps", "10,50,100"]
        result = await run_cli([*args, "--interval", "1h", "--max-error-rate", "2%", *addr(api)])
        assert result.exit_code == 0, result.output
        assert (
            result.stdout.strip() == "Canary of api started: v1 -> v2 at 10%, next step in 1h0m0s"
        )

        result = await run_cli(["canary", "status", *addr(api)])
        lines = result.stdout.splitlines()
        assert lines[0].split() == ["Service", "State", "Subsets", "Weight", "Step", "Reason"]
        assert lines[1].split() == ["api", "running", "v1", "->", "v2", "10%", "1/3"]

        result = await run_cli(["canary", "status", "api", *addr(api)])
        detail = {
            k: v.strip() for k, _, v in (x.partition(":") for x in result.stdout.splitlines())
        }
        assert detail["Weight"] == "10% (step 1 of 3: 10%,50%,100%)"
        assert detail["Bounds"] == "error rate <= 2%, p99 <= 300ms, at least 20 requests"

        result = await run_cli(["canary", "pause", "api", *addr(api)])
        assert result.stdout.strip() == "Canary of api paused (v2 at 10%)"
        line = one_error_line(await run_cli(["canary", "pause", "api", *addr(api)]))
        assert line == "Error trying to pause canary: cannot pause the canary of api: it is paused"
        result = await run_cli(["canary", "resume", "api", "-format=json", *addr(api)])
        assert json.loads(result.stdout)["State"] == "running"
        result = await run_cli(["canary", "abort", "api", *addr(api)])
        assert "aborted" in result.stdout
        splitter = (await api.get("/v1/config/service-splitter/api")).json()
        assert [s["Weight"] for s in splitter["Splits"]] == [100, 0]

        line = one_error_line(await run_cli(["canary", "start", "api", "--to", "v9", *addr(api)]))
        assert 'does not have a subset named "v9"' in line
        line = one_error_line(await run_cli(["canary", "status", "nope", *addr(api)]))
        assert 'no canary for service "nope"' in line
