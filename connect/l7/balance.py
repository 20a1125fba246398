"""Load-balancer policies of Consul's service-resolver, as Envoy runs them.

Rules (Consul ``LoadBalancer`` -> Envoy cluster ``lb_policy``):

- ``random``; ``round_robin`` (also the default for ``""``);
  ``least_request``: power of ``choice_count`` (default 2) random choices,
  the one with the fewest active requests wins; ``ring_hash``
  (``minimum_ring_size`` 1024, ``maximum_ring_size`` 8M; each host gets
  ``ceil(min / hosts)`` points) and ``maglev`` (table size 65537).
- Hash policies (ring_hash/maglev only): ``header``, ``cookie``,
  ``query_parameter`` (with ``field_value`` naming it) or ``source_ip``; a
  policy without a value contributes nothing; hashes combine as Envoy's
  (rotate left 1, xor); a ``terminal`` policy that produced a hash ends the
  list. No hash at all -> a random pick (Envoy).
- Ejected/excluded hosts are never returned while a healthy one exists; with
  none left ``pick`` returns None (the driver answers 503 ``no healthy
  upstream``). Hash policies skip an excluded host by walking on (ring) or
  re-probing (maglev), so keys of healthy hosts never move, and adding one
  host moves only about 1/n of the keys.
- Rings and tables are cached per host list: a changed list rebuilds once.
- A ``cookie`` policy with a TTL (or ``Session``) whose cookie is missing
  makes the proxy generate one (``cookie_to_generate``; ``decide`` does it)
  and answer ``Set-Cookie``, as Envoy does, so the session sticks.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from connect.l7.request import Request

POLICIES = ("", "random", "round_robin", "least_request", "ring_hash", "maglev")
MAGLEV_TABLE_SIZE = 65537
MIN_RING_SIZE = 1024
MAX_RING_SIZE = 8 * 1024 * 1024
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class HashPolicy:
    """Consul's ``HashPolicy`` (CookieConfig is kept for the driver to honour)."""

    field: str = ""  # "header" | "cookie" | "query_parameter"
    field_value: str = ""
    source_ip: bool = False
    terminal: bool = False
    cookie_session: bool = False
    cookie_ttl_s: float = 0.0
    cookie_path: str = ""


@dataclass(frozen=True)
class LoadBalancerConfig:
    """Consul's resolver ``LoadBalancer`` block."""

    policy: str = ""
    minimum_ring_size: int = MIN_RING_SIZE
    maximum_ring_size: int = MAX_RING_SIZE
    choice_count: int = 2
    hash_policies: tuple[HashPolicy, ...] = ()

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f'Bad LoadBalancer policy: "{self.policy}" is not supported')


def hash64(data: str) -> int:
    """A stable 64-bit hash (same in every process, unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(data.encode(), digest_size=8).digest(), "big")


def _policy_value(policy: HashPolicy, request: Request) -> str | None:
    if policy.source_ip:
        return request.source_ip or None
    if policy.field == "header":
        return request.headers.get(policy.field_value)
    if policy.field == "cookie":
        return request.cookie(policy.field_value)
    if policy.field == "query_parameter":
        values = request.query_params().get(policy.field_value)
        return values[0] if values else None
    return None


def request_hash(policies: Sequence[HashPolicy], request: Request | None) -> int | None:
    """The request's hash under ``policies`` (Envoy's combination), or None."""
    if request is None:
        return None
    result: int | None = None
    for policy in policies:
        value = _policy_value(policy, request)
        if value is None:
            continue
        h = hash64(value)
        result = h if result is None else (((result << 1) | (result >> 63)) & _MASK64) ^ h
        if policy.terminal:
            break
    return result


def cookie_to_generate(policies: Sequence[HashPolicy], request: Request) -> HashPolicy | None:
    """The cookie policy whose cookie the proxy must create for ``request``.

    Envoy generates the cookie of a ``cookie`` hash policy with a TTL (or a
    session cookie) when the request lacks it, and answers with Set-Cookie so
    the client's next requests hash alike. Only the first such policy that
    would be reached counts (a terminal policy that hashed ends the list).
    """
    for policy in policies:
        value = _policy_value(policy, request)
        if (
            value is None
            and policy.field == "cookie"
            and (policy.cookie_ttl_s > 0 or policy.cookie_session)
        ):
            return policy
        if value is not None and policy.terminal:
            return None
    return None


def set_cookie_value(policy: HashPolicy, value: str) -> str:
    """The Set-Cookie header value for a generated hash cookie (Envoy's shape)."""
    parts = [f'{policy.field_value}="{value}"']
    if policy.cookie_ttl_s > 0 and not policy.cookie_session:
        parts.append(f"Max-Age={int(policy.cookie_ttl_s)}")
    if policy.cookie_path:
        parts.append(f"Path={policy.cookie_path}")
    parts.append("HttpOnly")
    return "; ".join(parts)


class Balancer:
    """Base class: ``pick`` one host of ``hosts`` not in ``excluded``."""

    def pick(
        self,
        hosts: Sequence[str],
        *,
        rng: random.Random,
        request: Request | None = None,
        excluded: Collection[str] = (),
        active: Mapping[str, int] | None = None,
    ) -> str | None:
        healthy = _not_excluded(hosts, excluded)
        if not healthy:
            return None
        return self._pick(_Pick(hosts, healthy, rng, request, excluded, active or {}))

    def _pick(self, p: _Pick) -> str:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _Pick:
    hosts: Sequence[str]
    healthy: Sequence[str]
    rng: random.Random
    request: Request | None
    excluded: Collection[str]
    active: Mapping[str, int]

    def random_healthy(self) -> str:
        return self.healthy[self.rng.randrange(len(self.healthy))]


def _not_excluded(hosts: Sequence[str], excluded: Collection[str]) -> Sequence[str]:
    return [h for h in hosts if h not in excluded] if excluded else hosts


class RandomBalancer(Balancer):
    def pick(
        self,
        hosts: Sequence[str],
        *,
        rng: random.Random,
        request: Request | None = None,
        excluded: Collection[str] = (),
        active: Mapping[str, int] | None = None,
    ) -> str | None:
        healthy = _not_excluded(hosts, excluded)  # no _Pick record: this runs per request
        return healthy[rng.randrange(len(healthy))] if healthy else None


class RoundRobinBalancer(Balancer):
    def __init__(self) -> None:
        self.index = 0

    def pick(
        self,
        hosts: Sequence[str],
        *,
        rng: random.Random,
        request: Request | None = None,
        excluded: Collection[str] = (),
        active: Mapping[str, int] | None = None,
    ) -> str | None:
        healthy = _not_excluded(hosts, excluded)  # no _Pick record: this runs per request
        if not healthy:
            return None
        host = healthy[self.index % len(healthy)]
        self.index += 1
        return host


class LeastRequestBalancer(Balancer):
    def __init__(self, choice_count: int = 2) -> None:
        self.choice_count = max(1, choice_count)

    def _pick(self, p: _Pick) -> str:
        best = p.random_healthy()
        for _ in range(self.choice_count - 1):
            other = p.random_healthy()
            if p.active.get(other, 0) < p.active.get(best, 0):
                best = other
        return best


class RingHashBalancer(Balancer):
    """Ketama-style ring: ``ceil(min_ring / hosts)`` points per host."""

    def __init__(
        self,
        policies: Sequence[HashPolicy] = (),
        minimum_ring_size: int = MIN_RING_SIZE,
        maximum_ring_size: int = MAX_RING_SIZE,
    ) -> None:
        self.policies = tuple(policies)
        self.minimum_ring_size = minimum_ring_size
        self.maximum_ring_size = maximum_ring_size
        self._key: tuple[str, ...] = ()
        self._hashes: list[int] = []
        self._owners: list[str] = []

    def _build(self, hosts: tuple[str, ...]) -> None:
        n = len(hosts)
        per_host = max(1, math.ceil(self.minimum_ring_size / n))
        per_host = max(1, min(per_host, self.maximum_ring_size // n))
        points = sorted((hash64(f"{host}_{i}"), host) for host in hosts for i in range(per_host))
        self._hashes = [p[0] for p in points]
        self._owners = [p[1] for p in points]
        self._key = hosts

    def _pick(self, p: _Pick) -> str:
        h = request_hash(self.policies, p.request)
        if h is None:
            return p.random_healthy()
        key = tuple(p.hosts)
        if key != self._key:
            self._build(key)
        size = len(self._hashes)
        start = bisect.bisect_left(self._hashes, h)
        for step in range(size):
            owner = self._owners[(start + step) % size]
            if owner not in p.excluded:
                return owner
        return p.healthy[0]  # unreachable: healthy hosts own ring points


class MaglevBalancer(Balancer):
    """Maglev lookup table (Eisenbud et al.), Envoy's default size 65537."""

    def __init__(
        self, policies: Sequence[HashPolicy] = (), table_size: int = MAGLEV_TABLE_SIZE
    ) -> None:
        self.policies = tuple(policies)
        self.table_size = table_size
        self._key: tuple[str, ...] = ()
        self._table: list[str] = []

    def _build(self, hosts: tuple[str, ...]) -> None:
        m = self.table_size
        n = len(hosts)
        offsets = [hash64(h) % m for h in hosts]
        skips = [hash64(h + "#skip") % (m - 1) + 1 for h in hosts]
        nexts = [0] * n
        owner = [-1] * m
        filled = 0
        while filled < m:
            for i in range(n):
                offset, skip, j = offsets[i], skips[i], nexts[i]
                c = (offset + j * skip) % m
                while owner[c] >= 0:
                    j += 1
                    c = (offset + j * skip) % m
                owner[c] = i
                nexts[i] = j + 1
                filled += 1
                if filled == m:
                    break
        self._table = [hosts[i] for i in owner]
        self._key = hosts

    def _pick(self, p: _Pick) -> str:
        h = request_hash(self.policies, p.request)
        if h is None:
            return p.random_healthy()
        key = tuple(p.hosts)
        if key != self._key:
            self._build(key)
        host = self._table[h % self.table_size]
        probe = 0
        while host in p.excluded and probe < 64:
            probe += 1
            host = self._table[hash64(f"{h}:{probe}") % self.table_size]
        if host in p.excluded:
            return p.healthy[h % len(p.healthy)]
        return host


def make_balancer(config: LoadBalancerConfig) -> Balancer:
    """A fresh balancer (with its own state) for one upstream target."""
    policy = config.policy
    if policy == "random":
        return RandomBalancer()
    if policy == "least_request":
        return LeastRequestBalancer(config.choice_count)
    if policy == "ring_hash":
        return RingHashBalancer(
            config.hash_policies, config.minimum_ring_size, config.maximum_ring_size
        )
    if policy == "maglev":
        return MaglevBalancer(config.hash_policies)
    return RoundRobinBalancer()
