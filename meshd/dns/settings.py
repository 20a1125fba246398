"""What the DNS interface is told: Consul's ``dns_config`` plus domain and datacenter.

Keys and defaults follow Consul's agent configuration reference ("DNS
parameters": https://developer.hashicorp.com/consul/docs/agent/config/config-files#dns-and-domain-parameters).
A few settings are meshd's own and have no configuration key yet: the SOA
timers (Consul's ``dns_config.soa``), ``a_record_limit`` and the answer cache.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Literal

import dns.name

if TYPE_CHECKING:
    from meshd.config import AgentConfig

__all__ = ["DNSSettings", "SOASettings", "Transport"]

Transport = Literal["udp", "tcp"]

_TEN_YEARS = 87600 * 3600.0


@dataclass(frozen=True)
class SOASettings:
    """Consul's ``dns_config.soa``: timers of the SOA record (seconds)."""

    refresh: int = 3600
    retry: int = 600
    expire: int = 86400
    min_ttl: int = 0


@dataclass(frozen=True)
class DNSSettings:
    """Everything the answer builder and the server need to know, immutable.

    ``service_ttl`` maps a service name to a TTL in seconds; a key ending in
    ``*`` is a prefix (``"*"`` alone matches every service) and the longest
    matching prefix wins, an exact name before any prefix (Consul's
    ``GetTTLForService``). Names compare case-insensitively.

    An encoded answer is reused until the lookup's ``state_index()`` changes,
    for at most ``cache_max_age`` seconds; when the lookup cannot tell
    (``state_index()`` is None) for at most ``cache_ttl`` seconds; 0 turns the
    cache off in that case. ``max_variants`` is how many differently ordered
    copies of one answer the cache keeps, so that repeated queries still
    spread over the instances: a service with at most that many instances
    has each of them first in exactly one copy.
    """

    domain: str = "consul"
    datacenter: str = "dc1"
    node_ttl: float = 0.0
    service_ttl: Mapping[str, float] = field(default_factory=dict)
    only_passing: bool = False
    enable_truncate: bool = False
    udp_answer_limit: int = 3
    a_record_limit: int = 0
    allow_stale: bool = True
    max_stale: float = _TEN_YEARS
    recursor_timeout: float = 2.0
    soa: SOASettings = field(default_factory=SOASettings)
    cache_ttl: float = 1.0
    cache_max_age: float = 30.0
    cache_max_bytes: int = 16 * 1024 * 1024
    max_variants: int = 256

    @classmethod
    def from_agent_config(cls, config: AgentConfig) -> DNSSettings:
        """The settings of an agent configuration: ``domain``, ``datacenter``, ``dns_config``."""
        d = config.dns_config
        return cls(
            domain=config.domain,
            datacenter=config.datacenter,
            node_ttl=d.node_ttl,
            service_ttl=dict(d.service_ttl),
            only_passing=d.only_passing,
            enable_truncate=d.enable_truncate,
            udp_answer_limit=d.udp_answer_limit,
            allow_stale=d.allow_stale,
            max_stale=d.max_stale,
            recursor_timeout=d.recursor_timeout,
        )

    @cached_property
    def origin(self) -> dns.name.Name:
        """The domain as an absolute DNS name (``consul.``)."""
        return dns.name.from_text(self.domain.lower().rstrip(".") + ".")

    @cached_property
    def node_ttl_seconds(self) -> int:
        """``node_ttl`` as the whole seconds a record carries."""
        return _seconds(self.node_ttl)

    @cached_property
    def _ttl_exact(self) -> dict[str, int]:
        return {k.lower(): _seconds(v) for k, v in self.service_ttl.items() if not k.endswith("*")}

    @cached_property
    def _ttl_prefixes(self) -> list[tuple[str, int]]:
        prefixes = [
            (k[:-1].lower(), _seconds(v)) for k, v in self.service_ttl.items() if k.endswith("*")
        ]
        return sorted(prefixes, key=lambda p: len(p[0]), reverse=True)

    def service_ttl_seconds(self, service: str) -> int:
        """The TTL of ``service``'s records: exact key, else longest ``prefix*``, else 0."""
        name = service.lower()
        exact = self._ttl_exact.get(name)
        if exact is not None:
            return exact
        for prefix, ttl in self._ttl_prefixes:
            if name.startswith(prefix):
                return ttl
        return 0


def _seconds(value: float) -> int:
    # Go's uint32(ttl / time.Second): whole seconds, clamped to what the wire holds.
    return max(0, min(int(value), 2**31 - 1))
