"""reactor.py's watched sockets (the L7 path's keep-alive connections): one
edge-triggered registration per socket for its life, waits parked in the
reactor, over real socketpairs."""

from __future__ import annotations

import socket
import ssl
from typing import cast

import pytest
import trio

from connect.proxy.http1 import RequestReader
from connect.proxy.http_pool import Pool, UpstreamResponse, serve_requests
from connect.proxy.reactor import notify_closing, reactor

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def test_a_wait_returns_when_bytes_arrive_and_an_edge_nobody_waited_for_is_kept() -> None:
    near, far = _pair()
    r = reactor()
    ready = r.watch(near.fileno())
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:

            async def later() -> None:
                await trio.sleep(0.05)
                far.send(b"a")

            nursery.start_soon(later)
            await ready.wait()
        assert near.recv(10) == b"a"
        far.send(b"b")  # nobody waits: the reactor keeps the edge
        while not ready.ready:
            await trio.sleep(0.001)
        await ready.wait()  # at once
        assert near.recv(10) == b"b"
    r.unwatch(near.fileno())
    assert near.fileno() not in r.watched
    with pytest.raises(trio.ClosedResourceError):
        await ready.wait()
    near.close()
    far.close()


async def test_notify_closing_wakes_the_waiting_task_with_closed_resource_error() -> None:
    near, far = _pair()
    r = reactor()
    ready = r.watch(near.fileno())
    caught: list[BaseException] = []

    async def waiter() -> None:
        try:
            await ready.wait()
        except trio.ClosedResourceError as exc:
            caught.append(exc)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            while ready.task is None:
                await trio.sleep(0.001)
            notify_closing(near.fileno())
    assert len(caught) == 1
    far.send(b"x")  # the interruption was for that wait only, as trio's
    with trio.fail_after(5):
        await ready.wait()
    r.unwatch(near.fileno())
    near.close()
    far.close()


async def test_a_cancelled_wait_leaves_no_waiter() -> None:
    near, far = _pair()
    r = reactor()
    ready = r.watch(near.fileno())
    with trio.move_on_after(0.05):
        await ready.wait()
    assert ready.task is None
    far.send(b"x")
    with trio.fail_after(5):
        await ready.wait()
    r.unwatch(near.fileno())
    near.close()
    far.close()


async def test_keep_alive_requests_and_pooled_answers_leave_the_set_empty_when_done() -> None:
    """Two requests on one client connection, each answered through a pooled
    connection: both sockets are watched while in use, none once closed."""
    client, server_side = _pair()
    peers: list[socket.socket] = []

    async def dial(_: str) -> ssl.SSLSocket:
        near, far = _pair()
        peers.append(far)
        return cast(ssl.SSLSocket, near)

    pool = Pool(dial)
    r = reactor()

    async def upstream() -> None:
        while not peers:
            await trio.sleep(0.001)
        for _ in range(2):
            await trio.lowlevel.wait_readable(peers[0])
            peers[0].recv(65536)
            peers[0].send(OK)

    async def answer(event: object) -> UpstreamResponse:
        return await pool.request("a:1", "GET", "/", [("host", "a")], b"")

    got = b""
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(upstream)
            nursery.start_soon(serve_requests, server_side, RequestReader(server_side), answer)
            for _ in range(2):
                client.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                while got.count(b"ok") < 1:
                    await trio.lowlevel.wait_readable(client)
                    got += client.recv(65536)
                assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"ok")
                got = b""
            assert server_side.fileno() in r.watched
            assert len(pool._idle["a:1"]) == 1 and pool._idle["a:1"][0].fileno() in r.watched
            client.shutdown(socket.SHUT_WR)  # the client is done: the loop ends
    assert server_side.fileno() not in r.watched
    pool.close_all()
    assert r.watched == {}
    for s in (client, server_side, *peers):
        s.close()
