"""/v1/agent/connect/proxy-ejections: the outlier ejections of local proxies.

meshd's own endpoint (Consul has none; its users ask which instances Envoy
ejected and why, hashicorp/consul#11422). Routes:

- ``PUT /v1/agent/connect/proxy-ejections/:service_id`` -- a proxy reports
  the current ejections of the sidecar ``service_id`` (a connect proxy
  registered on this agent; else 404), body
  ``{"Upstreams": [{"DestinationName", "Ejections": [{"Target", "Address",
  "ServiceID", "Node", "Reason", "LastStatus", "EjectedAt", "Until",
  "TimesEjected"}]}]}`` with RFC 3339 times. Replaces the previous report.
  ACL: service:write on the proxy's destination service (what its leaf
  certificate needs too).
- ``GET /v1/agent/connect/proxy-ejections`` -- every local connect proxy
  with its last report (``ReportedAt`` null and no upstreams before the
  first), filtered to the services the token may read.
- ``GET /v1/agent/connect/proxy-ejections/:service_id`` -- one proxy's
  (service:read on its destination service; 404 for an unknown proxy ID).

Reports live in memory only (meshd/values/ejections.py): dropped when
the proxy is deregistered or after a TTL without refresh.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

import trio

from ..http import BadRequest, NotFound, Request, Response, decode_json_body
from ..values.ejections import (
    MAX_EJECTIONS,
    MAX_UPSTREAMS,
    Ejection,
    Report,
    parse_rfc3339,
)
from . import ports


class Ports(ports.LocalAgent, ports.Connect, Protocol):
    """What this module needs from the agent."""


BASE = "/v1/agent/connect/proxy-ejections"
MAX_BODY = 1024 * 1024
_EJECTION_FIELDS = (
    "Target",
    "Address",
    "ServiceID",
    "Node",
    "Reason",
    "LastStatus",
    "EjectedAt",
    "Until",
    "TimesEjected",
)


def _str(obj: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    value = obj.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > 512:
        raise BadRequest(f"{where}.{key} must be a string", f"{where}.{key}")
    if required and not value:
        raise BadRequest(f"{where}.{key} is required", f"{where}.{key}")
    return value


def _time(obj: Mapping[str, Any], key: str, where: str) -> float:
    text = _str(obj, key, where, required=True)
    try:
        return parse_rfc3339(text)
    except ValueError:
        raise BadRequest(f"{where}.{key} must be an RFC 3339 time", f"{where}.{key}") from None


def _int(obj: Mapping[str, Any], key: str, where: str, *, optional: bool = False) -> int | None:
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRequest(f"{where}.{key} must be a non-negative integer", f"{where}.{key}")
    return value


def parse_ejection(raw: Any, where: str) -> Ejection:
    """One reported ejection. Raises ``BadRequest`` naming the field."""
    if not isinstance(raw, Mapping):
        raise BadRequest(f"{where} must be an object", where)
    unknown = sorted(set(raw) - set(_EJECTION_FIELDS))
    if unknown:
        raise BadRequest(f"{where}: unknown field {unknown[0]!r}", f"{where}.{unknown[0]}")
    return Ejection(
        target=_str(raw, "Target", where, required=True),
        address=_str(raw, "Address", where, required=True),
        service_id=_str(raw, "ServiceID", where),
        node=_str(raw, "Node", where),
        reason=_str(raw, "Reason", where, required=True),
        last_status=_int(raw, "LastStatus", where, optional=True),
        ejected_at=_time(raw, "EjectedAt", where),
        until=_time(raw, "Until", where),
        times_ejected=_int(raw, "TimesEjected", where) or 0,
    )


def parse_report(body: Any) -> dict[str, list[Ejection]]:
    """Destination name -> ejections of a PUT body. Raises ``BadRequest``."""
    ups = body.get("Upstreams") if isinstance(body, Mapping) else None
    if ups is None:
        ups = []
    if not isinstance(ups, list) or len(ups) > MAX_UPSTREAMS:
        raise BadRequest(f"Upstreams must be a list of at most {MAX_UPSTREAMS}", "Upstreams")
    out: dict[str, list[Ejection]] = {}
    total = 0
    for i, up in enumerate(ups):
        where = f"Upstreams[{i}]"
        if not isinstance(up, Mapping):
            raise BadRequest(f"{where} must be an object", where)
        dest = _str(up, "DestinationName", where, required=True)
        ejs = up.get("Ejections") or []
        if not isinstance(ejs, list):
            raise BadRequest(f"{where}.Ejections must be a list", f"{where}.Ejections")
        total += len(ejs)
        if total > MAX_EJECTIONS:
            raise BadRequest(f"at most {MAX_EJECTIONS} ejections per report", "Ejections")
        out.setdefault(dest, []).extend(
            parse_ejection(e, f"{where}.Ejections[{j}]") for j, e in enumerate(ejs)
        )
    return out


def proxy_destination(agent: Ports, service_id: str) -> str:
    """The destination service of the local proxy ``service_id``; raises
    ``NotFound`` when no such connect proxy is registered here."""
    defn = agent.local.services.get(service_id)
    if defn is None or not defn.service.destination:
        raise NotFound(f"Unknown proxy service ID: {service_id}")
    return defn.service.destination


def _report_json(agent: Ports, service_id: str, report: Report | None) -> dict[str, Any]:
    if report is None:
        dest = proxy_destination(agent, service_id)
        return {"ProxyID": service_id, "Service": dest, "ReportedAt": None, "Upstreams": []}
    return report.to_json(time.time())


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def put(p: Ports, req: Request) -> Response:
    sid = req.path_params.get("service_id", "")
    dest = proxy_destination(p, sid)
    body = decode_json_body(req, fields=("Upstreams",), max_bytes=MAX_BODY, allow_empty=True)
    upstreams = parse_report(body)
    p.proxy_ejections.put(sid, dest, upstreams, now=trio.current_time(), wall=time.time())
    return Response.json(True)


async def get_one(p: Ports, req: Request) -> Response:
    sid = req.path_params.get("service_id", "")
    proxy_destination(p, sid)
    report = p.proxy_ejections.get(sid, trio.current_time())
    return Response.json(_report_json(p, sid, report), pretty="pretty" in req.query)


async def get_all(p: Ports, req: Request) -> Response:
    now = trio.current_time()
    proxies = sorted(sid for sid, d in p.local.services.items() if d.service.destination)
    reports = [_report_json(p, sid, p.proxy_ejections.get(sid, now)) for sid in proxies]
    return Response.json(reports, pretty="pretty" in req.query)


NAME_ONE = "agent.connect.proxy_ejections.one"
