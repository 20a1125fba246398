"""Recent request shapes for ``meshd config write --dry-run``, sent to the local agent.

The L7 outbound path calls ``RequestSamples.record`` for every request it
serves (before routing). A sample is the request's *shape* — source and
destination service, method, path, query string and a bounded set of
headers — never its body. Kept per sample:

- the path and the query string, each cut at ``MAX_TARGET`` bytes;
- at most ``MAX_HEADERS`` headers, names lowercased, values cut at
  ``MAX_VALUE``; hop-by-hop, length and trace-context headers are left out
  (no router or intention has a use for them), and credentials
  (``authorization``, ``cookie``...) keep their name with an empty value, so
  a ``Present`` match still sees them and no secret leaves the proxy.

Of the requests of each ``PUSH_INTERVAL`` a uniform random reservoir of at
most ``MAX_PENDING`` is kept (Vitter's algorithm L: past the first
``MAX_PENDING`` a request costs a counter compare, and only the few that
are picked are copied; the others are counted in ``dropped``), posted to
the agent (``PUT /v1/internal/config/samples``) at the end of the interval,
oldest first. A busy proxy used to post every request it could (up to
2,000 a second, several JSON batches of 500 that held its loop for
milliseconds, its tail latency); the agent keeps only the last 2,000 per
destination anyway, which the reservoir now spreads over minutes of
traffic instead of the last second. ``record`` never blocks and never
fails a request (see meshd/values/request_samples.py).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import trio

from connect.l7.dryrun import Sample

from .agent_client import AgentClient
from .errors import AgentError
from .logfmt import emit

SAMPLES_PATH = "/v1/internal/config/samples"
MAX_PENDING = 500  # the reservoir: samples per PUSH_INTERVAL (one batch)
MAX_BATCH = 500
PUSH_INTERVAL = 1.0
MAX_HEADERS = 16
MAX_NAME = 64
MAX_VALUE = 256
MAX_TARGET = 1024
MAX_SERVICE = 256
_SKIPPED = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "expect",
        "traceparent",
        "tracestate",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "x-request-id",
        "x-meshd-force-trace",
        "x-envoy-force-trace",
    }
)
_REDACTED = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
)


class SampleFormatError(ValueError):
    """A sample that does not decode; ``field`` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def kept_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    """The headers a sample keeps (see the module rules)."""
    out: list[tuple[str, str]] = []
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1").lower()
        if name in _SKIPPED or len(name) > MAX_NAME:
            continue
        value = "" if name in _REDACTED else raw_value.decode("latin-1")[:MAX_VALUE]
        out.append((name, value))
        if len(out) >= MAX_HEADERS:
            break
    return tuple(out)


def sample_of(
    source: str,
    destination: str,
    method: bytes,
    target: bytes,
    headers: Iterable[tuple[bytes, bytes]],
    now: float,
) -> Sample:
    """The shape of one request as ``record`` keeps it."""
    path, _, query = target.decode("latin-1").partition("?")
    return Sample(
        source,
        destination,
        method.decode("ascii", "replace"),
        path[:MAX_TARGET],
        query[:MAX_TARGET],
        kept_headers(headers),
        now,
    )


def sample_to_json(s: Sample) -> dict[str, Any]:
    return {
        "Source": s.source,
        "Destination": s.destination,
        "Method": s.method,
        "Path": s.path,
        "Query": s.query,
        "Headers": [[k, v] for k, v in s.headers],
        "Time": s.time,
    }


def _text(raw: Mapping[str, Any], key: str, limit: int, *, required: bool = True) -> str:
    value = raw.get(key, "" if not required else None)
    if not isinstance(value, str) or (required and not value) or len(value) > limit:
        raise SampleFormatError(key, f"must be a {'non-empty ' if required else ''}string")
    return value


def sample_from_json(raw: Any) -> Sample:
    """A ``Sample`` from its JSON; raises ``SampleFormatError`` naming the field."""
    if not isinstance(raw, Mapping):
        raise SampleFormatError("Sample", "must be an object")
    headers = raw.get("Headers") or []
    if not isinstance(headers, list) or len(headers) > MAX_HEADERS:
        raise SampleFormatError("Headers", f"must be a list of at most {MAX_HEADERS} pairs")
    pairs: list[tuple[str, str]] = []
    for pair in headers:
        ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
        if not ok or len(pair[0]) > MAX_NAME or len(pair[1]) > MAX_VALUE:
            raise SampleFormatError("Headers", "each header must be [name, value]")
        pairs.append((pair[0].lower(), pair[1]))
    when = raw.get("Time", 0.0)
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise SampleFormatError("Time", "must be a number (seconds since the epoch)")
    return Sample(
        _text(raw, "Source", MAX_SERVICE),
        _text(raw, "Destination", MAX_SERVICE),
        _text(raw, "Method", 32),
        _text(raw, "Path", MAX_TARGET),
        _text(raw, "Query", MAX_TARGET, required=False),
        tuple(pairs),
        float(when),
    )


ENCODE_CHUNK = 100  # samples encoded per step of the proxy's loop


async def encode_samples(batch: list[Sample]) -> bytes:
    """``{"Samples": [...]}`` as JSON, ``ENCODE_CHUNK`` samples per loop step
    (a checkpoint between chunks: the requests being served wait for at
    most one chunk, not the whole batch)."""
    parts: list[str] = []
    for start in range(0, len(batch), ENCODE_CHUNK):
        if start:
            await trio.sleep(0)
        chunk = [sample_to_json(s) for s in batch[start : start + ENCODE_CHUNK]]
        parts.append(json.dumps(chunk)[1:-1])
    return ('{"Samples": [' + ", ".join(parts) + "]}").encode()


_Raw = tuple[str, str, bytes, bytes, Iterable[tuple[bytes, bytes]], float]


class RequestSamples:
    """The proxy's reservoir of recent request shapes, posted to its agent."""

    def __init__(
        self,
        client: AgentClient | None,
        *,
        clock: Callable[[], float] = time.time,
        max_pending: int = MAX_PENDING,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.clock = clock
        self.size = max(1, max_pending)
        self.rng = rng or random.Random()
        # Raw (source, destination, method, target, headers, time): the shape
        # is cut out when posted, off the request's path.
        self.pending: list[_Raw] = []
        self.seen = 0  # requests recorded since the last take
        self._next = 0  # (full reservoir) the next request that replaces one
        self._w = 1.0
        self.sent = 0
        self.dropped = 0  # requests not posted (not picked, or refused)

    def record(
        self,
        source: str,
        destination: str,
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]],
    ) -> None:
        """Offer one request to the reservoir (never blocks, never fails)."""
        self.seen += 1
        pending = self.pending
        if len(pending) < self.size:
            pending.append((source, destination, method, target, tuple(headers), self.clock()))
            if len(pending) == self.size:
                self._w = math.exp(math.log(1.0 - self.rng.random()) / self.size)
                self._skip()
            return
        self.dropped += 1  # this request, or the one it replaces
        if self.seen < self._next:
            return
        raw = (source, destination, method, target, tuple(headers), self.clock())
        pending[self.rng.randrange(self.size)] = raw
        self._w *= math.exp(math.log(1.0 - self.rng.random()) / self.size)
        self._skip()

    def _skip(self) -> None:
        """Algorithm L: the index of the next request to keep."""
        w = min(self._w, 1.0 - 1e-12)
        gap = math.floor(math.log(1.0 - self.rng.random()) / math.log(1.0 - w))
        self._next = self.seen + gap + 1

    def take(self, limit: int = MAX_BATCH) -> list[Sample]:
        """The reservoir's requests (at most ``limit``), oldest first, as
        samples; the next interval starts an empty reservoir."""
        picked, self.pending, self.seen = self.pending, [], 0
        picked.sort(key=lambda raw: raw[5])
        self.dropped += max(0, len(picked) - limit)
        return [sample_of(*raw) for raw in picked[-limit:]] if limit > 0 else []

    async def run(self) -> None:
        """Post each interval's reservoir every ``PUSH_INTERVAL`` until cancelled."""
        while True:
            await trio.sleep(PUSH_INTERVAL)
            if self.client is None or not self.pending:
                continue
            batch = self.take()
            body = await encode_samples(batch)
            try:
                await self.client.request("PUT", SAMPLES_PATH, body=body, timeout=5.0)
            except AgentError as exc:
                self.dropped += len(batch)
                emit(30, "request_samples_dropped", count=len(batch), reason=str(exc))
                continue
            self.sent += len(batch)
