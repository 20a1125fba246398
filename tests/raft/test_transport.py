"""raft.transport: framing on in-memory streams, and the mTLS transport over
real TLS on 127.0.0.1 (marked e2e)."""

from __future__ import annotations

import contextlib
import inspect
import logging
import random
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from meshd.agent_tls import create_ca, create_cert, write_pem
from raft.codec import pack
from raft.errors import TransportError
from raft.tls import client_context, server_context
from raft.transport import FramedStream, PeerInfo, Transport, encode_frame
from raft.types import (
    Configuration,
    Entry,
    Message,
    MessageType,
    Server,
    Snapshot,
    SnapshotMeta,
)

# -- FramedStream on memory streams ------------------------------------------


def _pair(max_frame: int = 1024) -> tuple[FramedStream, FramedStream]:
    left, right = trio.testing.memory_stream_pair()
    return FramedStream(left, max_frame=max_frame), FramedStream(right, max_frame=max_frame)


async def test_framed_stream_round_trips_maps_in_order() -> None:
    a, b = _pair()
    await a.send({"v": 1, "x": b"\x00\xff"})
    await a.send_many([{"n": i} for i in range(3)])
    assert await b.receive() == {"v": 1, "x": b"\x00\xff"}
    assert [await b.receive() for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]


async def test_framed_stream_stamps_each_reads_time_only_when_asked() -> None:
    a, b = _pair()
    await a.send({"n": 1})
    assert await b.receive() == {"n": 1}
    assert b.read_ns == 0  # off: no clock read per socket read
    b.stamp_reads = True
    await a.send({"n": 2})
    before = time.perf_counter_ns()
    assert await b.receive() == {"n": 2}
    assert before <= b.read_ns <= time.perf_counter_ns()


async def test_framed_stream_iteration_stops_at_clean_eof() -> None:
    a, b = _pair()
    await a.send_many([{"n": 1}, {"n": 2}])
    await a.aclose()
    assert [obj async for obj in b] == [{"n": 1}, {"n": 2}]
    with pytest.raises(TransportError, match="closed_by_peer"):
        await b.receive()


async def test_framed_stream_eof_mid_frame_raises() -> None:
    a, b = _pair()
    await a.stream.send_all(encode_frame({"n": 1})[:-2])
    await a.aclose()
    with pytest.raises(TransportError, match="eof_mid_frame"):
        await b.receive()


async def test_framed_stream_garbage_and_non_map_frames_raise_and_break_the_stream() -> None:
    a, b = _pair()
    await a.stream.send_all(struct.pack(">I", 1) + b"\xc1")  # 0xc1 is never valid msgpack
    with pytest.raises(TransportError, match="bad_frame"):
        await b.receive()
    with pytest.raises(TransportError, match="broken"):
        await b.receive()
    c, d = _pair()
    payload = pack([1, 2])
    await c.stream.send_all(struct.pack(">I", len(payload)) + payload)
    with pytest.raises(TransportError, match="not a map"):
        await d.receive()


async def test_receive_batch_takes_every_buffered_frame_and_a_bad_one_comes_next() -> None:
    a, b = _pair()
    good = b"".join(encode_frame({"n": i}) for i in range(3))
    await a.stream.send_all(good + struct.pack(">I", 1) + b"\xc1")
    assert await b.receive_batch() == [{"n": 0}, {"n": 1}, {"n": 2}]
    with pytest.raises(TransportError, match="bad_frame"):
        await b.receive_batch()
    c, d = _pair()
    await c.stream.send_all(encode_frame({"n": 1}) + encode_frame({"n": 2})[:-1])
    assert await d.receive_batch() == [{"n": 1}]  # the torn one is not waited for
    await c.stream.send_all(encode_frame({"n": 2})[-1:])
    await c.aclose()
    assert await d.receive_batch() == [{"n": 2}]
    assert await d.receive_batch() == []  # clean EOF


async def test_oversized_frame_is_refused_on_receive_and_connection_closed() -> None:
    a, b = _pair(max_frame=1024)
    await a.stream.send_all(struct.pack(">I", 4096) + b"x" * 10)
    with pytest.raises(TransportError, match="frame_too_large"):
        await b.receive()
    with pytest.raises(trio.BrokenResourceError):  # b closed its end
        for _ in range(10):
            await a.stream.send_all(b"more")


async def test_oversized_frame_is_refused_on_send_and_nothing_is_written() -> None:
    a, b = _pair(max_frame=1024)
    with pytest.raises(TransportError, match="frame_too_large"):
        await a.send_many([{"ok": 1}, {"big": b"x" * 2000}])
    await a.send({"after": True})
    assert await b.receive() == {"after": True}


# -- PKI and helpers for real TLS ---------------------------------------------


@dataclass
class Pki:
    server_ssl: ssl.SSLContext
    client_ssl: ssl.SSLContext
    client_cert_ssl: ssl.SSLContext  # dials with a client.dc1.consul certificate
    foreign_cert_ssl: ssl.SSLContext  # trusts our CA, presents another CA's cert
    foreign_ssl: ssl.SSLContext  # trusts only the other CA


def _write(dir_: Path, name: str, pair: tuple[str, str]) -> tuple[Path, Path]:
    cert, key = dir_ / f"{name}.pem", dir_ / f"{name}-key.pem"
    write_pem(cert, pair[0])
    write_pem(key, pair[1], private=True)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = create_ca()
    other = create_ca()
    ca_file, _ = _write(d, "ca", ca)
    other_file, _ = _write(d, "other-ca", other)
    server = _write(d, "server", create_cert(*ca, kind="server"))
    client = _write(d, "client", create_cert(*ca, kind="client"))
    foreign = _write(d, "foreign", create_cert(*other, kind="server"))
    return Pki(
        server_ssl=server_context(ca_file, *server),
        client_ssl=client_context(ca_file, *server),
        client_cert_ssl=client_context(ca_file, *client),
        foreign_cert_ssl=client_context(ca_file, *foreign),
        foreign_ssl=client_context(other_file, *foreign),
    )


def _transport(
    pki: Pki, node: str, *, client_ssl: ssl.SSLContext | None = None, **kw: Any
) -> Transport:
    kw.setdefault("io_timeout", 2.0)
    return Transport(
        node,
        ("127.0.0.1", 0),
        pki.server_ssl,
        client_ssl or pki.client_ssl,
        rng=random.Random(7),
        **kw,
    )


async def _start(
    nursery: trio.Nursery, t: Transport, stopped: trio.Event | None = None
) -> tuple[trio.CancelScope, str]:
    """Run ``t.serve`` under its own cancel scope; return it and ``host:port``.
    ``stopped`` is set once ``serve`` has returned (its listener closed)."""
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[tuple[str, int]]) -> None:
        try:
            with scope:
                await t.serve(task_status=task_status)
        finally:
            if stopped is not None:
                stopped.set()

    host, port = await nursery.start(run)
    return scope, f"{host}:{port}"


def _app(src: str, dst: str, i: int) -> Message:
    return Message(
        MessageType.APP, src, dst, term=3, index=i, entries=(Entry(i + 1, 3, data=b"x"),)
    )


async def _wait_for(pred: Callable[[], bool]) -> None:
    while not pred():
        await trio.sleep(0.01)


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "event=peer_refused" in r.getMessage()]


# -- the transport over TLS ----------------------------------------------------


@pytest.mark.e2e
async def test_two_transports_exchange_messages_both_ways(pki: Pki) -> None:
    a, b = _transport(pki, "a"), _transport(pki, "b")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            _, addr_a = await _start(nursery, a)
            _, addr_b = await _start(nursery, b)
            a.set_peer("b", addr_b)
            b.set_peer("a", addr_a)
            for i in range(100):
                a.send(_app("a", "b", i))
            b.send(Message(MessageType.APP_RESP, "b", "a", term=3, index=99))
            got = [await b.incoming.receive() for _ in range(100)]
            reply = await a.incoming.receive()
            nursery.cancel_scope.cancel()
    assert got == [_app("a", "b", i) for i in range(100)]
    assert reply == Message(MessageType.APP_RESP, "b", "a", term=3, index=99)
    assert a.stats()["b"]["sent"] == 100 and a.stats()["b"]["dropped"] == 0
    assert b.stats()["a"]["received"] == 100 and a.stats()["b"]["received"] == 1


@pytest.mark.e2e
async def test_snapshot_larger_than_max_frame_arrives_intact(pki: Pki) -> None:
    mib = 1 << 20
    a = _transport(pki, "a", max_frame=mib, snapshot_chunk=mib)
    b = _transport(pki, "b", max_frame=mib)
    done: list[tuple[str, bool]] = []
    a.on_snapshot_done = lambda peer, ok: done.append((peer, ok))
    data = random.Random(1).randbytes(5 * mib)
    meta = SnapshotMeta(40, 3, Configuration((Server("a", "x:1"), Server("b", "y:2"))))
    snap = Message(MessageType.SNAP, "a", "b", term=3, snapshot=Snapshot(meta, data))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            _, addr_b = await _start(nursery, b)
            await _start(nursery, a)
            a.set_peer("b", addr_b)
            a.send(snap)
            a.send(_app("a", "b", 1))  # not stuck behind the snapshot
            got = [await b.incoming.receive() for _ in range(2)]
            await _wait_for(lambda: bool(done))
            nursery.cancel_scope.cancel()
    received = next(m for m in got if m.type == MessageType.SNAP)
    assert received == snap
    assert done == [("b", True)]


@pytest.mark.e2e
async def test_snapshot_to_unreachable_peer_reports_failure(pki: Pki) -> None:
    a = _transport(pki, "a")
    done: list[tuple[str, bool]] = []
    a.on_snapshot_done = lambda peer, ok: done.append((peer, ok))
    meta = SnapshotMeta(1, 1, Configuration())
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await _start(nursery, a)
            a.set_peer("b", "127.0.0.1:1")
            a.send(Message(MessageType.SNAP, "a", "b", 1, snapshot=Snapshot(meta, b"s")))
            await _wait_for(lambda: bool(done))
            nursery.cancel_scope.cancel()
    assert done == [("b", False)]


def _cannot_arrive(rogue: Transport, caplog: pytest.LogCaptureFixture) -> bool:
    """The rogue's one message is out of its queue for good: dropped unsent,
    or written on a connection b has refused (b refuses a peer before it
    reads any message; written messages are never resent)."""
    st = rogue.stats().get("b", {})
    sent, dropped = st.get("sent", 0), st.get("dropped", 0)
    return (dropped >= 1 and sent == 0) or (sent >= 1 and bool(_refusals(caplog)))


async def _attempt_from(
    pki: Pki, client_ssl: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> tuple[Transport, Transport, list[str]]:
    """A rogue transport with ``client_ssl`` sends to a real one."""
    caplog.set_level(logging.DEBUG, logger="raft.transport")
    rogue, b = _transport(pki, "rogue", client_ssl=client_ssl), _transport(pki, "b")
    unreachable: list[str] = []
    rogue.on_unreachable = unreachable.append
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            _, addr_b = await _start(nursery, b)
            await _start(nursery, rogue)
            rogue.set_peer("b", addr_b)
            rogue.send(_app("rogue", "b", 1))
            # No fixed sleep: wait until the message can no longer arrive.
            await _wait_for(lambda: _cannot_arrive(rogue, caplog))
            nursery.cancel_scope.cancel()
    assert b.incoming.statistics().current_buffer_used == 0
    assert "rogue" not in b.stats()
    return rogue, b, unreachable


@pytest.mark.e2e
async def test_peer_with_cert_from_another_ca_is_refused(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    await _attempt_from(pki, pki.foreign_cert_ssl, caplog)
    (line, *_) = _refusals(caplog)
    assert 'reason="tls:CERTIFICATE_VERIFY_FAILED:unable to get local issuer' in line
    assert "peer=127.0.0.1:" in line


@pytest.mark.e2e
async def test_dialer_refuses_a_listener_from_another_ca(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    rogue, _, unreachable = await _attempt_from(pki, pki.foreign_ssl, caplog)
    assert unreachable and set(unreachable) == {"b"}
    assert rogue.stats()["b"]["dropped"] >= 1 and rogue.stats()["b"]["sent"] == 0
    dial = [r.getMessage() for r in caplog.records if "event=dial_failed" in r.getMessage()]
    assert "CERTIFICATE_VERIFY_FAILED" in dial[0] and "peer_id=b" in dial[0]


@pytest.mark.e2e
async def test_client_certificate_cannot_speak_raft(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    await _attempt_from(pki, pki.client_cert_ssl, caplog)
    (line, *_) = _refusals(caplog)
    assert "reason=missing_server_san" in line and "kind=raft" in line
    assert "sans=client.dc1.consul,localhost" in line


@pytest.mark.e2e
async def test_plaintext_tcp_is_refused_and_listener_keeps_serving(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="raft.transport")
    a, b = _transport(pki, "a"), _transport(pki, "b")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            _, addr_b = await _start(nursery, b)
            await _start(nursery, a)
            host, port = addr_b.rsplit(":", 1)
            plain = await trio.open_tcp_stream(host, int(port))
            await plain.send_all(encode_frame({"v": 1, "kind": "raft", "id": "a"}))
            with contextlib.suppress(trio.BrokenResourceError):  # closed or reset on us
                while await plain.receive_some():
                    pass
            await plain.aclose()
            a.set_peer("b", addr_b)
            a.send(_app("a", "b", 7))
            assert await b.incoming.receive() == _app("a", "b", 7)
            nursery.cancel_scope.cancel()
    (line,) = _refusals(caplog)
    assert "reason=tls:" in line


@pytest.mark.e2e
async def test_silent_tcp_client_is_refused_after_the_handshake_timeout(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="raft.transport")
    b = _transport(pki, "b", io_timeout=0.2)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            _, addr_b = await _start(nursery, b)
            host, port = addr_b.rsplit(":", 1)
            silent = await trio.open_tcp_stream(host, int(port))
            assert await silent.receive_some() == b""  # closed on us
            await silent.aclose()
            nursery.cancel_scope.cancel()
    (line,) = _refusals(caplog)
    assert "reason=handshake_timeout" in line


@pytest.mark.e2e
async def test_unknown_kind_is_refused_and_registered_kind_reaches_its_handler(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="raft.transport")
    b = _transport(pki, "b")
    seen: list[PeerInfo] = []

    async def echo(framed: FramedStream, info: PeerInfo) -> None:
        seen.append(info)
        await framed.send({"echo": await framed.receive()})

    b.register_handler("rpc", echo)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            _, addr_b = await _start(nursery, b)
            host, port = addr_b.rsplit(":", 1)
            replies = []
            for kind in ("nope", "rpc"):
                tcp = await trio.open_tcp_stream(host, int(port))
                tls = trio.SSLStream(tcp, pki.client_cert_ssl, server_hostname="server.dc1.consul")
                framed = FramedStream(tls)
                await framed.send_many([{"v": 1, "kind": kind, "id": "cli"}, {"q": 1}])
                replies.append([obj async for obj in framed])
                await framed.aclose()
            nursery.cancel_scope.cancel()
    assert replies == [[], [{"echo": {"q": 1}}]]
    assert seen[0].peer_id == "cli" and seen[0].dns_names == ("client.dc1.consul", "localhost")
    (line,) = _refusals(caplog)
    assert "reason=unknown_kind" in line and "kind=nope" in line


@pytest.mark.e2e
async def test_sender_reconnects_after_receiver_restarts(pki: Pki) -> None:
    a, b1 = _transport(pki, "a"), _transport(pki, "b")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            b1_stopped = trio.Event()
            stop_b1, addr_b = await _start(nursery, b1, b1_stopped)
            await _start(nursery, a)
            a.set_peer("b", addr_b)
            a.send(_app("a", "b", 1))
            assert (await b1.incoming.receive()).index == 1
            stop_b1.cancel()
            await b1_stopped.wait()  # b is down (its port free again); a notices
            # the closed connection when it next writes: the loop below resends
            host, port = addr_b.rsplit(":", 1)
            b2 = Transport("b", (host, int(port)), pki.server_ssl, pki.client_ssl)
            await _start(nursery, b2)
            got = None
            i = 2
            while got is None:  # messages written into the dying socket are lost
                a.send(_app("a", "b", i))
                with trio.move_on_after(0.1):
                    got = await b2.incoming.receive()
                i += 1
            nursery.cancel_scope.cancel()
    assert got.index >= 2
    assert a.stats()["b"]["reconnects"] >= 1


@pytest.mark.e2e
async def test_queue_overflow_drops_instead_of_blocking(pki: Pki) -> None:
    a = _transport(pki, "a", queue_size=16)
    unreachable: list[str] = []
    a.on_unreachable = unreachable.append
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await _start(nursery, a)
            a.set_peer("b", "127.0.0.1:1")  # nothing listens there
            for i in range(160):
                a.send(_app("a", "b", i))
            # send() is synchronous, so it cannot wait for room: with no task
            # run since, the queue holds 16 (one more if the sender was parked
            # on it) and the rest are already dropped.
            assert not inspect.iscoroutinefunction(Transport.send)
            assert a.stats()["b"]["dropped"] >= 160 - 16 - 1
            await _wait_for(lambda: bool(unreachable))
            nursery.cancel_scope.cancel()
    stats = a.stats()["b"]
    assert stats["dropped"] >= 160 - 16 and stats["sent"] == 0


@pytest.mark.e2e
async def test_unknown_peer_and_oversized_message_are_dropped_and_counted(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="raft.transport")
    a, b = _transport(pki, "a", max_frame=4096), _transport(pki, "b", max_frame=4096)
    big = Message(MessageType.APP, "a", "b", 3, entries=(Entry(1, 3, data=b"x" * 8192),))
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            _, addr_b = await _start(nursery, b)
            await _start(nursery, a)
            a.send(_app("a", "zed", 1))
            a.send(_app("a", "zed", 2))
            a.set_peer("b", addr_b)
            a.send(big)
            a.send(_app("a", "b", 5))
            assert await b.incoming.receive() == _app("a", "b", 5)
            nursery.cancel_scope.cancel()
    assert a.stats()["zed"]["dropped"] == 2 and a.stats()["b"]["dropped"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("event=peer_unknown peer_id=zed" in m for m in messages) == 1
    assert any("event=message_dropped" in m and "frame_too_large" in m for m in messages)


# -- direct sends ------------------------------------------------------------


@pytest.mark.e2e
async def test_direct_sends_keep_order_when_a_large_frame_does_not_fit_at_once(pki: Pki) -> None:
    """A frame the socket cannot take whole is finished by the writer task
    before anything sent after it."""
    a, b = _transport(pki, "a"), _transport(pki, "b")
    big = Message(
        MessageType.APP, "a", "b", term=3, index=1, entries=(Entry(2, 3, data=b"z" * (3 << 20)),)
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            _, addr_b = await _start(nursery, b)
            await _start(nursery, a)
            a.set_peer("b", addr_b)
            a.send(_app("a", "b", 0))
            assert await b.incoming.receive() == _app("a", "b", 0)
            await _wait_for(lambda: a._peers["b"].direct is not None)
            a.send(big)
            for i in range(2, 6):
                a.send(_app("a", "b", i))
            got = [await b.incoming.receive() for _ in range(5)]
            assert got == [big] + [_app("a", "b", i) for i in range(2, 6)]
            assert a.stats()["b"]["dropped"] == 0
            nursery.cancel_scope.cancel()
