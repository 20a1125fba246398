"""Blocking-query loops that keep the proxy's view of the agent current.

One loop per resource (services, roots, a leaf, an upstream's healthy
instances, a destination's intentions), shared between every sidecar that
needs it through ``WatchHub`` (reference counted: the loop stops when the
last user releases it). Each loop publishes parsed values into a
``Watched`` cell that users wait on. Errors back off exponentially (100 ms
doubling to 30 s, with jitter) and never clear the last good value, so a
restarting agent does not take listeners or certificates away.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import trio

from .agent_client import AgentClient, path_segment
from .errors import AgentError, ProxyConfigError

T = TypeVar("T")
log = logging.getLogger("meshd.proxy")

BACKOFF_MIN = 0.1
BACKOFF_MAX = 30.0


class Watched(Generic[T]):
    """The latest value of a watched resource and a way to wait for the next."""

    def __init__(self) -> None:
        self.value: T | None = None
        self.version = 0
        self._changed = trio.Event()

    def set(self, value: T) -> None:
        """Publish ``value`` and wake everyone waiting."""
        self.value = value
        self.version += 1
        self._changed.set()
        self._changed = trio.Event()

    async def wait_newer(self, version: int) -> tuple[T, int]:
        """Wait for a value newer than ``version``; returns ``(value, version)``."""
        while self.version <= version or self.value is None:
            await self._changed.wait()
        return self.value, self.version


@dataclass(frozen=True, slots=True)
class Resource:
    """What a loop watches: a path, query, how to block, how to parse."""

    kind: str
    name: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    by_hash: bool = False


def services_resource() -> Resource:
    return Resource("services", "", "/v1/agent/services", by_hash=True)


def roots_resource() -> Resource:
    return Resource("roots", "", "/v1/agent/connect/ca/roots")


def leaf_resource(service: str) -> Resource:
    return Resource("leaf", service, f"/v1/agent/connect/ca/leaf/{path_segment(service)}")


def health_resource(service: str) -> Resource:
    return Resource(
        "health", service, f"/v1/health/connect/{path_segment(service)}", (("passing", "1"),)
    )


def intentions_resource(service: str) -> Resource:
    return Resource(
        "intentions",
        service,
        "/v1/connect/intentions/match",
        (("by", "destination"), ("name", service)),
    )


class Backoff:
    """Exponential backoff with full jitter; ``rng`` is injectable for tests."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()
        self._failures = 0

    def reset(self) -> None:
        self._failures = 0

    def next_delay(self) -> float:
        ceiling = min(BACKOFF_MAX, BACKOFF_MIN * (2**self._failures))
        self._failures = min(self._failures + 1, 20)
        return float(ceiling / 2 + self._rng.uniform(0, ceiling / 2))


async def watch_loop(
    client: AgentClient,
    res: Resource,
    parse: Callable[[Any], T],
    cell: Watched[T],
    *,
    wait: float = 30.0,
    on_error: Callable[[Resource, Exception], None] | None = None,
) -> None:
    """Run blocking queries for ``res`` forever, publishing changes to ``cell``.

    Never returns; cancel it to stop. Agent and parse errors back off and
    are reported to ``on_error`` (logged when None).
    """
    index = 0
    content_hash = ""
    backoff = Backoff()
    while True:
        try:
            body, resp = await client.blocking_get(
                res.path, query=dict(res.query), index=index, content_hash=content_hash, wait=wait
            )
            value = parse(body)
        except (AgentError, ProxyConfigError) as exc:
            if on_error is not None:
                on_error(res, exc)
            else:
                log.warning(
                    "event=watch_error resource=%s name=%s reason=%r", res.kind, res.name, str(exc)
                )
            await trio.sleep(backoff.next_delay())
            continue
        backoff.reset()
        if res.by_hash:
            new_hash = resp.headers.get("x-consul-contenthash", "")
            if new_hash and new_hash == content_hash and cell.value is not None:
                continue
            content_hash = new_hash
        else:
            new_index = resp.index
            if new_index == index and cell.value is not None:
                continue
            # An index going backwards (agent restart, snapshot) restarts the watch.
            index = new_index if new_index >= index else 0
        cell.set(value)
        if not res.by_hash and index == 0:
            # Without an index there is nothing to block on: poll.
            await trio.sleep(1.0)


class WatchHub:
    """Shared, reference-counted watch loops running in one nursery."""

    def __init__(self, client: AgentClient, nursery: trio.Nursery, *, wait: float = 30.0) -> None:
        self.client = client
        self.wait = wait
        self._nursery = nursery
        self._cells: dict[Resource, Watched[Any]] = {}
        self._scopes: dict[Resource, trio.CancelScope] = {}
        self._refs: dict[Resource, int] = {}

    def acquire(self, res: Resource, parse: Callable[[Any], T]) -> Watched[T]:
        """The cell of ``res``, starting its loop on first use."""
        self._refs[res] = self._refs.get(res, 0) + 1
        cell = self._cells.get(res)
        if cell is None:
            cell = Watched()
            scope = trio.CancelScope()
            self._cells[res] = cell
            self._scopes[res] = scope
            self._nursery.start_soon(self._run, res, parse, cell, scope)
        return cell

    async def _run(
        self, res: Resource, parse: Callable[[Any], T], cell: Watched[T], scope: trio.CancelScope
    ) -> None:
        with scope:
            await watch_loop(self.client, res, parse, cell, wait=self.wait)

    def release(self, res: Resource) -> None:
        """Drop one user of ``res``; the last one stops its loop."""
        left = self._refs.get(res, 0) - 1
        if left > 0:
            self._refs[res] = left
            return
        self._refs.pop(res, None)
        self._cells.pop(res, None)
        scope = self._scopes.pop(res, None)
        if scope is not None:
            scope.cancel()
