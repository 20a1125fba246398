"""/v1/agent/metrics, /v1/agent/host, /v1/agent/health/service/* and the
``Stats`` of /v1/agent/self.

Health by service (https://developer.hashicorp.com/consul/api-docs/agent/service#get-local-service-health)
answers from the agent's local state: the worst status among the service's
checks and the node's (``maintenance`` for a maintenance check) as
``AggregatedStatus``, and as the status code (200 passing, 429 warning, 503
critical or maintenance; 404 unknown), or as plain text with
``?format=text``.

Metrics: the agent's ``meshd.metrics.prometheus.Metrics`` registry, as Consul's JSON
shape (``Timestamp``, ``Gauges``, ``Points``, ``Counters``, ``Samples``), or
with ``?format=prometheus`` as the Prometheus text exposition format (0.0.4).

Host: what Consul gets from gopsutil, read from /proc and os with the
standard library (Linux; on other systems the missing parts are null and
listed in ``Errors``).
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import trio

from registry import shapes
from registry.records import HealthCheck

from ..http import QueryOptions, Request, Response
from ..metrics.prometheus import PROMETHEUS_CONTENT_TYPE
from . import ports


class Ports(ports.LocalAgent, ports.Cluster, ports.Telemetry, Protocol):
    """What this module needs from the agent."""


def stats(agent: Ports) -> dict[str, dict[str, str]]:
    """``Stats`` of /v1/agent/self: Consul's sections, every value a string."""
    local = agent.local
    ttls = sum(1 for c in local.checks.values() if c.kind == "ttl")
    out = {
        "agent": {
            "check_monitors": "0",
            "check_ttls": str(ttls),
            "checks": str(len(local.checks)),
            "services": str(len(local.services)),
        },
        "build": {"prerelease": "", "revision": "", "version": agent.version},
        "consul": agent.consul_stats(),
        "runtime": {
            "arch": platform.machine(),
            "os": sys.platform,
            "cpu_count": str(os.cpu_count() or 0),
            "goroutines": str(trio.lowlevel.current_statistics().tasks_living),
            "version": f"python{platform.python_version()}",
        },
    }
    raft = agent.raft_stats()
    if raft is not None:
        out["raft"] = raft
    return out


# ------------------------------------------------------------------ host


def _read(path: str) -> str:
    return Path(path).read_text()


def _meminfo() -> dict[str, Any]:
    fields = {}
    for line in _read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            fields[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    total = fields.get("MemTotal", 0)
    available = fields.get("MemAvailable", fields.get("MemFree", 0))
    used = total - available
    return {
        "total": total,
        "available": available,
        "used": used,
        "usedPercent": 100.0 * used / total if total else 0.0,
        "free": fields.get("MemFree", 0),
        "buffers": fields.get("Buffers", 0),
        "cached": fields.get("Cached", 0),
        "swapTotal": fields.get("SwapTotal", 0),
        "swapFree": fields.get("SwapFree", 0),
    }


def _cpus() -> list[dict[str, Any]]:
    cpus: list[dict[str, Any]] = []
    for block in _read("/proc/cpuinfo").strip().split("\n\n"):
        kv = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            kv[key.strip()] = value.strip()
        cpus.append(
            {
                "cpu": int(kv.get("processor", len(cpus))),
                "vendorId": kv.get("vendor_id", ""),
                "family": kv.get("cpu family", ""),
                "model": kv.get("model", ""),
                "modelName": kv.get("model name", ""),
                "mhz": float(kv.get("cpu MHz", 0) or 0),
                "cacheSize": int((kv.get("cache size", "0").split() or ["0"])[0]),
                "cores": int(kv.get("cpu cores", 1) or 1),
            }
        )
    return cpus


def _os_release() -> dict[str, str]:
    out = {}
    for line in _read("/etc/os-release").splitlines():
        key, _, value = line.partition("=")
        out[key] = value.strip('"')
    return out


def _host() -> dict[str, Any]:
    uptime = float(_read("/proc/uptime").split()[0])
    release = _os_release()
    return {
        "hostname": socket.gethostname(),
        "uptime": int(uptime),
        "bootTime": int(time.time() - uptime),
        "procs": sum(1 for p in os.listdir("/proc") if p.isdigit()),
        "os": sys.platform,
        "platform": release.get("ID", ""),
        "platformFamily": release.get("ID_LIKE", release.get("ID", "")),
        "platformVersion": release.get("VERSION_ID", ""),
        "kernelVersion": platform.release(),
        "kernelArch": platform.machine(),
        "virtualizationSystem": "",
        "virtualizationRole": "",
        "hostId": _read("/etc/machine-id").strip() if os.path.exists("/etc/machine-id") else "",
    }


def _disk(path: str) -> dict[str, Any]:
    st = os.statvfs(path)
    total, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    used = total - st.f_bfree * st.f_frsize
    inodes_used = st.f_files - st.f_ffree
    return {
        "path": path,
        "fstype": "",
        "total": total,
        "free": free,
        "used": used,
        "usedPercent": 100.0 * used / (used + free) if used + free else 0.0,
        "inodesTotal": st.f_files,
        "inodesUsed": inodes_used,
        "inodesFree": st.f_ffree,
        "inodesUsedPercent": 100.0 * inodes_used / st.f_files if st.f_files else 0.0,
    }


def host_info(disk_path: str) -> dict[str, Any]:
    """Consul's /v1/agent/host document. Blocking file reads: run in a thread."""
    errors: list[str] = []
    out: dict[str, Any] = {}
    parts = (
        ("Memory", _meminfo, ()),
        ("CPU", _cpus, ()),
        ("Host", _host, ()),
        ("Disk", _disk, (disk_path,)),
    )
    for key, fn, args in parts:
        try:
            out[key] = fn(*args)
        except (OSError, ValueError) as exc:
            out[key] = None
            errors.append(f"{key}: {exc}")
    out["CollectionTime"] = time.time_ns()
    out["Errors"] = errors or None
    return out


# ------------------------------------------------------- health by service

_RANK = {"passing": 0, "warning": 1, "critical": 2, "maintenance": 3}
_STATUS_CODE = {"passing": 200, "warning": 429, "critical": 503, "maintenance": 503}


def _check_status(c: HealthCheck) -> str:
    if c.check_id == "_node_maintenance" or c.check_id.startswith("_service_maintenance:"):
        return "maintenance"
    return c.status if c.status in _RANK else "critical"


def aggregated_status(checks: list[HealthCheck]) -> str:
    """The worst status of ``checks`` (Consul's ``AggregatedStatus``)."""
    return max((_check_status(c) for c in checks), key=_RANK.__getitem__, default="passing")


def _service_info(agent: Ports, service_id: str) -> tuple[str, dict[str, Any]]:
    from .agent import agent_service_json  # agent.py imports this module

    defn = agent.local.services[service_id]
    checks = agent.local.service_checks(service_id) + agent.local.node_checks()
    status = aggregated_status(checks)
    info = {
        "AggregatedStatus": status,
        "Service": agent_service_json(defn.service, agent.datacenter),
        "Checks": [shapes.check_json(c) for c in checks],
    }
    return status, info


def _health_answer(req: Request, status: str, body: Any, code: int) -> Response:
    if req.query_value("format") == "text":
        return Response.text(status, status=code)
    return Response.json(body, status=code, pretty="pretty" in req.query)


async def by_id(p: Ports, req: Request) -> Response:
    service_id = req.path_params["service_id"]
    if service_id not in p.local.services:
        reason = f"ServiceId {service_id} not found"
        if req.query_value("format") == "text":
            return Response.text(reason, status=404)
        empty = {"AggregatedStatus": "critical", "Service": None, "Checks": None}
        return Response.json(empty, status=404)
    status, info = _service_info(p, service_id)
    return _health_answer(req, status, info, _STATUS_CODE[status])


async def by_name(p: Ports, req: Request) -> Response:
    name = req.path_params["service_name"]
    ids = sorted(i for i, d in p.local.services.items() if d.service.service == name)
    if not ids:
        reason = f"ServiceName {name} Not Found"
        if req.query_value("format") == "text":
            return Response.text(reason, status=404)
        return Response.json(None, status=404)
    infos = [_service_info(p, i) for i in ids]
    status = max((s for s, _ in infos), key=_RANK.__getitem__)
    return _health_answer(req, status, [i for _, i in infos], _STATUS_CODE[status])


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def metrics(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    registry = p.metrics
    if req.query_value("format") == "prometheus":
        text = registry.prometheus_text().decode()
        return Response.text(text, content_type=PROMETHEUS_CONTENT_TYPE)
    return Response.json(registry.summary(time.time()), pretty=opts.pretty)


async def host(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    info = await trio.to_thread.run_sync(host_info, p.config.data_dir or "/")
    return Response.json(info, pretty=opts.pretty)
