"""The fleet bench's RPC client: the agent's own ``RPCClient`` (one mTLS
connection per simulated agent, from its own loopback address), with two
changes that only concern the load process, not what the servers see:

- Dials queue behind one shared gate. On a real fleet each agent dials from
  its own host's CPU; here 2,000 handshakes at once share one core, every
  one of them outlives its connect timeout, and the retries keep the
  process saturated for good (the 2,000-agent run never joined). The
  servers still see every agent's own connection and handshake.
- The answer to a blocking read that the simulated agent only needs the
  index of (the sidecar's watches, anti-entropy's watch of its own node) is
  decoded without building its value: the server encodes and sends all of
  it, but a real agent decodes it on its own CPU, and 4,000 watch answers
  of 20 instances each were a third of the load process's time while
  joining.
"""

from __future__ import annotations

import contextvars
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import msgpack
import trio

from meshd.rpc import RPCClient
from raft.errors import TransportError
from raft.transport import FramedStream

_HEADER = struct.Struct(">I")
_index_only: contextvars.ContextVar[bool] = contextvars.ContextVar("index_only", default=False)


class _Ids:
    """Request ids, noting those of index-only reads (``_index_only`` set
    in the calling task)."""

    def __init__(self, skip: set[int]) -> None:
        self._n = 0
        self._skip = skip

    def __iter__(self) -> Iterator[int]:
        return self

    def __next__(self) -> int:
        self._n += 1
        if _index_only.get():
            self._skip.add(self._n)
        return self._n


def _decode(payload: bytes, skip: set[int]) -> Any:
    """The frame's map; for an id in ``skip``, the read's value (``r.r``) is
    skipped (``None``)."""
    u = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(payload) + 1)
    u.feed(payload)
    obj: dict[str, Any] = {}
    for _ in range(u.read_map_header()):
        key = u.unpack()
        if key == "r" and obj.get("id") in skip and obj.get("ok"):
            skip.discard(obj["id"])
            inner: dict[str, Any] = {}
            for _ in range(u.read_map_header()):
                k = u.unpack()
                if k == "r":
                    u.skip()
                    inner[k] = None
                else:
                    inner[k] = u.unpack()
            obj[key] = inner
        else:
            obj[key] = u.unpack()
    return obj


class _LeanFrames(FramedStream):
    def __init__(self, inner: FramedStream, skip: set[int]) -> None:
        super().__init__(inner.stream, max_frame=inner.max_frame)
        self._skip = skip

    async def _next(self) -> dict[str, Any] | None:
        if not await self._fill(_HEADER.size):
            if self._pos != len(self._buf):
                raise self._fail("eof_mid_frame")
            return None
        (size,) = _HEADER.unpack_from(self._buf, self._pos)
        if size > self.max_frame:
            raise self._fail(f"frame_too_large: {size}")
        if not await self._fill(_HEADER.size + size):
            raise self._fail("eof_mid_frame")
        start = self._pos + _HEADER.size
        payload = bytes(self._buf[start : start + size])
        self._pos = start + size
        try:
            obj = _decode(payload, self._skip)
        except Exception as exc:
            raise TransportError(f"bad_frame: {exc}") from exc
        if not isinstance(obj, dict):
            raise self._fail("bad_frame: not a map")
        return obj


class FleetRPCClient(RPCClient):
    """See the module's docstring."""

    def __init__(self, *args: Any, gate: trio.CapacityLimiter, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._gate = gate
        self._skip: set[int] = set()
        self._ids = _Ids(self._skip)  # type: ignore[assignment]

    async def _dial(self, address: str) -> FramedStream:
        async with self._gate:
            framed = await super()._dial(address)
        return _LeanFrames(framed, self._skip)

    def connection(self, address: str) -> Any:
        """The open connection to ``address``, if there is one."""
        conn = self._conns.get(address)
        return conn if conn is not None and conn.broken is None else None

    def next_id(self) -> int:
        return next(self._ids)

    def drop(self, address: str, conn: Any, reason: str) -> None:
        """Break ``conn``: its pending calls fail, the next call reconnects."""
        self._break(address, conn, reason)

    async def call(self, address: str, method: str, args: Mapping[str, Any], **kw: Any) -> Any:
        opts = args.get("opts") if method == "Registry.Read" else None
        index_only = isinstance(opts, Mapping) and bool(opts.get("i"))
        token = _index_only.set(index_only)
        try:
            return await super().call(address, method, args, **kw)
        finally:
            _index_only.reset(token)
