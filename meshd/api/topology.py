"""GET /v1/internal/ui/service-topology/:service in Consul's shape.

Consul's UI endpoint (agent/ui_endpoint.go, ``structs.ServiceTopology``)
answers ``{Protocol, TransparentProxy, Upstreams, Downstreams,
FilteredByACLs}``; each up/downstream is a ``ServiceTopologySummary``: a
``ServiceSummary`` (Name, Datacenter, Tags, Nodes, InstanceCount,
ChecksPassing/Warning/Critical, ConnectNative, ...) plus ``Source`` and
``Intention`` (``{Allowed, HasPermissions, ExternalSource, HasExact,
DefaultAllow}``).

Computed from the catalog: the service's sidecars' ``Proxy.Upstreams`` give
its upstreams, sidecars whose upstreams name the service give its
downstreams (``Source: "proxy-registration"``, Consul's value for explicit
upstreams); the intention decision is the highest-precedence intention
that applies, else the default policy. Traffic figures (Consul's metrics
cards) need L7 telemetry and are not part of this answer yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from ..http import BadRequest, QueryOptions, Request, Response
from ..intention_decision import decision
from ..wire import ReadOptions
from . import ports
from .common import check_dc, read_options


class Ports(ports.Registry, ports.Configured, Protocol):
    """What this module needs from the agent."""


SOURCE_REGISTRATION = "proxy-registration"


def _proxies(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rows if (r.get("Service") or {}).get("Kind") == "connect-proxy"]


def _upstream_names(proxy_rows: Iterable[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for row in proxy_rows:
        proxy = (row.get("Service") or {}).get("Proxy") or {}
        for up in proxy.get("Upstreams") or []:
            if (up.get("DestinationType") or "service") != "service":
                continue
            name = str(up.get("DestinationName") or "")
            if name and name not in names:
                names.append(name)
    return names


def summary(
    name: str,
    datacenter: str,
    rows: Sequence[Mapping[str, Any]],
    proxies: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Consul's ServiceSummary (agent/ui_endpoint.go summarizeServices) of
    ``name``'s health rows and its sidecars' rows: one ``Nodes`` entry per
    instance, sorted; the sidecars' checks count for the service, each
    (node, check) once; ``Tags`` and ``ExternalSources`` null when empty as
    Go's nil slices are."""
    checks: dict[tuple[str, str], str] = {}
    tags: set[str] = set()
    sources: list[str] = []
    native = False
    for row in [*rows, *proxies]:
        node = str((row.get("Node") or {}).get("Node") or "")
        for check in row.get("Checks") or []:
            checks[(node, str(check.get("CheckID") or ""))] = str(check.get("Status") or "")
    for row in rows:
        svc = row.get("Service") or {}
        tags.update(str(t) for t in svc.get("Tags") or [])
        native = bool((svc.get("Connect") or {}).get("Native"))
        source = str((svc.get("Meta") or {}).get("external-source") or "")
        if source and source not in sources:
            sources.append(source)
    modes = [((p.get("Service") or {}).get("Proxy") or {}).get("Mode") for p in proxies]
    statuses = list(checks.values())
    return {
        "Name": name,
        "Datacenter": datacenter,
        "Tags": sorted(tags) or None,
        "Nodes": sorted(str((r.get("Node") or {}).get("Node") or "") for r in rows),
        "ExternalSources": sources or None,
        "InstanceCount": len(rows),
        "ChecksPassing": statuses.count("passing"),
        "ChecksWarning": statuses.count("warning"),
        "ChecksCritical": statuses.count("critical"),
        "GatewayConfig": {},
        "TransparentProxy": bool(modes) and all(m == "transparent" for m in modes),
        "ConnectNative": native,
    }


class _Topology:
    def __init__(self, agent: Ports, opts: ReadOptions) -> None:
        self.agent = agent
        self.opts = opts
        self.index = 0
        self.filtered = False

    async def read(
        self, name: str, args: Mapping[str, Any], opts: ReadOptions | None = None
    ) -> Any:
        result = await self.agent.read(name, args, opts or self.opts)
        self.index = max(self.index, result.index)
        self.filtered = self.filtered or result.filtered
        return result.value

    async def downstream_names(self, service: str) -> list[str]:
        """Services whose sidecars list ``service`` as an upstream."""
        out: set[str] = set()
        for name in await self.read("catalog.services", {}) or {}:
            for row in _proxies(await self.read("health.service", {"name": name}) or []):
                proxy = (row.get("Service") or {}).get("Proxy") or {}
                dest = str(proxy.get("DestinationServiceName") or "")
                if dest and dest != service and service in _upstream_names([row]):
                    out.add(dest)
        return sorted(out)

    async def summaries(
        self, names: Iterable[str], intent: Callable[[str], dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Summaries of the registered services among ``names`` (those the
        token may read), by name, each with its intention decision."""
        out = []
        for name in sorted(set(names)):
            rows = await self.read("health.service", {"name": name}) or []
            if not rows:
                continue  # not registered, or filtered by ACLs (FilteredByACLs says)
            connect = await self.read("health.service", {"name": name, "connect": True}) or []
            item = summary(name, self.agent.datacenter, rows, _proxies(connect))
            item["Source"] = SOURCE_REGISTRATION
            item["Intention"] = intent(name)
            out.append(item)
        return out


def _service_kind(req: Request) -> None:
    """Consul requires ``?kind=`` ("" for a typical service)."""
    kind = req.query.get("kind")
    if kind is None:
        raise BadRequest("Missing service kind", "kind")
    if kind[0] != "":
        raise BadRequest(f"Unsupported service kind {kind[0]!r}", "kind")


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def topology(p: Ports, req: Request) -> Response:
    service = req.path_params.get("service", "")
    if not service:
        raise BadRequest("Missing service name", "service")
    _service_kind(req)
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    t = _Topology(p, ReadOptions(0, 0, opts.consistency, opts.max_stale))
    # Blocks (?index) on the service's sidecars: where its upstreams change.
    connect = await t.read("health.service", {"name": service, "connect": True}, read_options(opts))
    proxies = _proxies(connect or [])
    default_allow = p.config.connect.default_intention_policy == "allow"
    intentions = await t.read("intentions.list", {}) or []
    modes = [((r.get("Service") or {}).get("Proxy") or {}).get("Mode") for r in proxies]
    upstreams = await t.summaries(
        _upstream_names(proxies), lambda up: decision(intentions, service, up, default_allow)
    )
    downstreams = await t.summaries(
        await t.downstream_names(service),
        lambda down: decision(intentions, down, service, default_allow),
    )
    body = {
        "Protocol": "tcp",
        "TransparentProxy": bool(modes) and all(m == "transparent" for m in modes),
        "Upstreams": upstreams,
        "Downstreams": downstreams,
        "FilteredByACLs": t.filtered,
    }
    resp = Response.json(body, pretty=opts.pretty)
    resp.set_header("X-Consul-Index", str(t.index))
    return resp
