"""The L4 pump over real socket pairs: the reactor's steady state, a send
that would block (the task finishes it), half-close and many splices at
once sharing one buffer and one epoll set."""

from __future__ import annotations

import hashlib
import os
import socket

import trio

from connect.proxy.pump import Splice
from connect.proxy.reactor import reactor


def _pair(small: bool = False) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    for s in (a, b):
        s.setblocking(False)
        if small:  # a slow reader makes the pump's sends would-block
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return a, b


async def _send(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view[:65536]) :]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
    sock.shutdown(socket.SHUT_WR)


async def _recv_all(sock: socket.socket, slow: bool = False) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = sock.recv(1024 if slow else 65536)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
            continue
        if not chunk:
            return bytes(out)
        out += chunk
        if slow and len(out) % (64 * 1024) < 1024:
            await trio.sleep(0.001)


async def _splice_both_ways(size: int, small: bool) -> tuple[list[bytes], list[bytes], Splice]:
    """client <-> [down | Splice | up] <-> server, ``size`` random bytes each way."""
    client, down = _pair(small)
    up, server = _pair(small)
    data = [os.urandom(size), os.urandom(size)]
    got: list[bytes] = [b"", b""]
    splice = Splice(down, up, idle_timeout=30)

    async def side(i: int, sock: socket.socket) -> None:
        async with trio.open_nursery() as n:
            n.start_soon(_send, sock, data[i])
            got[1 - i] = await _recv_all(sock, slow=small)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(splice.run)
            nursery.start_soon(side, 0, client)
            nursery.start_soon(side, 1, server)
    for s in (client, down, up, server):
        s.close()
    return data, got, splice


async def test_splice_copies_both_ways_and_ends_on_both_eofs() -> None:
    data, got, splice = await _splice_both_ways(1 << 20, small=False)
    assert got == data
    assert (splice.bytes_up, splice.bytes_down) == (1 << 20, 1 << 20)
    assert splice.error is None and not splice.idle_expired


async def test_a_slow_reader_makes_sends_block_and_no_byte_is_lost() -> None:
    data, got, splice = await _splice_both_ways(2 << 20, small=True)
    assert hashlib.sha256(got[0]).digest() == hashlib.sha256(data[0]).digest()
    assert hashlib.sha256(got[1]).digest() == hashlib.sha256(data[1]).digest()
    assert splice.bytes_up == splice.bytes_down == 2 << 20


async def test_many_splices_share_the_reactor_and_leave_it_empty() -> None:
    results: list[bool] = []

    async def one() -> None:
        data, got, _ = await _splice_both_ways(64 * 1024, small=False)
        results.append(got == data)

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)
    assert results == [True] * 20
    assert reactor().jobs == {}


async def test_idle_timeout_ends_a_quiet_splice_and_unregisters_it() -> None:
    client, down = _pair()
    up, server = _pair()
    splice = Splice(down, up, idle_timeout=0.2)
    with trio.fail_after(5):
        await splice.run()
    assert splice.idle_expired
    assert reactor().jobs == {}
    for s in (client, down, up, server):
        s.close()
