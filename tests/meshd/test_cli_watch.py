"""``meshd watch``: each type printed once as JSON without a handler, and a
handler run with the JSON on stdin on every change (blocking queries)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
import trio

from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent

pytestmark = pytest.mark.e2e

DEADLINE = 30.0

# Records each run (stdin JSON and CONSUL_INDEX) and fails on the third, which ends the watch.
HANDLER = """
import json, os, sys
out = sys.argv[1]
data = json.load(sys.stdin)
with open(out, "a") as f:
    f.write(json.dumps({"data": data, "index": os.environ["CONSUL_INDEX"]}) + "\\n")
print("handled", flush=True)
runs = sum(1 for _ in open(out))
sys.exit(1 if runs >= 3 else 0)
"""


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


async def once(api: APIClient, *args: str) -> object:
    result = await run_cli(["watch", *args, *addr(api)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(("{", "[", "null"))
    return json.loads(result.stdout)


async def test_without_a_handler_each_type_prints_its_view_once() -> None:
    async with dev_agent() as (_agent, api):
        await api.put("/v1/kv/cfg/a", raw=b"1")
        await api.put("/v1/kv/cfg/b", raw=b"2")
        await api.put(
            "/v1/agent/service/register",
            {"Name": "web", "ID": "web1", "Tags": ["v1"], "Check": {"TTL": "60s"}},
        )
        await api.put("/v1/agent/service/register", {"Name": "web", "ID": "web2", "Tags": ["v2"]})
        await api.put("/v1/event/fire/deploy", raw=b"now")
        key = await once(api, "-type", "key", "-key", "cfg/a")
        assert isinstance(key, dict) and base64.b64decode(key["Value"]) == b"1"
        assert await once(api, "-type", "key", "-key", "cfg/none") is None
        prefix = await once(api, "-type", "keyprefix", "-prefix", "cfg/")
        assert [e["Key"] for e in prefix] == ["cfg/a", "cfg/b"]  # type: ignore[union-attr]
        assert await once(api, "-type", "keyprefix", "-prefix", "none/") == []
        services = await once(api, "-type", "services")
        assert isinstance(services, dict) and sorted(services["web"]) == ["v1", "v2"]
        nodes = await once(api, "-type", "nodes")
        assert [n["Node"] for n in nodes] == ["dev-node"]  # type: ignore[union-attr]
        tagged = await once(api, "-type", "service", "-service", "web", "-tag", "v2")
        assert [e["Service"]["ID"] for e in tagged] == ["web2"]  # type: ignore[union-attr]
        passing = await once(api, "-type", "service", "-service", "web", "-passingonly")
        assert [e["Service"]["ID"] for e in passing] == ["web2"]  # web1's TTL check is critical
        critical = await once(api, "-type", "checks", "-state", "critical")
        assert [c["ServiceID"] for c in critical] == ["web1"]  # type: ignore[union-attr]
        checks = await once(api, "-type", "checks", "-service", "web")
        assert [c["ServiceID"] for c in checks] == ["web1"]  # type: ignore[union-attr]
        events = await once(api, "-type", "event", "-name", "deploy")
        assert [base64.b64decode(e["Payload"]) for e in events] == [b"now"]  # type: ignore[union-attr]


async def test_missing_or_conflicting_parameters_are_one_line() -> None:
    async with dev_agent() as (_agent, api):
        line = one_error_line(await run_cli(["watch", "-type", "key", *addr(api)]))
        assert line == "Error: Required parameter 'key' missing"
        line = one_error_line(await run_cli(["watch", "-type", "service", *addr(api)]))
        assert line == "Error: Required parameter 'service' missing"
        args = ["watch", "-type", "checks", "-service", "a", "-state", "any", *addr(api)]
        line = one_error_line(await run_cli(args))
        assert line == "Error: Cannot specify service and state"
        line = one_error_line(await run_cli(["watch", "-type", "bogus", *addr(api)]))
        assert line.startswith("Error: Invalid value for '-type'")


def _records(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


async def _wait_records(path: Path, count: int) -> list[dict[str, object]]:
    with trio.fail_after(DEADLINE):
        while len(_records(path)) < count:
            await trio.sleep(0.05)
    return _records(path)


async def test_handler_runs_at_start_and_on_each_change_with_the_json_on_stdin(
    tmp_path: Path,
) -> None:
    script = tmp_path / "handler.py"
    script.write_text(HANDLER)
    out = tmp_path / "runs.jsonl"
    handler = f"{sys.executable} {script} {out}"
    results = []
    async with dev_agent() as (_agent, api), trio.open_nursery() as nursery:

        async def run() -> None:
            results.append(
                await run_cli(["watch", "-type", "key", "-key", "app/color", *addr(api), handler])
            )

        nursery.start_soon(run)
        [first] = await _wait_records(out, 1)
        assert first["data"] is None  # the key does not exist yet
        await api.put("/v1/kv/app/color", raw=b"blue")
        await _wait_records(out, 2)
        await api.put("/v1/kv/app/other", raw=b"unrelated")  # must not run the handler
        await api.put("/v1/kv/app/color", raw=b"green")
        runs = await _wait_records(out, 3)
    [result] = results
    assert result.exit_code == 1
    assert result.stderr == "Error executing handler: exit status 1\n"
    assert result.stdout == "handled\n" * 3
    values = [base64.b64decode(r["data"]["Value"]) for r in runs[1:]]  # type: ignore[index]
    assert values == [b"blue", b"green"]
    indexes = [int(r["index"]) for r in runs]  # type: ignore[call-overload]
    assert indexes == sorted(indexes) and indexes[1] < indexes[2]
