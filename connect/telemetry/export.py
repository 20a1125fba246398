"""Span exporters: a pure bounded batcher and retry policy, and a thin trio driver.

``Exporter.record(span)`` is synchronous and never blocks or raises: the
span goes into a bounded queue, or is dropped and counted when the queue
is full (a down or slow collector must never slow requests). ``run()``
sends batches of up to ``max_batch`` spans every ``flush_interval`` seconds
(sooner when a batch fills) to ``<endpoint>/v1/traces`` (OTLP/HTTP,
protobuf or JSON) or ``<endpoint>/api/v2/spans`` (Zipkin v2), one batch at
a time. As the OTLP spec asks, 429/502/503/504 and connection errors are
retried with exponential back-off (honouring ``Retry-After``), other
answers are not; a batch is given up after ``max_attempts`` and counted.

HTTP is h11 over trio sockets (like ``connect/proxy/agent_client.py``; no
client library), plain ``http://`` only, one connection per attempt.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11
import trio

from .formats import ENCODERS, Encoding
from .spans import Span

RETRYABLE = frozenset({429, 502, 503, 504})
MAX_RESPONSE_HEAD = 64 * 1024


class ExportConfigError(ValueError):
    """An exporter setting that cannot work (names the field)."""


@dataclass(slots=True)
class ExportStats:
    """Counters an exporter keeps (for the proxy's metrics)."""

    recorded: int = 0
    dropped: int = 0  # queue full when recorded
    exported: int = 0  # accepted by the collector
    rejected: int = 0  # spans in batches answered with a non-retryable error
    gave_up: int = 0  # spans in batches that failed max_attempts times
    retries: int = 0  # attempts after the first
    batches: int = 0  # batches accepted


class SpanBatcher:
    """A bounded FIFO of spans waiting for export (pure)."""

    def __init__(self, max_queue: int = 2048, max_batch: int = 512) -> None:
        if max_queue < 1 or max_batch < 1:
            raise ExportConfigError("max_queue and max_batch must be at least 1")
        self.max_queue = max_queue
        self.max_batch = max_batch
        self._queue: deque[Span] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, span: Span) -> bool:
        """Queue ``span``; False (span not kept) when the queue is full."""
        if len(self._queue) >= self.max_queue:
            return False
        self._queue.append(span)
        return True

    def batch_ready(self) -> bool:
        """A full batch is waiting (send before the flush interval)."""
        return len(self._queue) >= self.max_batch

    def take(self) -> list[Span]:
        """Up to ``max_batch`` oldest spans, removed from the queue."""
        n = min(self.max_batch, len(self._queue))
        return [self._queue.popleft() for _ in range(n)]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off: ``initial * multiplier**(attempt-1)``, capped."""

    max_attempts: int = 5
    initial: float = 0.2
    multiplier: float = 2.0
    max_delay: float = 10.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based); ``Retry-After`` seconds win."""
        if retry_after is not None and retry_after.strip().isdigit():
            return min(float(retry_after.strip()), self.max_delay)
        return min(self.initial * self.multiplier ** (attempt - 1), self.max_delay)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where to POST: host, port and the full path."""

    host: str
    port: int
    path: str

    @property
    def authority(self) -> str:
        """``host:port`` for the Host header (IPv6 literals bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, url: str, encoding: Encoding) -> Endpoint:
        """``http://host:port[/prefix]`` plus the format's path.

        Raises ``ExportConfigError`` naming ``endpoint`` for another scheme
        or a missing host.
        """
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ExportConfigError(f"endpoint: expected http://host:port, got {url!r}")
        try:
            port = parts.port or 80
        except ValueError:
            raise ExportConfigError(f"endpoint: bad port in {url!r}") from None
        return cls(parts.hostname, port, parts.path.rstrip("/") + encoding.path)


@dataclass(slots=True)
class _Answer:
    status: int
    retry_after: str | None = None


@dataclass
class Exporter:
    """Exports recorded spans to one collector. ``record`` from any trio task."""

    endpoint: str
    encoding: Encoding = Encoding.OTLP_PROTO
    max_queue: int = 2048
    max_batch: int = 512
    flush_interval: float = 1.0
    timeout: float = 5.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    stats: ExportStats = field(default_factory=ExportStats)

    def __post_init__(self) -> None:
        self._target = Endpoint.parse(self.endpoint, self.encoding)
        self._batcher = SpanBatcher(self.max_queue, self.max_batch)
        self._wake = trio.Event()
        self._sending = False
        self._lock = trio.Lock()

    @property
    def pending(self) -> int:
        """Spans queued or in the batch being sent."""
        return len(self._batcher) + (1 if self._sending else 0)

    def record(self, span: Span) -> None:
        """Queue a finished span for export; never blocks, never raises.

        Unsampled spans are ignored; when the queue is full the span is
        dropped and ``stats.dropped`` grows.
        """
        if not span.sampled:
            return
        self.stats.recorded += 1
        if not self._batcher.offer(span):
            self.stats.dropped += 1
        elif self._batcher.batch_ready():
            self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Send batches until cancelled (a batch in flight is abandoned on cancel)."""
        task_status.started()
        while True:
            with trio.move_on_after(self.flush_interval):
                await self._wake.wait()
            self._wake = trio.Event()
            await self.flush()

    async def flush(self) -> None:
        """Send everything queued now, batch by batch (e.g. at shutdown, under a deadline).

        Safe alongside ``run()``: one batch is in flight at a time. On
        cancellation the batch in flight is abandoned (not counted).
        """
        async with self._lock:
            while len(self._batcher):
                batch = self._batcher.take()
                self._sending = True
                try:
                    await self._send(batch)
                finally:
                    self._sending = False

    async def _send(self, batch: list[Span]) -> None:
        body = ENCODERS[self.encoding](batch)
        for attempt in range(1, self.retry.max_attempts + 1):
            if attempt > 1:
                self.stats.retries += 1
            answer = await self._post(body)
            if answer is not None and 200 <= answer.status < 300:
                self.stats.exported += len(batch)
                self.stats.batches += 1
                return
            if answer is not None and answer.status not in RETRYABLE:
                self.stats.rejected += len(batch)
                return
            if attempt < self.retry.max_attempts:
                retry_after = answer.retry_after if answer else None
                await trio.sleep(self.retry.delay(attempt, retry_after))
        self.stats.gave_up += len(batch)

    async def _post(self, body: bytes) -> _Answer | None:
        """One POST; the answer's status, or None on a connection error or timeout."""
        target = self._target
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE_HEAD)
        request = h11.Request(
            method="POST",
            target=target.path,
            headers=[
                ("Host", target.authority),
                ("Content-Type", self.encoding.content_type),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ],
        )
        wire = conn.send(request) + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
        with trio.move_on_after(self.timeout):
            try:
                stream = await trio.open_tcp_stream(target.host, target.port)
                async with stream:
                    await stream.send_all(wire)
                    return await _read_head(conn, stream)
            except (OSError, trio.BrokenResourceError, h11.ProtocolError):
                return None
        return None


async def _read_head(conn: h11.Connection, stream: trio.SocketStream) -> _Answer | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            chunk = await stream.receive_some(65536)
            conn.receive_data(chunk)
            continue
        if isinstance(event, h11.InformationalResponse):
            continue
        if isinstance(event, h11.Response):
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
            return _Answer(event.status_code, headers.get("retry-after"))
        return None
