"""Real agents for API tests: in-process dev agents on free loopback ports,
and a small HTTP client (the CLI's http.client one, in a worker thread, so the
agent's trio loop keeps running while a request blocks)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio
from prometheus_client.parser import text_string_to_metric_families

from meshd.agent.agent import Agent
from meshd.cli.client import Address, AgentClient, Response
from meshd.config import load_config
from tests.ports import free_port

# An answer as the API tests read it: status, lower-cased headers, body,
# ``json()``, ``index`` and ``text`` (connect.agent_http's one ``Response``).
HTTPResult = Response


class APIClient:
    """The CLI's ``AgentClient`` seen from a trio test: any status is returned."""

    def __init__(self, host: str, port: int, token: str = "") -> None:
        self.host, self.port, self.token = host, port, token

    def _do(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str], timeout: float
    ) -> HTTPResult:
        hdrs = dict(headers)
        if self.token:
            hdrs.setdefault("X-Consul-Token", self.token)
        client = AgentClient(Address("http", self.host, self.port), timeout=timeout)
        return client.exchange(method, path, body=body, headers=hdrs)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> HTTPResult:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        return await trio.to_thread.run_sync(
            self._do, method, path, data, headers or {}, timeout, abandon_on_cancel=True
        )

    async def get(self, path: str, **kw: Any) -> HTTPResult:
        return await self.request("GET", path, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> HTTPResult:
        return await self.request("PUT", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> HTTPResult:
        return await self.request("DELETE", path, **kw)


def dev_flags(**overrides: Any) -> dict[str, Any]:
    flags: dict[str, Any] = {
        "http_port": free_port(),
        "dns_port": free_port(),
        "server_port": free_port(),
        "node": "dev-node",
    }
    flags.update(overrides)
    return flags


@asynccontextmanager
async def dev_agent(
    *, files: list[str] | None = None, **flags: Any
) -> AsyncIterator[tuple[Agent, APIClient]]:
    """A running ``--dev`` agent (leader elected, API answering) and a client."""
    config, _ = load_config(files or [], [], dev_flags(**flags), dev=True)
    agent = Agent(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        host, port = agent.http_addresses[0]
        yield agent, APIClient(host, port)
        nursery.cancel_scope.cancel()


async def blocking_queries(api: APIClient) -> int:
    """How many blocking HTTP queries the agent is serving now (its
    ``meshd_rpc_queries_blocking{via="http"}`` gauge)."""
    r = await api.get("/v1/agent/metrics?format=prometheus")
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            if sample.name.endswith("rpc_queries_blocking") and sample.labels == {"via": "http"}:
                return int(sample.value)
    raise AssertionError("no rpc_queries_blocking gauge in the agent's metrics")


async def wait_blocking(api: APIClient, count: int, timeout: float = 30) -> None:
    """Return once the agent serves at least ``count`` blocking HTTP queries:
    a request the test started has arrived and waits (a fixed sleep instead
    would pass vacuously on a loaded machine, the request not there yet)."""
    with trio.fail_after(timeout):
        while await blocking_queries(api) < count:
            await trio.sleep(0.02)
