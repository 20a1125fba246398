"""One query in, one reply out: parsing, the catalog lookup, the cache, forwarding.

``DNSHandler`` is what the UDP and TCP servers call. It has two entry
points so that the servers can answer most queries without a task switch:

- ``cached_reply(wire, transport)`` is synchronous and answers from the
  cache (an ID patch on stored bytes), or returns None;
- ``reply(wire, transport)`` does the whole work: parse, look up (awaiting
  the catalog), build, cache, or forward to the recursors.

Concurrent misses for the same question wait for the first one's lookup
instead of repeating it. Lookup failures give SERVFAIL and are logged;
replies that are not built from the catalog (forwarded, errors) are not
cached.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence

import dns.rcode
import trio

from ..metrics.recorder import NO_METRICS, Recorder
from .answers import (
    Built,
    Found,
    Parsed,
    Rejected,
    build_error,
    build_response,
    lookup_needed,
    parse_request,
    prepare_found,
    udp_limit,
)
from .cache import AnswerCache, CachedAnswer
from .forward import Recursor, forward, parse_recursor
from .lookup import Lookup
from .names import NodeQuery, OutsideDomain
from .settings import DNSSettings, Transport

__all__ = ["DNSHandler"]

log = logging.getLogger("meshd.dns")

_MAX_CACHED_QUERY = 512  # longer queries (big EDNS0 options) are answered but not cached
_TRANSPORT_TAG: dict[Transport, bytes] = {"udp": b"u", "tcp": b"t"}


class DNSHandler:
    """Answers DNS queries from ``lookup`` under ``settings``.

    ``rng`` shuffles instances and picks forwarding IDs; ``clock``
    (monotonic seconds) ages the cache; ``wall_clock`` gives the SOA serial;
    ``metrics`` counts every answered query once (by qtype and rcode).
    """

    def __init__(
        self,
        lookup: Lookup,
        settings: DNSSettings,
        *,
        recursors: Sequence[str | Recursor] = (),
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        metrics: Recorder | None = None,
    ) -> None:
        self.lookup = lookup
        self.settings = settings
        self.recursors = [parse_recursor(r) for r in recursors]
        self.cache = AnswerCache(settings.cache_max_bytes)
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._wall_clock = wall_clock
        self._inflight: dict[bytes, trio.Event] = {}
        self.metrics = metrics if metrics is not None else NO_METRICS

    def cached_reply(self, wire: bytes, transport: Transport) -> bytes | None:
        """The reply to ``wire`` from the cache, or None (then call ``reply``). Never raises
        for any input; builds a missing variant of a cached answer synchronously."""
        if len(wire) < 12 or len(wire) > _MAX_CACHED_QUERY:
            return None
        key = wire[2:] + _TRANSPORT_TAG[transport]
        entry = self.cache.get(key, self.lookup.state_index(), self._clock())
        if entry is None:
            return None
        variants = entry.variants
        index = self._rng.randrange(len(variants)) if len(variants) > 1 else 0
        body = variants[index]
        if body is None:
            body = self._build_variant(key, entry, index, transport)
            if body is None:
                return None
        return self._counted(wire, wire[:2] + body[2:])

    async def reply(self, wire: bytes, transport: Transport) -> bytes | None:
        """The reply to ``wire``, None to send nothing (not a query at all).

        Cancellation propagates: nothing is cached for an interrupted lookup.
        """
        cached = self.cached_reply(wire, transport)
        if cached is not None:
            return cached
        parsed = parse_request(wire, self.settings)
        if isinstance(parsed, Rejected):
            return self._counted(wire, parsed.wire)
        if isinstance(parsed.query, OutsideDomain):
            return self._counted(wire, await self._forward(parsed, wire, transport))
        key = wire[2:] + _TRANSPORT_TAG[transport]
        waiting = self._inflight.get(key)
        if waiting is not None:
            await waiting.wait()
            cached = self.cached_reply(wire, transport)
            if cached is not None:
                return cached
        done = self._inflight[key] = trio.Event()
        try:
            return self._counted(wire, await self._answer(key, wire, parsed, transport))
        finally:
            if self._inflight.get(key) is done:
                del self._inflight[key]
            done.set()

    def _counted(self, wire: bytes, reply: bytes | None) -> bytes | None:
        # Every path of ``reply`` ends here or in ``cached_reply``, exactly once.
        self.metrics.dns_query(wire, reply)
        return reply

    async def _answer(self, key: bytes, wire: bytes, parsed: Parsed, transport: Transport) -> bytes:
        index = self.lookup.state_index()  # before the read: a change during it invalidates
        try:
            found = await self._find(parsed)
        except Exception as exc:  # the lookup is the agent's: report any failure as SERVFAIL
            log.warning(
                "event=dns_lookup_failed question=%s error=%r",
                parsed.message.question[0].to_text(),
                exc,
            )
            return build_error(
                parsed.message, dns.rcode.SERVFAIL, recursion_available=bool(self.recursors)
            )
        seed = self._rng.getrandbits(64)
        try:
            found = prepare_found(parsed, found, self.settings)
            built = self._build(parsed, found, transport, seed, 0)
        except Exception:  # a row the builder cannot handle is a bug: log it, answer SERVFAIL
            log.exception("event=dns_build_failed question=%s", parsed.message.question[0])
            return build_error(
                parsed.message, dns.rcode.SERVFAIL, recursion_available=bool(self.recursors)
            )
        self._remember(key, wire, parsed, found, built, seed, index)
        return wire[:2] + built.wire[2:]

    def _remember(
        self,
        key: bytes,
        wire: bytes,
        parsed: Parsed,
        found: Found,
        built: Built,
        seed: int,
        index: int | None,
    ) -> None:
        """Cache ``built`` (variant 0) and what building the other variants needs."""
        lifetime = self.settings.cache_ttl if index is None else self.settings.cache_max_age
        if len(wire) > _MAX_CACHED_QUERY or lifetime <= 0:
            return
        variants: list[bytes | None] = [None] * built.variants
        variants[0] = built.wire
        complete = built.variants == 1
        entry = CachedAnswer(
            index=index,
            expires=self._clock() + lifetime,
            seed=seed,
            variants=variants,
            parsed=None if complete else parsed,
            found=None if complete else found,
        )
        self.cache.put(key, entry)

    async def _find(self, parsed: Parsed) -> Found:
        need = lookup_needed(parsed)
        if need is None:
            return Found()
        if isinstance(need, NodeQuery):
            return Found(node=await self.lookup.node(need.node))
        rows = await self.lookup.health_service(
            need.service, need.tag, need.connect, self.settings.only_passing
        )
        return Found(rows=rows)

    def _build(
        self, parsed: Parsed, found: Found, transport: Transport, seed: int, variant: int
    ) -> Built:
        return build_response(
            parsed,
            found,
            self.settings,
            transport=transport,
            rng=random.Random(seed),
            now=self._wall_clock(),
            variant=variant,
            recursion_available=bool(self.recursors),
        )

    def _build_variant(
        self, key: bytes, entry: CachedAnswer, index: int, transport: Transport
    ) -> bytes | None:
        if entry.parsed is None or entry.found is None:
            return None
        try:
            built = self._build(entry.parsed, entry.found, transport, entry.seed, index)
        except Exception:  # never let one bad row break the hot path: forget the entry
            log.exception("event=dns_build_failed question=%s", entry.parsed.message.question[0])
            self.cache.discard(key)
            return None
        entry.variants[index] = built.wire
        if entry.missing() == 0:
            entry.parsed = entry.found = None
        self.cache.update(key, entry)
        return built.wire

    async def _forward(self, parsed: Parsed, wire: bytes, transport: Transport) -> bytes:
        if not self.recursors:
            # Consul registers no handler outside its domain without recursors: REFUSED.
            return build_error(parsed.message, dns.rcode.REFUSED)
        reply = await forward(
            parsed.message,
            wire,
            self.recursors,
            transport=transport,
            timeout=self.settings.recursor_timeout,
            client_limit=udp_limit(parsed.message) if transport == "udp" else 65535,
            rng=self._rng,
        )
        if reply is None:
            return build_error(parsed.message, dns.rcode.SERVFAIL, recursion_available=True)
        return reply
