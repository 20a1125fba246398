"""The agent's traces: spans from its local proxies, kept, exported and linted.

Local proxies ``PUT /v1/internal/traces/spans``; each span goes into a
bounded ``TraceStore`` (the oldest traces are evicted whole), to every
configured collector (``tracing.otlp_endpoint``, ``tracing.zipkin_endpoint``:
``connect.telemetry.export.Exporter``, bounded queues, drops counted, never
blocking the caller) and through the propagation lint, which logs one line
per service it finds dropping trace headers.

``peer_spans``/``peer_search`` ask the other members' agents (their
advertise address and this agent's HTTP port, as Consul agents share their
ports) for their part of a trace, so the API can answer with a whole trace
assembled across agents.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

import trio

from connect.proxy.agent_client import AgentClient, path_segment
from connect.proxy.errors import AgentError
from connect.telemetry.export import Exporter
from connect.telemetry.formats import Encoding
from connect.telemetry.lint import Finding, PropagationLint
from connect.telemetry.spans import Span, TraceStore
from connect.telemetry.wire import SpanFormatError, span_from_json

from ..config.model import TracingConfig
from ..metrics.live import Live

log = logging.getLogger("meshd.agent.traces")

PEER_TIMEOUT = 3.0
MAX_SPANS_PER_PUT = 4096


def exporters_for(cfg: TracingConfig) -> dict[str, Exporter]:
    """One exporter per configured collector, by name (``otlp``, ``zipkin``)."""
    out: dict[str, Exporter] = {}
    if cfg.otlp_endpoint:
        enc = Encoding.OTLP_JSON if cfg.otlp_encoding == "json" else Encoding.OTLP_PROTO
        out["otlp"] = Exporter(cfg.otlp_endpoint, enc, max_queue=cfg.export_queue)
    if cfg.zipkin_endpoint:
        out["zipkin"] = Exporter(cfg.zipkin_endpoint, Encoding.ZIPKIN, max_queue=cfg.export_queue)
    return out


def parse_spans(body: Any) -> list[Span]:
    """The spans of a ``{"Spans": [...]}`` body; raises ``SpanFormatError`` naming the field."""
    raw = body.get("Spans") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise SpanFormatError("Spans", "must be a list of spans")
    if len(raw) > MAX_SPANS_PER_PUT:
        raise SpanFormatError("Spans", f"at most {MAX_SPANS_PER_PUT} spans per request")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(span_from_json(item))
        except SpanFormatError as exc:
            raise SpanFormatError(f"Spans[{i}].{exc.field}", exc.message) from None
    return out


def parse_breaks(body: Any) -> list[tuple[str, str, int]]:
    """The optional ``Breaks`` of a spans body: ``[{"Service", "Upstream", "Count"}]``."""
    raw = body.get("Breaks", []) if isinstance(body, dict) else []
    if not isinstance(raw, list) or len(raw) > MAX_SPANS_PER_PUT:
        raise SpanFormatError("Breaks", "must be a list of {Service, Upstream, Count}")
    out = []
    for i, item in enumerate(raw):
        ok = isinstance(item, dict) and isinstance(item.get("Service"), str) and item["Service"]
        count = item.get("Count") if isinstance(item, dict) else None
        if not ok or not isinstance(item.get("Upstream", ""), str):
            raise SpanFormatError(f"Breaks[{i}]", "needs a Service and an Upstream name")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise SpanFormatError(f"Breaks[{i}].Count", "must be a non-negative integer")
        out.append((str(item["Service"]), str(item.get("Upstream", "")), count))
    return out


def _log_finding(finding: Finding) -> None:
    log.warning(
        "event=trace_propagation_broken service=%s upstreams=%s inbound_trace=%s new_trace=%s "
        "hint=%s",
        finding.service,
        ",".join(sorted(finding.upstreams)) or "-",
        finding.inbound_trace,
        finding.new_trace,
        "the service does not copy traceparent/b3 headers from its inbound requests",
    )


class AgentTraces:
    """Spans of this agent's proxies. Create with the config, then ``await run()``."""

    def __init__(self, cfg: TracingConfig) -> None:
        self.store = TraceStore(cfg.store_max_spans, cfg.store_max_traces)
        self.exporters = exporters_for(cfg)
        self.lint = PropagationLint(on_new=_log_finding)
        self.received = 0

    async def run(self) -> None:
        """Run the exporters until cancelled."""
        async with trio.open_nursery() as nursery:
            for exporter in self.exporters.values():
                nursery.start_soon(exporter.run)

    def ingest(self, spans: Iterable[Span]) -> int:
        """Keep, export and lint ``spans`` (never blocks); how many were taken."""
        n = 0
        for span in spans:
            n += 1
            self.store.add(span)
            for exporter in self.exporters.values():
                exporter.record(span)
            self.lint.observe(span)
        self.received += n
        return n

    def report_breaks(self, breaks: Iterable[tuple[str, str, int]]) -> None:
        """Counts of header-dropping calls a local proxy saw (the lint)."""
        now = time.time_ns()
        for service, upstream, count in breaks:
            self.lint.report(service, upstream, count, now)

    def live(self) -> list[Live]:
        """Metrics read at scrape time."""
        dropped = {"store_evicted": float(self.store.dropped_spans)}
        exported: dict[str, float] = {}
        for name, exp in self.exporters.items():
            st = exp.stats
            dropped[f"{name}_queue_full"] = float(st.dropped)
            dropped[f"{name}_rejected"] = float(st.rejected)
            dropped[f"{name}_gave_up"] = float(st.gave_up)
            exported[name] = float(st.exported)
        out = [
            Live(
                "tracing.spans_received",
                "Spans received from local proxies.",
                self.received,
                counter=True,
            ),
            Live(
                "tracing.store_spans",
                "Spans held in the recent-trace store.",
                self.store.span_count,
            ),
            Live(
                "tracing.spans_dropped",
                "Spans lost, by where: evicted from the store, or an exporter's full queue, "
                "rejection by the collector, or retries exhausted.",
                label="reason",
                by=dropped,
                counter=True,
            ),
        ]
        if exported:
            out.append(
                Live(
                    "tracing.spans_exported",
                    "Spans accepted by each collector.",
                    label="collector",
                    by=exported,
                    counter=True,
                )
            )
        return out


def _peer_addresses(members: Sequence[dict[str, Any]], self_name: str, port: int) -> list[str]:
    out = []
    for m in members:
        if m.get("Name") == self_name or m.get("Status") != 1:
            continue
        addr = str(m.get("Addr") or "")
        if addr:
            out.append(f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}")
    return out


async def ask_peers(
    members: Sequence[dict[str, Any]],
    self_name: str,
    http_port: int,
    path: str,
    query: dict[str, str],
    token: str,
) -> list[Any]:
    """``GET path?query&local=1`` on every other live member's agent, concurrently;
    the JSON answers of those that answered within ``PEER_TIMEOUT`` (others are
    logged and left out: a partial trace beats none)."""
    answers: list[Any] = []

    async def one(address: str) -> None:
        host, _, port = address.rpartition(":")
        client = AgentClient(host.strip("[]"), int(port), token=token, connect_timeout=PEER_TIMEOUT)
        try:
            resp = await client.request(
                "GET", path, query={**query, "local": "1"}, timeout=PEER_TIMEOUT
            )
            answers.append(resp.json())
        except (AgentError, ValueError) as exc:
            log.info("event=trace_peer_unanswered peer=%s reason=%s", address, exc)
        finally:
            await client.aclose()

    async with trio.open_nursery() as nursery:
        for address in _peer_addresses(members, self_name, http_port):
            nursery.start_soon(one, address)
    return answers


def trace_path(trace_id: str) -> str:
    return f"/v1/internal/traces/{path_segment(trace_id)}"
