"""The server RPC port's connection cap and unfinished-frame deadline, over
the real port of a real agent (``limits.rpc_max_conns_per_client``,
``limits.rpc_frame_timeout``)."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest
import trio

from meshd.rpc import RPC_KIND, VERSION
from raft.errors import TransportError
from raft.tls import client_context
from raft.tlsstream import open_tls_stream
from raft.transport import FramedStream
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
