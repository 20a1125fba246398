"""The built-in Connect CA on the servers (Consul's ``consul`` CA provider).

The leader creates the cluster's trust domain and first root when it finds
no CA configuration (Consul's ``initializeCA``), rotates the root when a new
configuration changes the key (the new root cross-signed by the old one, so
leaves of either verify during the overlap) and drops a rotated-out root
after twice the leaf TTL. Roots, their private keys and the configuration
live in the replicated registry, so every server can sign: ``ConnectCA.Sign``
is answered by the server that receives it, rate-limited per server
(Consul's ``csr_max_per_second``, 429 when exceeded). Private keys never
leave the servers: client agents send a CSR and get a certificate back.
See https://developer.hashicorp.com/consul/docs/connect/ca.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import trio

from connect import ca as ca_core
from connect import rotation
from connect.errors import ConnectError, CSRError
from connect.spiffe import trust_domain_for
from raft.errors import RaftError
from raft.transport import PeerInfo
from registry import queries as q
from registry.commands import CAConfigSet, CARootsSet
from registry.records import CAConfig

from ..acl import ACLAuthorizer, Permission
from ..durations import format_duration, parse_duration
from ..errors import (
    DurationError,
    Internal,
    InvalidArgument,
    MeshdError,
    TooManyRequests,
    Unavailable,
)
from ..rpc import caller_token
from .ca_records import records_from_roots, roots_from_records

if TYPE_CHECKING:
    from ..config.model import CAConfig as CAConfigSettings
    from .server import MeshServer

log = logging.getLogger("meshd.ca")

# Keys of the provider configuration (Consul's CommonCAProviderConfig and
# ConsulCAProviderConfig) and what each must be.
_DURATION_KEYS = ("LeafCertTTL", "RootCertTTL", "IntermediateCertTTL")
_KNOWN_KEYS = frozenset(
    {
        *_DURATION_KEYS,
        "PrivateKeyType",
        "PrivateKeyBits",
        "PrivateKey",
        "RootCert",
        "CSRMaxPerSecond",
        "CSRMaxConcurrent",
    }
)
_EC_BITS = (224, 256, 384, 521)
DEFAULT_CSR_MAX_PER_SECOND = 50.0


@dataclass(frozen=True)
class ProviderSettings:
    """A validated provider configuration."""

    leaf_ttl: float
    root_ttl: float
    intermediate_ttl: float
    key_type: str
    key_bits: int
    private_key: str | None
    csr_max_per_second: float

    def to_config(self) -> dict[str, Any]:
        """As stored (and shown, without ``PrivateKey``) in ``Config``."""
        out: dict[str, Any] = {
            "LeafCertTTL": format_duration(self.leaf_ttl),
            "RootCertTTL": format_duration(self.root_ttl),
            "IntermediateCertTTL": format_duration(self.intermediate_ttl),
            "PrivateKeyType": self.key_type,
            "PrivateKeyBits": self.key_bits,
            "CSRMaxPerSecond": self.csr_max_per_second,
        }
        if self.private_key:
            out["PrivateKey"] = self.private_key
        return out


def settings_from_agent(cfg: CAConfigSettings) -> ProviderSettings:
    """The provider settings of an agent's ``connect.ca_config``."""
    return ProviderSettings(
        leaf_ttl=cfg.leaf_cert_ttl,
        root_ttl=cfg.root_cert_ttl,
        intermediate_ttl=cfg.intermediate_cert_ttl,
        key_type=cfg.private_key_type,
        key_bits=cfg.private_key_bits,
        private_key=None,
        csr_max_per_second=DEFAULT_CSR_MAX_PER_SECOND,
    )


def _duration(config: Mapping[str, Any], key: str, default: float) -> float:
    raw = config.get(key)
    if raw is None or raw == "":
        return default
    try:
        seconds = parse_duration(raw) if isinstance(raw, str) else float(raw) / 1e9
    except (DurationError, ValueError, TypeError):
        raise InvalidArgument(f"Config.{key}: invalid duration {raw!r}", f"Config.{key}") from None
    if seconds <= 0:
        raise InvalidArgument(f"Config.{key}: must be positive", f"Config.{key}")
    return seconds


def _key_spec(config: Mapping[str, Any], base: ProviderSettings) -> tuple[str, int]:
    key_type = config.get("PrivateKeyType", base.key_type) or base.key_type
    if key_type not in ("ec", "rsa"):
        reason = f"Config.PrivateKeyType: must be 'ec' or 'rsa', got {key_type!r}"
        raise InvalidArgument(reason, "Config.PrivateKeyType")
    default_bits = base.key_bits
    if key_type != base.key_type:
        default_bits = 256 if key_type == "ec" else 2048
    bits = config.get("PrivateKeyBits", default_bits) or default_bits
    if isinstance(bits, str) and bits.isdigit():
        bits = int(bits)
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise InvalidArgument("Config.PrivateKeyBits: must be an integer", "Config.PrivateKeyBits")
    if key_type == "ec" and bits not in _EC_BITS:
        reason = f"Config.PrivateKeyBits: ec keys must be 224, 256, 384 or 521 bits, got {bits}"
        raise InvalidArgument(reason, "Config.PrivateKeyBits")
    if key_type == "rsa" and bits not in (2048, 3072, 4096):
        reason = f"Config.PrivateKeyBits: rsa keys must be 2048, 3072 or 4096 bits, got {bits}"
        raise InvalidArgument(reason, "Config.PrivateKeyBits")
    return str(key_type), int(bits)


def parse_provider_config(config: Mapping[str, Any], base: ProviderSettings) -> ProviderSettings:
    """Validate a ``Config`` object of ``PUT /v1/connect/ca/configuration``;
    unset keys keep ``base``. Raises ``InvalidArgument`` naming ``Config.<Key>``."""
    unknown = sorted(set(config) - _KNOWN_KEYS)
    if unknown:
        raise InvalidArgument(f"Config: unknown key {unknown[0]!r}", f"Config.{unknown[0]}")
    if config.get("RootCert"):
        raise InvalidArgument(
            "Config.RootCert: an external root is not supported by the built-in provider",
            "Config.RootCert",
        )
    leaf = _duration(config, "LeafCertTTL", base.leaf_ttl)
    root = _duration(config, "RootCertTTL", base.root_ttl)
    inter = _duration(config, "IntermediateCertTTL", base.intermediate_ttl)
    if not 3600 <= leaf <= 8760 * 3600:
        raise InvalidArgument(
            "Config.LeafCertTTL: must be between 1h and 8760h", "Config.LeafCertTTL"
        )
    if root < inter:
        raise InvalidArgument(
            "Config.RootCertTTL: must not be shorter than IntermediateCertTTL",
            "Config.RootCertTTL",
        )
    key_type, bits = _key_spec(config, base)
    private_key = config.get("PrivateKey") or None
    if private_key is not None and not isinstance(private_key, str):
        raise InvalidArgument("Config.PrivateKey: must be a PEM string", "Config.PrivateKey")
    rate = config.get("CSRMaxPerSecond", base.csr_max_per_second)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
        reason = "Config.CSRMaxPerSecond: must be a number >= 0 (0 = unlimited)"
        raise InvalidArgument(reason, "Config.CSRMaxPerSecond")
    return ProviderSettings(leaf, root, inter, key_type, bits, private_key, float(rate))


def settings_from_stored(config: CAConfig, base: ProviderSettings) -> ProviderSettings:
    """The settings in force, from the replicated configuration."""
    try:
        return parse_provider_config(config.config, base)
    except InvalidArgument:
        return base


class RateLimiter:
    """A token bucket: ``rate`` requests per second with a burst of one
    second's worth (Consul's ``csr_max_per_second``); rate 0 = unlimited."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens = 0.0
        self._last: float | None = None

    def allow(self, rate: float) -> bool:
        if rate <= 0:
            return True
        now = self._clock()
        if self._last is None:
            self._tokens = rate
        else:
            self._tokens = min(rate, self._tokens + (now - self._last) * rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def utc_now() -> datetime:
    """The wall clock the CA dates certificates with (whole seconds, UTC)."""
    return datetime.now(UTC).replace(microsecond=0)


class CAServer:
    """The CA methods and the leader's CA loop of one ``MeshServer``."""

    def __init__(
        self,
        server: MeshServer,
        base: ProviderSettings,
        *,
        datacenter: str,
        rng: random.Random | None = None,
        resolve: Callable[[str], Awaitable[ACLAuthorizer]] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.srv = server
        # Every "now" of the CA (root dates, rotation, pruning, leaf validity)
        # comes from here, so root rotation can be driven by a test's clock.
        self.clock = clock
        self._resolve = resolve  # with ACLs on: only service:write on S signs S's leaf
        self.base = base
        self.datacenter = datacenter
        self._rng = rng or random.SystemRandom()
        self._limiter = RateLimiter()
        self._lock = trio.Lock()
        self.signed = 0
        self._caught_up_term = -1  # the term whose log this leader has applied
        server.register_rpc("ConnectCA.Sign", self._rpc_sign)
        server.register_rpc("ConnectCA.ConfigurationSet", self._rpc_config_set)

    # ---------------------------------------------------------------- state

    def _state(self) -> tuple[int, CAConfig | None, list[rotation.Root]]:
        _, config = q.ca_config_internal(self.srv.store, None)
        _, roots = q.ca_roots_internal(self.srv.store, None)
        return self.srv.store.index_of("ca-roots"), config, roots_from_records(roots.roots)

    def _serial(self, bits: int = 63) -> int:
        """A random positive serial; roots keep theirs in the registry, where
        Consul's is a uint64, so 63 bits unless asked for more."""
        return self._rng.getrandbits(bits) | 1

    # ---------------------------------------------------------------- leader

    async def run(self) -> None:
        """While this server leads: create the CA if there is none, and drop
        rotated-out roots when their time comes. Runs until cancelled."""

        async def step() -> None:
            if not await self._caught_up():
                return
            await self._initialize()
            await self._prune()

        await self.srv.while_leader(
            step, event="ca_leader_step", expected=(MeshdError, ConnectError), lock=self._lock
        )

    async def _caught_up(self) -> bool:
        """Once per term: wait until this leader's state holds every entry
        committed before it (a ReadIndex round: the term's first entry is
        committed and applied, Raft §6.4). After a restart the log is still
        being replayed when leadership arrives; a CA looked at before then
        seems missing and re-creating it fails. False when leadership was
        lost meanwhile (the loop tries again)."""
        term = self.srv.node.core.term
        if self._caught_up_term == term:
            return True
        try:
            await self.srv.node.read_barrier()
        except RaftError:
            return False
        self._caught_up_term = term
        return True

    async def _write(self, cmd: Any) -> None:
        result = await self.srv.write(cmd)
        if not result.ok:
            raise MeshdError(f"CA write refused: {result.message or result.error}")

    async def _initialize(self) -> None:
        roots_index, config, roots = self._state()
        if config is not None and any(r.active for r in roots):
            return
        cluster_id = config.cluster_id if config else str(uuid.uuid4())
        settings = settings_from_stored(config, self.base) if config else self.base
        trust_domain = trust_domain_for(cluster_id)
        root = await trio.to_thread.run_sync(
            lambda: rotation.initial_root(
                trust_domain=trust_domain,
                key_type=settings.key_type,
                bits=settings.key_bits,
                root_ttl=timedelta(seconds=settings.root_ttl),
                now=self.clock(),
                serial=self._serial(),
                key_pem=settings.private_key,
            )
        )
        stored = CAConfig(cluster_id=cluster_id, provider="consul", config=settings.to_config())
        if config is None:
            await self._write(CAConfigSet(config=stored, cas=0))
        await self._write(CARootsSet(roots=records_from_roots([root]), cas=roots_index))
        log.info("event=ca_initialized trust_domain=%s root=%s", trust_domain, root.id)

    async def _prune(self) -> None:
        roots_index, config, roots = self._state()
        if config is None or not any(not r.active for r in roots):
            return
        settings = settings_from_stored(config, self.base)
        kept = rotation.prune(
            roots, now=self.clock(), leaf_ttl=timedelta(seconds=settings.leaf_ttl)
        )
        if len(kept) != len(roots):
            await self._write(CARootsSet(roots=records_from_roots(kept), cas=roots_index))
            dropped = {r.id for r in roots} - {r.id for r in kept}
            log.info("event=ca_roots_pruned dropped=%s", ",".join(sorted(dropped)))

    # ------------------------------------------------------------ config set

    async def _rpc_config_set(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        async def local() -> Any:
            async with self._lock:
                return await self._set_config(args)

        self.srv.check_forwarded(args)
        return await self.srv.on_leader("ConnectCA.ConfigurationSet", args, local)

    async def _set_config(self, args: Mapping[str, Any]) -> Any:
        provider = args.get("provider") or "consul"
        if provider != "consul":
            raise InvalidArgument(
                f"Provider: only 'consul' is supported, got {provider!r}", "Provider"
            )
        raw = args.get("config") or {}
        if not isinstance(raw, Mapping):
            raise InvalidArgument("Config: must be an object", "Config")
        roots_index, config, roots = self._state()
        if config is None:
            raise Internal("CA has not finished initializing")
        current = settings_from_stored(config, self.base)
        new = parse_provider_config(raw, current)
        active = next((r for r in roots if r.active), None)
        if active is None:
            raise Internal("CA has no active root")
        rotate = rotation.needs_rotation(
            active, key_type=new.key_type, bits=new.key_bits, key_pem=new.private_key
        )
        if rotate and args.get("force_without_cross_signing"):
            raise InvalidArgument(
                "ForceWithoutCrossSigning: the built-in CA always cross-signs",
                "ForceWithoutCrossSigning",
            )
        if rotate:
            new_roots = await trio.to_thread.run_sync(
                lambda: rotation.rotate(
                    roots,
                    trust_domain=trust_domain_for(config.cluster_id),
                    key_type=new.key_type,
                    bits=new.key_bits,
                    root_ttl=timedelta(seconds=new.root_ttl),
                    now=self.clock(),
                    serial=self._serial(),
                    key_pem=new.private_key,
                )
            )
            await self._write(CARootsSet(roots=records_from_roots(new_roots), cas=roots_index))
            active_new = next(r for r in new_roots if r.active)
            log.info("event=ca_root_rotated old=%s new=%s", active.id, active_new.id)
        updated = replace(config, config=new.to_config(), create_index=0, modify_index=0)
        await self._write(CAConfigSet(config=updated))
        return {"rotated": rotate}

    # ------------------------------------------------------------------ sign

    async def _rpc_sign(self, args: Mapping[str, Any], peer: PeerInfo) -> Any:
        _, config, roots = self._state()
        active = next((r for r in roots if r.active), None)
        if config is None or active is None or not active.signing_key:
            raise Unavailable("CA is not initialized yet; try again")
        settings = settings_from_stored(config, self.base)
        if not self._limiter.allow(settings.csr_max_per_second):
            raise TooManyRequests("rate limit reached, try again later")
        csr = args.get("csr")
        if not isinstance(csr, str):
            raise InvalidArgument("CSR: missing", "CSR")
        service = args.get("service")
        try:
            info = ca_core.parse_csr(csr)
            if self._resolve is not None:
                authz = await self._resolve(str(args.get("token") or "") or caller_token.get())
                authz.require(Permission.SERVICE_WRITE, info.spiffe.service)
            ca_core.validate_claim(
                info,
                trust_domain=trust_domain_for(config.cluster_id),
                datacenter=self.datacenter,
                service=str(service) if service else None,
            )
            leaf = ca_core.sign_leaf(
                info,
                signing_cert_pem=active.signing_cert or active.root_cert,
                signing_key_pem=active.signing_key,
                ttl=timedelta(seconds=settings.leaf_ttl),
                now=self.clock(),
                serial=self._serial(120),
            )
        except CSRError as exc:
            raise InvalidArgument(f"CSR: {exc}", "CSR") from None
        self.signed += 1
        chain = ca_core.cert_pem_chain(leaf.cert_pem, *active.intermediate_certs)
        return {
            "SerialNumber": leaf.serial_hex,
            "CertPEM": chain,
            "Service": leaf.service,
            "ServiceURI": leaf.spiffe_uri,
            "ValidAfter": rotation.rfc3339(leaf.not_before),
            "ValidBefore": rotation.rfc3339(leaf.not_after),
            "RootID": active.id,
            "LeafTTL": settings.leaf_ttl,
        }
