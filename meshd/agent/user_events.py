"""User events (Consul's /v1/event/fire and /v1/event/list) as this agent
sees them: fired events are kept in the local ring and handed to every server
(best effort: a server that does not answer misses it, as a partitioned Consul
agent misses gossip); a listing merges the local ring with the servers' and
keeps the events this agent accepts (node, service and tag filters), blocking
on Consul's index (uuidToUint64 of the last ID).

The agent owns one ``UserEvents``; it reads the ring, the RPC client and
whether this agent is a server (settled only once the agent runs) through the
``UserEventsHost`` protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import trio

from ..errors import MeshdError, RequestError
from ..rpc import RPCClient, RPCError, RPCUnavailable
from ..values.events import EventRing, UserEvent, merge, uuid_to_index
from .server import MeshServer

log = logging.getLogger("meshd.agent")


class UserEventsHost(Protocol):
    """What user events read of the agent."""

    @property
    def events(self) -> EventRing: ...
    @property
    def rpc(self) -> RPCClient | None: ...
    @property
    def server(self) -> MeshServer | None: ...

    def accepts_event(self, event: UserEvent) -> bool: ...

    def event_targets(self) -> list[str]: ...

    async def server_call(
        self, method: str, args: Mapping[str, Any], *, timeout: float = 60.0
    ) -> Any: ...


class UserEvents:
    def __init__(self, agent: UserEventsHost) -> None:
        self._agent = agent

    async def fire(self, event: UserEvent) -> UserEvent:
        """Keep ``event`` here and hand it to every server; returns the stored event."""
        stored = self._agent.events.add(event)
        rpc = self._agent.rpc
        assert rpc is not None

        async def send(addr: str) -> None:
            try:
                await rpc.call(addr, "Event.Fire", {"event": stored.to_wire()}, timeout=5)
            except (RPCError, trio.TooSlowError) as exc:
                log.warning("event=user_event_not_delivered server=%s reason=%s", addr, exc)

        async with trio.open_nursery() as nursery:
            for addr in self._agent.event_targets():
                nursery.start_soon(send, addr)
        return stored

    async def _server_events(self, index: int, wait: float) -> tuple[list[UserEvent], int] | None:
        """The servers' event ring (blocking while its index is ``index``), or
        None when no server answered (after a pause, so callers do not spin)."""
        try:
            args: Mapping[str, Any] = {"index": index, "wait": wait}
            r = await self._agent.server_call("Event.List", args, timeout=wait + 30)
            return [UserEvent.from_wire(e) for e in r["events"]], int(r["index"])
        except (MeshdError, RPCUnavailable, trio.TooSlowError, RequestError, ValueError) as exc:
            log.debug("event=user_event_list_failed reason=%s", exc)
            await trio.sleep(min(wait, 1.0))
            return None

    async def listing(
        self, name: str = "", *, index: int = 0, wait: float = 300.0
    ) -> tuple[list[UserEvent], int]:
        """Events this agent accepts (its own ring merged with the servers'),
        optionally only those called ``name``, and their index. With ``index``
        blocks up to ``wait`` seconds until the index differs."""
        deadline = trio.current_time() + wait
        remote: list[UserEvent] = []
        remote_index = 0
        if self._agent.server is None:
            remote, remote_index = await self._server_events(0, 0.0) or ([], 0)
        while True:
            events = [
                e
                for e in merge(remote, self._agent.events.events())
                if (not name or e.name == name) and self._agent.accepts_event(e)
            ]
            idx = uuid_to_index(events[-1].id) if events else 0
            remaining = deadline - trio.current_time()
            if not index or idx != index or remaining <= 0:
                return events, idx
            answer = await self._wait_events(remote_index, remaining)
            if answer is not None:
                remote, remote_index = answer

    async def _wait_events(
        self, remote_index: int, timeout: float
    ) -> tuple[list[UserEvent], int] | None:
        """Wait until this agent's ring or (on a client) the servers' ring
        changes, or ``timeout``; returns the servers' ring when it came."""
        answer: tuple[list[UserEvent], int] | None = None
        async with trio.open_nursery() as nursery:

            async def local_change() -> None:
                await self._agent.events.wait_changed(timeout)
                nursery.cancel_scope.cancel()

            async def remote_change() -> None:
                nonlocal answer
                answer = await self._server_events(remote_index, timeout)
                nursery.cancel_scope.cancel()

            nursery.start_soon(local_change)
            if self._agent.server is None:
                nursery.start_soon(remote_change)
        return answer
