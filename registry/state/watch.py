"""Watches: how a write wakes the blocking queries that read what it changed.

Shaped after Consul's memdb watch channels, without threads or trio:

* A ``Watch`` guards one key (a table, a service name, a node, a KV key or
  prefix). Firing it calls its callbacks once and retires it, exactly like
  closing a Go channel; the next reader gets a fresh ``Watch`` for the key.
* A read adds the watches it depended on to a ``WatchSet``. A waiter then
  calls ``WatchSet.register(callback)`` *in the same synchronous step as the
  read* (before any ``await``), so no write can slip in between.
* Writes happen on the thread that runs trio (the FSM is applied there), so
  callbacks run on that thread and may set a ``trio.Event`` directly.

Granularity is per key, so 10,000 readers of service "web" cost nothing to
a write of service "db".
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

Callback = Callable[[], None]
WatchKey = Hashable


class Watch:
    """One watched key's current generation of callbacks."""

    __slots__ = ("_callbacks", "_key", "_next", "_registry", "fired")

    def __init__(self, registry: WatchRegistry, key: WatchKey) -> None:
        self._registry = registry
        self._key = key
        self._callbacks: dict[int, Callback] = {}
        self._next = 0
        self.fired = False

    def add(self, callback: Callback) -> tuple[Watch, int]:
        """Register ``callback``; returns a handle for ``remove``.

        A watch that already fired calls ``callback`` at once (the data it
        guarded has changed since the read).
        """
        if self.fired:
            callback()
            return (self, -1)
        current = self._registry._watches.get(self._key)
        if current is not None and current is not self:
            return current.add(callback)  # this generation was dropped while idle
        if current is None:
            self._registry._watches[self._key] = self
        self._next += 1
        self._callbacks[self._next] = callback
        return (self, self._next)

    def remove(self, token: int) -> None:
        """Unregister a callback; an idle watch is dropped from its registry."""
        self._callbacks.pop(token, None)
        idle = not self._callbacks and not self.fired
        if idle and self._registry._watches.get(self._key) is self:
            del self._registry._watches[self._key]

    def fire(self) -> None:
        """Call every callback once and retire this generation."""
        self.fired = True
        callbacks, self._callbacks = self._callbacks, {}
        for callback in callbacks.values():
            callback()

    def __len__(self) -> int:
        return len(self._callbacks)


class WatchRegistry:
    """All live watches, by key. Owned by the state store."""

    __slots__ = ("_watches",)

    def __init__(self) -> None:
        self._watches: dict[WatchKey, Watch] = {}

    def get(self, key: WatchKey) -> Watch:
        """The current watch for ``key`` (created on first use)."""
        watch = self._watches.get(key)
        if watch is None:
            watch = Watch(self, key)
            self._watches[key] = watch
        return watch

    def fire(self, keys: Iterable[WatchKey]) -> int:
        """Fire the watches of ``keys`` that have one; returns how many fired."""
        fired = 0
        pop = self._watches.pop
        for key in keys:
            watch = pop(key, None)
            if watch is not None:
                watch.fire()
                fired += 1
        return fired

    def fire_all(self) -> None:
        """Fire every watch (after a snapshot restore every reader must re-read)."""
        watches, self._watches = self._watches, {}
        for watch in watches.values():
            watch.fire()

    def has(self, key: WatchKey) -> bool:
        """True if a reader currently watches ``key``."""
        return key in self._watches


class WatchSet:
    """The watches one read depended on; register a callback on all of them."""

    __slots__ = ("_handles", "_watches")

    def __init__(self) -> None:
        self._watches: dict[int, Watch] = {}
        self._handles: list[tuple[Watch, int]] = []

    def add(self, watch: Watch) -> None:
        """Add a watch (duplicates are ignored)."""
        self._watches[id(watch)] = watch

    def __len__(self) -> int:
        return len(self._watches)

    def register(self, callback: Callback) -> None:
        """Call ``callback`` (possibly several times) when any watch fires."""
        for watch in self._watches.values():
            self._handles.append(watch.add(callback))

    def unregister(self) -> None:
        """Remove every callback added by ``register``; safe to call twice."""
        handles, self._handles = self._handles, []
        for watch, token in handles:
            if token >= 0 and not watch.fired:
                watch.remove(token)
