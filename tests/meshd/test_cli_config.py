"""``meshd config read|write|list|delete`` against a real dev agent.

NEEDS /v1/config (the consul-compat2 branch adds it; not on main when this
was written): verified against a merge of that branch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import APIClient, dev_agent

pytestmark = pytest.mark.e2e


def addr(api: APIClient) -> list[str]:
    return ["-http-addr", f"{api.host}:{api.port}"]


async def test_write_read_list_delete_round_trip(tmp_path: Path) -> None:
    entry = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}
    path = tmp_path / "web.json"
    path.write_text(json.dumps(entry))
    async with dev_agent() as (_agent, api):
        result = await run_cli(["config", "write", str(path), *addr(api)])
        assert (result.exit_code, result.stdout) == (
            0,
            "Config entry written: service-defaults/web\n",
        )
        result = await run_cli(
            ["config", "write", "-", *addr(api)],
            input=json.dumps({"kind": "service-defaults", "name": "api", "Protocol": "grpc"}),
        )
        assert result.stdout == "Config entry written: service-defaults/api\n"
        args = ["config", "read", "-kind", "service-defaults", "-name", "web", *addr(api)]
        result = await run_cli(args)
        assert result.exit_code == 0, result.output
        read = json.loads(result.stdout)
        assert (read["Kind"], read["Name"], read["Protocol"]) == ("service-defaults", "web", "http")
        assert result.stdout.startswith('{\n    "')  # 4-space indent, as Consul prints it
        result = await run_cli(["config", "list", "-kind", "service-defaults", *addr(api)])
        assert result.stdout.splitlines() == ["api", "web"]
        # Check-and-set: a stale index is refused, the current one accepted.
        index = read["ModifyIndex"]
        stale = ["config", "write", "-cas", "-modify-index", str(index - 1), str(path)]
        line = one_error_line(await run_cli([*stale, *addr(api)]))
        assert line == "Config entry not written: service-defaults/web"
        fresh = ["config", "write", "-cas", "-modify-index", str(index), str(path)]
        assert (await run_cli([*fresh, *addr(api)])).exit_code == 0
        result = await run_cli(
            ["config", "delete", "-kind", "service-defaults", "-name", "web", *addr(api)]
        )
        assert result.stdout == "Config entry deleted: service-defaults/web\n"
        result = await run_cli(["config", "delete", "-filename", str(path), *addr(api)])
        assert result.exit_code == 0  # deleting a missing entry is not an error in Consul
        result = await run_cli(["config", "list", "-kind", "service-defaults", *addr(api)])
        assert result.stdout.splitlines() == ["api"]
        line = one_error_line(await run_cli(args))
        assert line.startswith("Error reading config entry service-defaults/web: ")
        assert "404" in line


async def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    async with dev_agent() as (_agent, api):
        bad = tmp_path / "bad.json"
        bad.write_text("{nope")
        line = one_error_line(await run_cli(["config", "write", str(bad), *addr(api)]))
        assert line.startswith("Failed to decode config entry input: ")
        bad.write_text(json.dumps({"Kind": "service-defaults"}))
        line = one_error_line(await run_cli(["config", "write", str(bad), *addr(api)]))
        assert line == "Failed to decode config entry input: missing Name"
        bad.write_text(json.dumps({"Kind": "no-such-kind", "Name": "x"}))
        line = one_error_line(await run_cli(["config", "write", str(bad), *addr(api)]))
        assert line.startswith("Error writing config entry no-such-kind/x: ")
        assert "400" in line
        line = one_error_line(await run_cli(["config", "write", *addr(api)]))
        assert line.startswith("Must provide exactly one positional argument")
        line = one_error_line(await run_cli(["config", "read", "-name", "x", *addr(api)]))
        assert line == "Must specify the -kind parameter"
        line = one_error_line(await run_cli(["config", "delete", "-kind", "k", *addr(api)]))
        assert line == "Must specify the -name parameter"
        args = ["config", "write", "-modify-index", "3", str(bad), *addr(api)]
        assert one_error_line(await run_cli(args)) == "Cannot specify -modify-index without -cas"
        listed = await run_cli(["config", "list", "-kind", "service-defaults", *addr(api)])
        assert (listed.exit_code, listed.stdout) == (0, "")


ROUTER = {
    "Kind": "service-router",
    "Name": "web",
    "Routes": [{"Match": {"HTTP": {"PathPrefix": "/api"}}, "Destination": {"Service": "api"}}],
}
WEB_HCL = 'Kind = "service-defaults"\nName = "web"\nProtocol = "http"\n'
API_HCL = 'Kind = "service-defaults"\nName = "api"\nprotocol = "http"\n'


async def stored(api: APIClient) -> list[str]:
    names: list[str] = []
    for kind in ("service-defaults", "service-router", "service-splitter"):
        names += [f"{kind}/{e['Name']}" for e in (await api.get(f"/v1/config/{kind}")).json()]
    return sorted(names)


async def test_write_several_files_is_one_atomic_write(tmp_path: Path) -> None:
    router = tmp_path / "router.json"
    router.write_text(json.dumps(ROUTER))
    (tmp_path / "web.hcl").write_text(WEB_HCL)
    (tmp_path / "api.hcl").write_text(API_HCL)
    async with dev_agent() as (_agent, api):
        # Alone, the router is refused: web is still tcp (Consul's text).
        line = one_error_line(await run_cli(["config", "write", str(router), *addr(api)]))
        assert line.startswith("Error writing config entry service-router/web: ")
        assert "does not permit advanced routing or splitting behavior" in line
        # With the protocols, router first, in one write: all are written.
        files = [str(router), str(tmp_path / "web.hcl"), str(tmp_path / "api.hcl")]
        result = await run_cli(["config", "write", *files, *addr(api)])
        assert (result.exit_code, result.stdout.splitlines()) == (
            0,
            [
                "Config entry written: service-router/web",
                "Config entry written: service-defaults/web",
                "Config entry written: service-defaults/api",
            ],
        )
        assert await stored(api) == [
            "service-defaults/api",
            "service-defaults/web",
            "service-router/web",
        ]
        got = (await api.get("/v1/config/service-defaults/api")).json()
        assert got["Protocol"] == "http" and "protocol" not in got  # normalised
        args = ["config", "write", "-cas", "-modify-index", "1", *files, *addr(api)]
        assert one_error_line(await run_cli(args)) == (
            "Cannot use -cas with several config entry files"
        )


async def test_apply_dir_writes_all_or_nothing(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "1-router.json").write_text(json.dumps(ROUTER))
    (good / "2-splitter.json").write_text(
        json.dumps({"Kind": "service-splitter", "Name": "api", "Splits": [{"Weight": 100}]})
    )
    (good / "web.hcl").write_text(WEB_HCL)
    (good / "api.hcl").write_text(API_HCL)
    (good / "README.txt").write_text("not an entry")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "web.hcl").write_text(WEB_HCL)
    (bad / "router.json").write_text(
        json.dumps({**ROUTER, "Routes": [{"Match": {"HTTP": {"PathPrefix": "api"}}}]})
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    async with dev_agent() as (_agent, api):
        line = one_error_line(await run_cli(["config", "apply", str(bad), *addr(api)]))
        assert line.startswith("Error writing config entries (none written): ")
        assert "PathPrefix doesn't start with '/'" in line
        assert await stored(api) == []
        line = one_error_line(await run_cli(["config", "apply", str(empty), *addr(api)]))
        assert line == f"No config entry files (*.json, *.hcl) in {empty}"
        result = await run_cli(["config", "apply", str(good), *addr(api)])
        assert result.exit_code == 0, result.output
        assert len(result.stdout.splitlines()) == 4
        assert await stored(api) == [
            "service-defaults/api",
            "service-defaults/web",
            "service-router/web",
            "service-splitter/api",
        ]
