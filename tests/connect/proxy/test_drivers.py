"""The trio drivers on their own: agent client, watches, metrics endpoint, logs."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from connect.proxy.agent_client import AgentClient
from connect.proxy.errors import AgentResponseError, AgentUnavailableError
from connect.proxy.logfmt import logfmt
from connect.proxy.metrics import ProxyMetrics, serve_metrics
from connect.proxy.proxy import wait_for_agent
from connect.proxy.watchers import Backoff, Watched

from .fake_agent import FakeAgent
from .harness import free_port, read_to_eof


def test_logfmt_quotes_values_with_spaces() -> None:
    line = logfmt("denied", source="web", reason='Matched "x" y', intention="default")
    assert line == 'event=denied source=web reason="Matched \\"x\\" y" intention=default'


def test_backoff_grows_to_a_ceiling_with_jitter() -> None:
    backoff = Backoff(random.Random(1))
    delays = [backoff.next_delay() for _ in range(12)]
    assert 0.05 <= delays[0] <= 0.1
    assert delays[5] > delays[0]
    assert max(delays) <= 30.0 and delays[-1] >= 15.0
    backoff.reset()
    assert backoff.next_delay() <= 0.1


async def test_watched_wakes_waiters_with_newer_values() -> None:
    cell: Watched[int] = Watched()
    got: list[tuple[int, int]] = []

    async def waiter() -> None:
        got.append(await cell.wait_newer(0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()  # the waiter is parked
        assert got == []
        cell.set(7)
    assert got == [(7, 1)]


@pytest.mark.e2e
async def test_agent_client_keeps_connections_alive_and_blocks(nursery: trio.Nursery) -> None:
    agent = FakeAgent()
    await nursery.start(agent.serve)
    agent.set_intentions([])
    client = AgentClient("127.0.0.1", agent.port, token="t")
    body, resp = await client.get_json(
        "/v1/connect/intentions/match", query={"by": "destination", "name": "api"}
    )
    assert body == {"api": []} and resp.index == agent.intentions_index
    assert len(client._idle) == 1  # kept for the next request

    order: list[str] = []

    async def change_once_parked() -> None:
        # The fake agent's blocking handler waits on its change event: the
        # request has arrived and is blocked (no fixed sleep that a loaded
        # machine could outlast before the request even arrives).
        with trio.fail_after(30):
            while not agent._changed.statistics().tasks_waiting:
                await trio.sleep(0.01)
        order.append("changed")
        agent.set_intentions(
            [{"ID": "i", "SourceName": "a", "DestinationName": "api", "Action": "deny"}]
        )

    nursery.start_soon(change_once_parked)
    with trio.fail_after(30):  # well inside ?wait=120s: only the change can answer it
        body, resp = await client.blocking_get(
            "/v1/connect/intentions/match",
            query={"by": "destination", "name": "api"},
            index=resp.index,
            wait=120,
        )
    order.append("answered")
    assert order == ["changed", "answered"]  # blocked until the change, woken by it
    assert body["api"][0]["ID"] == "i"
    with pytest.raises(AgentResponseError) as info:
        await client.request("GET", "/v1/nope")
    assert info.value.status == 404
    assert agent.token_seen == ["t"] * 3
    await client.aclose()


@pytest.mark.e2e
async def test_agent_client_times_out_and_maps_refusals(nursery: trio.Nursery) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    import functools

    listeners = await nursery.start(functools.partial(trio.serve_tcp, silent, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    client = AgentClient("127.0.0.1", port)
    with pytest.raises(AgentUnavailableError, match="no answer"):
        await client.request("GET", "/v1/agent/services", timeout=0.2)
    closed = AgentClient("127.0.0.1", free_port())
    with pytest.raises(AgentUnavailableError, match="connect to"):
        await closed.request("GET", "/v1/agent/services")
    with pytest.raises(AgentUnavailableError, match=r"after 0\.3s"):
        await wait_for_agent(closed, timeout=0.3, interval=0.1)


@pytest.mark.e2e
async def test_metrics_endpoint_serves_prometheus_text(nursery: trio.Nursery) -> None:
    metrics = ProxyMetrics()
    metrics.connection("inbound", "web", "api", "denied")
    metrics.denied("web", "api", "default")
    metrics.byte_counter("outbound", "web", "api")(10, 20)
    metrics.handshake.labels("inbound").observe(0.001)
    host, port = await nursery.start(serve_metrics, "127.0.0.1", 0, metrics.render)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    text = (await read_to_eof(stream)).decode()
    assert text.startswith("HTTP/1.1 200")
    assert (
        'meshd_proxy_connections_total{destination="api",direction="inbound",'
        'result="denied",source="web"} 1.0' in text
    )
    assert (
        'meshd_proxy_bytes_sent_total{destination="api",direction="outbound",source="web"} 20.0'
        in text
    )
    assert "meshd_proxy_tls_handshake_seconds_bucket" in text
