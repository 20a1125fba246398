"""``meshd kv`` against a real dev agent: Consul's messages and exit codes."""

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


async def test_put_then_get_round_trip_with_flags_and_detailed() -> None:
    async with dev_agent() as (_agent, api):
        result = await run_cli(["kv", "put", "-flags", "42", "app/name", "web", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Success! Data written to: app/name\n")
        result = await run_cli(["kv", "get", "app/name", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "web\n")
        result = await run_cli(["kv", "get", "/app/name", *addr(api)])  # leading / is dropped
        assert result.stdout == "web\n"
        result = await run_cli(["kv", "get", "-detailed", "app/name", *addr(api)])
        fields = dict(line.split(None, 1) for line in result.stdout.splitlines())
        assert fields["Key"] == "app/name" and fields["Value"] == "web"
        assert fields["Flags"] == "42" and fields["Session"] == "-"
        assert int(fields["ModifyIndex"]) >= int(fields["CreateIndex"]) > 0
        assert list(fields) == sorted(fields)  # Consul prints the fields alphabetically
        result = await run_cli(["kv", "get", "app/name", "--format", "json", *addr(api)])
        entry = json.loads(result.stdout)
        assert entry["Key"] == "app/name" and base64.b64decode(entry["Value"]) == b"web"
        result = await run_cli(["kv", "get", "-base64", "app/name", *addr(api)])
        assert result.stdout == base64.b64encode(b"web").decode() + "\n"


async def test_values_from_stdin_file_base64_and_empty(tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\xffbinary\n")
    async with dev_agent() as (_agent, api):
        result = await run_cli(["kv", "put", "cfg/stdin", "-", *addr(api)], input="from stdin\n")
        assert result.exit_code == 0, result.output
        assert (await api.get("/v1/kv/cfg/stdin?raw")).body == b"from stdin\n"
        result = await run_cli(["kv", "put", "cfg/file", f"@{blob}", *addr(api)])
        assert result.exit_code == 0, result.output
        assert (await api.get("/v1/kv/cfg/file?raw")).body == b"\x00\xffbinary\n"
        result = await run_cli(["kv", "get", "cfg/file", *addr(api)])
        assert result.stdout_bytes == b"\x00\xffbinary\n\n"  # raw bytes, then a newline
        encoded = base64.b64encode(b"decoded!").decode()
        result = await run_cli(["kv", "put", "-base64", "cfg/b64", encoded, *addr(api)])
        assert (await api.get("/v1/kv/cfg/b64?raw")).body == b"decoded!"
        result = await run_cli(["kv", "put", "cfg/empty", *addr(api)])
        assert result.exit_code == 0
        result = await run_cli(["kv", "get", "cfg/empty", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "\n")
        line = one_error_line(await run_cli(["kv", "put", "k", f"@{tmp_path}/none", *addr(api)]))
        assert line == f"Error! Failed to read file {tmp_path}/none: No such file or directory"


async def test_recurse_keys_and_delete_prefix() -> None:
    async with dev_agent() as (_agent, api):
        for key, value in [("svc/a", "1"), ("svc/b", "2"), ("svc/sub/c", "3"), ("other", "x")]:
            await api.put(f"/v1/kv/{key}", raw=value.encode())
        result = await run_cli(["kv", "get", "-recurse", "svc/", *addr(api)])
        assert result.stdout.splitlines() == ["svc/a:1", "svc/b:2", "svc/sub/c:3"]
        result = await run_cli(["kv", "get", "--recurse", "--format=json", "svc/", *addr(api)])
        assert [e["Key"] for e in json.loads(result.stdout)] == ["svc/a", "svc/b", "svc/sub/c"]
        result = await run_cli(["kv", "get", "-keys", "svc/", *addr(api)])
        assert result.stdout.splitlines() == ["svc/a", "svc/b", "svc/sub/"]
        result = await run_cli(["kv", "get", "-recurse", "nothing/", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "")
        result = await run_cli(["kv", "get", "-keys", "nothing/", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "")
        result = await run_cli(["kv", "delete", "-recurse", "svc/", *addr(api)])
        assert result.stdout == "Success! Deleted keys with prefix: svc/\n"
        assert (await api.get("/v1/kv/svc/?recurse")).status == 404
        result = await run_cli(["kv", "delete", "other", *addr(api)])
        assert result.stdout == "Success! Deleted key: other\n"
        assert (await api.get("/v1/kv/other")).status == 404


async def test_missing_key_exits_1_with_consuls_message() -> None:
    async with dev_agent() as (_agent, api):
        result = await run_cli(["kv", "get", "no/such/key", *addr(api)])
        assert result.exit_code == 1
        assert one_error_line(result) == "Error! No key exists at: no/such/key"


async def test_cas_put_and_delete_succeed_on_the_index_and_fail_otherwise() -> None:
    async with dev_agent() as (_agent, api):
        result = await run_cli(["kv", "put", "-cas", "-modify-index", "0", "lock", "a", *addr(api)])
        assert (result.exit_code, result.stdout) == (0, "Success! Data written to: lock\n")
        result = await run_cli(["kv", "put", "-cas", "-modify-index=0", "lock", "b", *addr(api)])
        assert result.exit_code == 1
        assert one_error_line(result) == "Error! Did not write to lock: CAS failed"
        index = (await api.get("/v1/kv/lock")).json()[0]["ModifyIndex"]
        stale = str(index - 1)
        result = await run_cli(
            ["kv", "put", "--cas", "--modify-index", stale, "lock", "c", *addr(api)]
        )
        assert one_error_line(result) == "Error! Did not write to lock: CAS failed"
        result = await run_cli(
            ["kv", "put", "-cas", f"-modify-index={index}", "lock", "d", *addr(api)]
        )
        assert result.exit_code == 0, result.output
        assert (await api.get("/v1/kv/lock?raw")).body == b"d"

        index = (await api.get("/v1/kv/lock")).json()[0]["ModifyIndex"]
        result = await run_cli(["kv", "delete", "-cas", "-modify-index", stale, "lock", *addr(api)])
        assert result.exit_code == 1
        assert one_error_line(result) == "Error! Did not delete key lock: CAS failed"
        result = await run_cli(
            ["kv", "delete", "-cas", f"-modify-index={index}", "lock", *addr(api)]
        )
        assert (result.exit_code, result.stdout) == (0, "Success! Deleted key: lock\n")
        assert (await api.get("/v1/kv/lock")).status == 404


async def test_flag_mistakes_are_one_line_without_calling_the_agent() -> None:
    async with dev_agent() as (_agent, api):
        cases = [
            (["kv", "put", "-cas", "k", "v"], "Error! Missing -modify-index (required with -cas)"),
            (
                ["kv", "put", "-modify-index", "3", "k"],
                "Error! Cannot specify -modify-index without -cas!",
            ),
            (
                ["kv", "delete", "-recurse", "-cas", "-modify-index", "1", "k"],
                "Error! Cannot specify both -cas and -recurse!",
            ),
            (["kv", "delete"], "Error! Missing KEY argument"),
            (["kv", "get"], "Error! Missing KEY argument"),
            (
                ["kv", "put", "-acquire", "k"],
                "Error! Missing -session (required with -acquire and -release)",
            ),
            (
                ["kv", "put", "-base64", "k", "!!!"],
                "Error! Cannot base64 decode data: invalid base64",
            ),
        ]
        for args, message in cases:
            assert one_error_line(await run_cli([*args, *addr(api)])) == message, args
        assert (await api.get("/v1/kv/k")).status == 404


async def test_agent_refusal_is_reported_in_one_line() -> None:
    async with dev_agent() as (_agent, api):
        result = await run_cli(["kv", "put", "-acquire", "-session", "nope", "k", *addr(api)])
        line = one_error_line(result)
        assert line.startswith("Error! Failed writing data: Unexpected response code: 500 (")
        assert "nope" in line
