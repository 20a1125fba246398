"""The HTTP server's "solo" writes over real sockets (e2e): a connection
sending only PUT/DELETE is read by its answering task, without the reader
task's scheduler round per request; anything else hands the socket back."""

from __future__ import annotations

import pytest
import trio

from meshd.http import App, ErrorMapping
from tests.meshd.http._support import (
    BlockingQuery,
    RawClient,
    echo_router,
    encode_request,
    running,
    slow_router,
    wait_until_served,
)

pytestmark = pytest.mark.e2e


async def _solo_client(port: int) -> RawClient:
    """A connection whose first request, a PUT, put it in solo mode."""
    client = await RawClient.connect(port)
    assert (await client.request("PUT", "/v1/kv/a", body=b"1")).status == 200
    return client


class _ReaderSteps(trio.abc.Instrument):
    """Counts the scheduler steps of the connections' reader tasks."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("_Connection._read_loop"):
            self.steps += 1


async def test_a_writer_is_answered_without_the_reader_tasks_round_per_request() -> None:
    app = App(echo_router(), errors=ErrorMapping())
    async with running(app) as port:
        client = await RawClient.connect(port)
        r = await client.request("PUT", "/v1/kv/warm", body=b"0")  # the reader goes solo
        assert r.status == 200
        counter = _ReaderSteps()
        trio.lowlevel.add_instrument(counter)
        try:
            for i in range(20):
                r = await client.request("PUT", f"/v1/kv/k{i}", body=b"v")
                assert r.status == 200 and r.json()["params"] == {"key": f"k{i}"}
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert counter.steps == 0  # before: at least one per request
        # A GET hands the socket back to the reader: it runs again.
        counter = _ReaderSteps()
        trio.lowlevel.add_instrument(counter)
        try:
            for _ in range(3):
                assert (await client.request("GET", "/v1/json")).status == 200
        finally:
            trio.lowlevel.remove_instrument(counter)
        assert counter.steps >= 3
        await client.aclose()


async def test_after_solo_writes_a_blocking_query_is_still_cancelled_when_its_client_goes() -> None:
    query = BlockingQuery()
    router = echo_router()
    router.add("GET", "/v1/block", query, name="block")
    async with running(App(router, errors=ErrorMapping())) as port:
        client = await RawClient.connect(port)
        for i in range(3):
            assert (await client.request("PUT", f"/v1/kv/k{i}", body=b"v")).status == 200
        await client.send(encode_request("GET", "/v1/block?index=5&wait=10m"))
        with trio.fail_after(2):
            await query.started.wait()
        await client.aclose()
        with trio.fail_after(2):
            await query.cancelled.wait()


async def test_pipelined_writes_and_reads_are_answered_in_order_across_hand_overs() -> None:
    async with running(App(slow_router(0.02), errors=ErrorMapping())) as port:
        client = await RawClient.connect(port)
        assert (await client.request("PUT", "/v1/kv/first", body=b"1")).status == 200
        await client.send(
            encode_request("PUT", "/v1/kv/a", body=b"2")
            + encode_request("GET", "/v1/slow")
            + encode_request("PUT", "/v1/kv/b", body=b"3")
            + encode_request("GET", "/v1/kv/c")
        )
        bodies = []
        for _ in range(4):
            r = await client.read_response()
            assert r is not None and r.status == 200
            bodies.append(r.body)
        assert b'"key":"a"' in bodies[0] and b'"body":"2"' in bodies[0]
        assert bodies[1] == b"slow"
        assert b'"key":"b"' in bodies[2] and b'"body":"3"' in bodies[2]
        assert b'"key":"c"' in bodies[3]
        # A write split over several packets, read by the answering task itself.
        data = encode_request("PUT", "/v1/kv/split", body=b"x" * 1000)
        for part in (data[:10], data[10:200], data[200:]):
            await client.send(part)
            await trio.sleep(0.01)
        r = await client.read_response()
        assert r is not None and r.status == 200 and b'"key":"split"' in r.body
        await client.aclose()


async def test_a_writer_that_goes_away_between_requests_frees_its_connection() -> None:
    # One connection allowed: a second is admitted only once the first is
    # closed, which needs the solo read (the reader is parked) to see the EOF.
    app = App(echo_router(), errors=ErrorMapping())
    async with running(app, max_connections=1) as port:
        client = await RawClient.connect(port)
        for i in range(2):
            assert (await client.request("PUT", f"/v1/kv/k{i}", body=b"v")).status == 200
        await client.aclose()
        await wait_until_served(port, refused=503, timeout=5)


async def test_malformed_input_and_upgrades_after_solo_writes_are_answered_as_always() -> None:
    async with running(App(echo_router(), errors=ErrorMapping())) as port:
        client = await _solo_client(port)
        r = await client.request(
            "GET", "/v1/json", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")]
        )
        assert (r.status, r.header("connection")) == (200, "close")
        assert await client.at_eof()

        client = await _solo_client(port)
        await client.send(b"NOT HTTP AT ALL\r\n\r\n")
        r = await client.read_response()
        assert r is not None and r.status == 400
        assert await client.at_eof()


async def test_a_solo_writer_gets_the_idle_close_and_the_408_as_always() -> None:
    app = App(echo_router(), errors=ErrorMapping())
    async with running(app, idle_timeout=0.2, request_timeout=0.2) as port:
        client = await _solo_client(port)
        assert await client.at_eof(timeout=2)  # idle: closed silently

        client = await _solo_client(port)
        await client.send(b"PUT /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        r = await client.read_response()
        assert r is not None and r.status == 408
        assert await client.at_eof()
