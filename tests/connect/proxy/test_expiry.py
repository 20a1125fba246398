"""expiry.py: per-exchange deadlines of pooled connections, without a cancel
scope each (socketpairs and trio's autojump clock)."""

from __future__ import annotations

import math
import socket
import ssl
from typing import cast

import trio

from connect.proxy.expiry import RECHECK, Expired, expiry
from connect.proxy.http_pool import Pool, UpstreamConn

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class _Peers:
    """A dialer handing out one end of a socketpair per dial; the test holds the other."""

    def __init__(self) -> None:
        self.far: list[socket.socket] = []

    async def dial(self, _: str) -> ssl.SSLSocket:
        near, far = socket.socketpair()
        near.setblocking(False)
        far.setblocking(False)
        self.far.append(far)
        return cast(ssl.SSLSocket, near)

    def close(self) -> None:
        for s in self.far:
            s.close()


async def _answer(far: socket.socket, delay: float) -> None:
    await trio.sleep(delay)
    await trio.lowlevel.wait_readable(far)
    far.recv(65536)
    far.send(OK)


async def test_an_exchange_past_its_deadline_expires_and_closes_its_connection(
    autojump_clock: trio.abc.Clock,
) -> None:
    peers = _Peers()
    pool = Pool(peers.dial)
    start = trio.current_time()
    try:
        with trio.fail_after(5):  # a broken expiry fails the test instead of hanging it
            await pool.request("a:1", "GET", "/", [("host", "a")], b"", start + 0.2)
        raise AssertionError("no Expired")
    except Expired:
        pass
    assert start + 0.2 <= trio.current_time() <= start + 0.2 + 2 * RECHECK
    assert pool._idle.get("a:1", []) == []  # the timed-out connection is not reused
    assert peers.far[0].recv(1) == b"G" and peers.far[0].recv(100)  # the request went out
    async with trio.open_nursery() as nursery:  # the next request dials anew and is answered

        async def serve_next() -> None:
            while len(peers.far) < 2:
                await trio.sleep(0.001)
            await _answer(peers.far[1], 0)

        nursery.start_soon(serve_next)
        resp = await pool.request("a:1", "GET", "/", [("host", "a")], b"", trio.current_time() + 5)
    assert (resp.status, resp.body) == (200, b"ok")
    peers.close()
    pool.close_all()


async def test_an_exchange_answered_in_time_is_left_alone(
    autojump_clock: trio.abc.Clock,
) -> None:
    peers = _Peers()
    pool = Pool(peers.dial)
    async with trio.open_nursery() as nursery:

        async def serve() -> None:
            while not peers.far:
                await trio.sleep(0.001)
            for _ in range(3):
                await _answer(peers.far[0], 0.1)

        nursery.start_soon(serve)
        for _ in range(3):  # the same pooled connection each time, 0.1 s of a 0.5 s deadline
            resp = await pool.request(
                "a:1", "GET", "/", [("host", "a")], b"", trio.current_time() + 0.5
            )
            assert resp.status == 200
    assert len(peers.far) == 1
    (conn,) = pool._idle["a:1"]
    assert (conn.deadline, conn.expired) == (math.inf, False)
    await trio.sleep(1)  # its heap entries come due: nothing happens to it
    assert not conn.expired and conn.sock.fileno() >= 0
    assert expiry().heap == []
    peers.close()
    pool.close_all()


async def test_one_heap_entry_per_connection_and_an_earlier_deadline_wins(
    autojump_clock: trio.abc.Clock,
) -> None:
    a, b = socket.socketpair()
    conn = UpstreamConn(cast(ssl.SSLSocket, a), "a:1")
    exp = expiry()
    now = trio.current_time()
    for i in range(100):  # one timeout for every request: one entry
        exp.arm(conn, now + 10 + i)
        exp.disarm(conn)
    assert len(exp.heap) == 1
    exp.arm(conn, now + 0.05)  # a shorter timeout than the entry's
    assert len(exp.heap) == 2
    with trio.move_on_after(1) as scope:
        try:
            await trio.lowlevel.wait_readable(a)
            raise AssertionError("woken by data")
        except trio.ClosedResourceError:  # woken by the expiry
            pass
    assert not scope.cancelled_caught
    assert conn.expired
    assert now + 0.05 <= trio.current_time() < now + 0.05 + RECHECK
    exp.disarm(conn)
    await trio.sleep(20)
    assert exp.heap == []
    a.close()
    b.close()


async def test_a_dial_still_running_at_the_deadline_expires(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def hang(_: str) -> ssl.SSLSocket:
        await trio.sleep_forever()
        raise AssertionError

    pool = Pool(hang)
    start = trio.current_time()
    try:
        with trio.fail_after(5):
            await pool.request("a:1", "GET", "/", [("host", "a")], b"", start + 0.3)
        raise AssertionError("no Expired")
    except Expired:
        pass
    assert trio.current_time() == start + 0.3
