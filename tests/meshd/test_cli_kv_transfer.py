"""``meshd kv export`` / ``kv import`` in Consul's JSON format, against a
real dev agent: an export imports back byte for byte."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent

pytestmark = pytest.mark.e2e


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


async def test_export_prints_consul_format_and_import_restores_it(tmp_path: Path) -> None:
    async with dev_agent() as (_agent, api):
        await api.put("/v1/kv/app/name", raw=b"web")
        await api.put("/v1/kv/app/bin?flags=7", raw=b"\x00\xff")
        await api.put("/v1/kv/other", raw=b"x")
        result = await run_cli(["kv", "export", "app/", *addr(api)])
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("[\n\t{\n\t\t")  # tab-indented, as Consul prints it
        exported = json.loads(result.stdout)
        assert exported == [
            {"key": "app/bin", "flags": 7, "value": base64.b64encode(b"\x00\xff").decode()},
            {"key": "app/name", "flags": 0, "value": base64.b64encode(b"web").decode()},
        ]
        everything = json.loads((await run_cli(["kv", "export", *addr(api)])).stdout)
        assert [e["key"] for e in everything] == ["app/bin", "app/name", "other"]
        dump = tmp_path / "dump.json"
        dump.write_text(result.stdout)
        await api.delete("/v1/kv/app?recurse")
        result = await run_cli(["kv", "import", f"@{dump}", *addr(api)])
        assert result.stdout.splitlines() == ["Imported: app/bin", "Imported: app/name"]
        assert (await api.get("/v1/kv/app/bin?raw")).body == b"\x00\xff"
        [entry] = (await api.get("/v1/kv/app/bin")).json()
        assert entry["Flags"] == 7
        result = await run_cli(
            ["kv", "import", "-prefix", "copy/", "-", *addr(api)], input=dump.read_text()
        )
        assert result.stdout.splitlines() == ["Imported: copy/app/bin", "Imported: copy/app/name"]
        assert (await api.get("/v1/kv/copy/app/name?raw")).body == b"web"
        result = await run_cli(["kv", "export", "nothing/", *addr(api)])
        assert (result.exit_code, json.loads(result.stdout)) == (0, [])


async def test_import_refuses_bad_documents_and_writes_nothing() -> None:
    async with dev_agent() as (_agent, api):
        bad_value = json.dumps(
            [{"key": "a", "flags": 0, "value": "dGVzdA=="}, {"key": "b", "value": "%%%"}]
        )
        line = one_error_line(await run_cli(["kv", "import", bad_value, *addr(api)]))
        assert line.startswith("Error! Base64 decoding failed for b: ")
        line = one_error_line(await run_cli(["kv", "import", "{not json", *addr(api)]))
        assert line.startswith("Error! Cannot unmarshal data: ")
        line = one_error_line(await run_cli(["kv", "import", '{"key": "a"}', *addr(api)]))
        assert line.startswith("Error! Cannot unmarshal data: ")
        line = one_error_line(
            await run_cli(["kv", "import", '[{"key": "a", "flags": -1}]', *addr(api)])
        )
        assert line == "Error! Invalid flags for a: -1"
        line = one_error_line(await run_cli(["kv", "import", *addr(api)]))
        assert line == "Error! Missing DATA argument"
        assert (await api.get("/v1/kv/?recurse")).status == 404  # nothing stored
