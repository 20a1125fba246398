"""Writes a follower forwards to the leader, in batches (``Registry.ApplyBatch``).

A follower used to forward every write as its own ``Registry.Apply`` call,
which cost the leader about twice a direct write. ``WriteBatcher`` sends a
write at once when no batch is in flight (one write alone waits for nothing)
and gathers the writes that arrive while one is, for the next call: the
pipelining etcd's followers do. The leader proposes a batch's commands to
Raft in one step (``RaftNode.apply_batch``: one log append, one fsync round)
and answers each command on its own: a failed command fails only itself.

The forwarding server has enforced each write's ACL rule with its caller's
token, exactly as for a forwarded ``Registry.Apply``; the method is server
to server only (``rpc_rules``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

MAX_BATCH = 256  # commands per call (a KV value is at most 512 KiB; frames 8 MiB)
MAX_BATCH_BYTES = 4 << 20

Send = Callable[[str, Sequence[bytes]], Awaitable[Sequence[Any]]]


class _Slot:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class WriteBatcher:
    """``submit(leader address, command)`` returns that command's own answer
    from ``send(address, commands)`` (one answer per command, in order), or
    raises the exception the whole call failed with. At most ``max_inflight``
    calls are in flight; writes gather meanwhile. Start ``run`` in a nursery."""

    def __init__(self, send: Send, *, max_inflight: int = 1, max_batch: int = MAX_BATCH) -> None:
        self._send = send
        self._max_batch = max_batch
        self._slots = trio.Semaphore(max_inflight)
        self._queue: list[tuple[str, bytes, _Slot]] = []
        self._wake = trio.Event()
        self.batches = 0

    async def submit(self, addr: str, data: bytes) -> Any:
        slot = _Slot()
        self._queue.append((addr, data, slot))
        self._wake.set()
        await slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _take(self) -> tuple[str, list[tuple[str, bytes, _Slot]]]:
        """The longest head of the queue bound for one address, within limits."""
        addr, size, n = self._queue[0][0], 0, 0
        for item_addr, data, _ in self._queue:
            if item_addr != addr or n >= self._max_batch:
                break
            if n and size + len(data) > MAX_BATCH_BYTES:
                break
            size += len(data)
            n += 1
        batch, self._queue = self._queue[:n], self._queue[n:]
        return addr, batch

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                await self._slots.acquire()
                while not self._queue:
                    self._wake = trio.Event()
                    await self._wake.wait()
                addr, batch = self._take()
                self.batches += 1
                nursery.start_soon(self._deliver, addr, batch)

    async def _deliver(self, addr: str, batch: list[tuple[str, bytes, _Slot]]) -> None:
        try:
            answers = await self._send(addr, [data for _, data, _ in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers for {len(batch)} forwarded writes")
        except Exception as exc:  # every write of this batch gets it
            for _, _, slot in batch:
                slot.error = exc
                slot.done.set()
        else:
            for (_, _, slot), answer in zip(batch, answers, strict=True):
                slot.result = answer
                slot.done.set()
        finally:
            self._slots.release()
