"""``meshd explain`` against a real dev agent: the compact report, JSON, and
one-line errors."""

from __future__ import annotations

import json

import pytest

from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.test_api_explain import V1, V2, seed_mesh

pytestmark = pytest.mark.e2e


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


def rows(stdout: str) -> list[tuple[str, str]]:
    out = []
    for line in stdout.splitlines():
        label, _, value = line.strip().partition(":")
        out.append((label, value.strip()))
    return out


async def test_report_json_and_errors() -> None:
    async with dev_agent() as (_agent, api):
        await seed_mesh(api)  # type: ignore[arg-type]
        args = ["explain", "web", "api", "-X", "get", "-H", "x-version: v2", "/cart?x=1"]
        result = await run_cli([*args, *addr(api)])
        assert result.exit_code == 0, result.output
        report = dict(rows(result.stdout))
        assert report["Request"] == "GET /cart?x=1 (web => api)"
        assert report["Intention"].startswith("denied (L7): Matched L4 intention")
        assert report["Protocol"] == "http (L7)"
        assert report["Route"] == f"route #0: header x-version exact 'v2' -> resolver:{V2}"
        assert report["Target"].startswith(f"{V2} (service api, subset v2, filter ")
        assert report["Eligible"] == "127.0.0.1:31003 api-3-proxy"
        assert report["Timeout"] == "7s" and report["Retries"] == "none"
        assert report["Outliers"] == (
            "eject after 5 consecutive 5xx for 30s x times ejected, at most 10% (defaults); "
            "no proxy of web on this agent reports ejections"
        )
        assert report["Result"] == "denied by intention: api refuses it"

        result = await run_cli(["explain", "web", "api", "--seed", "7", "/", *addr(api)])
        split = dict(rows(result.stdout))["Split"]
        assert split.startswith("splitter:api.default.default: ")
        assert f"{V1} 90%" in split and f"{V2} 10%" in split and split.count("<- picked") == 1

        await api.put(
            "/v1/connect/intentions/exact?source=web&destination=api", {"Action": "allow"}
        )
        result = await run_cli(["explain", "web", "api", "/slow/x", *addr(api)])
        report = dict(rows(result.stdout))
        assert report["Intention"].startswith("allowed (L7)")
        assert report["Timeout"] == "3s"
        assert report["Retries"] == "2, on status 503 (idempotent methods only)"
        assert report["Result"].startswith("forwarded to 127.0.0.1:3100")
        args = ["explain", "web", "api", "-format=json", "/slow/x", *addr(api)]
        result = await run_cli(args)
        out = json.loads(result.stdout)
        assert out["Route"]["Index"] == 1 and out["TimeoutSeconds"] == 3.0

        line = one_error_line(await run_cli(["explain", "web", "nope", "/", *addr(api)]))
        assert line == 'Error explaining the request: unknown service "nope" (Destination)'
        line = one_error_line(await run_cli(["explain", "web", "api", "-H", "bad", *addr(api)]))
        assert line == "Error: -H expects 'name: value', got 'bad'"
        line = one_error_line(await run_cli(["explain", "web", "api", "-X", "FETCH", *addr(api)]))
        assert line.startswith("Error explaining the request: Method must be one of")
