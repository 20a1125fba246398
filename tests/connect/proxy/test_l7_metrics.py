"""The recording core of the mesh's request metrics and access logs (no sockets)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from connect.l7.access_logs import AccessLogs, parse_access_logs
from connect.l7.decode import ValidationError
from connect.l7.request import Request
from connect.l7.retry import Failure, Verdict
from connect.proxy.access_log import (
    DEFAULT_KEYS,
    AccessLogger,
    AccessLogSettings,
    render,
)
from connect.proxy.l7_inbound import L7Inbound
from connect.proxy.l7_metrics import (
    Exchange,
    Flag,
    Reporter,
    TargetMarks,
    mark_attempt,
    mark_target,
    method_class,
)
from connect.proxy.metrics import ProxyMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Resp:
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body


def samples(metrics: ProxyMetrics, name: str) -> Iterator[tuple[str, dict[str, str], float]]:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name.startswith(name):
                yield s.name, s.labels, s.value


def value(metrics: ProxyMetrics, name: str, **labels: str) -> float:
    return sum(
        v for n, lab, v in samples(metrics, name) if n == name and labels.items() <= lab.items()
    )


def _exchange(reporter: Reporter, method: str = "GET", body: int = 0) -> Exchange:
    headers = [(b"host", b"api"), (b"x-request-id", b"r-1")]
    return reporter.begin(method, "/users/42?x=1", headers, body, "web", "api")


def test_method_class_folds_unknown_methods_into_other() -> None:
    assert [method_class(m) for m in ("get", "PATCH", "PROPFIND", "TRACE")] == [
        "GET",
        "PATCH",
        "other",
        "other",
    ]


def test_seven_200_and_three_503_count_exactly_with_duration_and_bytes() -> None:
    metrics, clock = ProxyMetrics(), Clock()
    rep = Reporter(metrics.standard, "source", "web", clock=clock)

    async def run() -> None:
        for status in [200] * 7 + [503] * 3:
            ex = _exchange(rep, body=5)

            async def handle(ex: Exchange, status: int = status) -> Resp:
                clock.now += 0.004  # 4 ms
                ex.subset = "v1"
                return Resp(status, b"x" * 10)

            await rep.observe(ex, handle)

    trio.run(run)
    base = {"reporter": "source", "source_service": "web", "destination_service": "api"}
    assert value(metrics, "meshd_requests_total", **base, response_code="200") == 7
    assert value(metrics, "meshd_requests_total", **base, response_code="503") == 3
    ok = {**base, "response_code": "200", "destination_subset": "v1", "request_method": "GET"}
    assert value(metrics, "meshd_request_duration_milliseconds_count", **ok) == 7
    # 4 ms lands in the le=5 bucket, not in le=1.
    assert value(metrics, "meshd_request_duration_milliseconds_bucket", **ok, le="5.0") == 7
    assert value(metrics, "meshd_request_duration_milliseconds_bucket", **ok, le="1.0") == 0
    assert value(metrics, "meshd_request_bytes_sum", **base) == 50
    assert value(metrics, "meshd_response_bytes_sum", **base) == 100
    labels = next(lab for n, lab, _ in samples(metrics, "meshd_requests_total"))
    assert labels["response_flags"] == "-"
    assert labels["connection_security_policy"] == "mutual_tls"
    assert "path" not in labels and "/users/42" not in str(labels)


def test_a_handler_that_raises_records_nothing() -> None:
    metrics = ProxyMetrics()
    rep = Reporter(metrics.standard, "source", "web")

    async def boom(ex: Exchange) -> Resp:
        raise OSError("client gone")

    with pytest.raises(OSError):
        trio.run(rep.observe, _exchange(rep), boom)
    assert value(metrics, "meshd_requests_total") == 0


def test_flags_for_attempt_outcomes_and_targets() -> None:
    rep = Reporter(ProxyMetrics().standard, "source", "web")
    ex = _exchange(rep)
    mark_attempt(ex, Verdict.RESPOND, "retries exhausted", Failure.CONNECT_FAILURE)
    assert ex.flags == {Flag.CONNECT_FAILURE, Flag.RETRY_LIMIT}
    ex = _exchange(rep)
    mark_attempt(ex, Verdict.RETRY, "", Failure.RESET)
    mark_attempt(ex, Verdict.TIMEOUT, "route timeout", None)
    assert ex.flags == {Flag.TIMEOUT}
    ex = _exchange(rep)
    mark_attempt(ex, Verdict.RESPOND, "success", None)
    assert ex.flags == set()
    chain = {"Targets": {"v2.api.default.default.dc1": {"Service": "api", "ServiceSubset": "v2"}}}
    mark_target(ex, chain, "v2.api.default.default.dc1")
    assert (ex.destination, ex.subset) == ("api", "v2")
    ex.flag(Flag.FAULT_DELAY)
    ex.flag(Flag.FAULT_ABORT)
    assert ex.labels()[6] == "DI,FI"


def test_target_marks_label_as_mark_target_does_and_follow_a_new_chain() -> None:
    rep = Reporter(ProxyMetrics().standard, "source", "web")
    chain: dict[str, object] = {
        "Targets": {
            "v2.api": {"Service": "api", "ServiceSubset": "v2"},
            "db.x": {"Service": "db"},
            "anon": {"ServiceSubset": "s"},
        }
    }
    marks = TargetMarks()
    for target in ("v2.api", "db.x", "anon", "missing", None, "v2.api"):
        want, got = _exchange(rep), _exchange(rep)
        mark_target(want, chain, target)
        marks.mark(got, chain, target)
        assert (got.destination, got.subset) == (want.destination, want.subset)
    moved = {"Targets": {"v2.api": {"Service": "api2", "ServiceSubset": "v3"}}}
    ex = _exchange(rep)
    marks.mark(ex, moved, "v2.api")  # a new chain object: read again
    assert (ex.destination, ex.subset) == ("api2", "v3")
    ex = _exchange(rep)
    marks.mark(ex, None, "v2.api")
    assert (ex.destination, ex.subset) == ("api", "")


def test_core_counters_are_per_edge() -> None:
    metrics = ProxyMetrics()
    rep = Reporter(metrics.standard, "source", "web")
    ex = _exchange(rep)
    rep.retried(ex)
    rep.retried(ex)
    rep.ejected(ex)
    rep.overflowed(ex)
    rep.fault(ex, "abort")
    edge = {"source_service": "web", "destination_service": "api"}
    assert value(metrics, "meshd_retries_total", **edge) == 2
    assert ex.retries == 2
    assert value(metrics, "meshd_outlier_ejections_total", **edge) == 1
    assert value(metrics, "meshd_circuit_breaker_overflows_total", **edge) == 1
    assert value(metrics, "meshd_faults_injected_total", **edge, kind="abort") == 1
    assert ex.flags == {Flag.OVERFLOW, Flag.FAULT_ABORT}


def test_tcp_connections_and_bytes_follow_the_l4_hooks() -> None:
    metrics = ProxyMetrics()
    conn = metrics.opened("inbound", "web", "db")
    flush = metrics.byte_counter("inbound", "web", "db")
    flush(100, 40)
    flush(0, 2)
    labels = {"reporter": "destination", "source_service": "web", "destination_service": "db"}
    assert value(metrics, "meshd_tcp_connections_opened_total", **labels) == 1
    assert value(metrics, "meshd_tcp_connections_closed_total", **labels) == 0
    assert value(metrics, "meshd_proxy_active_connections") == 1
    conn.closed()
    assert value(metrics, "meshd_tcp_connections_closed_total", **labels) == 1
    assert value(metrics, "meshd_proxy_active_connections") == 0
    assert value(metrics, "meshd_tcp_received_bytes_total", **labels) == 100
    assert value(metrics, "meshd_tcp_sent_bytes_total", **labels) == 42
    # The older connection families keep counting.
    assert value(metrics, "meshd_proxy_bytes_sent_total", direction="inbound") == 42


def _finished(**fields: object) -> Exchange:
    rep = Reporter(ProxyMetrics().standard, "source", "web", wall=lambda: 1_764_892_800.25)
    ex = _exchange(rep, method="POST", body=3)
    tp = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    ex.headers.append((b"traceparent", tp))
    ex.status, ex.response_bytes, ex.duration_ms = 503, 19, 12.5
    ex.upstream, ex.subset = "10.1.2.3:40001", "v1"
    ex.flags = {Flag.RETRY_LIMIT}
    for k, v in fields.items():
        setattr(ex, k, v)
    return ex


def test_default_access_log_line_has_every_field() -> None:
    line = json.loads(render(AccessLogs(enabled=True), _finished()))
    assert tuple(line) == DEFAULT_KEYS
    assert line["start_time"] == "2025-12-05T00:00:00.250Z"
    assert (line["method"], line["path"], line["response_code"]) == ("POST", "/users/42", 503)
    assert (line["response_flags"], line["duration"]) == ("URX", 12.5)
    assert (line["source_service"], line["destination_service"]) == ("web", "api")
    assert line["upstream_host"] == "10.1.2.3:40001"
    assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert line["request_id"] == "r-1"


def test_text_and_json_formats_use_envoy_operators() -> None:
    fmt = "[%START_TIME%] %REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %RESPONSE_CODE% "
    fmt += "%RESPONSE_FLAGS% %DURATION% %UPSTREAM_HOST% %TRACE_ID% %NOT_AN_OPERATOR%\n"
    text = render(AccessLogs(enabled=True, text_format=fmt), _finished())
    assert text == (
        "[2025-12-05T00:00:00.250Z] POST /users/42 503 URX 12 10.1.2.3:40001 "
        "0af7651916cd43dd8448eb211c80319c -"
    )
    jf = json.dumps({"code": "%RESPONSE_CODE%", "who": "%REQ(:AUTHORITY)%", "n": 1})
    assert json.loads(render(AccessLogs(enabled=True, json_format=jf), _finished())) == {
        "code": "503",
        "who": "api",
        "n": 1,
    }


def test_access_logs_are_off_by_default_and_switched_per_service(tmp_path: Path) -> None:
    settings = AccessLogSettings()
    path = tmp_path / "access.log"
    logger = AccessLogger(settings)
    logger.log("web", _finished())
    settings.set_proxy_defaults([{"Kind": "proxy-defaults", "Name": "global"}])
    assert settings.for_service("web") is None
    file_on = {"Enabled": True, "Type": "file", "Path": str(path)}
    settings.set_service_defaults(
        [
            {"Kind": "service-defaults", "Name": "web", "AccessLogs": file_on},
            {"Kind": "service-defaults", "Name": "api", "AccessLogs": {"Enabled": False}},
        ]
    )
    logger.log("web", _finished())
    logger.log("web", _finished(status=200))
    logger.log("api", _finished())
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["response_code"] for x in lines] == [503, 200]
    # The global switch turns on every service without its own entry.
    settings.set_proxy_defaults([{"Name": "global", "AccessLogs": {"Enabled": True}}])
    assert settings.for_service("db") == AccessLogs(enabled=True)
    assert settings.for_service("api") is None


@pytest.mark.parametrize(
    ("raw", "field", "text"),
    [
        ({"Type": "syslog"}, "AccessLogs.Type", "invalid access log type: syslog"),
        (
            {"Type": "file"},
            "AccessLogs.Path",
            "path must be specified when using file type access logs",
        ),
        ({"Path": "/tmp/x"}, "AccessLogs.Path", "path is only valid for file type access logs"),
        (
            {"JSONFormat": "{}", "TextFormat": "%START_TIME%"},
            "AccessLogs.TextFormat",
            "cannot specify both access log JSONFormat and TextFormat",
        ),
        ({"JSONFormat": "{"}, "AccessLogs.JSONFormat", "invalid access log json for JSON format"),
        ({"Enabled": "yes"}, "AccessLogs.Enabled", "AccessLogs.Enabled must be a boolean"),
    ],
)
def test_access_logs_validation_names_the_field(
    raw: dict[str, object], field: str, text: str
) -> None:
    with pytest.raises(ValidationError) as info:
        parse_access_logs(raw)
    assert info.value.field == field
    assert info.value.message.startswith(text)


def test_destination_reporter_counts_an_rbac_denial_with_its_flag() -> None:
    metrics = ProxyMetrics()
    svc = L7Inbound("api", metrics)  # no intentions and default deny
    request = Request.build("DELETE", "/admin?x=1", [("host", "api")], source_service="web")
    resp = trio.run(svc.handle, request, b"")
    assert (resp.status, resp.body) == (403, b"RBAC: access denied")
    denied = {
        "reporter": "destination",
        "source_service": "web",
        "destination_service": "api",
        "destination_subset": "unknown",
        "request_method": "DELETE",
        "response_code": "403",
        "response_flags": "RBAC",
    }
    assert value(metrics, "meshd_requests_total", **denied) == 1
    assert value(metrics, "meshd_response_bytes_sum", **denied) == len(b"RBAC: access denied")
