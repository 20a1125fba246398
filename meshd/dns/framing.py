"""DNS over TCP framing: each message is preceded by its length (RFC 1035 4.2.2)."""

from __future__ import annotations

import trio

__all__ = ["frame", "receive_exactly", "receive_message"]


def frame(wire: bytes) -> bytes:
    """``wire`` with its 2-byte big-endian length in front."""
    return len(wire).to_bytes(2, "big") + wire


async def receive_exactly(stream: trio.abc.ReceiveStream, size: int) -> bytes | None:
    """Exactly ``size`` bytes from ``stream``; None if it ends first.

    Raises what the stream raises (``trio.BrokenResourceError``...);
    cancellation leaves the stream mid-message, so close it after.
    """
    chunks = bytearray()
    while len(chunks) < size:
        data = await stream.receive_some(size - len(chunks))
        if not data:
            return None
        chunks += data
    return bytes(chunks)


async def receive_message(stream: trio.abc.ReceiveStream) -> bytes | None:
    """One length-prefixed message; None on a clean end of stream before or inside it."""
    header = await receive_exactly(stream, 2)
    if header is None:
        return None
    return await receive_exactly(stream, int.from_bytes(header, "big"))
