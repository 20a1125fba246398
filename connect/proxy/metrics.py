"""Prometheus metrics of the proxy (prometheus-client).

Every series carries ``direction`` (``inbound``: accepted mTLS, ``outbound``:
a local upstream listener), ``source`` and ``destination`` service names:

* ``meshd_proxy_connections_total{direction,source,destination,result}`` with
  result ``allowed``, ``denied`` or ``error`` (handshake, identity, dial or
  connection-limit failures);
  On the outbound side ``denied`` is the destination's verdict (verdict.py);
* ``meshd_proxy_denials_total{source,destination,intention}``;
* ``meshd_proxy_rbac_denials_total{source,destination,intention}``: HTTP
  requests refused by L7 intentions (403 ``RBAC: access denied``); the
  intention is its ID, ``<source> => <destination>`` or ``default``, never
  the path;
* ``meshd_proxy_closed_before_handshake_total{destination}``: inbound TCP
  connections closed before any TLS (health probes), not counted as errors;
* ``meshd_proxy_bytes_received_total`` / ``meshd_proxy_bytes_sent_total``
  ``{direction,source,destination}``: bytes from / to the accepted side;
* ``meshd_proxy_tls_handshake_seconds{direction}`` histogram;
* ``meshd_proxy_active_connections{direction,source,destination}`` gauge;
* ``meshd_proxy_mirror_requests_total{source,destination,result}``: L7
  mirror copies ``sent`` (answered), ``failed`` (reset, refused, timed out)
  or ``dropped`` (too many in flight, no healthy instance).

With ``--workers N`` each worker writes prometheus-client's multiprocess
files (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor before any
metric exists) and the supervisor serves their sum; the gauge is
``livesum`` so a dead worker's connections disappear.

The per-request and TCP families of the mesh (``meshd_requests_total``,
``meshd_tcp_*``, ...) are ``StandardMetrics`` (l7_metrics.py) in the same
registry; the L4 handlers feed its TCP counters through ``opened`` and
``byte_counter`` (``inbound`` reports as ``destination``, ``outbound`` as
``source``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import h11
import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from .l7_metrics import StandardMetrics, TcpReport

HANDSHAKE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
REPORTER = {"inbound": "destination", "outbound": "source"}


class OpenConnection:
    """An L4 connection being proxied: the active gauge and TCP counters."""

    def __init__(self, gauge: Gauge, tcp: TcpReport) -> None:
        self.gauge = gauge
        self.tcp = tcp
        gauge.inc()
        tcp.opened()

    def closed(self) -> None:
        self.gauge.dec()
        self.tcp.closed()


class ProxyMetrics:
    """The proxy's metrics in their own registry (one per ``Proxy``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = ("direction", "source", "destination")
        r = self.registry
        self.connections = Counter(
            "meshd_proxy_connections", "Connections by outcome.", (*labels, "result"), registry=r
        )
        self.denials = Counter(
            "meshd_proxy_denials",
            "Inbound connections refused by intentions.",
            ("source", "destination", "intention"),
            registry=r,
        )
        self.rbac_denials = Counter(
            "meshd_proxy_rbac_denials",
            "HTTP requests refused by L7 intentions (403 RBAC: access denied).",
            ("source", "destination", "intention"),
            registry=r,
        )
        self.closed_before_handshake = Counter(
            "meshd_proxy_closed_before_handshake",
            "Inbound TCP connections closed before TLS began (health probes).",
            ("destination",),
            registry=r,
        )
        self.bytes_received = Counter(
            "meshd_proxy_bytes_received", "Bytes read from the accepted side.", labels, registry=r
        )
        self.bytes_sent = Counter(
            "meshd_proxy_bytes_sent", "Bytes written to the accepted side.", labels, registry=r
        )
        self.handshake = Histogram(
            "meshd_proxy_tls_handshake_seconds",
            "TLS handshake latency.",
            ("direction",),
            buckets=HANDSHAKE_BUCKETS,
            registry=r,
        )
        self.active = Gauge(
            "meshd_proxy_active_connections",
            "Connections being proxied.",
            labels,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.standard = StandardMetrics(r)

        self.mirror_requests = Counter(
            "meshd_proxy_mirror_requests",
            "L7 mirror copies by outcome.",
            ("source", "destination", "result"),
            registry=r,
        )

    def connection(self, direction: str, source: str, destination: str, result: str) -> None:
        self.connections.labels(direction, source, destination, result).inc()

    def denied(self, source: str, destination: str, intention: str) -> None:
        self.denials.labels(source, destination, intention).inc()

    def rbac_denied(self, source: str, destination: str, intention: str) -> None:
        self.rbac_denials.labels(source, destination, intention).inc()

    def opened(self, direction: str, source: str, destination: str) -> OpenConnection:
        """Count an L4 connection that starts being proxied now."""
        return OpenConnection(
            self.active.labels(direction, source, destination),
            self.standard.tcp(REPORTER[direction], source, destination),
        )

    def byte_counter(
        self, direction: str, source: str, destination: str
    ) -> Callable[[int, int], None]:
        """A ``(received, sent)`` callback bound to one label set."""
        rx = self.bytes_received.labels(direction, source, destination)
        tx = self.bytes_sent.labels(direction, source, destination)
        tcp = self.standard.tcp(REPORTER[direction], source, destination)

        def flush(received: int, sent: int) -> None:
            if received:
                rx.inc(received)
            if sent:
                tx.inc(sent)
            tcp.bytes(received, sent)

        return flush

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


def multiprocess_registry(path: str = "") -> CollectorRegistry:
    """A registry summing the workers' files in ``path`` (default
    ``PROMETHEUS_MULTIPROC_DIR``)."""
    path = path or os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path or None)  # type: ignore[no-untyped-call]
    return registry


async def _answer(stream: trio.SocketStream, render: Callable[[], bytes]) -> None:
    conn = h11.Connection(h11.SERVER)
    with trio.move_on_after(10):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(16384)
                if not data:
                    return
                conn.receive_data(data)
                continue
            if not isinstance(event, h11.Request):
                return
            ok = event.method == b"GET" and event.target.split(b"?")[0] in (b"/metrics", b"/")
            body = render() if ok else b"not found\n"
            headers = [
                ("Content-Type", CONTENT_TYPE_LATEST if ok else "text/plain"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
            ]
            data = conn.send(h11.Response(status_code=200 if ok else 404, headers=headers))
            await stream.send_all(
                data + conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
            )
            return


async def serve_metrics(
    host: str,
    port: int,
    render: Callable[[], bytes],
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``GET /metrics`` on ``host:port``; reports the bound address.

    Runs until cancelled. Raises OSError if the address cannot be bound.
    """
    listeners = await trio.open_tcp_listeners(port, host=host)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            await _answer(stream, render)
        except (trio.BrokenResourceError, h11.ProtocolError, OSError):
            pass
        finally:
            await stream.aclose()

    sockname = listeners[0].socket.getsockname()
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started((str(sockname[0]), int(sockname[1])))
