"""Whole-graph validation of config-entry writes, and an in-memory entry set.

Consul recompiles every discovery chain a write could touch and refuses the
write if one breaks (agent/consul/state/config_entry.go,
``validateProposedConfigEntryInGraph``). ``validate_entries`` does the same
for a batch of writes and deletes applied together (meshd's atomic
multi-entry apply, hashicorp/consul#6247): it compiles, against the state
*after* the batch, every chain that reads any entry of the batch, and
checks that services with L7 intention permissions stay HTTP-like.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from connect.l7.chain import service_protocol, trace_chain
from connect.l7.chain_types import EntryLookup, is_http_like
from connect.l7.decode import ValidationError, goq
from connect.l7.entries import (
    PROXY_DEFAULTS,
    SERVICE_DEFAULTS,
    SERVICE_INTENTIONS,
    SERVICE_RESOLVER,
    SERVICE_ROUTER,
    SERVICE_SPLITTER,
    ConfigEntry,
    ServiceIntentionsEntry,
    ServiceResolverEntry,
    ServiceRouterEntry,
    ServiceSplitterEntry,
)

_CHAIN_KINDS = (SERVICE_DEFAULTS, SERVICE_ROUTER, SERVICE_SPLITTER, SERVICE_RESOLVER)


@dataclass
class EntrySet:
    """Config entries by (kind, name); an EntryLookup for the compiler."""

    entries: dict[tuple[str, str], ConfigEntry] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Iterable[ConfigEntry]) -> EntrySet:
        return cls({(e.kind, e.name): e for e in entries})

    def get(self, kind: str, name: str) -> ConfigEntry | None:
        return self.entries.get((kind, name))

    def names(self, kind: str) -> list[str]:
        return sorted(n for k, n in self.entries if k == kind)

    def with_changes(
        self, writes: Iterable[ConfigEntry], deletes: Iterable[tuple[str, str]] = ()
    ) -> EntrySet:
        """A copy with ``writes`` stored and ``deletes`` (kind, name) removed."""
        out = dict(self.entries)
        for key in deletes:
            out.pop(key, None)
        for e in writes:
            out[(e.kind, e.name)] = e
        return EntrySet(out)


class _Overlay:
    """``base`` as it will be once ``writes`` and ``deletes`` are applied."""

    def __init__(
        self,
        base: EntryLookup,
        writes: Iterable[ConfigEntry],
        deletes: Iterable[tuple[str, str]],
    ) -> None:
        self.base = base
        self.changed: dict[tuple[str, str], ConfigEntry | None] = {k: None for k in deletes}
        for e in writes:
            self.changed[(e.kind, e.name)] = e

    def get(self, kind: str, name: str) -> ConfigEntry | None:
        if (kind, name) in self.changed:
            return self.changed[(kind, name)]
        return self.base.get(kind, name)

    def names(self, kind: str) -> list[str]:
        names = set(self.base.names(kind))
        for (k, n), e in self.changed.items():
            if k == kind:
                (names.add if e is not None else names.discard)(n)
        return sorted(names)


def validate_entries(
    lookup: EntryLookup,
    writes: Iterable[ConfigEntry] = (),
    deletes: Iterable[tuple[str, str]] = (),
    *,
    datacenter: str = "dc1",
    trust_domain: str = "consul",
) -> list[str]:
    """Check that applying ``writes`` and ``deletes`` to ``lookup`` breaks no chain.

    Returns the sorted names of the services whose discovery chain the batch
    affects (each compiled without error). Raises ChainError with Consul's
    text for the first broken chain, or ValidationError for an L7
    intention on a service that is (or becomes) non-HTTP. A chain that was
    already broken and reads nothing of the batch does not refuse it.
    """
    writes = list(writes)
    deletes = list(deletes)
    state = _Overlay(lookup, writes, deletes)
    touched = {e.name for e in writes} | {name for _, name in deletes}
    kinds = {e.kind for e in writes} | {kind for kind, _ in deletes}
    everything = PROXY_DEFAULTS in kinds
    candidates = {e.name for e in writes if e.kind != PROXY_DEFAULTS}
    candidates |= {name for kind, name in deletes if kind != PROXY_DEFAULTS}
    for kind in _CHAIN_KINDS:
        candidates.update(state.names(kind))
    affected: list[str] = []
    reach = _Reach(state)
    for service in sorted(candidates):
        if not everything and not reach.of_chain(service) & touched:
            continue  # cheap pre-check: the chain cannot read any entry of the batch
        trace = trace_chain(service, state, datacenter, trust_domain)
        if not (everything or trace.services_read & touched):
            continue  # reads nothing of the batch, broken or not
        if trace.error is not None:
            raise trace.error
        affected.append(service)
    _check_intentions(state, set(affected) | touched)
    return affected


class _Reach:
    """Services a chain may read, from the entries' references alone.

    A superset of what the compiler reads (``trace_chain().services_read``):
    the root's router destinations and mirrors, then, transitively, split
    destinations and resolver redirect/failover services. Used to skip
    compiling chains a batch cannot affect.
    """

    def __init__(self, state: EntryLookup) -> None:
        self.state = state
        self.memo: dict[str, frozenset[str]] = {}

    def of_chain(self, service: str) -> set[str]:
        out = set(self.below(service))
        router = self.state.get(SERVICE_ROUTER, service)
        if isinstance(router, ServiceRouterEntry):
            for route in router.routes:
                d = route.destination
                if d is not None:
                    out |= self.below(d.service or service)
                    if d.mirror is not None:
                        out |= self.below(d.mirror.service)
        return out

    def below(self, service: str) -> frozenset[str]:
        if service in self.memo:
            return self.memo[service]
        seen: set[str] = set()
        todo = [service]
        while todo:
            svc = todo.pop()
            if svc in seen:
                continue
            seen.add(svc)
            todo.extend(self._edges(svc))
        self.memo[service] = frozenset(seen)
        return self.memo[service]

    def _edges(self, svc: str) -> list[str]:
        out: list[str] = []
        sp = self.state.get(SERVICE_SPLITTER, svc)
        if isinstance(sp, ServiceSplitterEntry):
            out += [s.service or svc for s in sp.splits]
        res = self.state.get(SERVICE_RESOLVER, svc)
        if isinstance(res, ServiceResolverEntry):
            if res.redirect is not None and res.redirect.service:
                out.append(res.redirect.service)
            for fo in res.failover.values():
                out += [fo.service] if fo.service else []
                out += [t.service for t in fo.targets if t.service]
        return out


def _check_intentions(state: EntryLookup, services: set[str]) -> None:
    for name in sorted(services):
        e = state.get(SERVICE_INTENTIONS, name)
        if not isinstance(e, ServiceIntentionsEntry) or not e.has_permissions():
            continue
        proto = service_protocol(state, name)
        if not is_http_like(proto):
            raise ValidationError(
                "Sources",
                f"service {goq(name)} has protocol {goq(proto)}, which is incompatible "
                "with L7 intentions permissions",
            )
