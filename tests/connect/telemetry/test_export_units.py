"""The exporter's pure parts: batcher bounds, back-off, endpoint parsing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from connect.telemetry.export import (
    Endpoint,
    ExportConfigError,
    Exporter,
    RetryPolicy,
    SpanBatcher,
)
from connect.telemetry.formats import Encoding
from connect.telemetry.spans import Span, SpanKind


def _span(n: int) -> Span:
    return Span("1" * 32, f"{n + 1:016x}", None, "op", SpanKind.SERVER, "web", n)


def test_batcher_is_bounded_and_fifo():
    batcher = SpanBatcher(max_queue=5, max_batch=2)
    accepted = [batcher.offer(_span(i)) for i in range(7)]
    assert accepted == [True] * 5 + [False] * 2
    assert batcher.batch_ready()
    assert [s.start_ns for s in batcher.take()] == [0, 1]
    assert [s.start_ns for s in batcher.take()] == [2, 3]
    assert [s.start_ns for s in batcher.take()] == [4]
    assert batcher.take() == [] and not batcher.batch_ready()


def test_backoff_is_exponential_capped_and_honours_retry_after():
    policy = RetryPolicy(max_attempts=6, initial=0.5, multiplier=2, max_delay=3)
    assert [policy.delay(a) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3, 3]
    assert policy.delay(1, "2") == 2.0
    assert policy.delay(1, "120") == 3  # capped
    assert policy.delay(2, "Wed, 21 Oct 2026 07:28:00 GMT") == 1.0  # dates fall back


@pytest.mark.parametrize(
    ("url", "encoding", "expected"),
    [
        ("http://collector:4318", Encoding.OTLP_PROTO, Endpoint("collector", 4318, "/v1/traces")),
        ("http://c:4318/otlp/", Encoding.OTLP_JSON, Endpoint("c", 4318, "/otlp/v1/traces")),
        ("http://zipkin:9411", Encoding.ZIPKIN, Endpoint("zipkin", 9411, "/api/v2/spans")),
        ("http://[::1]:9411", Encoding.ZIPKIN, Endpoint("::1", 9411, "/api/v2/spans")),
    ],
)
def test_endpoint_adds_the_format_path(url, encoding, expected):
    assert Endpoint.parse(url, encoding) == expected


@pytest.mark.parametrize("url", ["https://c:4318", "collector:4318", "http://:4318", "http://c:x"])
def test_bad_endpoint_is_a_one_line_error_naming_the_field(url):
    with pytest.raises(ExportConfigError, match=r"^endpoint: "):
        Exporter(url)


def test_protobuf_is_imported_only_when_encoding_otlp_protobuf():
    # The proxy's RSS budget: a Zipkin or OTLP/JSON exporter never loads protobuf.
    code = (
        "import sys; from connect.telemetry import export, formats;"
        "print(any(m.startswith('google.protobuf') for m in sys.modules));"
        "formats.encode_otlp_proto([]);"
        "print(any(m.startswith('google.protobuf') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]
