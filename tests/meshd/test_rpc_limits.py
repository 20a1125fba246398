"""The server RPC port's connection cap and unfinished-frame deadline, over
the real port of a real agent (``limits.rpc_max_conns_per_client``,
``limits.rpc_frame_timeout``)."""

from __future__ import annotations

import contextlib
import logging
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import trio

from meshd.agent_tls import create_ca
from meshd.rpc import RPC_KIND, VERSION, RPCServer
from raft.errors import TransportError
from raft.tls import client_context, server_context
from raft.tlsstream import open_tls_stream
from raft.transport import FramedStream, PeerInfo, Transport
from tests.meshd.test_rpc import certs
from tests.meshd.test_rpc_acl import world

pytestmark = pytest.mark.e2e


async def _connect(tmp: Path, address: str) -> FramedStream:
    host, _, port = address.rpartition(":")
    files = (str(tmp / "ca.pem"), str(tmp / "client.pem"), str(tmp / "client-key.pem"))
    stream = await open_tls_stream(
        host, int(port), client_context(*files), server_hostname="server.dc1.consul"
    )
    framed = FramedStream(stream)
    await framed.send({"v": VERSION, "kind": RPC_KIND, "id": "probe"})
    return framed


async def _pings(framed: FramedStream) -> bool:
    """Whether the server answers a Status.Ping on ``framed`` (False: closed)."""
    try:
        with trio.fail_after(10):
            await framed.send({"v": VERSION, "id": 1, "m": "Status.Ping", "a": {}})
            return (await framed.receive()).get("ok") is True
    except TransportError:
        return False


async def test_connections_over_the_per_client_cap_are_closed_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cap = 4
    async with world(tmp_path, {"rpc_max_conns_per_client": cap}) as w:
        caplog.set_level(logging.WARNING, logger="meshd.rpc")
        conns = [await _connect(tmp_path, w.address) for _ in range(cap + 4)]
        answered = [await _pings(c) for c in conns]
        # The agent's own connection to its server counts too (same IP).
        assert 1 <= answered.count(True) <= cap and answered.count(False) >= 4, answered
        assert answered == sorted(answered, reverse=True)  # the first ones kept theirs
        lines = [r.getMessage() for r in caplog.records if "rpc_conn_closed" in r.getMessage()]
        assert len(lines) == 1 and "reason=max_conns_per_client" in lines[0], lines
        for c in conns:
            await c.aclose()
        with trio.fail_after(10):  # closed connections give their slots back
            while not await _pings(fresh := await _connect(tmp_path, w.address)):
                await trio.sleep(0.1)
        await fresh.aclose()


async def test_connections_over_the_total_cap_are_closed_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``limits.rpc_max_conns``: the port holds at most that many connections
    in all, whatever their client IPs (issue 13 item 10: no cap at all)."""
    cap = 4
    async with world(tmp_path, {"rpc_max_conns": cap, "rpc_max_conns_per_client": 0}) as w:
        caplog.set_level(logging.WARNING, logger="meshd.rpc")
        conns = [await _connect(tmp_path, w.address) for _ in range(cap + 6)]
        answered = [await _pings(c) for c in conns]
        assert 1 <= answered.count(True) <= cap and answered.count(False) >= 6, answered
        lines = [r.getMessage() for r in caplog.records if "rpc_conn_closed" in r.getMessage()]
        assert len(lines) == 1 and "reason=max_conns " in lines[0] + " ", lines
        for c in conns:
            await c.aclose()
        with trio.fail_after(10):  # closed connections give their slots back
            while not await _pings(fresh := await _connect(tmp_path, w.address)):
                await trio.sleep(0.1)
        await fresh.aclose()


def test_the_defaults_cap_http_and_rpc_connections_and_unfinished_frames() -> None:
    """Issue 13 item 10: out of the box (no ``limits`` configured) the HTTP
    API and the RPC port have a total connection cap, and an unfinished RPC
    frame a deadline."""
    from meshd.config.model import LimitsConfig

    limits = LimitsConfig()
    assert 0 < limits.http_max_conns <= 65536
    assert 0 < limits.rpc_max_conns <= 65536
    assert 0 < limits.rpc_max_conns_per_client <= limits.rpc_max_conns
    assert 0 < limits.rpc_frame_timeout <= 60


async def test_an_unfinished_frame_is_closed_after_the_frame_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with world(tmp_path, {"rpc_frame_timeout": "1s"}) as w:
        caplog.set_level(logging.WARNING, logger="meshd.rpc")
        idle = await _connect(tmp_path, w.address)
        stalled = await _connect(tmp_path, w.address)
        # An 8 MiB frame that never completes: 4 KiB of it, then nothing.
        await stalled.stream.send_all(struct.pack(">I", 8 << 20) + b"\x80" * 4096)
        started = trio.current_time()
        with trio.fail_after(15):
            with pytest.raises(TransportError):
                await stalled.receive()
        waited = trio.current_time() - started
        assert 0.9 <= waited < 10, waited
        assert any("reason=frame_timeout" in r.getMessage() for r in caplog.records)
        # Waiting between frames is not an unfinished frame: still served.
        assert await _pings(idle)
        await idle.aclose()
        await stalled.aclose()


async def test_unfinished_frames_past_the_byte_budget_close_their_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Half-sent large frames together hold at most ``max_pending_bytes``;
    the connection whose frame goes over is closed, the others are served."""
    caplog.set_level(logging.WARNING, logger="meshd.rpc")
    ca = create_ca()
    files = certs(tmp_path, "server", "srv", ca)
    certs(tmp_path, "client", "client", ca)
    transport = Transport("srv", ("127.0.0.1", 0), server_context(*files), client_context(*files))
    rpc = RPCServer(max_pending_bytes=1 << 20, frame_timeout=60)

    async def ping(args: Mapping[str, Any], peer: PeerInfo) -> Any:
        return "pong"

    rpc.register("Status.Ping", ping)
    transport.register_handler(RPC_KIND, rpc.handle)
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(transport.serve)
        address = f"{host}:{port}"
        small = await _connect(tmp_path, address)
        first, second = await _connect(tmp_path, address), await _connect(tmp_path, address)
        part = struct.pack(">I", 8 << 20) + b"\x80" * (600 << 10)
        await first.stream.send_all(part)
        await trio.sleep(0.5)  # the server holds first's 600 KiB
        with contextlib.suppress(trio.BrokenResourceError):  # closed while sending
            await second.stream.send_all(part)  # 1.2 MiB in all: over
        with trio.fail_after(10), pytest.raises(TransportError):
            await second.receive()
        assert any("reason=pending_bytes" in r.getMessage() for r in caplog.records)
        assert await _pings(small)  # small frames are still served
        for c in (small, first, second):
            await c.aclose()
        nursery.cancel_scope.cancel()
