"""The records the state store holds, shaped after Consul's structs.

Records are frozen ``__slots__`` dataclasses and are handed to readers as-is
(no copy per query), so nobody may mutate one, including the dicts inside:
a write always stores a new record. Commands reuse these classes as inputs
the way Consul's RPC structs do; on input ``create_index`` is ignored and
``modify_index`` is only read by check-and-set verbs.

``registry/shapes.py`` turns records into Consul's JSON field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

# Check statuses (Consul api.HealthPassing etc.); "maintenance" counts as critical.
PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"
MAINTENANCE = "maintenance"
CHECK_STATUSES = (PASSING, WARNING, CRITICAL, MAINTENANCE)

# Service kinds: "" is Consul's "typical" service.
KIND_TYPICAL = ""
KIND_CONNECT_PROXY = "connect-proxy"
SERVICE_KINDS = (
    KIND_TYPICAL,
    KIND_CONNECT_PROXY,
    "mesh-gateway",
    "terminating-gateway",
    "ingress-gateway",
    "api-gateway",
)

SERF_HEALTH = "serfHealth"


@dataclass(frozen=True, slots=True)
class Node:
    """A catalog node (Consul ``structs.Node``)."""

    node: str
    id: str = ""
    address: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class Weights:
    """DNS SRV weights of a service instance by health status."""

    passing: int = 1
    warning: int = 1


DEFAULT_WEIGHTS = Weights()


@dataclass(frozen=True, slots=True)
class ServiceInstance:
    """A service registered on a node (Consul ``NodeService`` plus its node name).

    ``proxy`` and ``connect`` hold Consul's ``Proxy`` and ``Connect`` blocks
    verbatim with their JSON field names (``DestinationServiceName``,
    ``Upstreams``, ``Native``...).
    """

    service: str
    id: str = ""
    node: str = ""
    kind: str = KIND_TYPICAL
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    tagged_addresses: dict[str, Any] = field(default_factory=dict)
    weights: Weights = DEFAULT_WEIGHTS
    enable_tag_override: bool = False
    proxy: dict[str, Any] | None = None
    connect: dict[str, Any] | None = None
    create_index: int = 0
    modify_index: int = 0
    locality: dict[str, str] | None = None  # Consul's {"Region", "Zone"}

    @property
    def destination(self) -> str:
        """``Proxy.DestinationServiceName`` for a connect proxy, else ""."""
        if self.kind != KIND_CONNECT_PROXY or not self.proxy:
            return ""
        dest = self.proxy.get("DestinationServiceName", "")
        return dest if isinstance(dest, str) else ""

    @property
    def native(self) -> bool:
        """True for a Connect-native service (``Connect.Native``)."""
        return bool(self.connect) and self.connect.get("Native") is True  # type: ignore[union-attr]


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A node-level (``service_id`` "") or service-level check (Consul ``HealthCheck``)."""

    check_id: str
    node: str = ""
    name: str = ""
    status: str = ""
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = ()
    type: str = ""
    interval: str = ""
    timeout: str = ""
    definition: dict[str, Any] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class KVEntry:
    """A KV pair (Consul ``DirEntry``)."""

    key: str
    value: bytes = b""
    flags: int = 0
    session: str = ""
    lock_index: int = 0
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A deleted key's index, kept so blocking list/get queries see it move."""

    key: str
    index: int


@dataclass(frozen=True, slots=True)
class LockDelay:
    """A key may not be acquired before ``until`` (seconds, proposer's clock)."""

    key: str
    until: float


@dataclass(frozen=True, slots=True)
class Session:
    """A session (Consul ``structs.Session``); ``lock_delay`` in seconds."""

    id: str
    name: str = ""
    node: str = ""
    node_checks: tuple[str, ...] = ()
    service_checks: tuple[str, ...] = ()
    lock_delay: float = 15.0
    behavior: str = "release"
    ttl: str = ""
    create_time: float = 0.0
    create_index: int = 0
    modify_index: int = 0

    @property
    def checks(self) -> tuple[str, ...]:
        """Every check ID the session is bound to."""
        return self.node_checks + self.service_checks


INTENTION_WILDCARD = "*"


def _exact_parts(ns: str, name: str) -> int:
    return (ns != INTENTION_WILDCARD) + (name != INTENTION_WILDCARD)


@dataclass(frozen=True, slots=True)
class Intention:
    """A service intention (Consul ``structs.Intention``, ID-based form)."""

    id: str
    source_name: str = ""
    destination_name: str = ""
    source_ns: str = "default"
    destination_ns: str = "default"
    source_type: str = "consul"
    action: str = ""
    permissions: tuple[Any, ...] = ()
    description: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    precedence: int = 0
    created_at: float = 0.0
    updated_at: float = 0.0
    create_index: int = 0
    modify_index: int = 0

    def with_precedence(self) -> Intention:
        """This intention with ``precedence`` computed from its names (higher wins).

        Consul's ``Intention.UpdatePrecedence`` (agent/structs/intention.go;
        https://developer.hashicorp.com/consul/docs/connect/intentions#precedence-and-match-order),
        run once when an intention is written; readers (the API's
        ``Precedence``, connect's evaluation) use the stored value. The
        destination's exactness sets the ceiling (9 with namespace and name
        exact, 6 with one of them ``*``, 3 with both) and each ``*`` on the
        source side subtracts one; with namespaces always "default" (OSS):

            source  destination  precedence
            exact   exact        9
            *       exact        8
            exact   *            6
            *       *            5
        """
        ceiling = {2: 9, 1: 6, 0: 3}[_exact_parts(self.destination_ns, self.destination_name)]
        value = ceiling - (2 - _exact_parts(self.source_ns, self.source_name))
        return replace(self, precedence=value)


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """A config entry: ``kind`` + ``name`` and the rest of its JSON body."""

    kind: str
    name: str
    body: dict[str, Any] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class CARoot:
    """A CA root; ``signing_key`` is private and never leaves through the API shapes."""

    id: str
    name: str = ""
    serial_number: int = 0
    signing_key_id: str = ""
    external_trust_domain: str = ""
    not_before: str = ""
    not_after: str = ""
    root_cert: str = ""
    intermediate_certs: tuple[str, ...] = ()
    signing_cert: str = ""
    signing_key: str = ""
    active: bool = False
    rotated_out_at: str = ""
    private_key_type: str = "ec"
    private_key_bits: int = 256
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class CAConfig:
    """CA configuration; ``config["PrivateKey"]`` and ``state`` are private."""

    cluster_id: str = ""
    provider: str = "consul"
    config: dict[str, Any] = field(default_factory=dict)
    state: dict[str, str] = field(default_factory=dict)
    force_without_cross_signing: bool = False
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class ACLLink:
    """A reference from a token or role to a policy or role."""

    id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class ACLServiceIdentity:
    """A templated policy granting a service its own identity's rights."""

    service_name: str
    datacenters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ACLNodeIdentity:
    """A templated policy granting a node its own identity's rights."""

    node_name: str
    datacenter: str = ""


@dataclass(frozen=True, slots=True)
class ACLTemplatedPolicy:
    """A templated policy reference (Consul's ``ACLTemplatedPolicy``): a
    builtin template by name with its variables (``Name`` only) and the
    datacenters it applies in (all when empty)."""

    template_name: str
    name: str = ""
    datacenters: tuple[str, ...] = ()


def expired_at(expiration_time: str, now: float) -> bool:
    """Whether an RFC 3339 ``expiration_time`` is at or before ``now`` (seconds
    since the epoch). An empty or unparseable time never expires. The one
    definition of token expiry: reads, resolution and the reaper all use it."""
    if not expiration_time:
        return False
    try:
        at = datetime.fromisoformat(expiration_time.replace("Z", "+00:00"))
    except ValueError:
        return False
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp() <= now


@dataclass(frozen=True, slots=True)
class ACLToken:
    """An ACL token, indexed by accessor and by secret."""

    accessor_id: str
    secret_id: str = ""
    description: str = ""
    policies: tuple[ACLLink, ...] = ()
    roles: tuple[ACLLink, ...] = ()
    service_identities: tuple[ACLServiceIdentity, ...] = ()
    node_identities: tuple[ACLNodeIdentity, ...] = ()
    local: bool = False
    expiration_time: str = ""
    create_time: str = ""
    create_index: int = 0
    modify_index: int = 0
    templated_policies: tuple[ACLTemplatedPolicy, ...] = ()
    auth_method: str = ""

    def expired(self, now: float) -> bool:
        """Whether this token's ``ExpirationTime`` is at or before ``now``."""
        return expired_at(self.expiration_time, now)


@dataclass(frozen=True, slots=True)
class ACLPolicy:
    """An ACL policy (rules in Consul's HCL/JSON text)."""

    id: str
    name: str = ""
    description: str = ""
    rules: str = ""
    datacenters: tuple[str, ...] = ()
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class ACLRole:
    """An ACL role: a named bundle of policies and identities."""

    id: str
    name: str = ""
    description: str = ""
    policies: tuple[ACLLink, ...] = ()
    service_identities: tuple[ACLServiceIdentity, ...] = ()
    node_identities: tuple[ACLNodeIdentity, ...] = ()
    create_index: int = 0
    modify_index: int = 0
    templated_policies: tuple[ACLTemplatedPolicy, ...] = ()


@dataclass(frozen=True, slots=True)
class ACLAuthMethod:
    """An ACL auth method (Consul's ``ACLAuthMethod``); ``config`` is the
    type's own configuration (for ``jwt``: keys, issuer, audiences, claim
    mappings), ``max_token_ttl`` in seconds (0: no expiry)."""

    name: str
    type: str = ""
    display_name: str = ""
    description: str = ""
    max_token_ttl: float = 0.0
    token_locality: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class ACLBindingRule:
    """An ACL binding rule (Consul's ``ACLBindingRule``): which identities a
    login through ``auth_method`` receives when ``selector`` matches."""

    id: str
    description: str = ""
    auth_method: str = ""
    selector: str = ""
    bind_type: str = ""
    bind_name: str = ""
    bind_vars_name: str = ""
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class Liveness:
    """The leader's last verdict on a node ("alive", "failed", "left")."""

    node: str
    status: str = "alive"
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class ServiceNode:
    """A catalog service query row: the instance and its node."""

    node: Node
    service: ServiceInstance


@dataclass(frozen=True, slots=True)
class CheckServiceNode:
    """A health service query row: node, instance, node checks then service checks."""

    node: Node
    service: ServiceInstance
    checks: tuple[HealthCheck, ...]


@dataclass(frozen=True, slots=True)
class NodeServices:
    """A node and the services registered on it (catalog node queries)."""

    node: Node
    services: tuple[ServiceInstance, ...]


@dataclass(frozen=True, slots=True)
class CARootList:
    """The CA roots query result (Consul ``IndexedCARoots``)."""

    active_root_id: str
    trust_domain: str
    roots: tuple[CARoot, ...]


@dataclass(frozen=True, slots=True)
class AutopilotConfig:
    """Consul's autopilot configuration (durations in seconds); one row."""

    cleanup_dead_servers: bool = True
    last_contact_threshold: float = 1.0
    max_trailing_logs: int = 250
    min_quorum: int = 0
    server_stabilization_time: float = 10.0
    redundancy_zone_tag: str = ""
    disable_upgrade_migration: bool = False
    upgrade_version_tag: str = ""
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True, slots=True)
class Coordinate:
    """A node's network coordinate in one segment (Serf's Vivaldi shape)."""

    node: str
    segment: str = ""
    vec: tuple[float, ...] = ()
    error: float = 0.0
    adjustment: float = 0.0
    height: float = 0.0


# Canary states (meshd extension, issue 19): running and paused are active.
CANARY_STATES = ("running", "paused", "promoted", "rolled_back", "aborted")
CANARY_ACTIVE = ("running", "paused")


@dataclass(frozen=True, slots=True)
class CanaryEvent:
    """One line of a canary's History: a step, pause, resume, promote,
    rollback or abort, with the figures it was decided on (wall seconds)."""

    time: float
    step: int
    weight: float
    event: str
    reason: str = ""
    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    p99_ms: float | None = None


@dataclass(frozen=True, slots=True)
class Canary:
    """A canary release of ``service``: the splitter's weight on ``to_subset``
    follows ``steps[step]`` while the leader's controller finds its figures
    in bounds (durations in seconds, times in wall seconds). One row per
    service; the controller replaces it at every step."""

    service: str
    from_subset: str
    to_subset: str
    steps: tuple[float, ...]
    step: int = 0
    state: str = "running"
    interval: float = 30.0
    max_error_rate: float = 0.01
    max_p99: float = 0.3
    min_requests: int = 20
    step_started_at: float = 0.0
    reason: str = ""
    last: CanaryEvent | None = None
    history: tuple[CanaryEvent, ...] = ()
    create_index: int = 0
    modify_index: int = 0

    @property
    def weight(self) -> float:
        """The canary's current share (percent) of the service's traffic."""
        if self.state in ("rolled_back", "aborted"):
            return 0.0
        if self.state == "promoted":
            return 100.0
        return self.steps[self.step] if self.steps else 0.0
