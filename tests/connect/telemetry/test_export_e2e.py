"""Exporters against real OTLP/HTTP and Zipkin receivers on loopback (small h11 servers)."""

from __future__ import annotations

import functools
import inspect
import itertools
import json
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

import h11
import pytest
import trio
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from connect.telemetry.export import Exporter, RetryPolicy
from connect.telemetry.formats import Encoding
from connect.telemetry.propagation import extract
from connect.telemetry.sampling import Sampler
from connect.telemetry.spans import Span, Tracer, http_attributes

pytestmark = pytest.mark.e2e

PARENT = "00f067aa0ba902b7"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
FAST_RETRY = RetryPolicy(max_attempts=3, initial=0.01, max_delay=0.05)


@dataclass
class Receiver:
    """A collector: records each POST, answers from ``statuses`` then ``default``."""

    statuses: list[int] = field(default_factory=list)
    default: int = 200
    hang: bool = False
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        target, headers, body = "", {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                target = event.target.decode()
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
        self.requests.append((target, headers, body))
        if self.hang:
            await trio.sleep_forever()
        status = self.statuses.pop(0) if self.statuses else self.default
        reply = h11.Response(status_code=status, headers=[("Content-Length", "0")])
        await stream.send_all(conn.send(reply) + conn.send(h11.EndOfMessage()))


async def start_receiver(nursery: trio.Nursery, receiver: Receiver) -> Receiver:
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, receiver.handle, 0, host="127.0.0.1")
    )
    receiver.port = listeners[0].socket.getsockname()[1]
    return receiver


async def wait_for(condition: Callable[[], bool], deadline: float = 20.0) -> None:
    with trio.fail_after(deadline):
        while not condition():
            await trio.sleep(0.01)


def two_hop_spans() -> tuple[Span, Span]:
    ticks = itertools.count(1_700_000_000_000_000_000, 1_500_000)
    tracer = Tracer(
        random.Random(9), lambda: next(ticks), Sampler.with_percent(random.Random(9), 1)
    )
    incoming = extract([("traceparent", f"00-{TRACE}-{PARENT}-01"), ("x-request-id", "req-1")])
    attrs = http_attributes("GET", "/v1/items", "api:8080")
    server = tracer.start_server(incoming, "web", "GET /v1/items", attrs)
    client = tracer.start_client(server, "web", "GET /v1/items", attrs)
    tracer.end(client, status_code=503, flags="UO", upstream="10.0.0.7:8080", retries=1)
    tracer.end(server, status_code=503)
    return server, client


async def export_once(encoding: Encoding, receiver: Receiver) -> list[Span]:
    spans = list(two_hop_spans())
    async with trio.open_nursery() as nursery:
        await start_receiver(nursery, receiver)
        exporter = Exporter(f"http://127.0.0.1:{receiver.port}", encoding, flush_interval=0.05)
        await nursery.start(exporter.run)
        for span in spans:
            exporter.record(span)
        await wait_for(lambda: exporter.stats.exported == 2)
        nursery.cancel_scope.cancel()
    return spans


def _attr(attrs, key):
    for kv in attrs:
        if kv.key == key:
            return getattr(kv.value, kv.value.WhichOneof("value"))
    raise KeyError(key)


async def test_otlp_protobuf_export_decodes_with_official_classes():
    receiver = Receiver()
    server, client = await export_once(Encoding.OTLP_PROTO, receiver)
    ((path, headers, body),) = receiver.requests
    assert path == "/v1/traces" and headers["content-type"] == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(body)
    (resource_spans,) = request.resource_spans
    assert _attr(resource_spans.resource.attributes, "service.name") == "web"
    got = {s.span_id.hex(): s for s in resource_spans.scope_spans[0].spans}
    pb_server, pb_client = got[server.span_id], got[client.span_id]
    assert pb_server.trace_id.hex() == pb_client.trace_id.hex() == TRACE
    assert pb_server.parent_span_id.hex() == PARENT
    assert pb_client.parent_span_id.hex() == server.span_id
    assert (pb_server.kind, pb_client.kind) == (2, 3)  # SERVER, CLIENT
    assert pb_server.name == "GET /v1/items"
    assert _attr(pb_client.attributes, "http.request.method") == "GET"
    assert _attr(pb_client.attributes, "url.path") == "/v1/items"
    assert _attr(pb_client.attributes, "http.response.status_code") == 503
    assert _attr(pb_client.attributes, "server.address") == "api"
    assert _attr(pb_client.attributes, "meshd.response_flags") == "UO"
    assert _attr(pb_client.attributes, "meshd.upstream_instance") == "10.0.0.7:8080"
    assert _attr(pb_client.attributes, "http.request.resend_count") == 1
    assert _attr(pb_server.attributes, "meshd.request_id") == "req-1"
    assert pb_client.status.code == 2  # ERROR
    assert pb_client.start_time_unix_nano == client.start_ns
    assert pb_client.end_time_unix_nano == client.end_ns > client.start_ns


async def test_otlp_json_export_uses_hex_ids_and_string_int64():
    receiver = Receiver()
    server, client = await export_once(Encoding.OTLP_JSON, receiver)
    ((path, headers, body),) = receiver.requests
    assert path == "/v1/traces" and headers["content-type"] == "application/json"
    doc = json.loads(body)
    (rs,) = doc["resourceSpans"]
    assert rs["resource"]["attributes"] == [
        {"key": "service.name", "value": {"stringValue": "web"}}
    ]
    spans = {s["spanId"]: s for s in rs["scopeSpans"][0]["spans"]}
    js = spans[client.span_id]
    assert js["traceId"] == TRACE and js["parentSpanId"] == server.span_id and js["kind"] == 3
    assert spans[server.span_id]["parentSpanId"] == PARENT
    assert js["startTimeUnixNano"] == str(client.start_ns)
    attrs = {a["key"]: a["value"] for a in js["attributes"]}
    assert attrs["http.response.status_code"] == {"intValue": "503"}
    assert attrs["http.request.method"] == {"stringValue": "GET"}


async def test_zipkin_export_posts_v2_json_in_microseconds():
    receiver = Receiver(default=202)
    server, client = await export_once(Encoding.ZIPKIN, receiver)
    ((path, headers, body),) = receiver.requests
    assert path == "/api/v2/spans" and headers["content-type"] == "application/json"
    spans = {s["id"]: s for s in json.loads(body)}
    zs, zc = spans[server.span_id], spans[client.span_id]
    assert (zs["kind"], zc["kind"]) == ("SERVER", "CLIENT")
    assert zs["traceId"] == zc["traceId"] == TRACE
    assert zs["parentId"] == PARENT and zc["parentId"] == server.span_id
    assert zc["timestamp"] == client.start_ns // 1000
    assert zc["duration"] == (client.end_ns - client.start_ns) // 1000
    assert zc["localEndpoint"] == {"serviceName": "web"}
    assert zc["tags"]["http.response.status_code"] == "503"
    assert zc["tags"]["meshd.upstream_instance"] == "10.0.0.7:8080"
    assert zc["tags"]["error"] == "UO"


async def test_retryable_answers_are_retried_until_accepted():
    receiver = Receiver(statuses=[503, 429])
    async with trio.open_nursery() as nursery:
        await start_receiver(nursery, receiver)
        exporter = Exporter(
            f"http://127.0.0.1:{receiver.port}", flush_interval=0.05, retry=FAST_RETRY
        )
        await nursery.start(exporter.run)
        exporter.record(two_hop_spans()[0])
        await wait_for(lambda: exporter.stats.exported == 1)
        nursery.cancel_scope.cancel()
    assert len(receiver.requests) == 3 and exporter.stats.retries == 2
    assert exporter.stats.gave_up == 0


async def test_non_retryable_answer_is_not_retried():
    receiver = Receiver(default=400)
    async with trio.open_nursery() as nursery:
        await start_receiver(nursery, receiver)
        exporter = Exporter(
            f"http://127.0.0.1:{receiver.port}", flush_interval=0.05, retry=FAST_RETRY
        )
        await nursery.start(exporter.run)
        exporter.record(two_hop_spans()[0])
        await wait_for(lambda: exporter.stats.rejected == 1)
        await trio.sleep(0.2)  # room for a wrong retry to show up
        nursery.cancel_scope.cancel()
    assert len(receiver.requests) == 1 and exporter.stats.retries == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _record_many(exporter: Exporter, n: int) -> None:
    """``n`` record() calls in one go. record() is synchronous, so it cannot
    wait for the collector: no other task (the exporter's sender included)
    runs until all ``n`` have returned, and the queue's verdicts on them are
    already counted when this returns."""
    assert not inspect.iscoroutinefunction(Exporter.record)
    span = two_hop_spans()[0]
    for _ in range(n):
        assert exporter.record(span) is None


async def test_down_collector_never_blocks_record_and_counts_drops_and_give_ups():
    exporter = Exporter(
        f"http://127.0.0.1:{_closed_port()}",
        max_queue=100,
        max_batch=50,
        flush_interval=0.05,
        retry=FAST_RETRY,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(exporter.run)
        _record_many(exporter, 10_000)
        assert exporter.stats.dropped == 9_900  # the queue holds 100
        await wait_for(lambda: exporter.stats.gave_up == 100)
        _record_many(exporter, 10_000)
        assert exporter.stats.dropped == 2 * 9_900  # counted before anything else ran
        nursery.cancel_scope.cancel()
    assert exporter.stats.dropped == 2 * 9_900 and exporter.stats.exported == 0
    assert exporter.stats.retries >= 2 * 2  # two batches, two retries each


async def test_slow_collector_never_blocks_record():
    receiver = Receiver(hang=True)
    async with trio.open_nursery() as nursery:
        await start_receiver(nursery, receiver)
        exporter = Exporter(
            f"http://127.0.0.1:{receiver.port}",
            max_queue=10,
            max_batch=5,
            flush_interval=0.05,
            timeout=0.3,
            retry=RetryPolicy(max_attempts=2, initial=0.01),
        )
        await nursery.start(exporter.run)
        exporter.record(two_hop_spans()[0])
        await wait_for(lambda: len(receiver.requests) >= 1)  # a send is now hanging
        _record_many(exporter, 5_000)
        assert exporter.stats.dropped == 5_000 - 10
        await wait_for(lambda: exporter.stats.gave_up >= 1)
        nursery.cancel_scope.cancel()
    assert exporter.stats.exported == 0


async def test_unsampled_spans_are_not_exported():
    exporter = Exporter("http://127.0.0.1:1", flush_interval=60)
    span = two_hop_spans()[0]
    span.sampled = False
    exporter.record(span)
    assert exporter.stats.recorded == 0 and exporter.pending == 0


async def test_flush_sends_queued_spans_before_the_interval():
    receiver = Receiver()
    async with trio.open_nursery() as nursery:
        await start_receiver(nursery, receiver)
        exporter = Exporter(f"http://127.0.0.1:{receiver.port}", flush_interval=3600)
        await nursery.start(exporter.run)
        for span in two_hop_spans():
            exporter.record(span)
        with trio.fail_after(20):
            await exporter.flush()
        nursery.cancel_scope.cancel()
    assert exporter.stats.exported == 2 and exporter.pending == 0
    (_, _, body) = receiver.requests[0]
    assert (
        len(ExportTraceServiceRequest.FromString(body).resource_spans[0].scope_spans[0].spans) == 2
    )
