"""After a restart a single server's CA leader loop waits for its log to be
applied before looking at the CA: no spurious ``ca_leader_step_failed``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from tests.meshd.harness import dev_agent

pytestmark = pytest.mark.e2e


async def _roots(api: object) -> list[str]:
    resp = await api.get("/v1/agent/connect/ca/roots")  # type: ignore[attr-defined]
    return [r["ID"] for r in resp.json()["Roots"]] if resp.status == 200 else []


async def test_restarted_server_keeps_its_ca_without_a_failed_step(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = str(tmp_path / "data")
    async with dev_agent(data_dir=data_dir) as (_agent, api):
        with trio.fail_after(20):
            while not (first := await _roots(api)):
                await trio.sleep(0.05)
    caplog.clear()
    caplog.set_level(logging.INFO)
    for _ in range(3):  # the race is between replaying the log and the first step
        async with dev_agent(data_dir=data_dir) as (_agent, api):
            with trio.fail_after(20):
                while not (again := await _roots(api)):
                    await trio.sleep(0.05)
            await trio.sleep(1.5)  # a step or two of the leader loop
        assert again == first
    failed = [r.getMessage() for r in caplog.records if "ca_leader_step" in r.getMessage()]
    assert failed == []
    assert not [r for r in caplog.records if "ca_initialized" in r.getMessage()]
