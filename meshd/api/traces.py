"""/v1/internal/traces: the agent's recent traces, assembled across agents (meshd's).

* ``PUT /v1/internal/traces/spans`` — a local proxy hands in finished spans
  (``{"Spans": [...]}``, see ``connect.telemetry.wire``) and optionally
  ``"Breaks": [{Service, Upstream, Count}]``, the calls it saw start a new
  trace while the service served a traced request; needs service:write on
  every service named (what a sidecar's token holds).
* ``GET /v1/internal/traces?service=&status=&min_duration=&limit=``
  — recent traces, newest first (``status``: ``ok``, ``error`` or an HTTP
  status code some span of the trace saw): ``[{TraceID, Services, RootName, StartNs,
  DurationNs, SpanCount, Error}]``; ``min_duration`` is a Go duration
  (``250ms``). The agent asks the other members' agents too and merges by
  trace id; ``?local`` answers from this agent only.
* ``GET /v1/internal/traces/:trace_id`` — every span of one trace from every
  agent, ordered by start: ``{TraceID, Spans: [...]}``; 404 when no agent
  holds any. 400 for an id that is not 32 hex digits.
* ``GET /v1/internal/traces/lint`` — the propagation lint: services that start
  new traces while serving a traced request (they do not copy the trace
  headers), ``[{Service, Upstreams, BrokenCalls, ...}]``; ``?local`` as above.

ACL: reading a trace needs service:read on every service in it (403
otherwise); search and lint answers leave out what the token may not read
(``X-Consul-Results-Filtered-By-ACLs: true``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Protocol

from connect.telemetry.spans import STATUS_CODE, Span, TraceSummary
from connect.telemetry.wire import SpanFormatError, span_to_json

from ..acl import Permission
from ..durations import parse_duration
from ..errors import DurationError
from ..http import BadRequest, NotFound, PermissionDenied, Request, Response
from ..peers import ask_peers
from ..values.spans import parse_breaks, parse_spans, trace_path
from . import ports
from .common import FILTERED_HEADER


class Ports(ports.LocalAgent, ports.Cluster, ports.Telemetry, Protocol):
    """What this module needs from the agent."""


_TRACE_ID = re.compile(r"[0-9a-f]{32}")
MAX_LIMIT = 1000


def _allowed(req: Request, services: Iterable[str]) -> bool:
    authz = getattr(req, "authz", None)
    if authz is None:
        return True
    return all(authz.allowed(Permission.SERVICE_READ, s) for s in services)


def _summary_json(s: TraceSummary) -> dict[str, Any]:
    return {
        "TraceID": s.trace_id,
        "Services": list(s.services),
        "RootName": s.root_name,
        "StartNs": s.start_ns,
        "DurationNs": s.duration_ns,
        "SpanCount": s.span_count,
        "Error": s.error,
    }


def _merge_summaries(groups: Iterable[list[dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for group in groups:
        for item in group if isinstance(group, list) else []:
            if not isinstance(item, dict) or not isinstance(item.get("TraceID"), str):
                continue
            have = merged.get(item["TraceID"])
            if have is None:
                merged[item["TraceID"]] = dict(item)
                continue
            end = max(have["StartNs"] + have["DurationNs"], item["StartNs"] + item["DurationNs"])
            have["StartNs"] = min(have["StartNs"], item["StartNs"])
            have["DurationNs"] = end - have["StartNs"]
            have["Services"] = sorted({*have["Services"], *item["Services"]})
            have["SpanCount"] += item["SpanCount"]
            have["Error"] = have["Error"] or item["Error"]
            if item["StartNs"] <= have["StartNs"]:
                have["RootName"] = item["RootName"]
    out = sorted(merged.values(), key=lambda s: -int(s["StartNs"]))
    return out[:limit]


def _search_args(req: Request) -> tuple[str | None, bool | None, int | None, int, int]:
    service = req.query_value("service") or None
    status = req.query_value("status")
    code = int(status) if re.fullmatch(r"[1-5][0-9][0-9]", status) else None
    if status not in ("", "ok", "error") and code is None:
        raise BadRequest('status must be "ok", "error" or an HTTP status code', "status")
    error = None if status in ("", str(code)) else status == "error"
    try:
        min_ns = int(parse_duration(req.query_value("min_duration") or "0") * 1e9)
    except DurationError as exc:
        raise BadRequest(f"Invalid min_duration: {exc}", "min_duration") from None
    raw_limit = req.query_value("limit") or "20"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_LIMIT}", "limit")
    return service, error, code, min_ns, int(raw_limit)


def _has_code(spans: Iterable[Span], code: int) -> bool:
    return any(s.attributes.get(STATUS_CODE) == code for s in spans)


def _filtered(req: Request, items: list[dict[str, Any]], key: str) -> Response:
    kept = [i for i in items if _allowed(req, i[key] if isinstance(i[key], list) else [i[key]])]
    resp = Response.json(kept)
    if len(kept) != len(items):
        resp.set_header(FILTERED_HEADER, "true")
    return resp


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


def local(p: Ports, req: Request) -> bool:
    return "local" in req.query


async def peers(p: Ports, req: Request, path: str, query: dict[str, str]) -> list[Any]:
    if local(p, req):
        return []
    members = await p.members()
    port = p.config.ports.http
    return await ask_peers(members, p.node_name, port, path, query, req.token)


async def put_spans(p: Ports, req: Request) -> Response:
    try:
        body = json.loads(req.body or b"null")
        spans, breaks = parse_spans(body), parse_breaks(body)
    except ValueError as exc:
        field = exc.field if isinstance(exc, SpanFormatError) else "body"
        raise BadRequest(f"Request decode failed: {exc}", field) from None
    authz = getattr(req, "authz", None)
    if authz is not None:
        for service in sorted({s.service for s in spans} | {b[0] for b in breaks}):
            authz.require(Permission.SERVICE_WRITE, service)
    p.traces.report_breaks(breaks)
    return Response.json({"Accepted": p.traces.ingest(spans)})


async def search(p: Ports, req: Request) -> Response:
    service, error, code, min_ns, limit = _search_args(req)
    store = p.traces.store
    found = store.search(
        service=service,
        error=error,
        min_duration_ns=min_ns,
        limit=limit if code is None else max(1, len(store)),
    )
    if code is not None:  # a span of the trace answered with that status
        found = [t for t in found if _has_code(store.get(t.trace_id), code)][:limit]
    mine = [_summary_json(s) for s in found]
    query = {k: v[0] for k, v in req.query.items() if k != "local" and v}
    others = await peers(p, req, "/v1/internal/traces", query)
    return _filtered(req, _merge_summaries([mine, *others], limit), "Services")


async def lint(p: Ports, req: Request) -> Response:
    mine = [f.to_json() for f in p.traces.lint.findings()]
    for other in await peers(p, req, "/v1/internal/traces/lint", {}):
        names = {m["Service"] for m in mine}
        mine += [f for f in other if isinstance(f, dict) and f.get("Service") not in names]
    return _filtered(req, mine, "Service")


async def get_trace(p: Ports, req: Request) -> Response:
    trace_id = req.path_params.get("trace_id", "").lower()
    if not _TRACE_ID.fullmatch(trace_id):
        raise BadRequest("trace id must be 32 hex digits", "trace_id")
    spans = [span_to_json(s) for s in p.traces.store.get(trace_id)]
    seen = {s["SpanID"] for s in spans}
    for other in await peers(p, req, trace_path(trace_id), {}):
        for span in other.get("Spans", []) if isinstance(other, dict) else []:
            if isinstance(span, dict) and span.get("SpanID") not in seen:
                seen.add(span.get("SpanID"))
                spans.append(span)
    if not spans:
        raise NotFound(f"trace {trace_id} not found")
    if not _allowed(req, {str(s.get("Service")) for s in spans}):
        services = ",".join(sorted({str(s.get("Service")) for s in spans}))
        raise PermissionDenied(
            f"token lacks permission 'service:read' on a service of the trace ({services})"
        )
    spans.sort(key=lambda s: (int(s.get("StartNs") or 0), s.get("Kind") != "CLIENT"))
    return Response.json({"TraceID": trace_id, "Spans": spans})
