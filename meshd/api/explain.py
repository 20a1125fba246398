"""/v1/internal/explain: what the mesh would do with one described request.

meshd's own endpoint, under ``/v1/internal/`` as Consul's UI-only helpers
are (it is a debugging aid whose shape may grow). ``POST`` takes a JSON
body, ``GET`` the same as query parameters:

=============  ==================  ==========================================
body field     query parameter     meaning
=============  ==================  ==========================================
Source         source              calling service (required)
Destination    destination         upstream service (required)
Method         method              HTTP method, default GET
Path           path                request path, may carry ``?query``; "/"
Query          query               query string (when Path has none)
Headers        header (repeated)   ``{"name": "value" | [values]}`` /
                                   ``header=name: value``
Seed           seed                seeds the split pick (default: random)
=============  ==================  ==========================================

The agent compiles the destination's discovery chain as
``/v1/discovery-chain`` does, reads each target's healthy instances with
the subset filter the way the proxy asks ``/v1/health/connect``, takes the
ejections its local proxies of Source reported
(``/v1/agent/connect/proxy-ejections``) and runs the proxy's own decision
core (connect/l7/explain.py over connect/l7/decide.py). The answer adds the
intention decision (``Intention``: for an ``http`` service the request is
judged by ``connect.l7.rbac`` as the receiving proxy judges it, see
explain_intention.py) and the source's outlier settings for
this upstream (``OutlierDetection``: the PassiveHealthCheck in effect,
Envoy's defaults when none is configured).

Errors: a missing or invalid field is 400 naming it; a Source or
Destination that is neither registered nor named by a config entry is 404
``unknown service "x"``; a chain that does not compile is 500 with the
compiler's text (as ``/v1/discovery-chain``). ACL: service:read on both
services.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from connect.l7.explain import explain
from connect.l7.outlier import OutlierConfig
from connect.l7.request import Request as L7Request
from connect.l7.table import TableError, upstream_limits
from connect.proxy.balancer import endpoints_from_health
from registry.errors import ValidationError

from ..defs.definitions import check_service_name
from ..errors import Internal
from ..http import BadRequest, NotFound, Request, Response, decode_json_body
from ..values.ejections import Ejection
from ..wire import ReadOptions
from . import ports
from .explain_intention import intention_decision


class Ports(ports.Registry, ports.Connect, ports.Configured, Protocol):
    """What this module needs from the agent."""


PATH = "/v1/internal/explain"
MAX_BODY = 64 * 1024
MAX_HEADERS = 100
MAX_PATH = 8192
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")
FIELDS = ("Source", "Destination", "Method", "Path", "Query", "Headers", "Seed")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f]")


@dataclass(frozen=True)
class ExplainInput:
    source: str
    destination: str
    method: str
    target: str  # path and query
    headers: tuple[tuple[str, str], ...]
    seed: int | None


def _service(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field} is required: a service name", field)
    try:
        check_service_name(value, field)
    except ValidationError as exc:
        raise BadRequest(f"{field}: {exc.message}", field) from None
    return value


def _method(value: Any) -> str:
    method = value.upper() if isinstance(value, str) else value
    if method not in METHODS:
        raise BadRequest(f"Method must be one of {', '.join(METHODS)}, not {value!r}", "Method")
    return str(method)


def _target(path: Any, query: Any) -> str:
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATH:
        raise BadRequest(f"Path must start with '/' (at most {MAX_PATH} bytes)", "Path")
    if _BAD_CHARS.search(path):
        raise BadRequest("Path must not contain spaces or control characters", "Path")
    if not isinstance(query, str) or _BAD_CHARS.search(query):
        raise BadRequest("Query must be a string without spaces or control characters", "Query")
    if query and "?" not in path:
        return f"{path}?{query.removeprefix('?')}"
    return path


def _header(name: Any, value: Any) -> tuple[str, str]:
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise BadRequest(f"Headers: invalid header name {name!r}", "Headers")
    if not isinstance(value, str) or "\r" in value or "\n" in value or "\x00" in value:
        raise BadRequest(f"Headers: invalid value for {name!r}", "Headers")
    return name.lower(), value.strip()


def _headers_from_body(raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise BadRequest('Headers must be an object {"name": "value" or [values]}', "Headers")
    out: list[tuple[str, str]] = []
    for name, value in raw.items():
        for v in value if isinstance(value, list) else [value]:
            out.append(_header(name, v))
    if len(out) > MAX_HEADERS:
        raise BadRequest(f"Headers: at most {MAX_HEADERS}", "Headers")
    return tuple(out)


def _seed(value: Any, field: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise BadRequest(f"{field} must be a non-negative integer", field)


def parse_input(req: Request) -> ExplainInput:
    """The described request from a POST body or GET query. Raises BadRequest."""
    if req.method == "POST":
        body = decode_json_body(req, fields=FIELDS, max_bytes=MAX_BODY)
        if not isinstance(body, Mapping):
            raise BadRequest("Request decode failed: body must be an object", "body")
        headers = _headers_from_body(body.get("Headers"))
        get = body.get
        seed_field = "Seed"
    else:
        lines = req.query.get("header") or []
        if len(lines) > MAX_HEADERS:
            raise BadRequest(f"header: at most {MAX_HEADERS}", "header")
        pairs = []
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest(f"header must be 'name: value', not {line!r}", "header")
            pairs.append(_header(name.strip(), value))
        headers = tuple(pairs)
        query = {k.capitalize(): req.query_value(k, "") for k in ("source", "destination")}
        query.update({k: req.query_value(k.lower(), "") for k in ("Method", "Path", "Query")})
        get = lambda key, default=None: query.get(key) or default  # noqa: E731
        seed_field = "seed"
        body = {"Seed": req.query_value("seed", "")}
    return ExplainInput(
        source=_service(get("Source"), "Source"),
        destination=_service(get("Destination"), "Destination"),
        method=_method(get("Method") or "GET"),
        target=_target(get("Path") or "/", get("Query") or ""),
        headers=headers,
        seed=_seed(body.get("Seed"), seed_field),
    )


async def _read(agent: Ports, name: str, args: Mapping[str, Any]) -> Any:
    return (await agent.read(name, args, ReadOptions())).value


async def _check_known(agent: Ports, names: Mapping[str, str]) -> None:
    """404 for a service neither in the catalog nor named by a config entry."""
    catalog = await _read(agent, "catalog.services", {}) or {}
    entries = await _read(agent, "config.list", {}) or []
    named = {str(e.get("Name")) for e in entries if isinstance(e, Mapping)}
    for field, name in names.items():
        if name not in catalog and name not in named:
            raise NotFound(f'unknown service "{name}" ({field})')


async def _chain(agent: Ports, destination: str) -> Mapping[str, Any]:
    args = {"name": destination, "datacenter": agent.datacenter, "overrides": None}
    value = await _read(agent, "discovery_chain", args) or {}
    if "Error" in value:
        raise Internal(str(value["Error"]))
    return dict(value["Chain"])


async def _instances(
    agent: Ports, chain: Mapping[str, Any]
) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """Target id -> healthy instance addresses (as the proxy follows them),
    and address -> instance details."""
    endpoints: dict[str, list[str]] = {}
    details: dict[str, dict[str, Any]] = {}
    for tid, t in (chain.get("Targets") or {}).items():
        args: dict[str, Any] = {
            "name": str(t.get("Service") or ""),
            "passing": True,
            "tags": [],
            "node_meta": {},
            "connect": True,
        }
        subset_filter = str((t.get("Subset") or {}).get("Filter") or "")
        if subset_filter:
            args["filter"] = subset_filter
        rows = await _read(agent, "health.service", args) or []
        found = endpoints_from_health(rows)
        endpoints[tid] = [str(e) for e in found]
        for e in found:
            details[str(e)] = {"Address": str(e), "ServiceID": e.service_id, "Node": e.node}
    return endpoints, details


async def _outlier_settings(agent: Ports, source: str, destination: str) -> Any:
    entry = await _read(agent, "config.get", {"kind": "service-defaults", "name": source})
    try:
        limits = upstream_limits(entry, destination)
    except ValueError:
        return None
    # Without a PassiveHealthCheck the proxy still detects outliers with
    # Envoy's defaults (as Consul's empty outlier_detection does).
    o = limits.outlier or OutlierConfig()
    return {
        "Configured": limits.outlier is not None,
        "Interval": o.interval_s,
        "MaxFailures": o.max_failures,
        "EnforcingConsecutive5xx": o.enforcing_consecutive_5xx,
        "MaxEjectionPercent": o.max_ejection_percent,
        "BaseEjectionTime": o.base_ejection_time_s,
    }


def _decorate(
    out: dict[str, Any],
    details: Mapping[str, Mapping[str, Any]],
    ejections: Mapping[str, list[Ejection]],
) -> None:
    """Addresses in ``out`` -> instance details and ejection reports."""
    by_addr = {(tid, e.address): e for tid, ejs in ejections.items() for e in ejs}

    def eligible(addrs: list[str]) -> list[Any]:
        return [dict(details.get(a) or {"Address": a}) for a in addrs]

    def ejected(tid: str, addrs: list[str]) -> list[Any]:
        return [
            by_addr[(tid, a)].to_json() if (tid, a) in by_addr else {"Address": a} for a in addrs
        ]

    for t in out.get("Targets") or []:
        t["Eligible"], t["Ejected"] = eligible(t["Eligible"]), ejected(t["ID"], t["Ejected"])
    target = str(out.get("Target") or "")
    out["Eligible"] = eligible(out.get("Eligible") or [])
    out["Ejected"] = ejected(target, out.get("Ejected") or [])


def _receiving_service(out: Mapping[str, Any], destination: str) -> str:
    """The service whose proxy receives the request (a redirect or route
    may name another than ``destination``): its intentions decide."""
    target = str(out.get("Target") or "")
    for t in out.get("Targets") or []:
        if t.get("ID") == target and t.get("Service"):
            return str(t["Service"])
    return destination


async def explain_request(agent: Ports, q: ExplainInput) -> dict[str, Any]:
    """The explain answer for ``q`` (see the module doc)."""
    await _check_known(agent, {"Source": q.source, "Destination": q.destination})
    chain = await _chain(agent, q.destination)
    endpoints, details = await _instances(agent, chain)
    now, wall = trio.current_time(), time.time()
    ejections = agent.proxy_ejections.for_upstream(q.source, q.destination, now, wall)
    ejected = {tid: {e.address for e in ejs} for tid, ejs in ejections.items()}
    request = L7Request.build(q.method, q.target, q.headers, source_service=q.source)
    rng = random.Random(q.seed) if q.seed is not None else random.Random()
    try:
        out = explain(chain, endpoints, ejected, request, rng=rng)
    except TableError as exc:
        raise Internal(str(exc)) from None
    _decorate(out, details, ejections)
    reporters = [r.proxy_id for r in agent.proxy_ejections.all(now) if r.service == q.source]
    head: dict[str, Any] = {
        "Source": q.source,
        "Destination": q.destination,
        "Request": {
            "Method": request.method,
            "Path": request.path,
            "Query": request.query,
            "Headers": [[k, v] for k, v in request.headers.items()],
        },
        "Intention": await intention_decision(
            agent, q.source, _receiving_service(out, q.destination), request, http=out["L7"]
        ),
        "OutlierDetection": await _outlier_settings(agent, q.source, q.destination),
        "EjectionsReportedBy": reporters,
    }
    return {**head, **out}


async def answer(p: Ports, req: Request) -> Response:
    """``GET``/``POST /v1/internal/explain`` (a row of meshd/api/routes.py ROUTES)."""
    result = await explain_request(p, parse_input(req))
    return Response.json(result, pretty="pretty" in req.query)
