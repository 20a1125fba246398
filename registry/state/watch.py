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

Prefix watches (KV lists: key ``("kvp", prefix)``) are also indexed by their
text in a ``PrefixIndex``, so a write to a key finds the watched prefixes of
that key in time linear in the key's length (``prefix_keys``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

Callback = Callable[[], None]
WatchKey = Hashable
# Kinds of watch key ``(kind, text)`` whose text is a prefix of the keys it
# guards: the registry indexes them for ``prefix_keys``.
PREFIX_KINDS = frozenset({"kvp"})


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
            self._registry._insert(self._key, self)
        self._next += 1
        self._callbacks[self._next] = callback
        return (self, self._next)

    def remove(self, token: int) -> None:
        """Unregister a callback; an idle watch is dropped from its registry."""
        self._callbacks.pop(token, None)
        idle = not self._callbacks and not self.fired
        if idle and self._registry._watches.get(self._key) is self:
            self._registry._discard(self._key)

    def fire(self) -> None:
        """Call every callback once and retire this generation."""
        self.fired = True
        callbacks, self._callbacks = self._callbacks, {}
        for callback in callbacks.values():
            callback()

    def __len__(self) -> int:
        return len(self._callbacks)


class WatchRegistry:
    """All live watches, by key, and the prefix watches by text. Owned by the state store."""

    __slots__ = ("_prefixes", "_watches")

    def __init__(self) -> None:
        self._watches: dict[WatchKey, Watch] = {}
        self._prefixes: dict[str, PrefixIndex] = {}

    @staticmethod
    def _prefix_of(key: WatchKey) -> tuple[str, str] | None:
        if type(key) is tuple and len(key) == 2 and key[0] in PREFIX_KINDS:
            kind, text = key
            if isinstance(text, str):
                return kind, text
        return None

    def _insert(self, key: WatchKey, watch: Watch) -> None:
        self._watches[key] = watch
        prefix = self._prefix_of(key)
        if prefix is not None:
            index = self._prefixes.get(prefix[0])
            if index is None:
                index = self._prefixes[prefix[0]] = PrefixIndex()
            index.add(prefix[1], key)

    def _discard(self, key: WatchKey) -> Watch | None:
        watch = self._watches.pop(key, None)
        if watch is not None:
            prefix = self._prefix_of(key)
            if prefix is not None:
                self._prefixes[prefix[0]].discard(prefix[1])
        return watch

    def get(self, key: WatchKey) -> Watch:
        """The current watch for ``key`` (created on first use)."""
        watch = self._watches.get(key)
        if watch is None:
            watch = Watch(self, key)
            self._insert(key, watch)
        return watch

    def fire(self, keys: Iterable[WatchKey]) -> int:
        """Fire the watches of ``keys`` that have one; returns how many fired."""
        fired = 0
        for key in keys:
            # _discard inlined: most keys of a write have no watch
            watch = self._watches.pop(key, None)
            if watch is not None:
                prefix = self._prefix_of(key)
                if prefix is not None:
                    self._prefixes[prefix[0]].discard(prefix[1])
                watch.fire()
                fired += 1
        return fired

    def fire_all(self) -> None:
        """Fire every watch (after a snapshot restore every reader must re-read)."""
        watches, self._watches = self._watches, {}
        self._prefixes = {}
        for watch in watches.values():
            watch.fire()

    def __len__(self) -> int:
        """How many keys are watched now (0: a write has nothing to fire)."""
        return len(self._watches)

    def has(self, key: WatchKey) -> bool:
        """True if a reader currently watches ``key``."""
        return key in self._watches

    def prefix_keys(self, kind: str, text: str) -> list[WatchKey]:
        """The watched keys ``(kind, p)`` (``kind`` in ``PREFIX_KINDS``) with
        ``text.startswith(p)``, shortest first; linear in ``len(text)``."""
        index = self._prefixes.get(kind)
        return index.along(text) if index is not None else []


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

    def watches(self) -> tuple[Watch, ...]:
        """The watches added so far: another read of the same state depends on
        the same ones, so it may ``add`` these instead of reading again (a
        watch that has fired since calls its callback at once on ``register``)."""
        return tuple(self._watches.values())

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


class _PrefixNode:
    """One node of a ``PrefixIndex``: edges by first character, and the
    watch key stored at this exact text (None: only a branch point)."""

    __slots__ = ("edges", "value")

    def __init__(self) -> None:
        self.edges: dict[str, tuple[str, _PrefixNode]] = {}
        self.value: WatchKey | None = None


def _common_length(label: str, text: str, start: int) -> int:
    """Length of the common prefix of ``label`` and ``text[start:]``.

    Binary search over ``startswith`` so the comparisons run in C: O(n log n)
    character steps at worst, no Python loop per character.
    """
    lo, hi = 0, min(len(label), len(text) - start)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text.startswith(label[:mid], start):
            lo = mid
        else:
            hi = mid - 1
    return lo


class PrefixIndex:
    """The texts of the live prefix watches of one kind, as a radix tree.

    ``along(key)`` yields the watch key of every indexed text that is a
    prefix of ``key`` with one ``startswith`` per tree edge on the path: the
    work is linear in ``len(key)`` (compared in C) plus one step per match,
    where slicing every prefix of the key was quadratic (a 400 KB key took
    34 s to write). Edges are compressed, so memory is linear in the total
    length of the indexed texts.
    """

    __slots__ = ("_root", "_size")

    def __init__(self) -> None:
        self._root = _PrefixNode()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, text: str, value: WatchKey) -> None:
        """Index ``text``, answering ``value`` for it (replaces an older value)."""
        node, i = self._root, 0
        while i < len(text):
            edge = node.edges.get(text[i])
            if edge is None:
                leaf = _PrefixNode()
                node.edges[text[i]] = (text[i:], leaf)
                node = leaf
                break
            label, child = edge
            n = _common_length(label, text, i)
            if n < len(label):  # split the edge at the first difference
                mid = _PrefixNode()
                mid.edges[label[n]] = (label[n:], child)
                node.edges[text[i]] = (label[:n], mid)
                child = mid
            node, i = child, i + n
        if node.value is None:
            self._size += 1
        node.value = value

    def discard(self, text: str) -> None:
        """Forget ``text`` (no-op if absent), merging edges left with one child."""
        path: list[tuple[_PrefixNode, str]] = []  # (parent, first char of edge)
        node, i = self._root, 0
        while i < len(text):
            edge = node.edges.get(text[i])
            if edge is None or not text.startswith(edge[0], i):
                return
            path.append((node, text[i]))
            node, i = edge[1], i + len(edge[0])
        if node.value is None:
            return
        node.value = None
        self._size -= 1
        self._prune(node, path)

    @staticmethod
    def _prune(node: _PrefixNode, path: list[tuple[_PrefixNode, str]]) -> None:
        while path and node.value is None and len(node.edges) <= 1:
            parent, first = path.pop()
            label = parent.edges[first][0]
            if node.edges:  # one child: fold this node into the edge above it
                ((child_label, child),) = node.edges.values()
                parent.edges[first] = (label + child_label, child)
                return
            del parent.edges[first]
            node = parent

    def along(self, key: str) -> list[WatchKey]:
        """The values of the indexed texts that are prefixes of ``key``, shortest first.

        A list, not a generator: every KV write asks, and mostly gets none."""
        node, i, size = self._root, 0, len(key)
        found = [] if node.value is None else [node.value]
        while i < size:
            edge = node.edges.get(key[i])
            if edge is None or not key.startswith(edge[0], i):
                break
            node, i = edge[1], i + len(edge[0])
            if node.value is not None:
                found.append(node.value)
        return found
