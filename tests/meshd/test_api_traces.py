"""/v1/internal/traces against an in-process dev agent: spans in, search, one trace, lint."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from connect.telemetry.formats import Encoding
from meshd.agent.traces import exporters_for
from meshd.config import load_config
from meshd.demo import trace_headers
from meshd.errors import ConfigError
from tests.meshd.inproc import inproc_agent

T1 = "1" * 32
T2 = "2" * 32
T3 = "3" * 32
MS = 1_000_000


def _span(
    trace: str,
    span_id: str,
    parent: str,
    service: str,
    start_ms: int,
    end_ms: int,
    *,
    kind: str = "CLIENT",
    peer: str = "",
    status: str = "UNSET",
    code: int = 200,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "http.request.method": "GET",
        "url.path": "/",
        "http.response.status_code": code,
    }
    if peer:
        attrs["peer.service"] = peer
    return {
        "TraceID": trace,
        "SpanID": span_id,
        "ParentSpanID": parent,
        "Name": "GET /",
        "Kind": kind,
        "Service": service,
        "StartNs": start_ms * MS,
        "EndNs": end_ms * MS,
        "Attributes": attrs,
        "Status": status,
    }


CHAIN = [
    _span(T1, "a" * 16, "", "edge", 1000, 1100, peer="web"),
    _span(T1, "b" * 16, "a" * 16, "web", 1010, 1090, peer="api"),
    _span(T1, "c" * 16, "b" * 16, "api", 1020, 1080, kind="SERVER", peer="web"),
    _span(T2, "d" * 16, "", "web", 5000, 5002, peer="api", status="ERROR", code=503),
]


async def test_spans_are_kept_searched_and_returned_as_one_trace(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        r = await api.put("/v1/internal/traces/spans", {"Spans": CHAIN})
        assert r.status == 200 and r.json() == {"Accepted": 4}
        r = await api.get(f"/v1/internal/traces/{T1}")
        assert r.status == 200
        spans = r.json()["Spans"]
        assert [s["SpanID"][0] for s in spans] == ["a", "b", "c"]
        assert spans[2]["ParentSpanID"] == "b" * 16 and spans[2]["Kind"] == "SERVER"
        found = (await api.get("/v1/internal/traces")).json()
        assert [t["TraceID"] for t in found] == [T2, T1]  # newest first
        first = found[1]
        assert first["Services"] == ["api", "edge", "web"] and first["SpanCount"] == 3
        assert first["DurationNs"] == 100 * MS and first["RootName"] == "GET /"
        errors = (await api.get("/v1/internal/traces?status=error")).json()
        assert [t["TraceID"] for t in errors] == [T2]
        codes = (await api.get("/v1/internal/traces?status=503")).json()
        assert [t["TraceID"] for t in codes] == [T2]
        assert (await api.get("/v1/internal/traces?status=404")).json() == []
        slow = (await api.get("/v1/internal/traces?min_duration=50ms&service=api")).json()
        assert [t["TraceID"] for t in slow] == [T1]
        assert (await api.get("/v1/internal/traces?service=nope")).json() == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/internal/traces/spans", {"Spans": [{**CHAIN[0], "TraceID": "xyz"}]}, "TraceID"),
        ("/v1/internal/traces/spans", {"Spans": [{**CHAIN[0], "Kind": "PRODUCER"}]}, "Kind"),
        ("/v1/internal/traces/spans", {"Spans": [{**CHAIN[0], "EndNs": 1}]}, "EndNs"),
        ("/v1/internal/traces/spans", {"Nope": []}, "Spans"),
        ("/v1/internal/traces?status=bad", None, "status"),
        ("/v1/internal/traces?min_duration=soon", None, "min_duration"),
        ("/v1/internal/traces?limit=0", None, "limit"),
        ("/v1/internal/traces/not-a-trace-id", None, "trace id"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_nothing_is_kept(
    autojump_clock: Any, path: str, body: Any, field: str
) -> None:
    async with inproc_agent() as (agent, api):
        method = "PUT" if body is not None else "GET"
        r = await api.request(method, path, body)
        assert r.status == 400 and field in r.text
        assert agent.traces.store.span_count == 0


async def test_unknown_trace_is_404(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        assert (await api.get(f"/v1/internal/traces/{T3}")).status == 404


async def test_lint_names_the_service_that_starts_new_traces_inside_a_traced_request(
    autojump_clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # web -> legacy is traced (T1); while legacy serves it, legacy's call to db
    # starts T3 (no parent): legacy did not copy the headers.
    spans = [
        _span(T3, "e" * 16, "", "legacy", 2010, 2020, peer="db"),
        _span(T1, "f" * 16, "a" * 16, "web", 2000, 2050, peer="legacy"),
        _span(T2, "9" * 16, "", "web", 2001, 2040, peer="api"),  # web's own root: no inbound
    ]
    async with inproc_agent() as (_agent, api):
        assert (await api.get("/v1/internal/traces/lint")).json() == []
        with caplog.at_level(logging.WARNING, logger="meshd.agent.traces"):
            await api.put("/v1/internal/traces/spans", {"Spans": spans})
        found = (await api.get("/v1/internal/traces/lint")).json()
        assert [(f["Service"], f["Upstreams"], f["BrokenCalls"]) for f in found] == [
            ("legacy", ["db"], 1)
        ]
        assert found[0]["ExampleInboundTrace"] == T1 and found[0]["ExampleNewTrace"] == T3
        lines = [
            r.getMessage() for r in caplog.records if "trace_propagation_broken" in r.getMessage()
        ]
        assert len(lines) == 1 and "service=legacy" in lines[0] and "upstreams=db" in lines[0]


async def test_sampling_percentage_is_checked_at_the_config_api(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        bad = {"Kind": "service-defaults", "Name": "web", "TracingSamplingPercentage": 101}
        r = await api.put("/v1/config", bad)
        assert r.status == 400 and "TracingSamplingPercentage" in r.text
        ok = {
            "Kind": "proxy-defaults",
            "Name": "global",
            "Config": {"tracing_sampling_percentage": 2.5},
        }
        assert (await api.put("/v1/config", ok)).status == 200
        got = (await api.get("/v1/config/proxy-defaults/global")).json()
        assert got["Config"]["tracing_sampling_percentage"] == 2.5


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"tracing": {"otlp_endpoint": "https://collector:4318"}}, "tracing.otlp_endpoint"),
        ({"tracing": {"otlp_encoding": "thrift"}}, "tracing.otlp_encoding"),
        ({"tracing": {"zipkin_endpoint": 9411}}, "tracing.zipkin_endpoint"),
        ({"tracing": {"export_queue": 0}}, "tracing.export_queue"),
        ({"tracing": {"colector": "x"}}, "tracing.colector"),
    ],
)
def test_tracing_config_errors_are_one_line_naming_the_key(
    tmp_path: Path, body: dict[str, Any], key: str
) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(body))
    with pytest.raises(ConfigError) as info:
        load_config([str(path)], [], {}, dev=True)
    text = str(info.value)
    assert key in text and "\n" not in text


def test_configured_collectors_become_exporters(tmp_path: Path) -> None:
    path = tmp_path / "agent.json"
    cfg = {"otlp_endpoint": "http://127.0.0.1:4318", "otlp_encoding": "json"}
    path.write_text(json.dumps({"tracing": {**cfg, "zipkin_endpoint": "http://127.0.0.1:9411"}}))
    config, _ = load_config([str(path)], [], {}, dev=True)
    exporters = exporters_for(config.tracing)
    assert {n: e.encoding for n, e in exporters.items()} == {
        "otlp": Encoding.OTLP_JSON,
        "zipkin": Encoding.ZIPKIN,
    }


def test_demo_web_forwards_only_the_trace_headers() -> None:
    raw = (
        b"GET / HTTP/1.1\r\nHost: web\r\ntraceparent: 00-"
        + T1.encode()
        + b"-"
        + b"a" * 16
        + b"-01\r\nX-B3-Sampled: 1\r\nx-request-id: r1\r\nCookie: secret\r\n\r\n"
    )
    out = trace_headers(raw)
    assert out.startswith(b"traceparent: 00-" + T1.encode())
    assert b"X-B3-Sampled: 1\r\n" in out and b"x-request-id: r1\r\n" in out
    assert b"Cookie" not in out and b"Host" not in out


async def test_breaks_counted_by_a_proxy_make_the_lint_name_the_service(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (_agent, api):
        body = {"Spans": [], "Breaks": [{"Service": "legacy", "Upstream": "db", "Count": 7}]}
        assert (await api.put("/v1/internal/traces/spans", body)).status == 200
        found = (await api.get("/v1/internal/traces/lint")).json()
        assert [(f["Service"], f["Upstreams"], f["BrokenCalls"]) for f in found] == [
            ("legacy", ["db"], 7)
        ]
        bad = {"Spans": [], "Breaks": [{"Service": "legacy", "Count": -1}]}
        r = await api.put("/v1/internal/traces/spans", bad)
        assert r.status == 400 and "Breaks[0].Count" in r.text
