"""In-process API tests: a ``--dev`` agent with no HTTP or DNS listener
(``ports.http = -1``, ``ports.dns = -1``) and in-memory Raft storage, run in
the test's own trio nursery, its API driven through ``App.handle`` with no
sockets. Run tests under ``autojump_clock`` (pytest-trio's
``MockClock(autojump_threshold=0)``), so a blocking query's wake-up is
asserted at an exact fake time: "written at t=5 s, answered at t=5 s".

The RPC/Raft port is still bound (the server role listens on it); the
agent's own heartbeats go through it over loopback, which completes without
clock jumps since both ends live in this trio run.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from meshd.agent.agent import Agent
from meshd.config import load_config
from meshd.http import App, Request
from tests.meshd.harness import HTTPResult, free_port


class InprocResult(HTTPResult):
    """A response as the API tests read it; ``index`` insists on the header."""

    @property
    def index(self) -> int:
        return int(self.headers["x-consul-index"])


class InprocClient:
    """Calls ``App.handle`` directly; the method names match harness.APIClient."""

    def __init__(self, app: App, token: str = "") -> None:
        self.app, self.token = app, token

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> InprocResult:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        hdrs = dict(headers or {})
        if self.token:
            hdrs.setdefault("X-Consul-Token", self.token)
        req = Request.build(
            method, path, headers=list(hdrs.items()), body=data, remote_addr=("127.0.0.1", 50000)
        )
        resp = await self.app.handle(req)
        return InprocResult(resp.status, {k.lower(): v for k, v in resp.headers}, resp.body)

    async def get(self, path: str, **kw: Any) -> InprocResult:
        return await self.request("GET", path, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> InprocResult:
        return await self.request("PUT", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> InprocResult:
        return await self.request("DELETE", path, **kw)


def inproc_flags(**overrides: Any) -> dict[str, Any]:
    """Command-line flags of an in-process agent: no HTTP or DNS listener, a
    free RPC port; ``overrides`` win (pass the result back to ``inproc_agent``
    when a test reloads the agent's config with the same flags)."""
    flags: dict[str, Any] = {
        "http_port": -1,
        "dns_port": -1,
        "server_port": free_port(),
        "node": "dev-node",
    }
    flags.update(overrides)
    return flags


SETTLE = 3.0  # fake seconds after start-up before the test runs


@asynccontextmanager
async def inproc_agent(
    *, files: list[str] | None = None, **flags: Any
) -> AsyncIterator[tuple[Agent, InprocClient]]:
    """A running ``--dev`` agent (leader elected) without HTTP/DNS listeners,
    and a client that drives its ``App`` in-process."""
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock), "request the autojump_clock fixture"
    config, _ = load_config(files or [], [], inproc_flags(**flags), dev=True)
    agent = Agent(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        assert agent.app is not None and agent.http_addresses == []
        # Let the start-up writes (anti-entropy's first sync, the consul
        # service) land, so a test's first index is not moved under it.
        await agent.wait_synced(5)
        await trio.sleep(SETTLE)
        yield agent, InprocClient(agent.app)
        nursery.cancel_scope.cancel()


def b64(value: str | None) -> bytes:
    """A KV entry's ``Value`` decoded (None for a key without a value)."""
    return base64.b64decode(value) if value is not None else b""


def since(t0: float) -> float:
    """Fake seconds since ``t0``, rounded to the microsecond (float noise)."""
    return round(trio.current_time() - t0, 6)


async def block_then_write(
    api: InprocClient,
    path: str,
    write: Callable[[], Awaitable[Any]],
    *,
    write_at: float = 5.0,
) -> tuple[InprocResult, float, float]:
    """GET ``path`` (a blocking query) at fake t0, run ``write`` at
    t0+``write_at``; returns the answer, and when (after t0) the write
    finished and the answer came."""
    t0 = trio.current_time()
    answered: list[tuple[InprocResult, float]] = []
    written: list[float] = []

    async def block() -> None:
        res = await api.get(path)
        answered.append((res, since(t0)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(block)
        await trio.sleep(write_at)
        assert not answered, answered  # parked until now: nothing changed
        await write()
        written.append(since(t0))
    [(res, at)] = answered
    return res, written[0], at
