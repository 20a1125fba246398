"""The RPC server's unfinished-frame deadline when the start of the frame was
already read with an earlier frame (in process, fake time).

A read can bring more than one frame: the hello or a request and, behind it,
the first bytes of the next frame. Those bytes sit in ``FramedStream``'s
buffer before the next ``receive`` starts, so no later read sees "the first
bytes of a frame"; the deadline must still start (the readrt regression: a
client whose half frame came in with its hello held it for ever)."""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from typing import Any

import pytest
import trio
import trio.testing

from meshd.rpc import VERSION, RPCServer
from raft.transport import FramedStream, PeerInfo, encode_frame

PEER = PeerInfo(address="127.0.0.1:40000", dns_names=(), peer_id="c1", hello={})
HALF_FRAME = struct.pack(">I", 8 << 20) + b"\x80" * 4096  # 4 KiB of an 8 MiB frame


def _server(timeout: float) -> RPCServer:
    rpc = RPCServer(frame_timeout=timeout)

    async def ping(args: Mapping[str, Any], peer: PeerInfo) -> Any:
        return "pong"

    rpc.register("Status.Ping", ping)
    return rpc


@pytest.mark.parametrize("first", ["hello", "request"])
async def test_a_half_frame_read_with_the_frame_before_it_is_closed_after_the_timeout(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture, first: str
) -> None:
    caplog.set_level(logging.WARNING, logger="meshd.rpc")
    client_end, server_end = trio.testing.memory_stream_pair()
    client, server = FramedStream(client_end), FramedStream(server_end)
    hello = {"v": VERSION, "kind": "rpc", "id": "c1"}
    ping = {"v": VERSION, "id": 7, "m": "Status.Ping", "a": {}}
    head = [encode_frame(hello)] + ([encode_frame(ping)] if first == "request" else [])
    await client_end.send_all(b"".join(head) + HALF_FRAME)  # one write: one read
    assert await server.receive() == hello  # the transport reads the hello
    rpc = _server(timeout=1.0)
    started = trio.current_time()
    with trio.fail_after(30):
        await rpc.handle(server, PEER)  # returns once it closes the connection
    assert trio.current_time() - started == pytest.approx(1.0)
    assert any("reason=frame_timeout" in r.getMessage() for r in caplog.records)
    if first == "request":  # the whole frame before the half one was served
        answer = await client.receive()
        assert answer["id"] == 7 and answer["r"] == "pong", answer


async def test_a_buffered_whole_frame_is_served_without_waiting_for_the_deadline(
    autojump_clock: Any,
) -> None:
    """Two whole requests in one read: both answered, and the connection
    stays open between frames (no deadline runs while nothing is unfinished)."""
    client_end, server_end = trio.testing.memory_stream_pair()
    client, server = FramedStream(client_end), FramedStream(server_end)
    pings = [{"v": VERSION, "id": i, "m": "Status.Ping", "a": {}} for i in (1, 2)]
    await client_end.send_all(b"".join(encode_frame(p) for p in pings))
    rpc = _server(timeout=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rpc.handle, server, PEER)
        answers = {(await client.receive())["id"] for _ in pings}
        assert answers == {1, 2}
        await trio.sleep(10)  # idle between frames: far past the frame timeout
        await client.send({"v": VERSION, "id": 3, "m": "Status.Ping", "a": {}})
        assert (await client.receive())["r"] == "pong"
        nursery.cancel_scope.cancel()
