"""An empty list that ACLs filtered says so on stderr (the CLI reads
``X-Consul-Results-Filtered-By-ACLs``); an empty list that is simply empty
does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from meshd.cli.client import FILTERED_HINT
from tests.meshd.cli_support import run_cli
from tests.meshd.harness import APIClient
from tests.meshd.test_api_acl import ROOT, acl_agent

pytestmark = pytest.mark.e2e


async def wait_synced(api: APIClient) -> None:
    with trio.fail_after(20):
        while "db" not in (await api.get("/v1/catalog/services")).json():
            await trio.sleep(0.05)


async def test_filtered_empty_list_prints_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with acl_agent(tmp_path, monkeypatch) as (_agent, api):
        registered = await api.put("/v1/agent/service/register", {"Name": "db", "Port": 5432})
        assert registered.status == 200, registered.text
        await wait_synced(api)
        address = ["-http-addr", f"{api.host}:{api.port}"]
        anonymous = await run_cli(["catalog", "services", *address])
        assert anonymous.exit_code == 0, anonymous.output
        assert anonymous.stdout == ""
        assert anonymous.stderr.splitlines()[0] == FILTERED_HINT
        managed = await run_cli(["catalog", "services", *address, "-token", ROOT])
        assert managed.exit_code == 0, managed.output
        assert "db" in managed.stdout
        assert FILTERED_HINT not in managed.stderr
        nothing = await run_cli(["kv", "get", "-recurse", "nope/", *address, "-token", ROOT])
        assert FILTERED_HINT not in nothing.stderr
