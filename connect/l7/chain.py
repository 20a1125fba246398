"""The discovery chain compiler: a pure function of the config entries.

Follows Consul's agent/consul/discoverychain/compile.go:

- a service's protocol is its ``service-defaults.Protocol``, else
  ``proxy-defaults.Config.protocol``, else ``tcp`` (Consul ignores
  proxy-defaults once a service-defaults exists, even one without Protocol,
  hashicorp/consul#11457; meshd falls back as users expect). The chain's
  protocol is the first one recorded (router, then each resolver visited),
  and every other service in the chain must have the same;
- only the router named like the service is consulted, and every router
  gets a catch-all route (PathPrefix ``/``) to the service itself;
- a destination without a subset may be split again (splitter of the
  destination service); nested splitters are flattened into one node with
  multiplied weights (header modifiers merged, Consul's ``MergeParent``);
- every leaf is a resolver: the service's ``service-resolver`` or a default
  one (connect timeout 5s). Redirects and DefaultSubset are followed;
  failover (per subset or ``*``) lists alternate targets, themselves
  resolved (redirects/default subsets) but without failover of their own;
- routers and splitters on a chain whose protocol is not HTTP-like, a
  resolver target whose protocol differs from the chain's, loops of
  splitters or redirects and a missing subset raise ChainError with
  Consul's texts.

``compile_chain`` is synchronous and touches nothing but its arguments.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from connect.l7.chain_types import (
    DEFAULT_CONNECT_TIMEOUT_NS,
    RESOLVER,
    ROUTER,
    SPLITTER,
    CompiledChain,
    EntryLookup,
    GraphNode,
    ResolverInfo,
    RouteNode,
    SplitNode,
    Target,
    TargetKey,
    is_http_like,
)
from connect.l7.decode import JSON, ChainError, Fields, ValidationError, goq
from connect.l7.entries import (
    PROXY_DEFAULTS,
    SERVICE_DEFAULTS,
    SERVICE_RESOLVER,
    SERVICE_ROUTER,
    SERVICE_SPLITTER,
    ProxyDefaultsEntry,
    ServiceDefaultsEntry,
    ServiceResolverEntry,
    ServiceRouterEntry,
    ServiceSplitterEntry,
)
from connect.l7.entries_resolver import Subset
from connect.l7.entries_routing import HTTPMatch, RouteDestination, ServiceRoute, Split

_MESH_GATEWAY_MODES = ("", "none", "local", "remote")


@dataclass(frozen=True)
class CompileOverrides:
    """The body of ``POST /v1/discovery-chain/:service``."""

    connect_timeout_ns: int = 0
    protocol: str = ""
    mesh_gateway_mode: str = ""

    def any(self) -> bool:
        return bool(self.connect_timeout_ns or self.protocol or self.mesh_gateway_mode)


def parse_overrides(body: JSON) -> CompileOverrides:
    """Decode ``{OverrideConnectTimeout, OverrideProtocol, OverrideMeshGateway: {Mode}}``
    (snake_case accepted). Raises ValidationError; a bad mode gets Consul's
    ``Invalid OverrideMeshGateway.Mode parameter``."""
    if body is None:
        return CompileOverrides()
    f = Fields(body, "")
    mg = f.obj("OverrideMeshGateway")
    mode = "" if mg is None else mg.str("Mode")
    if mg is not None:
        mg.finish()
    out = CompileOverrides(
        connect_timeout_ns=f.duration("OverrideConnectTimeout"),
        protocol=f.str("OverrideProtocol").lower(),
        mesh_gateway_mode=mode,
    )
    f.finish()
    if mode not in _MESH_GATEWAY_MODES:
        raise ValidationError(
            "OverrideMeshGateway.Mode", "Invalid OverrideMeshGateway.Mode parameter"
        )
    return out


def service_protocol(lookup: EntryLookup, service: str) -> str:
    """service-defaults.Protocol, else proxy-defaults Config.protocol, else ``tcp``."""
    sd = lookup.get(SERVICE_DEFAULTS, service)
    if isinstance(sd, ServiceDefaultsEntry) and sd.protocol:
        return sd.protocol
    pd = lookup.get(PROXY_DEFAULTS, "global")
    if isinstance(pd, ProxyDefaultsEntry) and pd.protocol:
        return pd.protocol
    return "tcp"


def service_sni(key: TargetKey, trust_domain: str) -> str:
    """Consul's ``connect.ServiceSNI``."""
    prefix = f"{key.subset}." if key.subset else ""
    if key.partition == "default":
        return f"{prefix}{key.service}.{key.namespace}.{key.datacenter}.internal.{trust_domain}"
    return (
        f"{prefix}{key.service}.{key.namespace}.{key.partition}.{key.datacenter}"
        f".internal-v1.{trust_domain}"
    )


class _Compiler:
    def __init__(
        self,
        service: str,
        lookup: EntryLookup,
        datacenter: str,
        trust_domain: str,
        overrides: CompileOverrides,
    ) -> None:
        self.service = service
        self.lookup = lookup
        self.dc = datacenter
        self.trust_domain = trust_domain
        self.overrides = overrides
        self.nodes: dict[str, GraphNode] = {}
        self.targets: dict[str, Target] = {}
        self.consulted: set[str] = {service}
        self.splitter_stack: list[str] = []
        self.primary: set[str] = set()
        # Which overrides changed the result (Consul's customizationMarkers).
        self.customized: set[str] = set()
        self.uses_advanced = False
        self.protocol = ""
        # An override drops routers and splitters when it or the chain's own
        # protocol is not HTTP-like (CompileRequest.OverrideProtocol docs).
        self.disable_advanced = bool(overrides.protocol) and not (
            is_http_like(overrides.protocol) and is_http_like(service_protocol(lookup, service))
        )

    # -- lookups ---------------------------------------------------------------

    def _router(self, service: str) -> ServiceRouterEntry | None:
        self.consulted.add(service)
        e = self.lookup.get(SERVICE_ROUTER, service)
        return e if isinstance(e, ServiceRouterEntry) else None

    def _splitter(self, service: str) -> ServiceSplitterEntry | None:
        self.consulted.add(service)
        e = self.lookup.get(SERVICE_SPLITTER, service)
        return e if isinstance(e, ServiceSplitterEntry) else None

    def _resolver(self, service: str) -> ServiceResolverEntry | None:
        self.consulted.add(service)
        e = self.lookup.get(SERVICE_RESOLVER, service)
        return e if isinstance(e, ServiceResolverEntry) else None

    def new_target(self, service: str, subset: str = "", namespace: str = "") -> TargetKey:
        return TargetKey(
            service=service, subset=subset, namespace=namespace or "default", datacenter=self.dc
        )

    # -- graph -----------------------------------------------------------------

    def assemble(self) -> str:
        router = self._router(self.service)
        if router is not None and self.disable_advanced:
            router = None
            self.customized.add("Protocol")
        if router is None:
            return self.splitter_or_resolver(self.new_target(self.service)).key
        self.uses_advanced = True
        self._record_protocol(router.name)
        routes = [self._route(route, router.name) for route in router.routes]
        default_route = ServiceRoute(
            # newDefaultServiceRoute fills in the router's namespace and partition.
            match=HTTPMatch(path_prefix="/"),
            destination=RouteDestination(
                service=router.name, namespace="default", partition="default"
            ),
        )
        routes.append(
            RouteNode(default_route, self.splitter_or_resolver(self.new_target(router.name)).key)
        )
        node = GraphNode(ROUTER, f"{router.name}.default.default", routes=tuple(routes))
        self.nodes[node.key] = node
        return node.key

    def _route(self, route: ServiceRoute, router_name: str) -> RouteNode:
        dest = route.destination or RouteDestination()
        svc = dest.service or router_name
        if dest.service_subset == "":
            nxt = self.splitter_or_resolver(self.new_target(svc, "", dest.namespace))
        else:
            nxt = self.resolver_node(self.new_target(svc, dest.service_subset, dest.namespace))
        mirror = ""
        if dest.mirror is not None:
            m = dest.mirror
            key = self.new_target(m.service, m.service_subset, m.namespace)
            node = self.resolver_node(key, for_failover=True)
            assert node.resolver is not None
            mirror = node.resolver.target
        return RouteNode(route, nxt.key, mirror)

    def splitter_or_resolver(self, target: TargetKey) -> GraphNode:
        node = self.splitter_node(target.service)
        return node if node is not None else self.resolver_node(target)

    def splitter_node(self, service: str) -> GraphNode | None:
        splitter = self._splitter(service)
        if splitter is not None and self.disable_advanced:
            self.customized.add("Protocol")
            return None
        if splitter is None:
            return None
        name = f"{service}.default.default"
        if service in self.splitter_stack:
            # A loop: hand back a stand-in; detect_cycles reports it with the path.
            return GraphNode(SPLITTER, name)
        key = f"{SPLITTER}:{name}"
        if key in self.nodes:
            return self.nodes[key]
        self.uses_advanced = True
        self.splitter_stack.append(service)
        splits = [self._split(split, service) for split in splitter.splits]
        self.splitter_stack.pop()
        # Like Consul, the splitter carries the first hash-based balancer below it.
        lb = next(
            (
                n.load_balancer
                for n in (self.nodes.get(sp.next_node) for sp in splits)
                if n is not None
                and n.load_balancer is not None
                and n.load_balancer.policy in ("ring_hash", "maglev")
            ),
            None,
        )
        node = GraphNode(SPLITTER, name, splits=tuple(splits), load_balancer=lb)
        self.nodes[node.key] = node
        return node

    def _split(self, split: Split, service: str) -> SplitNode:
        svc = split.service or service
        if svc != service and split.service_subset == "":
            nxt = self.splitter_node(svc)
            if nxt is not None:
                return SplitNode(split.weight, nxt.key, split)
        node = self.resolver_node(self.new_target(svc, split.service_subset, split.namespace))
        return SplitNode(split.weight, node.key, split)

    def _follow(self, target: TargetKey) -> tuple[TargetKey, ServiceResolverEntry | None]:
        """Apply redirects and DefaultSubset until the target is stable."""
        history: list[str] = []
        while True:
            if target.id in history:
                chain = " -> ".join([*history, target.id])
                raise ChainError(f"detected circular resolver redirect: [{chain}]")
            history.append(target.id)
            self._record_protocol(target.service)
            resolver = self._resolver(target.service)
            if resolver is None:
                return target, None
            r = resolver.redirect
            if r is not None:
                moved = _rewrite(target, r.service, r.service_subset, r.namespace, r.datacenter)
                if moved.id != target.id:
                    target = moved
                    continue
            if not target.subset and resolver.default_subset:
                target = replace(target, subset=resolver.default_subset)
                continue
            return target, resolver

    def resolver_node(self, target: TargetKey, for_failover: bool = False) -> GraphNode:
        target, resolver = self._follow(target)
        key = f"{RESOLVER}:{target.id}"
        if key in self.nodes and (for_failover or key in self.primary):
            return self.nodes[key]
        subsets = resolver.subsets if resolver is not None else {}
        if target.subset and target.subset not in subsets:
            raise ChainError(
                f"service {goq(target.service)} does not have a subset named {goq(target.subset)}"
            )
        timeout = resolver.connect_timeout_ns if resolver is not None else 0
        if timeout < 1:
            timeout = DEFAULT_CONNECT_TIMEOUT_NS
        if self.overrides.connect_timeout_ns > 0 and timeout != self.overrides.connect_timeout_ns:
            timeout = self.overrides.connect_timeout_ns
            self.customized.add("ConnectTimeout")
        self.targets[target.id] = Target(
            key=target,
            subset=subsets.get(target.subset, Subset()),
            connect_timeout_ns=timeout,
            sni=service_sni(target, self.trust_domain),
            mesh_gateway_mode=self._mesh_gateway_mode(target.service),
        )
        failover: tuple[str, ...] = ()
        if not for_failover and resolver is not None:
            failover = self._failover(target, resolver)
        info = ResolverInfo(
            default=resolver is None or resolver.is_default(),
            target=target.id,
            connect_timeout_ns=timeout,
            request_timeout_ns=resolver.request_timeout_ns if resolver is not None else 0,
            failover_targets=failover,
        )
        lb = resolver.load_balancer if resolver is not None else None
        node = GraphNode(RESOLVER, target.id, resolver=info, load_balancer=lb)
        self.nodes[node.key] = node
        if not for_failover:
            self.primary.add(node.key)
        return node

    def _failover(self, target: TargetKey, resolver: ServiceResolverEntry) -> tuple[str, ...]:
        fo = resolver.failover.get(target.subset) or resolver.failover.get("*")
        if fo is None:
            return ()
        if fo.targets:
            keys = [
                _rewrite(target, t.service, t.service_subset, t.namespace, t.datacenter)
                for t in fo.targets
            ]
        elif fo.datacenters:
            keys = [
                _rewrite(target, fo.service, fo.service_subset, fo.namespace, dc)
                for dc in fo.datacenters
            ]
        else:
            keys = [_rewrite(target, fo.service, fo.service_subset, fo.namespace, "")]
        out: list[str] = []
        for key in keys:
            node = self.resolver_node(key, for_failover=True)
            assert node.resolver is not None
            tid = node.resolver.target
            if tid != target.id and tid not in out:
                out.append(tid)
        return tuple(out)

    def _record_protocol(self, service: str) -> None:
        """Consul's ``recordServiceProtocol``: the first protocol seen is the
        chain's; any other service in the chain must have the same."""
        proto = service_protocol(self.lookup, service)
        self.consulted.add(service)
        if not self.protocol:
            self.protocol = proto
        elif proto != self.protocol:
            raise ChainError(
                f"discovery chain {goq(self.service)} uses inconsistent protocols; "
                f"service {goq(service)} has {goq(proto)} which is not {goq(self.protocol)}"
            )

    def _mesh_gateway_mode(self, service: str) -> str:
        configured = self._configured_mesh_gateway_mode(service)
        wanted = self.overrides.mesh_gateway_mode
        if wanted and wanted != configured:
            self.customized.add("MeshGateway")
            return wanted
        return configured

    def _configured_mesh_gateway_mode(self, service: str) -> str:
        for kind, name in ((SERVICE_DEFAULTS, service), (PROXY_DEFAULTS, "global")):
            e = self.lookup.get(kind, name)
            extra = getattr(e, "extra", {})
            mg = extra.get("MeshGateway") if isinstance(extra, dict) else None
            if isinstance(mg, dict) and isinstance(mg.get("Mode"), str) and mg["Mode"]:
                return str(mg["Mode"])
        return ""


def _rewrite(t: TargetKey, service: str, subset: str, namespace: str, datacenter: str) -> TargetKey:
    """Consul's ``rewriteTarget``: a new service forgets the old subset."""
    if service and service != t.service:
        t = replace(t, service=service, subset="")
    if subset:
        t = replace(t, subset=subset)
    if namespace:
        t = replace(t, namespace=namespace)
    if datacenter:
        t = replace(t, datacenter=datacenter)
    return t


def compile_chain(
    service: str,
    lookup: EntryLookup,
    datacenter: str,
    trust_domain: str,
    overrides: CompileOverrides | None = None,
) -> CompiledChain:
    """Compile ``service``'s discovery chain from the entries in ``lookup``.

    Returns Consul's CompiledDiscoveryChain (``to_json()`` gives the API
    shape). Raises ChainError (a ValidationError) for a graph Consul would
    refuse; never anything else for entries that parse_entry accepted.
    """
    return _compile(
        _Compiler(service, lookup, datacenter, trust_domain, overrides or CompileOverrides())
    )


@dataclass(frozen=True)
class ChainTrace:
    """A compilation and the services whose entries it read.

    ``chain`` is None when the graph is broken; ``error`` then says why.
    ``services_read`` names every service whose router, splitter, resolver
    or defaults the compiler looked up, so a writer can tell whether a
    change to one of them affects this chain.
    """

    chain: CompiledChain | None
    error: ChainError | None
    services_read: frozenset[str]


def trace_chain(
    service: str,
    lookup: EntryLookup,
    datacenter: str = "dc1",
    trust_domain: str = "consul",
) -> ChainTrace:
    """Compile like ``compile_chain`` but return the error instead of raising
    it, together with the services read. Never raises for parsed entries."""
    c = _Compiler(service, lookup, datacenter, trust_domain, CompileOverrides())
    try:
        chain = _compile(c)
    except ChainError as exc:
        return ChainTrace(None, exc, frozenset(c.consulted))
    return ChainTrace(chain, None, frozenset(c.consulted))


def _compile(c: _Compiler) -> CompiledChain:
    start = c.assemble()
    _detect_cycles(c.nodes, start)
    nodes = dict(c.nodes)
    for key, node in list(nodes.items()):
        if node.type == SPLITTER:
            nodes[key] = replace(node, splits=_normalise(_flatten(nodes, node)))
    nodes, targets = _prune(nodes, c.targets, start)
    if c.uses_advanced and not is_http_like(c.protocol):
        raise ChainError(
            f"discovery chain {goq(c.service)} uses a protocol {goq(c.protocol)} that does "
            "not permit advanced routing or splitting behavior"
        )
    protocol = c.protocol
    if c.overrides.protocol and c.overrides.protocol != c.protocol:
        protocol = c.overrides.protocol
        c.customized.add("Protocol")
    sd = c.lookup.get(SERVICE_DEFAULTS, c.service)
    pd = c.lookup.get(PROXY_DEFAULTS, "global")
    meta: dict[str, str] = {}
    extensions: list[JSON] = []
    if isinstance(pd, ProxyDefaultsEntry):
        extensions = [e.to_json() for e in pd.envoy_extensions]
    if isinstance(sd, ServiceDefaultsEntry):
        meta = dict(sd.meta)
        extensions += [e.to_json() for e in sd.envoy_extensions]
    # Consul's determineIfDefaultChain: a default resolver for the service itself.
    first = nodes[start]
    default = (
        first.resolver is not None
        and first.resolver.default
        and targets[first.resolver.target].key.service == c.service
    )
    return CompiledChain(
        service_name=c.service,
        namespace="default",
        partition="default",
        datacenter=c.dc,
        protocol=protocol,
        start_node=start,
        nodes=nodes,
        targets=targets,
        default=default,
        customization_hash=_customization_hash(c.overrides, c.customized),
        service_meta=meta,
        envoy_extensions=extensions,
    )


def _customization_hash(o: CompileOverrides, customized: set[str]) -> str:
    """Non-empty only when an override changed the chain (Consul hashes the
    overrides that did, and the API exposes the first 8 hex digits)."""
    if not customized:
        return ""
    parts = [
        str(o.connect_timeout_ns) if "ConnectTimeout" in customized else "",
        o.protocol if "Protocol" in customized else "",
        o.mesh_gateway_mode if "MeshGateway" in customized else "",
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]


def _detect_cycles(nodes: dict[str, GraphNode], start: str) -> None:
    """Consul's detectCircularReferences: a depth-first walk from the start
    node, reporting the path of node keys that comes back on itself."""
    done: set[str] = set()

    def walk(key: str, path: list[str]) -> None:
        if key in path:
            raise ChainError(f"detected circular reference: [{' -> '.join([*path, key])}]")
        if key in done or key not in nodes:
            return
        for nxt in reversed(nodes[key].next_nodes()):
            walk(nxt, [*path, key])
        done.add(key)

    walk(start, [])


def _flatten(nodes: dict[str, GraphNode], node: GraphNode) -> list[SplitNode]:
    """Replace splits that lead to another splitter by that splitter's splits,
    weights multiplied, header modifiers merged (Consul's MergeParent)."""
    out: list[SplitNode] = []
    for split in node.splits:
        child = nodes.get(split.next_node)
        if child is None or child.type != SPLITTER:
            out.append(split)
            continue
        parent = split.definition
        for sub in _flatten(nodes, child):
            d = sub.definition
            merged = replace(
                d,
                request_headers=d.request_headers.merge_parent(parent.request_headers, True),
                response_headers=d.response_headers.merge_parent(parent.response_headers, False),
            )
            out.append(SplitNode(split.weight * sub.weight / 100, sub.next_node, merged))
    return out


def _normalise(splits: list[SplitNode]) -> tuple[SplitNode, ...]:
    """Round weights to 0.01 and give the shortfall to the first split, as
    Consul's xDS does, so a node's weights always sum to exactly 100."""
    units = [round(s.weight * 100) for s in splits]
    if units:
        units[0] += 10000 - sum(units)
    return tuple(replace(s, weight=u / 100) for s, u in zip(splits, units, strict=True))


def _prune(
    nodes: dict[str, GraphNode], targets: dict[str, Target], start: str
) -> tuple[dict[str, GraphNode], dict[str, Target]]:
    """Keep what is reachable from the start node (Consul's removeUnusedNodes)."""
    keep: dict[str, GraphNode] = {}
    used: list[str] = []
    todo = [start]
    while todo:
        key = todo.pop()
        if key in keep or key not in nodes:
            continue
        node = nodes[key]
        keep[key] = node
        todo.extend(node.next_nodes())
        # Failover and mirror targets appear in Targets only, not as nodes.
        used.extend(route.mirror_target for route in node.routes if route.mirror_target)
        if node.resolver is not None:
            used.append(node.resolver.target)
            used.extend(node.resolver.failover_targets)
    ordered = {k: keep[k] for k in sorted(keep)}
    return ordered, {t: targets[t] for t in sorted(set(used)) if t in targets}
