"""``meshd config write --dry-run FILE...`` against a dev agent: the summary
lines (or the whole answer with -format=json), exit 0, nothing written; a
bad entry fails as the write does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connect.l7.dryrun import Sample
from connect.proxy.l7_samples import sample_to_json
from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.harness import dev_agent

pytestmark = pytest.mark.e2e

BASE = [
    {"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
    {
        "Kind": "service-resolver",
        "Name": "api",
        "DefaultSubset": "v1",
        "Subsets": {
            "v1": {"Filter": 'Service.Meta.version == "v1"'},
            "v2": {"Filter": 'Service.Meta.version == "v2"'},
        },
    },
]
SPLITTER = {
    "Kind": "service-splitter",
    "Name": "api",
    "Splits": [{"Weight": 75, "ServiceSubset": "v1"}, {"Weight": 25, "ServiceSubset": "v2"}],
}


async def test_dry_run_prints_the_summary_and_writes_nothing(tmp_path: Path) -> None:
    splitter = tmp_path / "splitter.json"
    splitter.write_text(json.dumps(SPLITTER))
    hcl = tmp_path / "bad.hcl"
    hcl.write_text('Kind = "service-splitter"\nName = "api"\nSplits = [{ Weight = 50 }]\n')
    samples = [sample_to_json(Sample("web", "api", "GET", "/", time=1.0))] * 40
    async with dev_agent() as (_agent, api):
        addr = ["-http-addr", f"{api.host}:{api.port}"]
        assert (await api.put("/v1/internal/config/batch", BASE)).status == 200
        r = await api.put("/v1/internal/config/samples", {"Samples": samples})
        assert r.status == 200, r.text
        result = await run_cli(["config", "write", "--dry-run", str(splitter), *addr])
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert lines[0] == "25.0% of recent requests to api would move from v1 to v2"
        assert lines[1].startswith("Dry run: nothing written (40 recent requests, last ")
        args = ["config", "write", "-dry-run", "-format=json", str(splitter), *addr]
        result = await run_cli(args)
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        [change] = answer["Services"][0]["Changes"]
        assert (change["Kind"], change["Requests"], change["Percent"]) == ("split", 10, 25.0)
        line = one_error_line(await run_cli(["config", "write", "--dry-run", str(hcl), *addr]))
        assert line.startswith("Error writing config entry service-splitter/api: ")
        assert (await api.get("/v1/config/service-splitter")).json() == []
