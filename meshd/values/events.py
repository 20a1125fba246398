"""User events (``/v1/event``): the event value, the bounded ring each agent
and server keeps, and the filters that decide whether an agent accepts one.

Consul spreads user events by gossip and every agent keeps the last 256 it
accepted. meshd has no gossip: the agent that fires an event keeps it and
sends it to every server; ``/v1/event/list`` on any agent shows the servers'
ring merged with its own, filtered by the event's node/service/tag filters
as Consul's ``shouldProcessUserEvent`` does.
"""

from __future__ import annotations

import base64
import math
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import re2
import trio

__all__ = ["RING_SIZE", "EventRing", "UserEvent", "accepts", "compile_filter", "uuid_to_index"]

RING_SIZE = 256
MAX_PAYLOAD = 100 * 1024
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # reported to the caller, not printed


@dataclass(frozen=True)
class UserEvent:
    id: str
    name: str
    payload: bytes = b""
    node_filter: str = ""
    service_filter: str = ""
    tag_filter: str = ""
    version: int = 1
    ltime: int = 0

    @classmethod
    def new(cls, name: str, payload: bytes, node: str, service: str, tag: str) -> UserEvent:
        return cls(str(uuid.uuid4()), name, payload, node, service, tag)

    def to_json(self) -> dict[str, Any]:
        """Consul's ``UserEvent`` JSON; ``Payload`` is base64 or null."""
        return {
            "ID": self.id,
            "Name": self.name,
            "Payload": base64.b64encode(self.payload).decode() if self.payload else None,
            "NodeFilter": self.node_filter,
            "ServiceFilter": self.service_filter,
            "TagFilter": self.tag_filter,
            "Version": self.version,
            "LTime": self.ltime,
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "n": self.name,
            "p": self.payload,
            "nf": self.node_filter,
            "sf": self.service_filter,
            "tf": self.tag_filter,
            "lt": self.ltime,
        }

    @classmethod
    def from_wire(cls, o: Mapping[str, Any]) -> UserEvent:
        """Raises ``ValueError`` for a malformed event."""
        try:
            payload = o.get("p") or b""
            if not isinstance(payload, bytes) or len(payload) > MAX_PAYLOAD:
                raise ValueError("payload")
            return cls(
                str(uuid.UUID(str(o["id"]))),
                str(o["n"]),
                payload,
                str(o.get("nf", "")),
                str(o.get("sf", "")),
                str(o.get("tf", "")),
                1,
                int(o.get("lt", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed event: {exc}") from None


def uuid_to_index(event_id: str) -> int:
    """Consul's ``uuidToUint64``: the pseudo X-Consul-Index of an event list
    (the API client's ``IDToIndex`` computes the same)."""
    hexdigits = event_id.replace("-", "")
    if len(hexdigits) != 32:
        return 0
    low = int(hexdigits[0:16], 16)
    high = int(hexdigits[16:32], 16)
    return low ^ high


def compile_filter(expr: str) -> Any:
    """An RE2 regex as Go's ``regexp.MatchString`` uses it (unanchored).
    Raises ``ValueError`` with RE2's reason for a bad expression."""
    try:
        return re2.compile(expr, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        raise ValueError(str(reason)) from None


def accepts(event: UserEvent, node: str, services: Iterable[tuple[str, Iterable[str]]]) -> bool:
    """Whether an agent named ``node`` with ``services`` (name, tags) accepts
    ``event`` (Consul's ``shouldProcessUserEvent``). A filter that does not
    compile matches nothing."""
    try:
        if event.node_filter and not compile_filter(event.node_filter).search(node):
            return False
        if not event.service_filter:
            return True
        service_re = compile_filter(event.service_filter)
        tag_re = compile_filter(event.tag_filter) if event.tag_filter else None
    except ValueError:
        return False
    for name, tags in services:
        if not service_re.search(name):
            continue
        if tag_re is None or any(tag_re.search(t) for t in tags):
            return True
    return False


class EventRing:
    """The last ``size`` events by arrival, deduplicated by ID, with a
    Lamport clock and a wake-up for blocking lists."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self.size = size
        self._events: OrderedDict[str, UserEvent] = OrderedDict()
        self._clock = 0
        self._changed = trio.Event()

    def next_ltime(self) -> int:
        self._clock += 1
        return self._clock

    def add(self, event: UserEvent) -> UserEvent:
        """Keep ``event`` (once); returns the stored event, its ``LTime``
        assigned from the clock when it has none."""
        known = self._events.get(event.id)
        if known is not None:
            return known
        if event.ltime:
            self._clock = max(self._clock, event.ltime)
        else:
            event = UserEvent(**{**event.__dict__, "ltime": self.next_ltime()})
        self._events[event.id] = event
        while len(self._events) > self.size:
            self._events.popitem(last=False)
        self._changed.set()
        self._changed = trio.Event()
        return event

    def events(self) -> list[UserEvent]:
        return list(self._events.values())

    def index(self) -> int:
        if not self._events:
            return 0
        return uuid_to_index(next(reversed(self._events)))

    async def wait_changed(self, timeout: float = math.inf) -> None:
        """Return after the next ``add`` of a new event, or ``timeout``."""
        with trio.move_on_after(timeout):
            await self._changed.wait()


def merge(*lists: Iterable[UserEvent]) -> list[UserEvent]:
    """Events of every list, first arrival order kept, each ID once."""
    out: OrderedDict[str, UserEvent] = OrderedDict()
    for events in lists:
        for ev in events:
            out.setdefault(ev.id, ev)
    return list(out.values())
