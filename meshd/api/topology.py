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

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..agent.wire import ReadOptions
from ..http import BadRequest, QueryOptions, Request, Response, Router
from .common import check_dc, read_options
from .prometheus_sd import aggregated_status

if TYPE_CHECKING:
    from ..agent.agent import Agent

WILDCARD = "*"
SOURCE_REGISTRATION = "proxy-registration"


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


def summary(name: str, datacenter: str, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Consul's ServiceSummary of ``name``'s health rows."""
    counts = {"passing": 0, "warning": 0, "critical": 0}
    nodes: list[str] = []
    tags: list[str] = []
    native = False
    for row in rows:
        node = str((row.get("Node") or {}).get("Node") or "")
        if node not in nodes:
            nodes.append(node)
        svc = row.get("Service") or {}
        tags += [t for t in svc.get("Tags") or [] if t not in tags]
        native = native or bool((svc.get("Connect") or {}).get("Native"))
        for check in row.get("Checks") or []:
            counts[aggregated_status([check])] += 1
    return {
        "Name": name,
        "Datacenter": datacenter,
        "Tags": tags,
        "Nodes": sorted(nodes),
        "ExternalSources": [],
        "InstanceCount": len(rows),
        "ChecksPassing": counts["passing"],
        "ChecksWarning": counts["warning"],
        "ChecksCritical": counts["critical"],
        "GatewayConfig": {},
        "TransparentProxy": False,
        "ConnectNative": native,
    }


def decision(
    intentions: Sequence[Mapping[str, Any]], source: str, destination: str, default_allow: bool
) -> dict[str, Any]:
    """Consul's IntentionDecisionSummary for ``source`` => ``destination``."""
    applying = [
        i
        for i in intentions
        if i.get("SourceName") in (source, WILDCARD)
        and i.get("DestinationName") in (destination, WILDCARD)
    ]
    exact = any(
        i.get("SourceName") == source and i.get("DestinationName") == destination for i in applying
    )
    out = {
        "DefaultAllow": default_allow,
        "Allowed": default_allow,
        "HasPermissions": False,
        "ExternalSource": "",
        "HasExact": exact,
    }
    if applying:
        best = max(applying, key=lambda i: int(i.get("Precedence") or 0))
        has_permissions = bool(best.get("Permissions"))
        # With L7 permissions the L4 connection is allowed; requests are judged at L7.
        out["Allowed"] = has_permissions or best.get("Action") == "allow"
        out["HasPermissions"] = has_permissions
        out["ExternalSource"] = str((best.get("Meta") or {}).get("external-source") or "")
    return out


class _Topology:
    def __init__(self, agent: Agent, opts: ReadOptions) -> None:
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
        names = sorted(await self.read("catalog.services", {}) or {})
        out: list[str] = []
        for name in names:
            rows = await self.read("health.service", {"name": name})
            proxies = [
                r for r in rows or [] if (r.get("Service") or {}).get("Kind") == "connect-proxy"
            ]
            for row in proxies:
                dest = str(
                    ((row.get("Service") or {}).get("Proxy") or {}).get("DestinationServiceName")
                    or ""
                )
                if (
                    dest
                    and dest != service
                    and service in _upstream_names([row])
                    and dest not in out
                ):
                    out.append(dest)
        return out

    async def summaries(
        self, names: Sequence[str], intent: Any, upstream: bool, service: str
    ) -> list[dict[str, Any]]:
        out = []
        for name in names:
            before = self.filtered
            rows = await self.read("health.service", {"name": name}) or []
            if not rows and self.filtered and not before:
                continue  # not readable with this token
            item = summary(name, self.agent.datacenter, rows)
            item["Source"] = SOURCE_REGISTRATION
            src, dst = (service, name) if upstream else (name, service)
            item["Intention"] = intent(src, dst)
            out.append(item)
        return out


def register(router: Router, agent: Agent) -> None:
    """Add GET /v1/internal/ui/service-topology/:service."""

    async def topology(req: Request) -> Response:
        service = req.path_params.get("service", "")
        if not service:
            raise BadRequest("Missing service name", "service")
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        t = _Topology(agent, ReadOptions(0, 0, opts.consistency, opts.max_stale))
        # Blocks (?index) on the service's sidecars: where its upstreams change.
        sidecars = await t.read(
            "health.service", {"name": service, "connect": True}, read_options(opts)
        )
        proxies = [
            r for r in sidecars or [] if (r.get("Service") or {}).get("Kind") == "connect-proxy"
        ]
        default_allow = agent.config.connect.default_intention_policy == "allow"
        intentions = await t.read("intentions.list", {}) or []

        def intent(src: str, dst: str) -> dict[str, Any]:
            return decision(intentions, src, dst, default_allow)

        transparent = any(
            ((r.get("Service") or {}).get("Proxy") or {}).get("Mode") == "transparent"
            for r in proxies
        )
        body = {
            "Protocol": "tcp",
            "TransparentProxy": transparent,
            "Upstreams": await t.summaries(_upstream_names(proxies), intent, True, service),
            "Downstreams": await t.summaries(
                await t.downstream_names(service), intent, False, service
            ),
            "FilteredByACLs": t.filtered,
        }
        resp = Response.json(body, pretty=opts.pretty)
        resp.set_header("X-Consul-Index", str(t.index))
        return resp

    router.add(
        "GET",
        "/v1/internal/ui/service-topology/*service",
        topology,
        name="internal.ui.service_topology",
    )
