"""TLSSocketStream over real TLS on 127.0.0.1 (marked e2e)."""

from __future__ import annotations

import fcntl
import ssl
import struct
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from meshd.agent_tls import create_ca, create_cert, write_pem
from raft.tls import client_context, peer_dns_names, server_context
from raft.tlsstream import TLSSocketStream, open_tls_stream, wrap_server_stream

pytestmark = pytest.mark.e2e


def _contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, ssl.SSLContext]:
    """(server, client, client trusting another CA)."""
    ca, other = create_ca(), create_ca()
    files = {}
    for name, (cert, key) in {
        "ca": ca,
        "other": other,
        "server": create_cert(*ca, kind="server"),
    }.items():
        files[name] = (tmp_path / f"{name}.pem", tmp_path / f"{name}-key.pem")
        write_pem(files[name][0], cert)
        write_pem(files[name][1], key, private=True)
    server = server_context(files["ca"][0], *files["server"])
    client = client_context(files["ca"][0], *files["server"])
    foreign = client_context(files["other"][0], *files["server"])
    return server, client, foreign


@asynccontextmanager
async def _pair(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> AsyncIterator[tuple[TLSSocketStream, trio.MemoryReceiveChannel[object]]]:
    """A client stream connected to a server whose accepted stream (or the
    handshake error) arrives on the returned channel."""
    send, recv = trio.open_memory_channel[object](1)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def accept(tcp: trio.SocketStream) -> None:
        stream = wrap_server_stream(tcp, server_ctx)
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            await send.send(exc)
            return
        await send.send(stream)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, accept, listeners)
        client = await open_tls_stream(
            "127.0.0.1", port, client_ctx, server_hostname="server.dc1.consul"
        )
        try:
            yield client, recv
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()


async def test_round_trip_peer_names_and_clean_eof(tmp_path: Path) -> None:
    server_ctx, client_ctx, _ = _contexts(tmp_path)
    with trio.fail_after(5):
        async with _pair(server_ctx, client_ctx) as (client, accepted):
            server = await accepted.receive()
            assert isinstance(server, TLSSocketStream)
            assert "server.dc1.consul" in peer_dns_names(client)
            payload = bytes(range(256)) * 8192  # 2 MiB: many records, partial sends
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.send_all, payload)
                got = bytearray()
                while len(got) < len(payload):
                    got += await server.receive_some(65536)
            assert got == payload
            assert server.send_nowait(b"pong") == 4
            assert await client.receive_some(10) == b"pong"
            await client.aclose()
            assert await server.receive_some(10) == b""  # close_notify reads as EOF
            await server.aclose()
            with pytest.raises(trio.ClosedResourceError):
                await server.send_all(b"x")


async def test_certificate_from_another_ca_fails_the_handshake(tmp_path: Path) -> None:
    server_ctx, _, foreign_ctx = _contexts(tmp_path)
    errors: list[BaseException] = []
    with trio.fail_after(5):
        try:
            async with _pair(server_ctx, foreign_ctx):
                pass
        except* trio.BrokenResourceError as group:  # raised inside _pair's nursery
            errors.extend(group.exceptions)
    assert len(errors) == 1
    assert isinstance(errors[0].__cause__, ssl.SSLCertVerificationError)


async def test_closing_wakes_a_parked_receiver(tmp_path: Path) -> None:
    server_ctx, client_ctx, _ = _contexts(tmp_path)
    with trio.fail_after(5):
        async with _pair(server_ctx, client_ctx) as (client, accepted):
            await accepted.receive()
            async with trio.open_nursery() as nursery:

                async def receive() -> None:
                    with pytest.raises(trio.ClosedResourceError):
                        await client.receive_some(10)

                nursery.start_soon(receive)
                await trio.sleep(0.05)
                await client.aclose()


async def test_a_close_without_close_notify_reads_as_broken(tmp_path: Path) -> None:
    """How a crashed peer looks (its kernel closes the socket, no TLS goodbye),
    told apart from a deliberate close, which reads as EOF."""
    server_ctx, client_ctx, _ = _contexts(tmp_path)
    with trio.fail_after(5):
        async with _pair(server_ctx, client_ctx) as (client, accepted):
            server = await accepted.receive()
            assert isinstance(server, TLSSocketStream)
            server.socket.close()  # no SSL_shutdown: what kill -9 leaves behind
            with pytest.raises(trio.BrokenResourceError):
                await client.receive_some(10)


def _unread(stream: TLSSocketStream) -> int:
    return struct.unpack("i", fcntl.ioctl(stream.socket.fileno(), termios.FIONREAD, b"\0" * 4))[0]


async def test_one_receive_takes_every_record_already_here_then_the_eof(tmp_path: Path) -> None:
    """A burst of small frames (one TLS record each) is one wake of the
    reader, not one per record; an EOF met behind them comes next time."""
    server_ctx, client_ctx, _ = _contexts(tmp_path)
    with trio.fail_after(5):
        for goodbye in ("close_notify", "ragged"):
            async with _pair(server_ctx, client_ctx) as (client, accepted):
                server = await accepted.receive()
                assert isinstance(server, TLSSocketStream)
                for part in (b"a", b"bc", b"def"):
                    assert client.send_nowait(part) == len(part)  # one record each
                if goodbye == "ragged":
                    client.socket.close()  # FIN without close_notify
                else:
                    await client.aclose()
                records = 3 * 22 + 6 + (24 if goodbye == "close_notify" else 0)
                while _unread(server) < records:  # all of it is in the kernel
                    await trio.sleep(0.01)
                assert await server.receive_some(1024) == b"abcdef"
                if goodbye == "ragged":
                    with pytest.raises(trio.BrokenResourceError, match="close_notify"):
                        await server.receive_some(1024)
                else:
                    assert await server.receive_some(1024) == b""
