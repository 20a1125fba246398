"""The agent's traces: spans from its local proxies, kept, exported and linted.

Local proxies ``PUT /v1/internal/traces/spans``; each span goes into a
bounded ``TraceStore`` (the oldest traces are evicted whole), to every
configured collector (``tracing.otlp_endpoint``, ``tracing.zipkin_endpoint``:
``connect.telemetry.export.Exporter``, bounded queues, drops counted, never
blocking the caller) and through the propagation lint, which logs one line
per service it finds dropping trace headers.

The API asks the other members' agents for their part of a trace
(meshd.peers.ask_peers) and parses the proxies' bodies with
meshd.values.spans, so it can answer with a whole trace assembled across
agents.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import trio

from connect.telemetry.export import Exporter
from connect.telemetry.formats import Encoding
from connect.telemetry.lint import Finding, PropagationLint
from connect.telemetry.spans import Span, TraceStore

from ..config.model import TracingConfig
from ..metrics.live import Live

log = logging.getLogger("meshd.agent.traces")


def exporters_for(cfg: TracingConfig) -> dict[str, Exporter]:
    """One exporter per configured collector, by name (``otlp``, ``zipkin``)."""
    out: dict[str, Exporter] = {}
    if cfg.otlp_endpoint:
        enc = Encoding.OTLP_JSON if cfg.otlp_encoding == "json" else Encoding.OTLP_PROTO
        out["otlp"] = Exporter(cfg.otlp_endpoint, enc, max_queue=cfg.export_queue)
    if cfg.zipkin_endpoint:
        out["zipkin"] = Exporter(cfg.zipkin_endpoint, Encoding.ZIPKIN, max_queue=cfg.export_queue)
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
