"""Writes a follower forwards to the leader, in batches (``Registry.ApplyBatch``).

A follower used to forward every write as its own ``Registry.Apply`` call,
which cost the leader about twice a direct write. ``WriteBatcher`` sends a
write at once when no batch is in flight (one write alone waits for nothing)
and gathers the writes that arrive while one is, for the next call: the
pipelining etcd's followers do. The leader proposes a batch's commands as
one Raft entry (``registry.commands.ForwardedBatch``: one append, one
replication, one apply) and answers each command on its own: a failed
command fails only itself. The leader gathers its own KV writes the same way
(``MeshServer.local_batcher``; ``send`` then proposes the batch itself).

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

Send = Callable[[str, Sequence[Any]], Awaitable[Sequence[Any]]]


class _Slot:
    """One write waiting in the queue: its leader, command and answer."""

    __slots__ = ("addr", "data", "done", "error", "result")

    def __init__(self, addr: str, data: Any) -> None:
        self.addr = addr
        self.data = data
        self.done = trio.Event()  # the writer's wake: the only per-write object besides this
        self.result: Any = None
        self.error: BaseException | None = None


class WriteBatcher:
    """``submit(leader address, command)`` returns that command's own answer
    from ``send(address, commands)`` (one answer per command, in order), or
    raises the exception the whole call failed with. At most ``max_inflight``
    calls are in flight; writes gather meanwhile. Start ``run`` in a nursery.

    ``run`` keeps ``max_inflight`` sender tasks (no task spawned per batch);
    a write wakes one idle sender, and none while all are busy: a busy
    sender takes what gathered when its call returns."""

    def __init__(
        self,
        send: Send,
        *,
        max_inflight: int = 1,
        max_batch: int = MAX_BATCH,
        size: Callable[[Any], int] = len,
    ) -> None:
        self._send = send
        self._size = size  # of one write, for MAX_BATCH_BYTES
        self._max_batch = max_batch
        self._inflight = max_inflight
        self._queue: list[_Slot] = []
        self._idle: list[trio.Event] = []  # one per sender waiting for a write
        self._waking = False  # a sender is woken and has not taken the queue yet
        self.batches = 0

    async def submit(self, addr: str, data: Any) -> Any:
        slot = _Slot(addr, data)
        self._queue.append(slot)
        if self._idle and not self._waking:
            self._waking = True
            self._idle.pop().set()
        await slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _take(self) -> tuple[str, list[_Slot]]:
        """The longest head of the queue bound for one address, within limits."""
        queue, measure = self._queue, self._size
        addr, size, n = queue[0].addr, 0, 0
        for slot in queue:
            if slot.addr != addr or n >= self._max_batch:
                break
            one = measure(slot.data)
            if n and size + one > MAX_BATCH_BYTES:
                break
            size += one
            n += 1
        if n == len(queue):
            self._queue = []
            return addr, queue
        self._queue = queue[n:]
        return addr, queue[:n]

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self._inflight):
                nursery.start_soon(self._sender)

    async def _sender(self) -> None:
        while True:
            if not self._queue:
                idle = trio.Event()
                self._idle.append(idle)
                await idle.wait()
                self._waking = False
                continue  # another sender may have taken the write meanwhile
            addr, batch = self._take()
            self.batches += 1
            await self._deliver(addr, batch)

    async def _deliver(self, addr: str, batch: list[_Slot]) -> None:
        try:
            answers = await self._send(addr, [slot.data for slot in batch])
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers for {len(batch)} forwarded writes")
        except Exception as exc:  # every write of this batch gets it
            for slot in batch:
                slot.error = exc
                slot.done.set()
        else:
            for slot, answer in zip(batch, answers, strict=True):
                slot.result = answer
                slot.done.set()
