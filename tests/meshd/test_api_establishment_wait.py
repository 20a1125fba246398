"""Requests in the window before the leader has established leadership:
those whose token must be resolved wait for it (bounded), those that ignore
the token (the UI's static files) answer at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from meshd.api.routes import ESTABLISHMENT_WAIT
from tests.meshd.inproc import InprocClient, inproc_agent


async def _timed(api: InprocClient, path: str) -> tuple[int, float]:
    start = trio.current_time()
    r = await api.get(path)
    return r.status, trio.current_time() - start


async def test_ui_files_do_not_wait_for_leadership_establishment(
    autojump_clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "acl.json"
    cfg.write_text(json.dumps({"acl": {"enabled": True, "default_policy": "deny"}}))
    async with inproc_agent(files=[str(cfg)]) as (agent, api):
        # The window right after an election: tokens not created yet.
        monkeypatch.setattr(agent, "initialized", lambda: False)
        for path in ("/ui/", "/"):
            status, waited = await _timed(api, path)
            assert status in (200, 301), (path, status)
            assert waited < 0.5, (path, waited)
        # A request with a token to resolve still waits, bounded.
        status, waited = await _timed(api, "/v1/agent/self")
        assert ESTABLISHMENT_WAIT - 1e-6 <= waited < ESTABLISHMENT_WAIT + 1  # float clock sums


async def test_once_established_requests_do_not_enter_the_bounded_wait(
    autojump_clock: MockClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait (a cancel scope per request: most of an ACL'd KV PUT's cost)
    is entered only while the agent is not initialized."""
    cfg = tmp_path / "acl.json"
    cfg.write_text(json.dumps({"acl": {"enabled": True, "default_policy": "deny"}}))
    async with inproc_agent(files=[str(cfg)]) as (agent, api):
        waits: list[float] = []
        real_wait = agent.wait_initialized

        async def counted(timeout: float) -> bool:
            waits.append(timeout)
            return await real_wait(timeout)

        monkeypatch.setattr(agent, "wait_initialized", counted)
        assert agent.initialized()
        r = await api.put("/v1/kv/k", raw=b"v")
        assert r.status == 403 and waits == []  # no token: anonymous, denied
        monkeypatch.setattr(agent, "initialized", lambda: False)
        _, waited = await _timed(api, "/v1/agent/self")
        assert waits == [ESTABLISHMENT_WAIT] and waited >= ESTABLISHMENT_WAIT - 1e-6
