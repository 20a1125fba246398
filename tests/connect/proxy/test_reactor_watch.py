"""reactor.py's watched sockets (the L7 path's keep-alive connections): in
the reactor's set (edge-triggered, waits parked in the reactor) while its
rounds wake several tasks at once, waited for through trio otherwise; over
real socketpairs."""

from __future__ import annotations

import concurrent.futures
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from typing import cast

import pytest
import trio
import trio.testing

from connect.proxy import reactor as reactor_module
from connect.proxy.expiry import Expired
from connect.proxy.http1 import RequestReader
from connect.proxy.http_pool import Pool, UpstreamResponse, serve_requests
from connect.proxy.reactor import Reactor, Readiness, notify_closing, reactor

from .pki import TestCA

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@pytest.fixture
def keep_batching(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batching mode, once started (``_batching``), never judged unpaid."""
    monkeypatch.setattr(reactor_module, "BATCH", 0)


def _batching() -> Reactor:
    r = reactor()
    r.start_trial()
    return r


def _dialer(peers: list[socket.socket]) -> Callable[[str], Awaitable[ssl.SSLSocket]]:
    """A pool's dial over socketpairs; the far ends go to ``peers``."""

    async def dial(_: str) -> ssl.SSLSocket:
        near, far = _pair()
        peers.append(far)
        return cast(ssl.SSLSocket, near)

    return dial


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def test_a_wait_returns_when_bytes_arrive_and_an_edge_nobody_waited_for_is_kept(
    keep_batching: None,
) -> None:
    near, far = _pair()
    r = _batching()
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
        assert ready.in_set
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


async def test_notify_closing_wakes_the_waiting_task_with_closed_resource_error(
    keep_batching: None,
) -> None:
    near, far = _pair()
    r = _batching()
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
            await trio.testing.wait_all_tasks_blocked()
            assert ready.in_set and ready.task is not None
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


async def test_a_cancelled_wait_leaves_no_waiter(keep_batching: None) -> None:
    near, far = _pair()
    r = _batching()
    ready = r.watch(near.fileno())
    with trio.move_on_after(0.05):
        await ready.wait()
    assert ready.in_set and ready.task is None
    far.send(b"x")
    with trio.fail_after(5):
        await ready.wait()
    r.unwatch(near.fileno())
    near.close()
    far.close()


async def test_keep_alive_requests_and_pooled_answers_leave_the_set_empty_when_done(
    keep_batching: None,
) -> None:
    """Two requests on one client connection, each answered through a pooled
    connection: both sockets are watched while in use, none once closed."""
    client, server_side = _pair()
    peers: list[socket.socket] = []

    dial = _dialer(peers)
    pool = Pool(dial)
    r = _batching()

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
            assert r.watched[server_side.fileno()].in_set
            (conn,) = pool._idle["a:1"]
            assert r.watched[conn.fileno()].in_set
            client.shutdown(socket.SHUT_WR)  # the client is done: the loop ends
    assert server_side.fileno() not in r.watched
    pool.close_all()
    assert r.watched == {}
    for s in (client, server_side, *peers):
        s.close()


async def test_an_exchange_waiting_in_the_set_past_its_deadline_expires(
    keep_batching: None, autojump_clock: trio.abc.Clock
) -> None:
    """expiry.py's notify_closing reaches a wait parked in the reactor."""
    peers: list[socket.socket] = []

    dial = _dialer(peers)
    pool = Pool(dial)
    r = _batching()
    start = trio.current_time()
    with trio.fail_after(5), pytest.raises(Expired):
        await pool.request("a:1", "GET", "/", [("host", "a")], b"", start + 0.2)
    assert trio.current_time() - start < 1
    assert pool._idle.get("a:1", []) == [] and r.watched == {}
    for s in peers:
        s.close()


async def _round_trip(
    pairs: list[tuple[socket.socket, socket.socket]], readies: list[Readiness]
) -> bool:
    """Every socket of ``pairs`` waited on at once, then written to at once;
    whether they all waited in the set."""
    async with trio.open_nursery() as nursery:
        for ready in readies:
            nursery.start_soon(ready.wait)
        await trio.testing.wait_all_tasks_blocked()
        in_set = all(ready.in_set for ready in readies)
        for _, far in pairs:
            far.send(b"x")
    for near, _ in pairs:
        assert near.recv(10) == b"x"
    return in_set


async def test_the_set_is_kept_while_rounds_wake_several_tasks_and_left_when_they_wake_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reactor_module, "JUDGE", 4)
    monkeypatch.setattr(reactor_module, "TRIAL_EVERY", 1000)
    pairs = [_pair() for _ in range(4)]
    r = reactor()
    readies = [r.watch(near.fileno()) for near, _ in pairs]
    r.start_trial()
    with trio.fail_after(5):
        for _ in range(6):  # each round wakes 4 tasks: the batching pays
            await _round_trip(pairs, readies)
        assert r.batching and await _round_trip(pairs, readies)
        for _ in range(6):  # one at a time: a round wakes 1, under BATCH
            await _round_trip(pairs[:1], readies[:1])
        assert not r.batching
        assert not await _round_trip(pairs[:1], readies[:1])  # through trio again
        assert not readies[0].in_set
        r.trial_at = r.waits  # the next trial is due: the set again
        await _round_trip(pairs[:1], readies[:1])
        assert r.batching and await _round_trip(pairs[:1], readies[:1])
    for near, far in pairs:
        r.unwatch(near.fileno())
        near.close()
        far.close()
    assert r.watched == {}


def _tls_pair() -> tuple[ssl.SSLSocket, ssl.SSLSocket]:
    """A connected TLS pair (handshake done), both non-blocking."""
    ca = TestCA()
    leaf = ca.leaf("api")
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as fh:
        fh.write(leaf.cert_pem + leaf.key_pem)
        fh.flush()
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(fh.name)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.load_verify_locations(cadata=ca.root.cert_pem)
    a, b = socket.socketpair()
    server = server_ctx.wrap_socket(a, server_side=True, do_handshake_on_connect=False)
    client = client_ctx.wrap_socket(b, do_handshake_on_connect=False)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        done = pool.submit(server.do_handshake)
        client.do_handshake()
        done.result(timeout=5)
    server.setblocking(False)
    client.setblocking(False)
    return server, client


async def test_bytes_left_by_a_read_are_read_without_a_new_edge(keep_batching: None) -> None:
    """Edge-triggered, a wait is safe only once the socket is drained: a body
    longer than one read (plain), and a second pipelined request whose TLS
    record came with the first one's, are read without more bytes arriving."""
    r = _batching()
    near, far = _pair()
    reader = RequestReader(near)
    reader.ready = r.watch(near.fileno())
    body = b"x" * 150_000
    far.setblocking(True)
    far.sendall(b"POST /x HTTP/1.1\r\nhost: h\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
    with trio.fail_after(5):
        req = await reader.next_request()
    assert req is not None and len(req.body) == len(body)
    r.unwatch(near.fileno())

    server, client = _tls_pair()
    reader = RequestReader(server)
    reader.ready = r.watch(server.fileno())
    client.setblocking(True)
    client.sendall(b"GET /a HTTP/1.1\r\nhost: h\r\n\r\n")  # one TLS record each,
    client.sendall(b"GET /b HTTP/1.1\r\nhost: h\r\n\r\n")  # both in the socket now
    with trio.fail_after(5):
        first = await reader.next_request()
        second = await reader.next_request()
    assert first is not None and second is not None
    assert (first.target, second.target) == (b"/a", b"/b")
    r.unwatch(server.fileno())
    for s in (near, far, server, client):
        s.close()


async def test_bytes_and_a_fin_in_one_edge_still_end_the_connection(keep_batching: None) -> None:
    """Edge-triggered, a FIN arriving with the last bytes is one edge: the
    client's last request and half-close end serve_requests, and a pooled
    connection whose upstream half-closed with its answer is not reused."""
    client, server_side = _pair()
    r = _batching()
    req = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"

    async def answer(event: object) -> UpstreamResponse:
        return UpstreamResponse(200, [], b"ok")

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serve_requests, server_side, RequestReader(server_side), answer)
            client.send(req)
            await trio.lowlevel.wait_readable(client)
            client.recv(65536)
            await trio.testing.wait_all_tasks_blocked()
            assert r.watched[server_side.fileno()].task is not None  # parked in the set
            client.send(req)
            client.shutdown(socket.SHUT_WR)  # the last request and the FIN: one edge
    assert server_side.fileno() not in r.watched  # the loop ended

    peers: list[socket.socket] = []

    dial = _dialer(peers)

    async def upstream(n: int, half_close: bool) -> None:
        while len(peers) < n:
            await trio.sleep(0.001)
        await trio.lowlevel.wait_readable(peers[n - 1])
        peers[n - 1].recv(65536)
        peers[n - 1].send(OK)
        if half_close:
            peers[n - 1].shutdown(socket.SHUT_WR)

    pool = Pool(dial)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(upstream, 1, True)
            first = await pool.request("a:1", "GET", "/", [("host", "a")], b"")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(upstream, 2, False)
            second = await pool.request(
                "a:1", "GET", "/", [("host", "a")], b"", trio.current_time() + 2
            )
    assert (first.status, second.status, len(peers)) == (200, 200, 2)
    pool.close_all()
    for s in (client, server_side, *peers):
        s.close()
