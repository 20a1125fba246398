"""/v1/prometheus/sd: Prometheus HTTP service discovery without consul_sd.

Many Prometheus builds (Debian's included) lack consul_sd; ``http_sd_configs``
pointed here finds the same targets, as Prometheus's HTTP SD format asks
(https://prometheus.io/docs/prometheus/latest/http_sd/): a JSON list of
``{"targets": ["host:port"], "labels": {...}}``, one group per target.

Three kinds of target, told apart by ``__meta_meshd_kind``:

* ``service``: every service instance in the catalog, with the labels
  Prometheus's consul_sd gives it (discovery/consul/consul.go), so relabel
  rules written for consul_sd carry over: ``__meta_consul_address``,
  ``_dc``, ``_health``, ``_node``, ``_service``, ``_service_address``,
  ``_service_id``, ``_service_port``, ``_tags`` (``,a,b,``: the separator at
  both ends), ``_tagged_address_<key>`` (the node's), ``_metadata_<key>``
  (node meta), ``_service_metadata_<key>``, ``_partition`` and
  ``_namespace`` (always "" here: no Enterprise tenancy). The target is the
  service address (else the node address) and port, as in consul_sd;
* ``agent``: the answering agent's own metrics
  (``/v1/agent/metrics?format=prometheus``, via ``__metrics_path__`` and
  ``__param_format``), and every other node whose node meta carries
  ``meshd-metrics-addr = "HOST:PORT"`` (its HTTP API). With ACLs on,
  Prometheus needs a token with agent:read (``authorization`` in its scrape
  config);
* ``proxy``: every connect-proxy instance whose registration carries its
  metrics address in ``Proxy.Config.envoy_prometheus_bind_addr`` (Consul's
  key; ``meshd proxy --metrics-addr`` serves it): ``HOST:PORT``, a wildcard
  host (``0.0.0.0``, ``::``, empty) meaning the instance's address.
  ``__meta_meshd_proxy_destination`` names the service it fronts.

Answers are filtered by ACLs like the catalog (service:read, node:read;
``X-Consul-Results-Filtered-By-ACLs``). Options: ``?service=`` (repeatable),
``?kind=`` (repeatable: service, agent, proxy), ``?passing`` and ``?dc``.
``?index``/``?wait`` block until services, nodes or checks change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import trio

from ..http import BadRequest, QueryOptions, Request, Response
from ..wire import ReadOptions, ReadResult
from . import ports
from .common import check_dc, read_options, with_meta
from .health import passing_flag


class Ports(ports.Registry, ports.LocalAgent, Protocol):
    """What this module needs from the agent."""


KINDS = ("service", "agent", "proxy")
KIND_LABEL = "__meta_meshd_kind"
PROXY_METRICS_KEY = "envoy_prometheus_bind_addr"
AGENT_METRICS_META = "meshd-metrics-addr"
AGENT_METRICS_PATH = "/v1/agent/metrics"
TAG_SEPARATOR = ","
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
# Reads whose change wakes a blocking query (services, checks, nodes).
_WATCHED: tuple[tuple[str, dict[str, Any]], ...] = (
    ("catalog.services", {}),
    ("health.state", {"state": "any"}),
    ("catalog.nodes", {}),
)


def sanitize(name: str) -> str:
    """Prometheus's strutil.SanitizeLabelName."""
    return _INVALID_LABEL_CHARS.sub("_", name)


def aggregated_status(checks: Iterable[Mapping[str, Any]]) -> str:
    """Consul's HealthChecks.AggregatedStatus: the worst check wins."""
    statuses = {str(c.get("Status") or "") for c in checks}
    if "critical" in statuses or "maintenance" in statuses:
        return "critical"
    return "warning" if "warning" in statuses else "passing"


def host_port(host: str, port: int | str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def node_labels(node: Mapping[str, Any]) -> dict[str, str]:
    """consul_sd's node labels: address, dc, node, node meta and tagged addresses."""
    labels = {
        "__meta_consul_address": str(node.get("Address") or ""),
        "__meta_consul_dc": str(node.get("Datacenter") or ""),
        "__meta_consul_node": str(node.get("Node") or ""),
    }
    for key, value in (node.get("Meta") or {}).items():
        labels[f"__meta_consul_metadata_{sanitize(key)}"] = str(value)
    for key, value in (node.get("TaggedAddresses") or {}).items():
        labels[f"__meta_consul_tagged_address_{sanitize(key)}"] = str(value)
    return labels


def instance_labels(row: Mapping[str, Any]) -> dict[str, str]:
    """The labels consul_sd gives the service instance of a health row."""
    svc = row.get("Service") or {}
    tags = [str(t) for t in svc.get("Tags") or []]
    joined = TAG_SEPARATOR + TAG_SEPARATOR.join(tags) + TAG_SEPARATOR if tags else ""
    labels = node_labels(row.get("Node") or {})
    labels.update(
        {
            "__meta_consul_service": str(svc.get("Service") or ""),
            "__meta_consul_service_address": str(svc.get("Address") or ""),
            "__meta_consul_service_id": str(svc.get("ID") or ""),
            "__meta_consul_service_port": str(svc.get("Port") or 0),
            "__meta_consul_tags": joined,
            "__meta_consul_health": aggregated_status(row.get("Checks") or []),
            "__meta_consul_partition": str(svc.get("Partition") or ""),
            "__meta_consul_namespace": str(svc.get("Namespace") or ""),
        }
    )
    for key, value in (svc.get("Meta") or {}).items():
        labels[f"__meta_consul_service_metadata_{sanitize(key)}"] = str(value)
    return labels


def instance_address(row: Mapping[str, Any]) -> str:
    """The service address, else the node's (consul_sd's choice)."""
    svc = row.get("Service") or {}
    return str(svc.get("Address") or (row.get("Node") or {}).get("Address") or "")


def proxy_metrics_target(row: Mapping[str, Any]) -> str | None:
    """``HOST:PORT`` of a connect-proxy instance's metrics, if its
    registration says (``Proxy.Config.envoy_prometheus_bind_addr``)."""
    svc = row.get("Service") or {}
    if svc.get("Kind") != "connect-proxy":
        return None
    config = (svc.get("Proxy") or {}).get("Config") or {}
    addr = config.get(PROXY_METRICS_KEY)
    if not isinstance(addr, str) or not addr.strip():
        return None
    host, sep, port = addr.strip().rpartition(":")
    if not sep or not port.isdigit():
        return None
    if host in _WILDCARD_HOSTS:
        host = instance_address(row)
    return host_port(host.strip("[]"), port)


def service_groups(rows: Sequence[Mapping[str, Any]], kinds: set[str]) -> list[dict[str, Any]]:
    """Service instance groups and proxy metrics groups of health rows."""
    out: list[dict[str, Any]] = []
    for row in rows:
        labels = instance_labels(row)
        port = (row.get("Service") or {}).get("Port") or 0
        if "service" in kinds:
            target = host_port(instance_address(row), port)
            out.append({"targets": [target], "labels": {KIND_LABEL: "service", **labels}})
        proxy_target = proxy_metrics_target(row) if "proxy" in kinds else None
        if proxy_target is not None:
            proxy = (row.get("Service") or {}).get("Proxy") or {}
            extra = {
                KIND_LABEL: "proxy",
                "__meta_meshd_proxy_destination": str(proxy.get("DestinationServiceName") or ""),
                "__metrics_path__": "/metrics",
            }
            out.append({"targets": [proxy_target], "labels": {**labels, **extra}})
    return out


def agent_group(target: str, node: Mapping[str, Any]) -> dict[str, Any]:
    labels = {
        KIND_LABEL: "agent",
        **node_labels(node),
        "__metrics_path__": AGENT_METRICS_PATH,
        "__param_format": "prometheus",
    }
    return {"targets": [target], "labels": labels}


def agent_groups(agent: Ports, nodes: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """This agent's metrics endpoint, and other nodes' that advertise one."""
    out = []
    own = next((n for n in nodes if n.get("Node") == agent.node_name), None)
    if own is not None and agent.http_addresses:
        host, port = agent.http_addresses[0][:2]
        if host in _WILDCARD_HOSTS:
            host = str(own.get("Address") or "127.0.0.1")
        out.append(agent_group(host_port(str(host), port), own))
    for node in nodes:
        addr = (node.get("Meta") or {}).get(AGENT_METRICS_META)
        if node is own or not isinstance(addr, str) or ":" not in addr:
            continue
        out.append(agent_group(addr, node))
    return out


def _kinds(req: Request) -> set[str]:
    values = req.query.get("kind") or list(KINDS)
    for value in values:
        if value not in KINDS:
            raise BadRequest(f"Invalid kind {value!r}: must be one of {', '.join(KINDS)}", "kind")
    return set(values)


async def wait_for_change(agent: Ports, opts: QueryOptions) -> None:
    """For ``?index``: return once services, checks or nodes pass that index
    (or ``?wait`` elapses). The answer's index is the highest of the three,
    so each read blocks from its own current index: blocking each on the
    client's index would answer at once whenever one read is behind the
    others (an index below ``min_index`` means "state went backwards")."""
    if not opts.blocking:
        return
    now = ReadOptions(0, 0, opts.consistency, opts.max_stale)
    current = [(await agent.read(name, args, now)).index for name, args in _WATCHED]
    if max(current) != opts.index:  # changed since, or went backwards: answer now
        return
    async with trio.open_nursery() as nursery:

        async def one(name: str, args: dict[str, Any], index: int) -> None:
            await agent.read(name, args, replace(read_options(opts), index=max(index, 1)))
            nursery.cancel_scope.cancel()

        for (name, args), index in zip(_WATCHED, current, strict=True):
            nursery.start_soon(one, name, args, index)


class _Reads:
    """Non-blocking reads, remembering the highest index and ACL filtering."""

    def __init__(self, agent: Ports, opts: QueryOptions) -> None:
        self.agent = agent
        self.opts = ReadOptions(0, 0, opts.consistency, opts.max_stale)
        self.last: ReadResult | None = None
        self.index = 0
        self.filtered = False

    async def __call__(self, name: str, args: Mapping[str, Any]) -> Any:
        result = await self.agent.read(name, args, self.opts)
        self.last = result
        self.index = max(self.index, result.index)
        self.filtered = self.filtered or result.filtered
        return result.value


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def sd(p: Ports, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    kinds = _kinds(req)
    wanted = set(req.query.get("service") or [])
    passing = passing_flag(req)
    await wait_for_change(p, opts)
    reads = _Reads(p, opts)
    groups: list[dict[str, Any]] = []
    names = sorted(await reads("catalog.services", {}) or {})
    if kinds & {"service", "proxy"}:
        for name in names:
            if wanted and name not in wanted:
                continue
            rows = await reads("health.service", {"name": name, "passing": passing})
            groups += service_groups(rows or [], kinds)
    if "agent" in kinds:
        groups += agent_groups(p, await reads("catalog.nodes", {}) or [])
    assert reads.last is not None
    result = ReadResult(
        groups,
        reads.index,
        reads.last.known_leader,
        reads.last.last_contact,
        reads.last.consistency,
        reads.filtered,
    )
    return with_meta(Response.json(groups, pretty=opts.pretty), result)
