"""The compiled discovery chain: typed nodes and targets, Consul's JSON shape.

Shape of ``/v1/discovery-chain/:service`` (hashicorp/consul
api/discovery_chain.go, agent/structs/discovery_chain.go): node keys are
``<type>:<name>``; router and splitter names are ``svc.ns.partition``;
resolver names and target IDs are ``[subset.]svc.ns.partition.dc``.

meshd extension: a router route whose definition has ``Destination.Mirror``
carries ``MirrorTarget``, the ID of the compiled target to shadow requests to.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from connect.l7.decode import JSON, format_duration, put
from connect.l7.entries import ConfigEntry
from connect.l7.entries_resolver import LoadBalancer, Subset
from connect.l7.entries_routing import ServiceRoute, Split

DEFAULT_CONNECT_TIMEOUT_NS = 5_000_000_000
HTTP_LIKE = ("http", "http2", "grpc")

ROUTER = "router"
SPLITTER = "splitter"
RESOLVER = "resolver"


def is_http_like(protocol: str) -> bool:
    """Consul's ``IsProtocolHTTPLike``."""
    return protocol in HTTP_LIKE


class EntryLookup(Protocol):
    """What the compiler reads: the stored config entries."""

    def get(self, kind: str, name: str) -> ConfigEntry | None: ...

    def names(self, kind: str) -> list[str]: ...


@dataclass(frozen=True)
class TargetKey:
    service: str
    subset: str = ""
    namespace: str = "default"
    partition: str = "default"
    datacenter: str = ""

    @property
    def id(self) -> str:
        base = f"{self.service}.{self.namespace}.{self.partition}.{self.datacenter}"
        return f"{self.subset}.{base}" if self.subset else base


@dataclass(frozen=True)
class Target:
    key: TargetKey
    subset: Subset
    connect_timeout_ns: int
    sni: str
    mesh_gateway_mode: str = ""

    @property
    def id(self) -> str:
        return self.key.id

    def to_json(self) -> dict[str, JSON]:
        return {
            "ID": self.id,
            "Service": self.key.service,
            "ServiceSubset": self.key.subset,
            "Namespace": self.key.namespace,
            "Partition": self.key.partition,
            "Datacenter": self.key.datacenter,
            "Peer": "",
            "MeshGateway": {"Mode": self.mesh_gateway_mode},
            "Subset": {"Filter": self.subset.filter, "OnlyPassing": self.subset.only_passing},
            "ConnectTimeout": format_duration(self.connect_timeout_ns),
            "External": False,
            "SNI": self.sni,
            "Name": self.sni,
        }


@dataclass(frozen=True)
class RouteNode:
    definition: ServiceRoute
    next_node: str
    mirror_target: str = ""

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Definition": self.definition.to_json(), "NextNode": self.next_node}
        put(out, "MirrorTarget", self.mirror_target)
        return out


@dataclass(frozen=True)
class SplitNode:
    """``weight`` in percent; the splits of a node sum to exactly 100.00."""

    weight: float
    next_node: str
    definition: Split

    def to_json(self) -> dict[str, JSON]:
        w = self.weight
        return {
            "Definition": self.definition.to_json(),
            "Weight": int(w) if float(w).is_integer() else w,
            "NextNode": self.next_node,
        }


@dataclass(frozen=True)
class ResolverInfo:
    default: bool
    target: str
    connect_timeout_ns: int
    request_timeout_ns: int = 0
    failover_targets: tuple[str, ...] = ()

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "Default": self.default,
            "ConnectTimeout": format_duration(self.connect_timeout_ns),
            "Target": self.target,
        }
        if self.request_timeout_ns:
            out["RequestTimeout"] = format_duration(self.request_timeout_ns)
        if self.failover_targets:
            out["Failover"] = {"Targets": list(self.failover_targets)}
        return out


@dataclass(frozen=True)
class GraphNode:
    type: str
    name: str
    routes: tuple[RouteNode, ...] = ()
    splits: tuple[SplitNode, ...] = ()
    resolver: ResolverInfo | None = None
    load_balancer: LoadBalancer | None = None

    @property
    def key(self) -> str:
        return f"{self.type}:{self.name}"

    def next_nodes(self) -> list[str]:
        return [r.next_node for r in self.routes] + [s.next_node for s in self.splits]

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Type": self.type, "Name": self.name}
        if self.type == ROUTER:
            out["Routes"] = [r.to_json() for r in self.routes]
        if self.type == SPLITTER:
            out["Splits"] = [s.to_json() for s in self.splits]
        if self.resolver is not None:
            out["Resolver"] = self.resolver.to_json()
        if self.load_balancer is not None:
            out["LoadBalancer"] = self.load_balancer.to_json()
        return out


@dataclass(frozen=True)
class CompiledChain:
    service_name: str
    namespace: str
    partition: str
    datacenter: str
    protocol: str
    start_node: str
    nodes: dict[str, GraphNode]
    targets: dict[str, Target]
    default: bool = False
    customization_hash: str = ""
    service_meta: dict[str, str] = field(default_factory=dict)
    envoy_extensions: list[JSON] = field(default_factory=list)

    def to_json(self) -> dict[str, JSON]:
        """The ``Chain`` object of Consul's discovery-chain response."""
        out: dict[str, JSON] = {
            "ServiceName": self.service_name,
            "Namespace": self.namespace,
            "Partition": self.partition,
            "Datacenter": self.datacenter,
        }
        put(out, "CustomizationHash", self.customization_hash)
        put(out, "Default", self.default)
        out["Protocol"] = self.protocol
        put(out, "ServiceMeta", dict(self.service_meta))
        put(out, "EnvoyExtensions", list(self.envoy_extensions))
        out["StartNode"] = self.start_node
        out["Nodes"] = {k: n.to_json() for k, n in self.nodes.items()}
        out["Targets"] = {k: t.to_json() for k, t in self.targets.items()}
        return out
