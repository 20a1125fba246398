"""Access logs: one line per request, off by default, on per service.

The settings are Consul's ``proxy-defaults`` ``AccessLogs`` (global), which a
service's own ``service-defaults`` ``AccessLogs`` replaces for its sidecar
(connect/l7/access_logs.py). Both entries are followed with blocking
queries; a change applies to the next request.

Without a format a line is a JSON object with fixed keys (``DEFAULT_KEYS``):
time, reporter, source and destination service, subset, method, path,
status, flags, duration, bytes, upstream instance, request and trace id.
``TextFormat`` and ``JSONFormat`` take Envoy's command operators
(``OPERATORS``). Lines go to stdout, stderr or an append-only file with one
``write`` each, so workers sharing a file do not interleave within a line.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import trio

from connect.l7.access_logs import FIELD, AccessLogs, parse_access_logs
from connect.l7.decode import ValidationError
from connect.telemetry.propagation import extract

from .l7_metrics import Exchange, flags_label
from .l7_outbound import service_defaults_resource  # the watch follow_limits shares
from .logfmt import emit
from .watchers import Resource, WatchHub

_OPERATOR = re.compile(r"%([A-Z_]+)(?:\(([^)]*)\))?%")
_PSEUDO = {":method": "method", ":path": "path", ":authority": "host"}


def proxy_defaults_resource() -> Resource:
    return Resource("config", "proxy-defaults", "/v1/config/proxy-defaults")


def _entries(body: Any) -> list[Any]:
    return body if isinstance(body, list) else []


def start_time(ex: Exchange) -> str:
    """Envoy's default ``%START_TIME%``: ISO 8601 UTC with milliseconds."""
    whole = int(ex.started_at)
    ms = int((ex.started_at - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def _header(ex: Exchange, name: str) -> str:
    lower = name.lower()
    if lower in _PSEUDO:
        if lower == ":method":
            return ex.method
        if lower == ":path":
            return ex.path
        lower = "host"
    wanted = lower.encode("latin-1")
    for key, value in ex.headers:
        if key.lower() == wanted:
            return value.decode("latin-1")
    return ""


def _req(ex: Exchange, arg: str) -> str:
    # %REQ(X?Y):Z%: header X, else Y; the length suffix is ignored.
    for name in arg.split("?"):
        value = _header(ex, name.strip())
        if value:
            return value
    return ""


def trace_id(ex: Exchange) -> str:
    if not ex.trace_id:
        ctx = extract(ex.headers).context
        ex.trace_id = ctx.trace_id if ctx is not None else ""
    return ex.trace_id


OPERATORS: dict[str, Callable[[Exchange, str], object]] = {
    "START_TIME": lambda ex, _: start_time(ex),
    "REQ": _req,
    "PROTOCOL": lambda ex, _: "HTTP/1.1",
    "RESPONSE_CODE": lambda ex, _: ex.status,
    "RESPONSE_FLAGS": lambda ex, _: flags_label(ex.flags),
    "BYTES_RECEIVED": lambda ex, _: ex.request_bytes,
    "BYTES_SENT": lambda ex, _: ex.response_bytes,
    "DURATION": lambda ex, _: int(ex.duration_ms),
    "UPSTREAM_HOST": lambda ex, _: ex.upstream,
    "UPSTREAM_CLUSTER": lambda ex, _: ex.destination,
    "UPSTREAM_REQUEST_ATTEMPT_COUNT": lambda ex, _: ex.retries + 1,
    "TRACE_ID": lambda ex, _: trace_id(ex),
}


def render_format(fmt: str, ex: Exchange) -> str:
    """``fmt`` with each ``%OPERATOR(arg)%`` replaced (``-`` when empty or unknown)."""

    def one(m: re.Match[str]) -> str:
        fn = OPERATORS.get(m.group(1))
        value = fn(ex, m.group(2) or "") if fn is not None else ""
        text = str(value)
        return text if text else "-"

    return _OPERATOR.sub(one, fmt)


def default_record(ex: Exchange) -> dict[str, object]:
    return {
        "start_time": start_time(ex),
        "reporter": ex.reporter,
        "source_service": ex.source,
        "destination_service": ex.destination,
        "destination_subset": ex.subset,
        "method": ex.method,
        "path": ex.path,
        "protocol": "HTTP/1.1",
        "response_code": ex.status,
        "response_flags": flags_label(ex.flags),
        "duration": round(ex.duration_ms, 3),
        "bytes_received": ex.request_bytes,
        "bytes_sent": ex.response_bytes,
        "upstream_host": ex.upstream,
        "retries": ex.retries,
        "request_id": _header(ex, "x-request-id"),
        "trace_id": trace_id(ex),
    }


DEFAULT_KEYS = tuple(
    default_record(Exchange("", "", "", "", "", [], 0, 0.0, 0.0, trace_id="-")).keys()
)


def render(settings: AccessLogs, ex: Exchange) -> str:
    """One access-log line (without the newline)."""
    if settings.text_format:
        return render_format(settings.text_format, ex).rstrip("\n")
    if settings.json_format:
        fmt = json.loads(settings.json_format)
        out = {k: render_format(v, ex) if isinstance(v, str) else v for k, v in fmt.items()}
        return json.dumps(out, separators=(",", ":"))
    return json.dumps(default_record(ex), separators=(",", ":"))


class AccessLogSettings:
    """The global and per-service ``AccessLogs`` currently in force."""

    def __init__(self) -> None:
        self.global_: AccessLogs | None = None
        self.services: dict[str, AccessLogs] = {}

    def for_service(self, service: str) -> AccessLogs | None:
        """The settings for ``service``'s sidecar, or None when logs are off."""
        found = self.services.get(service, self.global_)
        return found if found is not None and found.enabled else None

    def set_proxy_defaults(self, entries: list[Any]) -> None:
        entry = next((e for e in entries if isinstance(e, Mapping)), None)
        self.global_ = _settings(entry, "proxy-defaults")

    def set_service_defaults(self, entries: list[Any]) -> None:
        out: dict[str, AccessLogs] = {}
        for entry in entries:
            if isinstance(entry, Mapping):
                found = _settings(entry, f"service-defaults/{entry.get('Name')}")
                if found is not None:
                    out[str(entry.get("Name") or "")] = found
        self.services = out


def _settings(entry: Mapping[str, Any] | None, where: str) -> AccessLogs | None:
    raw = None if entry is None else entry.get(FIELD)
    if raw is None:
        return None
    try:
        return parse_access_logs(raw)
    except ValidationError as exc:  # validated at the API; an old entry may not be
        emit(40, "access_logs_invalid", entry=where, field=exc.field, reason=exc.message)
        return None


class AccessLogger:
    """Writes finished exchanges of services whose access logs are on."""

    def __init__(self, settings: AccessLogSettings | None = None) -> None:
        self.settings = settings or AccessLogSettings()
        self._files: dict[str, int] = {}
        self.failed = 0

    def log(self, service: str, ex: Exchange) -> None:
        settings = self.settings.for_service(service)
        if settings is None:
            return
        line = (render(settings, ex) + "\n").encode("utf-8", "replace")
        try:
            os.write(self._fd(settings), line)
        except OSError as exc:
            self.failed += 1
            if self.failed == 1 or self.failed % 1000 == 0:
                emit(40, "access_log_failed", sink=settings.sink, reason=str(exc))

    def _fd(self, settings: AccessLogs) -> int:
        if settings.sink == "stdout":
            return 1
        if settings.sink == "stderr":
            return 2
        fd = self._files.get(settings.path)
        if fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
            fd = self._files[settings.path] = os.open(settings.path, flags, 0o640)
        return fd


async def follow_access_logs(hub: WatchHub, settings: AccessLogSettings) -> None:
    """Keep ``settings`` in line with proxy-defaults and service-defaults.
    Runs until cancelled."""

    async def follow(res: Resource, apply: Callable[[list[Any]], None]) -> None:
        cell = hub.acquire(res, _entries)
        try:
            version = 0
            while True:
                entries, version = await cell.wait_newer(version)
                apply(entries)
        finally:
            hub.release(res)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow, proxy_defaults_resource(), settings.set_proxy_defaults)
        nursery.start_soon(follow, service_defaults_resource(), settings.set_service_defaults)
