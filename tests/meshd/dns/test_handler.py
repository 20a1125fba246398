"""The per-query glue: the answer cache, its invalidation, coalesced lookups. No sockets."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import dns.message
import dns.rcode
import trio
import trio.testing

from meshd.dns import DNSHandler, DNSSettings
from meshd.dns.cache import AnswerCache, CachedAnswer
from meshd.dns.records import Row
from tests.meshd.dns._support import row


class CountingLookup:
    """Rows for any service name; counts calls; ``index`` None means "unknown"."""

    def __init__(self, rows: Sequence[Row], index: int | None = 1) -> None:
        self.rows = list(rows)
        self.index = index
        self.calls = 0
        self.gate: trio.Event | None = None

    async def health_service(
        self, name: str, tag: str | None, connect: bool, passing_only: bool
    ) -> Sequence[Row]:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.rows

    async def node(self, name: str) -> Mapping[str, Any] | None:
        self.calls += 1
        return None

    def state_index(self) -> int | None:
        return self.index


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def query(name: str = "web.service.consul", qid: int = 1) -> bytes:
    q = dns.message.make_query(name, "A")
    q.id = qid
    return q.to_wire()


def handler(lookup: CountingLookup, clock: Clock | None = None, **settings: Any) -> DNSHandler:
    return DNSHandler(
        lookup,
        DNSSettings(**settings),
        rng=random.Random(5),
        clock=clock or Clock(),
        wall_clock=lambda: 1_700_000_000.0,
    )


async def test_a_cached_answer_is_reused_under_each_query_id() -> None:
    lookup = CountingLookup([row("a", "10.0.0.1")])
    h = handler(lookup)
    first = await h.reply(query(qid=1), "udp")
    assert h.cached_reply(query(qid=2), "tcp") is None  # the transport is part of the key
    second = h.cached_reply(query(qid=0xBEEF), "udp")
    assert first is not None and second is not None
    assert dns.message.from_wire(second).id == 0xBEEF
    assert second[2:] == first[2:]
    assert lookup.calls == 1


async def test_a_new_catalog_index_invalidates_the_cache() -> None:
    lookup = CountingLookup([row("a", "10.0.0.1")])
    h = handler(lookup)
    await h.reply(query(), "udp")
    lookup.index = 2
    lookup.rows = [row("b", "10.0.0.2")]
    assert h.cached_reply(query(), "udp") is None
    reply = await h.reply(query(), "udp")
    assert reply is not None
    assert dns.message.from_wire(reply).answer[0][0].to_text() == "10.0.0.2"


async def test_without_an_index_answers_live_for_cache_ttl() -> None:
    clock = Clock()
    lookup = CountingLookup([row("a", "10.0.0.1")], index=None)
    h = handler(lookup, clock, cache_ttl=2.0)
    await h.reply(query(), "udp")
    clock.now += 1.9
    assert h.cached_reply(query(), "udp") is not None
    clock.now += 0.2
    assert h.cached_reply(query(), "udp") is None


async def test_concurrent_misses_share_one_lookup() -> None:
    lookup = CountingLookup([row("a", "10.0.0.1")])
    lookup.gate = trio.Event()
    h = handler(lookup)
    replies: list[bytes | None] = []

    async def ask(qid: int) -> None:
        replies.append(await h.reply(query(qid=qid), "udp"))

    async with trio.open_nursery() as nursery:
        for qid in range(1, 6):
            nursery.start_soon(ask, qid)
        await trio.testing.wait_all_tasks_blocked()
        lookup.gate.set()
    assert lookup.calls == 1
    assert sorted(dns.message.from_wire(r).id for r in replies if r is not None) == [1, 2, 3, 4, 5]


async def test_variants_are_built_lazily_from_one_lookup() -> None:
    lookup = CountingLookup([row(f"n{i}", f"10.0.0.{i}") for i in range(4)])
    h = handler(lookup)
    await h.reply(query(), "udp")
    firsts = set()
    for qid in range(200):
        reply = h.cached_reply(query(qid=qid), "udp")
        assert reply is not None
        firsts.add(dns.message.from_wire(reply).answer[0][0].to_text())
    assert firsts == {"10.0.0.0", "10.0.0.1", "10.0.0.2", "10.0.0.3"}
    assert lookup.calls == 1


async def test_lookup_errors_are_servfail_and_not_cached() -> None:
    class Failing(CountingLookup):
        async def health_service(
            self, name: str, tag: str | None, connect: bool, passing_only: bool
        ) -> Sequence[Row]:
            self.calls += 1
            raise ConnectionError("no server")

    lookup = Failing([])
    h = handler(lookup)
    reply = await h.reply(query(), "udp")
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.SERVFAIL
    assert h.cached_reply(query(), "udp") is None


async def test_garbage_gets_no_reply_or_formerr() -> None:
    h = handler(CountingLookup([]))
    assert await h.reply(b"\x00", "udp") is None
    formerr = await h.reply(b"\x00\x07\x01\x00\x00\x01" + bytes(6) + b"\xff", "tcp")
    assert formerr is not None and dns.message.from_wire(formerr).rcode() == dns.rcode.FORMERR


def test_cache_is_bounded_in_bytes_least_recently_used_first() -> None:
    cache = AnswerCache(max_bytes=3000)

    def entry() -> CachedAnswer:
        return CachedAnswer(1, 10.0, 0, [b"x" * 500], None, None)

    for key in (b"a", b"b", b"c"):
        cache.put(key, entry())
    assert cache.get(b"a", 1, 0.0) is not None  # a is now the most recently used
    cache.put(b"d", entry())
    assert len(cache) == 3 and cache.charged_bytes <= 3000
    assert cache.get(b"b", 1, 0.0) is None
    assert cache.get(b"a", 1, 0.0) is not None
