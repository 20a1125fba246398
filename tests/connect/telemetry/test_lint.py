"""The propagation lint core: new traces started inside a traced inbound request."""

from __future__ import annotations

from connect.telemetry.lint import PropagationLint
from connect.telemetry.spans import Span, SpanKind

MS = 1_000_000


def _span(
    trace: str,
    kind: SpanKind,
    service: str,
    start: int,
    end: int,
    *,
    parent: str | None,
    peer: str = "",
) -> Span:
    attrs: dict[str, str | int | float | bool] = {"peer.service": peer} if peer else {}
    return Span(
        trace * 32, f"{start:016x}", parent, "GET /", kind, service, start * MS, end * MS, attrs
    )


def test_a_server_window_then_the_root_inside_it_or_the_reverse_are_both_found() -> None:
    seen: list[str] = []
    lint = PropagationLint(on_new=lambda f: seen.append(f.service))
    # api's outbound call ends (and arrives) before the inbound request it served.
    lint.observe(_span("b", SpanKind.CLIENT, "api", 110, 120, parent=None, peer="db"))
    lint.observe(_span("a", SpanKind.SERVER, "api", 100, 200, parent="1" * 16, peer="web"))
    lint.observe(_span("c", SpanKind.SERVER, "db", 300, 400, parent="2" * 16))
    lint.observe(_span("d", SpanKind.CLIENT, "db", 350, 360, parent=None, peer="cache"))
    found = {f.service: f for f in lint.findings()}
    assert sorted(found) == ["api", "db"] and sorted(seen) == ["api", "db"]
    assert found["api"].inbound_trace == "a" * 32 and found["api"].new_trace == "b" * 32
    assert found["api"].upstreams == {"db"}


def test_roots_outside_the_window_untraced_inbound_and_the_same_trace_are_not_findings() -> None:
    lint = PropagationLint()
    lint.observe(_span("a", SpanKind.SERVER, "api", 100, 200, parent="1" * 16))
    lint.observe(_span("b", SpanKind.CLIENT, "api", 250, 260, parent=None, peer="db"))  # after
    lint.observe(_span("c", SpanKind.SERVER, "web", 100, 200, parent=None))  # no trace came in
    lint.observe(_span("d", SpanKind.CLIENT, "web", 150, 160, parent=None, peer="api"))
    lint.observe(_span("e", SpanKind.SERVER, "db", 100, 200, parent="1" * 16))
    lint.observe(_span("e", SpanKind.CLIENT, "db", 150, 160, parent=None))  # same trace
    assert lint.findings() == []


def test_proxy_reports_count_on_all_traffic_and_one_root_counts_once() -> None:
    lint = PropagationLint()
    lint.observe(_span("a", SpanKind.SERVER, "api", 100, 200, parent="1" * 16))
    lint.observe(_span("f", SpanKind.SERVER, "api", 100, 200, parent="2" * 16))
    lint.observe(_span("b", SpanKind.CLIENT, "api", 110, 120, parent=None, peer="db"))
    assert lint.findings()[0].count == 1  # inside two windows, one broken call
    lint.report("api", "cache", 40, 500 * MS)
    (found,) = lint.findings()
    assert found.to_json()["BrokenCalls"] == 40 and found.upstreams == {"db", "cache"}
