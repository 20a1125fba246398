"""Typed, versioned commands: what the leader proposes and the FSM applies.

One frozen dataclass per command type. ``encode_command`` writes
``[type, version, {field: value}]`` with msgpack; ``decode_command`` is
strict (unknown type, newer version, unknown or mistyped field all raise
``CorruptCommandError``, since a committed entry that does not decode means a
corrupt log).

``validate()`` is called once at the API edge and raises
``ValidationError(field, message)`` with Consul's JSON field names; the FSM
calls it again and turns a failure into a ``Result`` (deterministic either
way). Times (``now``, seconds since the epoch) are set by the proposer; the
FSM never reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

import msgpack

from . import validation as v
from .codec import CodecError, from_obj, pack, to_obj, unpack
from .errors import CorruptCommandError, ValidationError
from .kv_codec import kv_body, kv_from_body, kv_plain_fields, new_kv
from .records import (
    CANARY_STATES,
    CHECK_STATUSES,
    KIND_CONNECT_PROXY,
    SERF_HEALTH,
    SERVICE_KINDS,
    ACLAuthMethod,
    ACLBindingRule,
    ACLPolicy,
    ACLRole,
    ACLToken,
    AutopilotConfig,
    CAConfig,
    Canary,
    CARoot,
    ConfigEntry,
    Coordinate,
    HealthCheck,
    Intention,
    Node,
    ServiceInstance,
)

# Consul's raft apply limit for a KV value (agent/structs: kv value 512 KiB).
MAX_KV_VALUE = 512 * 1024
# Consul documents no key limit; meshd bounds keys (UTF-8 bytes) so that any
# stored key can be read back through GET /v1/kv/<key> even fully
# percent-encoded (3 bytes per byte, 48 KiB) inside the HTTP server's 64 KiB
# request-head limit, and so one write cannot carry a huge key into every
# server's log (issue 13: a 400 KB key stalled the servers).
MAX_KV_KEY = 16 * 1024
# Consul's maxTxnOps.
MAX_TXN_OPS = 64
# Session limits (agent/structs: SessionTTLMin/Max, consul session endpoint maxLockDelay).
SESSION_TTL_MIN = 10.0
SESSION_TTL_MAX = 24 * 3600.0
MAX_LOCK_DELAY = 60.0
DEFAULT_LOCK_DELAY = 15.0

KV_OPS = ("set", "cas", "delete", "delete-cas", "delete-tree", "lock", "unlock")
# KV ops whose only rules are the common ones (a key; a session is neither
# required nor refused).
_PLAIN_KV_OPS = frozenset(("set", "cas", "delete", "delete-cas"))
_U64 = 2**64 - 1
TXN_KV_VERBS = (
    *KV_OPS,
    "get",
    "get-tree",
    "check-index",
    "check-session",
    "check-not-exists",
)
TXN_CATALOG_VERBS = ("set", "cas", "delete", "delete-cas", "get")
SESSION_BEHAVIORS = ("release", "delete")
CONFIG_ENTRY_OPS = ("upsert", "upsert-cas", "delete", "delete-cas")
CONFIG_ENTRY_KINDS = frozenset(
    {
        "service-defaults",
        "proxy-defaults",
        "service-router",
        "service-splitter",
        "service-resolver",
        "ingress-gateway",
        "terminating-gateway",
        "api-gateway",
        "service-intentions",
        "mesh",
        "exported-services",
        "sameness-group",
        "jwt-provider",
    }
)
INTENTION_ACTIONS = ("allow", "deny")
LIVENESS_STATUSES = ("alive", "failed", "left")


class Command:
    """Base of every command: a type code, a version and ``validate()``."""

    __slots__ = ()
    TYPE: ClassVar[int]
    VERSION: ClassVar[int] = 1

    def validate(self) -> None:
        """Raise ``ValidationError`` if a field is invalid; the default accepts all."""


CommandT = TypeVar("CommandT", bound=Command)


def stamped(cmd: CommandT, now: float) -> CommandT:
    """``cmd`` with ``now`` as its time when it has a ``now`` field the caller
    left unset (0.0). Writes call this where they enter an agent or a server,
    so a command's time is read once, at the edge, and a test can set it."""
    if getattr(cmd, "now", None) != 0.0:
        return cmd
    if isinstance(cmd, KVRequest) and type(cmd) is KVRequest:  # most writes: no field table
        c = cmd
        kv = new_kv(KVRequest, c.op, c.key, c.value, c.flags, c.session, c.cas, now)
        return kv  # type: ignore[return-value]
    # ``dataclasses.replace`` rebuilds its keyword arguments from ``fields()``
    # on every call: 3 us of a leader's ~100 us per KV PUT; the field names
    # are cached per class instead (the same constructor runs).
    cls = type(cmd)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cmd) if f.init)  # type: ignore[arg-type]
    args = {name: getattr(cmd, name) for name in names}
    args["now"] = now
    return cls(**args)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _validate_service(svc: ServiceInstance, prefix: str) -> None:
    v.require(svc.service, f"{prefix}.Service", "must provide service name")
    v.one_of(svc.kind, SERVICE_KINDS, f"{prefix}.Kind")
    v.uint_range(svc.port, f"{prefix}.Port", 0, 65535)
    v.meta(svc.meta, f"{prefix}.Meta")
    v.no_empty_items(svc.tags, f"{prefix}.Tags")
    if svc.weights.passing < 1:
        raise ValidationError(f"{prefix}.Weights.Passing", "must be greater than 0")
    if svc.weights.warning < 0:
        raise ValidationError(f"{prefix}.Weights.Warning", "must be 0 or more")
    if svc.kind == KIND_CONNECT_PROXY:
        if not svc.destination:
            raise ValidationError(
                f"{prefix}.Proxy.DestinationServiceName", "must be set for a connect-proxy"
            )
        if svc.port == 0:
            raise ValidationError(f"{prefix}.Port", "must be set for a connect-proxy")
    if svc.connect is not None and "Native" in svc.connect:
        if not isinstance(svc.connect["Native"], bool):
            raise ValidationError(f"{prefix}.Connect.Native", "must be a boolean")
        if svc.connect["Native"] and svc.kind == KIND_CONNECT_PROXY:
            raise ValidationError(f"{prefix}.Connect.Native", "a proxy cannot be native")


def _validate_check(check: HealthCheck, prefix: str, node: str | None) -> None:
    if not check.check_id and not check.name:
        raise ValidationError(f"{prefix}.CheckID", "must provide a check ID or name")
    if node is not None and check.node and check.node != node:
        raise ValidationError(
            f"{prefix}.Node", f"check node {check.node!r} does not match {node!r}"
        )
    if check.status:
        v.one_of(check.status, CHECK_STATUSES, f"{prefix}.Status")


def validate_kv_key(key: str, field: str = "Key") -> None:
    """Refuse a KV key that is not valid UTF-8 or longer than ``MAX_KV_KEY`` bytes.

    Raises ``ValidationError(field, ...)``.
    """
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(field, "key is not valid UTF-8") from None
    if size > MAX_KV_KEY:
        raise ValidationError(field, f"key of {size} bytes exceeds the {MAX_KV_KEY} byte limit")


def _validate_kv(key: str, value: bytes, flags: int, verb: str, prefix: str) -> None:
    if verb != "delete-tree":
        v.require(key, f"{prefix}Key", "missing key name")
    validate_kv_key(key, f"{prefix}Key")
    if len(value) > MAX_KV_VALUE:
        raise ValidationError(
            f"{prefix}Value", f"value of {len(value)} bytes exceeds {MAX_KV_VALUE} byte limit"
        )
    v.uint_range(flags, f"{prefix}Flags")


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterRequest(Command):
    """Consul's /v1/catalog/register: a node, an optional service and checks, atomically.

    ``service.node`` is ignored (the service lands on ``node``); ``service.id``
    defaults to the service name and a check's ID to its name, as Consul does.
    """

    TYPE: ClassVar[int] = 1
    node: str
    id: str = ""
    address: str = ""
    datacenter: str = ""
    tagged_addresses: dict[str, str] = field(default_factory=dict)
    node_meta: dict[str, str] = field(default_factory=dict)
    service: ServiceInstance | None = None
    checks: tuple[HealthCheck, ...] = ()
    skip_node_update: bool = False
    now: float = 0.0

    def validate(self) -> None:
        v.require(self.node, "Node", "must provide node")
        if not self.skip_node_update:
            v.require(self.address, "Address", "must provide address")
        if self.id:
            v.uuid_like(self.id, "ID")
        v.meta(self.node_meta, "NodeMeta", allow_reserved=True)
        if self.service is not None:
            _validate_service(self.service, "Service")
        for i, check in enumerate(self.checks):
            _validate_check(check, f"Checks[{i}]", self.node)


@dataclass(frozen=True, slots=True, kw_only=True)
class DeregisterRequest(Command):
    """Consul's /v1/catalog/deregister: ServiceID, else CheckID, else the whole node."""

    TYPE: ClassVar[int] = 2
    node: str
    service_id: str = ""
    check_id: str = ""
    now: float = 0.0

    def validate(self) -> None:
        v.require(self.node, "Node", "must provide node")


def plain_kv_valid(op: str, key: str, value: bytes, flags: int, cas: int) -> bool:
    """True for a set/cas/delete/delete-cas that ``KVRequest.validate``
    accepts without its full checks (an ASCII key's UTF-8 size is its
    length); False says nothing (the full checks decide)."""
    return (
        op in _PLAIN_KV_OPS
        and key.__class__ is str
        and bool(key)
        and key.isascii()
        and len(key) <= MAX_KV_KEY
        and len(value) <= MAX_KV_VALUE
        and 0 <= flags <= _U64
        and 0 <= cas <= _U64
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class KVRequest(Command):
    """A KV write (Consul KVSRequest): set, cas, delete, delete-cas, delete-tree, lock, unlock.

    ``cas`` is the expected ModifyIndex for ``cas``/``delete-cas``; 0 with
    ``cas`` means create-only. ``now`` is checked against lock delays.
    """

    TYPE: ClassVar[int] = 3
    op: str
    key: str
    value: bytes = b""
    flags: int = 0
    session: str = ""
    cas: int = 0
    now: float = 0.0

    def validate(self) -> None:
        # Every KV PUT is validated ~5 times over a cluster (the API, the
        # server it entered, each server's apply): the common case, checked
        # at once; anything else goes through the full checks below, which
        # name what is wrong.
        if plain_kv_valid(self.op, self.key, self.value, self.flags, self.cas):
            return
        v.one_of(self.op, KV_OPS, "Op")
        _validate_kv(self.key, self.value, self.flags, self.op, "")
        if self.op in ("lock", "unlock"):
            v.require(self.session, "Session", "a session is required to acquire or release")
        v.uint_range(self.cas, "Cas")


@dataclass(frozen=True, slots=True, kw_only=True)
class TombstoneReap(Command):
    """Drop KV tombstones with index <= ``until_index`` and lock delays that ended
    before ``now`` (sent periodically by the leader's reaper)."""

    TYPE: ClassVar[int] = 4
    until_index: int
    now: float = 0.0

    def validate(self) -> None:
        v.uint_range(self.until_index, "ReapIndex")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionCreate(Command):
    """Create a session; ``id`` is a UUID chosen by the proposer, ``lock_delay`` in seconds."""

    TYPE: ClassVar[int] = 5
    id: str
    node: str
    name: str = ""
    node_checks: tuple[str, ...] = (SERF_HEALTH,)
    service_checks: tuple[str, ...] = ()
    lock_delay: float = DEFAULT_LOCK_DELAY
    behavior: str = "release"
    ttl: str = ""
    now: float = 0.0

    def validate(self) -> None:
        v.uuid_like(self.id, "ID")
        v.require(self.node, "Node", "must provide node")
        v.one_of(self.behavior, SESSION_BEHAVIORS, "Behavior")
        v.no_empty_items(self.node_checks, "NodeChecks")
        v.no_empty_items(self.service_checks, "ServiceChecks")
        if not 0 <= self.lock_delay <= MAX_LOCK_DELAY:
            raise ValidationError("LockDelay", f"must be between 0s and {MAX_LOCK_DELAY:.0f}s")
        if self.ttl:
            ttl = v.parse_duration(self.ttl, "TTL")
            if ttl != 0 and not SESSION_TTL_MIN <= ttl <= SESSION_TTL_MAX:
                raise ValidationError("TTL", "must be between 10s and 24h0m0s")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDestroy(Command):
    """Destroy (invalidate) a session: the user's DELETE or the leader's TTL expiry."""

    TYPE: ClassVar[int] = 6
    id: str
    now: float = 0.0

    def validate(self) -> None:
        v.require(self.id, "ID", "must provide a session ID")


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnKVOp:
    """A KV op in a transaction (Consul api.KVTxnOp); ``index`` is the CAS/check index."""

    verb: str
    key: str = ""
    value: bytes = b""
    flags: int = 0
    index: int = 0
    session: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnNodeOp:
    """A node op; ``node.modify_index`` is the CAS index for cas/delete-cas."""

    verb: str
    node: Node


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnServiceOp:
    """A service op on ``node``; ``service.modify_index`` is the CAS index."""

    verb: str
    node: str
    service: ServiceInstance


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnCheckOp:
    """A check op; ``check.node`` names the node, ``check.modify_index`` the CAS index."""

    verb: str
    check: HealthCheck


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnOp:
    """Exactly one of ``kv``, ``node``, ``service``, ``check`` (Consul api.TxnOp)."""

    kv: TxnKVOp | None = None
    node: TxnNodeOp | None = None
    service: TxnServiceOp | None = None
    check: TxnCheckOp | None = None

    def validate(self, i: int) -> None:
        """Check the op; ``i`` is its position, used in field names."""
        present = [x for x in (self.kv, self.node, self.service, self.check) if x is not None]
        if len(present) != 1:
            raise ValidationError(f"Ops[{i}]", "exactly one of KV, Node, Service, Check")
        if self.kv is not None:
            kv = self.kv
            v.one_of(kv.verb, TXN_KV_VERBS, f"Ops[{i}].KV.Verb")
            if kv.verb != "get-tree":
                _validate_kv(kv.key, kv.value, kv.flags, kv.verb, f"Ops[{i}].KV.")
            if kv.verb in ("lock", "unlock", "check-session"):
                v.require(kv.session, f"Ops[{i}].KV.Session")
        elif self.node is not None:
            v.one_of(self.node.verb, TXN_CATALOG_VERBS, f"Ops[{i}].Node.Verb")
            v.require(self.node.node.node, f"Ops[{i}].Node.Node.Node")
            v.meta(self.node.node.meta, f"Ops[{i}].Node.Node.Meta", allow_reserved=True)
        elif self.service is not None:
            v.one_of(self.service.verb, TXN_CATALOG_VERBS, f"Ops[{i}].Service.Verb")
            v.require(self.service.node, f"Ops[{i}].Service.Node")
            if self.service.verb in ("set", "cas"):
                _validate_service(self.service.service, f"Ops[{i}].Service.Service")
            else:
                sid = self.service.service.id or self.service.service.service
                v.require(sid, f"Ops[{i}].Service.Service.ID")
        elif self.check is not None:
            v.one_of(self.check.verb, TXN_CATALOG_VERBS, f"Ops[{i}].Check.Verb")
            v.require(self.check.check.node, f"Ops[{i}].Check.Check.Node")
            _validate_check(self.check.check, f"Ops[{i}].Check.Check", None)

    @property
    def is_read(self) -> bool:
        """True for verbs that change nothing (get, get-tree, check-*)."""
        verb = next(x.verb for x in (self.kv, self.node, self.service, self.check) if x)
        return verb == "get" or verb == "get-tree" or verb.startswith("check-")


@dataclass(frozen=True, slots=True, kw_only=True)
class TxnRequest(Command):
    """Consul's /v1/txn: up to 64 ops applied all or nothing."""

    TYPE: ClassVar[int] = 7
    ops: tuple[TxnOp, ...]
    now: float = 0.0

    def validate(self) -> None:
        if len(self.ops) > MAX_TXN_OPS:
            raise ValidationError(
                "Ops",
                f"transaction contains too many operations ({len(self.ops)} > {MAX_TXN_OPS})",
            )
        for i, op in enumerate(self.ops):
            op.validate(i)


def _validate_intention_name(name: str, field_name: str) -> None:
    v.require(name, field_name, "must be set")
    if "*" in name and name != "*":
        raise ValidationError(
            field_name, "wildcard character '*' cannot be used with partial values"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentionUpsert(Command):
    """Create or update an intention: the source ``SourceName`` of the
    destination's service-intentions entry, found by ``LegacyID`` when the ID
    is set, else by name (precedence is computed by the FSM)."""

    TYPE: ClassVar[int] = 8
    intention: Intention
    now: float = 0.0

    def validate(self) -> None:
        ixn = self.intention
        _validate_intention_name(ixn.source_name, "SourceName")
        _validate_intention_name(ixn.destination_name, "DestinationName")
        for ns, name in (("SourceNS", ixn.source_ns), ("DestinationNS", ixn.destination_ns)):
            _validate_intention_name(name, ns)
        if ixn.permissions:
            if ixn.action:
                raise ValidationError("Action", "must be empty when Permissions are present")
            for i, perm in enumerate(ixn.permissions):
                if not isinstance(perm, dict) or perm.get("Action") not in INTENTION_ACTIONS:
                    raise ValidationError(f"Permissions[{i}].Action", "must be allow or deny")
        else:
            v.one_of(ixn.action, INTENTION_ACTIONS, "Action")
        v.one_of(ixn.source_type, ("consul",), "SourceType")
        v.meta(ixn.meta, "Meta", allow_reserved=True)
        if len(ixn.description) > 512:
            raise ValidationError("Description", "too long (max 512)")


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentionDelete(Command):
    """Delete an intention by ID (its ``LegacyID``) or, without one, by
    ``source`` and ``destination`` names."""

    TYPE: ClassVar[int] = 9
    id: str = ""
    source: str = ""
    destination: str = ""

    def validate(self) -> None:
        if not self.id:
            v.require(self.source, "SourceName", "must be set")
            v.require(self.destination, "DestinationName", "must be set")


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentionsMigrate(Command):
    """The leader moves the records of the pre-1.9 intentions table into
    service-intentions config entries (Consul's legacy intention migration)."""

    TYPE: ClassVar[int] = 72

    def validate(self) -> None:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigEntryRequest(Command):
    """Upsert or delete a config entry; ``cas`` is the expected ModifyIndex for *-cas ops."""

    TYPE: ClassVar[int] = 10
    op: str
    entry: ConfigEntry
    cas: int = 0

    def validate(self) -> None:
        v.one_of(self.op, CONFIG_ENTRY_OPS, "Op")
        v.one_of(self.entry.kind, CONFIG_ENTRY_KINDS, "Kind")
        v.require(self.entry.name, "Name", "must be set")
        if self.entry.kind == "proxy-defaults" and self.entry.name != "global":
            raise ValidationError("Name", "proxy-defaults must be named 'global'")
        if self.entry.kind == "mesh" and self.entry.name != "mesh":
            raise ValidationError("Name", "mesh config entry must be named 'mesh'")
        for reserved in ("Kind", "Name", "CreateIndex", "ModifyIndex"):
            if reserved in self.entry.body:
                raise ValidationError(reserved, "must not be repeated in the body")


# meshd's bound on one atomic config-entry batch (Consul has no batch; its
# txn endpoint bounds ops at 64, meshd allows a directory of entries).
MAX_CONFIG_BATCH = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigEntryBatch(Command):
    """meshd extension: upsert several config entries atomically (all or none).

    ``index`` guards the graph validation done at the API edge: when not 0,
    the batch applies only if no config entry changed after that index (the
    config-entries table index), so entries validated together as one graph
    are stored together against the same graph (hashicorp/consul#6247).
    """

    TYPE: ClassVar[int] = 64
    entries: tuple[ConfigEntry, ...]
    index: int = 0

    def validate(self) -> None:
        if not self.entries:
            raise ValidationError("Entries", "must not be empty")
        if len(self.entries) > MAX_CONFIG_BATCH:
            raise ValidationError("Entries", f"too many entries (max {MAX_CONFIG_BATCH})")
        seen: set[tuple[str, str]] = set()
        for i, entry in enumerate(self.entries):
            key = (entry.kind, entry.name)
            if key in seen:
                raise ValidationError(
                    f"Entries[{i}]", f"duplicate config entry {entry.kind}/{entry.name}"
                )
            seen.add(key)
            try:
                ConfigEntryRequest(op="upsert", entry=entry).validate()
            except ValidationError as exc:
                raise ValidationError(f"Entries[{i}].{exc.field}", exc.message) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class CARootsSet(Command):
    """Replace the whole CA root set if the roots table index equals ``cas``."""

    TYPE: ClassVar[int] = 11
    roots: tuple[CARoot, ...]
    cas: int = 0

    def validate(self) -> None:
        for i, root in enumerate(self.roots):
            v.require(root.id, f"Roots[{i}].ID")
            v.require(root.root_cert, f"Roots[{i}].RootCert")
        if sum(1 for r in self.roots if r.active) > 1:
            raise ValidationError("Roots", "at most one root may be active")


@dataclass(frozen=True, slots=True, kw_only=True)
class CAConfigSet(Command):
    """Set the CA configuration; with ``cas`` set, only if ModifyIndex equals it."""

    TYPE: ClassVar[int] = 12
    config: CAConfig
    cas: int | None = None

    def validate(self) -> None:
        v.require(self.config.provider, "Provider")
        v.require(self.config.cluster_id, "ClusterID")


@dataclass(frozen=True, slots=True, kw_only=True)
class ACLTokenSet(Command):
    """Create or update tokens; with ``cas`` a non-zero ModifyIndex must match."""

    TYPE: ClassVar[int] = 13
    tokens: tuple[ACLToken, ...]
    cas: bool = False

    def validate(self) -> None:
        for i, token in enumerate(self.tokens):
            v.uuid_like(token.accessor_id, f"Tokens[{i}].AccessorID")
            v.require(token.secret_id, f"Tokens[{i}].SecretID")
            for j, link in enumerate((*token.policies, *token.roles)):
                v.require(link.id, f"Tokens[{i}].Links[{j}].ID")


@dataclass(frozen=True, slots=True, kw_only=True)
class ACLTokenDelete(Command):
    """Delete tokens by AccessorID (unknown IDs are ignored)."""

    TYPE: ClassVar[int] = 14
    accessor_ids: tuple[str, ...]


def _validate_acl_name(name: str, field_name: str) -> None:
    v.require(name, field_name)
    if len(name) > 256 or not all(c.isalnum() or c in "-_" for c in name):
        raise ValidationError(field_name, "only letters, digits, '-' and '_' (max 256)")


@dataclass(frozen=True, slots=True, kw_only=True)
class ACLPolicySet(Command):
    """Create or update policies (names are unique)."""

    TYPE: ClassVar[int] = 15
    policies: tuple[ACLPolicy, ...]

    def validate(self) -> None:
        for i, policy in enumerate(self.policies):
            v.require(policy.id, f"Policies[{i}].ID")
            _validate_acl_name(policy.name, f"Policies[{i}].Name")


@dataclass(frozen=True, slots=True, kw_only=True)
class ACLPolicyDelete(Command):
    """Delete policies by ID."""

    TYPE: ClassVar[int] = 16
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ACLRoleSet(Command):
    """Create or update roles (names are unique)."""

    TYPE: ClassVar[int] = 17
    roles: tuple[ACLRole, ...]

    def validate(self) -> None:
        for i, role in enumerate(self.roles):
            v.require(role.id, f"Roles[{i}].ID")
            _validate_acl_name(role.name, f"Roles[{i}].Name")


@dataclass(frozen=True, slots=True, kw_only=True)
class ACLRoleDelete(Command):
    """Delete roles by ID."""

    TYPE: ClassVar[int] = 18
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class LivenessSet(Command):
    """The leader's verdict on a node's liveness changed."""

    TYPE: ClassVar[int] = 19
    node: str
    status: str

    def validate(self) -> None:
        v.require(self.node, "Node")
        v.one_of(self.status, LIVENESS_STATUSES, "Status")


@dataclass(frozen=True, slots=True, kw_only=True)
class ACLBootstrap(Command):
    """Consul's ACLBootstrapRequest: create the first management token, once.

    The FSM records the index it applied at (``acl-token-bootstrap`` in the
    index table, so snapshots keep it); a later bootstrap is refused unless
    ``reset_index`` equals that index (Consul's ``acl-bootstrap-reset`` file).
    """

    TYPE: ClassVar[int] = 20
    token: ACLToken
    reset_index: int = 0

    def validate(self) -> None:
        v.uuid_like(self.token.accessor_id, "Token.AccessorID")
        v.require(self.token.secret_id, "Token.SecretID")
        for j, link in enumerate((*self.token.policies, *self.token.roles)):
            v.require(link.id, f"Token.Links[{j}].ID")
        v.uint_range(self.reset_index, "ResetIndex")


# Auth-method and binding-rule commands use 60+ so that command types other
# branches add after ACLBootstrap (21, 22, ...) cannot collide with them.
@dataclass(frozen=True, slots=True, kw_only=True)
class ACLAuthMethodSet(Command):
    """Create or update auth methods (keyed by name)."""

    TYPE: ClassVar[int] = 60
    methods: tuple[ACLAuthMethod, ...]

    def validate(self) -> None:
        for i, method in enumerate(self.methods):
            v.require(method.name, f"AuthMethods[{i}].Name")
            v.require(method.type, f"AuthMethods[{i}].Type")


@dataclass(frozen=True, slots=True, kw_only=True)
class ACLAuthMethodDelete(Command):
    """Delete auth methods by name, with their binding rules and login tokens."""

    TYPE: ClassVar[int] = 61
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ACLBindingRuleSet(Command):
    """Create or update binding rules."""

    TYPE: ClassVar[int] = 62
    rules: tuple[ACLBindingRule, ...]

    def validate(self) -> None:
        for i, rule in enumerate(self.rules):
            v.uuid_like(rule.id, f"BindingRules[{i}].ID")
            v.require(rule.auth_method, f"BindingRules[{i}].AuthMethod")
            v.require(rule.bind_type, f"BindingRules[{i}].BindType")


@dataclass(frozen=True, slots=True, kw_only=True)
class ACLBindingRuleDelete(Command):
    """Delete binding rules by ID."""

    TYPE: ClassVar[int] = 63
    ids: tuple[str, ...]


# Operator state: types 70+ so that other branches' additions cannot collide.
@dataclass(frozen=True, slots=True, kw_only=True)
class AutopilotConfigSet(Command):
    """Consul's AutopilotSetConfiguration: store the autopilot configuration;
    with ``cas`` set, only if the stored ModifyIndex equals it."""

    TYPE: ClassVar[int] = 70
    config: AutopilotConfig
    cas: int | None = None

    def validate(self) -> None:
        c = self.config
        for name, value in (
            ("LastContactThreshold", c.last_contact_threshold),
            ("ServerStabilizationTime", c.server_stabilization_time),
        ):
            if value < 0:
                raise ValidationError(name, f"{name} must not be negative")
        v.uint_range(c.max_trailing_logs, "MaxTrailingLogs")
        v.uint_range(c.min_quorum, "MinQuorum")


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinateBatchUpdate(Command):
    """Consul's Coordinate.Update batch: the coordinates agents reported
    during one flush period, written in one Raft entry."""

    TYPE: ClassVar[int] = 71
    updates: tuple[Coordinate, ...]

    def validate(self) -> None:
        for i, c in enumerate(self.updates):
            v.require(c.node, f"Coordinates[{i}].Node")
            numbers = (*c.vec, c.error, c.adjustment, c.height)
            if not all(math.isfinite(x) for x in numbers):
                raise ValidationError(f"Coordinates[{i}].Coord", "components must be finite")


# meshd extension (issue 19): canary releases, types 80+.
MAX_CANARY_HISTORY = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class CanarySet(Command):
    """Store a canary record and, with ``splitter``, its service-splitter
    entry, in one command (a canary's step, rollback, pause or start).

    Applies only if the stored canary of the service has ModifyIndex
    ``cas`` (0: none stored yet), so two controllers (an old and a new
    leader) can neither lose nor repeat a step. With ``config_index`` set it
    also applies only if no config entry changed after that index (the
    splitter was validated against that graph, as ``ConfigEntryBatch``).
    """

    TYPE: ClassVar[int] = 80
    canary: Canary
    splitter: ConfigEntry | None = None
    cas: int = 0
    config_index: int = 0
    now: float = 0.0

    def validate(self) -> None:
        c = self.canary
        v.require(c.service, "Service", "must be set")
        v.require(c.to_subset, "To", "must be set")
        v.one_of(c.state, CANARY_STATES, "State")
        if not c.steps:
            raise ValidationError("Steps", "must not be empty")
        if not 0 <= c.step < len(c.steps):
            raise ValidationError("Step", f"must be between 0 and {len(c.steps) - 1}")
        if len(c.history) > MAX_CANARY_HISTORY:
            raise ValidationError("History", f"more than {MAX_CANARY_HISTORY} entries")
        s = self.splitter
        if s is not None and (s.kind, s.name) != ("service-splitter", c.service):
            raise ValidationError("Splitter", "must be the service-splitter of the service")


# meshd extension (issue 18): writes a follower forwarded, types 90+.
@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardedBatch(Command):
    """A follower's forwarded writes in one Raft entry (etcd batches the
    proposals its followers forward, too): ``cmds`` are the commands'
    encoded bytes, applied in order at the entry's index, each in its own
    write transaction with its own result, so a failing command fails only
    itself. The commands share the index, as the operations of one Consul
    transaction do. The leader builds it only from bytes that decode to a
    command that is not itself a batch (see ``DecodedBatch``)."""

    TYPE: ClassVar[int] = 90
    cmds: tuple[bytes, ...]


class DecodedBatch:
    """The leader's decoded form of a ``ForwardedBatch`` it proposes (raft's
    decoded apply): the commands as it decoded them from the follower's
    bytes, so its apply does not decode them a second time."""

    __slots__ = ("commands",)

    def __init__(self, commands: tuple[Command, ...]) -> None:
        self.commands = commands


COMMAND_TYPES: dict[int, type[Command]] = {
    cls.TYPE: cls
    for cls in (
        RegisterRequest,
        DeregisterRequest,
        KVRequest,
        TombstoneReap,
        SessionCreate,
        SessionDestroy,
        TxnRequest,
        IntentionUpsert,
        IntentionDelete,
        ConfigEntryRequest,
        CARootsSet,
        CAConfigSet,
        ACLTokenSet,
        ACLTokenDelete,
        ACLPolicySet,
        ACLPolicyDelete,
        ACLRoleSet,
        ACLRoleDelete,
        LivenessSet,
        ACLBootstrap,
        ACLAuthMethodSet,
        ACLAuthMethodDelete,
        ACLBindingRuleSet,
        ACLBindingRuleDelete,
        ConfigEntryBatch,
        AutopilotConfigSet,
        CoordinateBatchUpdate,
        IntentionsMigrate,
        CanarySet,
        ForwardedBatch,
    )
}


def encode_command(cmd: Command) -> bytes:
    """Encode a command as ``[type, version, body]`` msgpack bytes."""
    body: Any = kv_body(cmd) if type(cmd) is KVRequest else to_obj(cmd, type(cmd))
    return pack([cmd.TYPE, cmd.VERSION, body])


def decode_command(data: bytes) -> Command:
    """Decode bytes written by ``encode_command``.

    Raises ``CorruptCommandError`` for anything that is not exactly a known
    command of a version this code understands.
    """
    try:
        obj = unpack(data)
    except CodecError as exc:
        raise CorruptCommandError(str(exc)) from exc
    if type(obj) is not list or len(obj) != 3:
        raise CorruptCommandError("command is not a [type, version, body] array")
    type_code, version, body = obj
    cls = COMMAND_TYPES.get(type_code) if type(type_code) is int else None
    if cls is None:
        raise CorruptCommandError(f"unknown command type {type_code!r}")
    if type(version) is not int or not 1 <= version <= cls.VERSION:
        raise CorruptCommandError(f"{cls.__name__}: unsupported version {version!r}")
    if cls is KVRequest:  # most writes: their own decoder (kv_codec.py)
        kv = kv_from_body(body, KVRequest)
        if kv is not None:
            return kv
    try:
        cmd: Command = from_obj(body, cls)
    except CodecError as exc:
        raise CorruptCommandError(f"{cls.__name__}: {exc}") from exc
    return cmd


PlainKV = tuple[str, str, bytes, int, int]


def decode_plain_kv(data: bytes) -> PlainKV | None:
    """``(op, key, value, flags, cas)`` of encoded command ``data`` when it
    is a KVRequest set/cas/delete/delete-cas that decodes and validates as
    the common case does, for ``kv.apply_plain``: a server applying a KV
    write from its log skips building the command (issue #18). ``None`` for
    anything else (a write of another type first: its own one-byte test),
    which ``decode_command`` and ``validate`` then decide."""
    if len(data) < 3 or data[0] != 0x93 or data[1] != KVRequest.TYPE:
        return None
    try:
        obj = unpack(data)
    except CodecError:
        return None
    if type(obj) is not list or len(obj) != 3:
        return None
    _, version, body = obj
    if version.__class__ is not int or not 1 <= version <= KVRequest.VERSION:
        return None
    kv = kv_plain_fields(body)
    if kv is None or not plain_kv_valid(*kv):
        return None
    return kv


def command_type(data: bytes) -> int | None:
    """The type code of encoded command ``data`` without decoding its body
    (None when ``data`` does not start as ``[type, version, body]``): how
    the server refuses a ``ForwardedBatch`` from outside cheaply."""
    if len(data) >= 2 and data[0] == 0x93 and data[1] < 0x80:
        return data[1]  # what encode_command writes: a fixarray of 3, a fixint
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    try:
        if unpacker.read_array_header() != 3:
            return None
        code = unpacker.unpack()
    except Exception:  # msgpack raises several unrelated types
        return None
    return code if type(code) is int else None
