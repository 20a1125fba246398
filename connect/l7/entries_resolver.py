"""``service-resolver`` config entries (Consul's ServiceResolverConfigEntry).

Subset filters are stored as strings. Their syntax is meshd's filter
language, which lives in meshd/ (connect/ may not import it), so the caller
passes ``filter_validator``: a callable that raises ValueError with a reason
for a bad expression; the reason lands in Consul's text
``Filter for subset "x" is not a valid expression: <reason>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from connect.l7.decode import (
    JSON,
    Fields,
    ValidationError,
    check_meta,
    format_duration,
    goq,
    put,
    put_entry_tail,
    put_service_ref,
)

SERVICE_RESOLVER = "service-resolver"
FilterValidator = Callable[[str], None]

LB_POLICIES = ("", "random", "round_robin", "least_request", "ring_hash", "maglev")
HASH_FIELDS = ("header", "cookie", "query_parameter")
_SUBSET_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Subset:
    filter: str = ""
    only_passing: bool = False

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        put(out, "Filter", self.filter)
        put(out, "OnlyPassing", self.only_passing)
        return out


@dataclass(frozen=True)
class _ServiceTarget:
    """Where a Redirect or a failover target sends traffic."""

    service: str = ""
    service_subset: str = ""
    namespace: str = ""
    partition: str = ""
    datacenter: str = ""
    peer: str = ""

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        put_service_ref(out, self.service, self.service_subset, self.namespace, self.partition)
        put(out, "Datacenter", self.datacenter)
        put(out, "Peer", self.peer)
        return out


@dataclass(frozen=True)
class Redirect(_ServiceTarget):
    extra: dict[str, JSON] = field(default_factory=dict)

    def is_empty(self) -> bool:
        return not (
            self.service
            or self.service_subset
            or self.namespace
            or self.partition
            or self.datacenter
            or self.peer
        )

    def to_json(self) -> dict[str, JSON]:
        out = super().to_json()
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class FailoverTarget(_ServiceTarget):
    """One of a Failover's ``Targets``: a Redirect's fields, no passthrough keys."""


@dataclass(frozen=True)
class Failover:
    service: str = ""
    service_subset: str = ""
    namespace: str = ""
    datacenters: tuple[str, ...] = ()
    targets: tuple[FailoverTarget, ...] = ()
    extra: dict[str, JSON] = field(default_factory=dict)

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        put_service_ref(out, self.service, self.service_subset, self.namespace)
        put(out, "Datacenters", list(self.datacenters))
        put(out, "Targets", [t.to_json() for t in self.targets])
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class CookieConfig:
    session: bool = False
    ttl_ns: int = 0
    path: str = ""

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        put(out, "Session", self.session)
        if self.ttl_ns:
            out["TTL"] = format_duration(self.ttl_ns)
        put(out, "Path", self.path)
        return out


@dataclass(frozen=True)
class HashPolicy:
    field: str = ""
    field_value: str = ""
    cookie_config: CookieConfig | None = None
    source_ip: bool = False
    terminal: bool = False

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        put(out, "Field", self.field)
        put(out, "FieldValue", self.field_value)
        if self.cookie_config is not None:
            out["CookieConfig"] = self.cookie_config.to_json()
        put(out, "SourceIP", self.source_ip)
        put(out, "Terminal", self.terminal)
        return out


@dataclass(frozen=True)
class LoadBalancer:
    policy: str = ""
    least_request_choice_count: int | None = None
    ring_hash_minimum: int | None = None
    ring_hash_maximum: int | None = None
    hash_policies: tuple[HashPolicy, ...] = ()
    has_least_request_config: bool = False
    has_ring_hash_config: bool = False

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        put(out, "Policy", self.policy)
        if self.has_least_request_config:
            lr: dict[str, JSON] = {}
            put(lr, "ChoiceCount", self.least_request_choice_count)
            out["LeastRequestConfig"] = lr
        if self.has_ring_hash_config:
            rh: dict[str, JSON] = {}
            put(rh, "MinimumRingSize", self.ring_hash_minimum)
            put(rh, "MaximumRingSize", self.ring_hash_maximum)
            out["RingHashConfig"] = rh
        put(out, "HashPolicies", [h.to_json() for h in self.hash_policies])
        return out


@dataclass(frozen=True)
class ServiceResolverEntry:
    name: str
    default_subset: str = ""
    subsets: dict[str, Subset] = field(default_factory=dict)
    redirect: Redirect | None = None
    failover: dict[str, Failover] = field(default_factory=dict)
    connect_timeout_ns: int = 0
    request_timeout_ns: int = 0
    load_balancer: LoadBalancer | None = None
    meta: dict[str, str] = field(default_factory=dict)
    namespace: str = ""
    partition: str = ""
    extra: dict[str, JSON] = field(default_factory=dict)
    kind: str = SERVICE_RESOLVER

    def is_default(self) -> bool:
        """Consul's ``IsDefault``: nothing set that changes resolution."""
        return not (
            self.default_subset
            or self.subsets
            or self.redirect is not None
            or self.failover
            or self.connect_timeout_ns
            or self.request_timeout_ns
            or self.load_balancer is not None
            or "PrioritizeByLocality" in self.extra
        )

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Kind": self.kind, "Name": self.name}
        put(out, "DefaultSubset", self.default_subset)
        put(out, "Subsets", {k: v.to_json() for k, v in self.subsets.items()})
        if self.redirect is not None:
            out["Redirect"] = self.redirect.to_json()
        put(out, "Failover", {k: v.to_json() for k, v in self.failover.items()})
        if self.connect_timeout_ns:
            out["ConnectTimeout"] = format_duration(self.connect_timeout_ns)
        if self.request_timeout_ns:
            out["RequestTimeout"] = format_duration(self.request_timeout_ns)
        if self.load_balancer is not None:
            out["LoadBalancer"] = self.load_balancer.to_json()
        return put_entry_tail(out, self.meta, self.namespace, self.partition, self.extra)


def _parse_subsets(f: Fields, validator: FilterValidator | None) -> dict[str, Subset]:
    out: dict[str, Subset] = {}
    for name, raw in f.any_map("Subsets").items():
        sub = Fields(raw, f"Subsets[{goq(name)}]")
        subset = Subset(filter=sub.str("Filter"), only_passing=sub.bool("OnlyPassing"))
        sub.finish()
        if not _SUBSET_NAME.match(name):
            raise ValidationError(
                sub.path,
                f"Subset {goq(name)} is invalid: must be 63 characters or fewer, begin or end "
                "with lower case alphanumeric characters, and contain lower case alphanumeric "
                "characters or '-' in between",
            )
        if subset.filter and validator is not None:
            try:
                validator(subset.filter)
            except ValueError as exc:
                raise ValidationError(
                    sub.sub("Filter"),
                    f"Filter for subset {goq(name)} is not a valid expression: {exc}",
                ) from None
        out[name] = subset
    return out


_T = TypeVar("_T", bound=_ServiceTarget)


def _parse_target(f: Fields, cls: type[_T]) -> _T:
    return cls(
        service=f.str("Service"),
        service_subset=f.str("ServiceSubset"),
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
        datacenter=f.str("Datacenter"),
        peer=f.str("Peer"),
    )


def _parse_redirect(f: Fields) -> Redirect | None:
    sub = f.obj("Redirect")
    if sub is None:
        return None
    r = _parse_target(sub, Redirect)
    extra = sub.finish(("SamenessGroup",))
    return Redirect(**{**r.__dict__, "extra": extra})


def _parse_failover_target(raw: JSON, path: str) -> FailoverTarget:
    f = Fields(raw, path)
    t = _parse_target(f, FailoverTarget)
    f.finish()
    return t


def _parse_failover(f: Fields) -> dict[str, Failover]:
    out: dict[str, Failover] = {}
    for key, raw in f.any_map("Failover").items():
        sub = Fields(raw, f"Failover[{goq(key)}]")
        fo = Failover(
            service=sub.str("Service"),
            service_subset=sub.str("ServiceSubset"),
            namespace=sub.str("Namespace"),
            datacenters=sub.str_list("Datacenters"),
            targets=tuple(
                _parse_failover_target(t, f"{sub.path}.Targets[{i}]")
                for i, t in enumerate(sub.list("Targets"))
            ),
        )
        extra = sub.finish(("Policy", "SamenessGroup"))
        out[key] = Failover(**{**fo.__dict__, "extra": extra})
    return out


def _check_failover(e: ServiceResolverEntry, key: str, fo: Failover) -> None:
    """Consul's per-entry Failover checks, in its order."""
    where = f"Failover[{goq(key)}]"
    prefix = f"Bad Failover[{goq(key)}]: "
    if key != "*" and key not in e.subsets:
        raise ValidationError(where, prefix + "not a valid subset subset")
    given = fo.service or fo.service_subset or fo.namespace or fo.datacenters or fo.targets
    if not given and "SamenessGroup" not in fo.extra:
        raise ValidationError(
            where,
            prefix + "one of Service, ServiceSubset, Namespace, Targets, SamenessGroup, "
            "or Datacenters is required",
        )
    if fo.service_subset and fo.service in ("", e.name) and fo.service_subset not in e.subsets:
        raise ValidationError(
            where,
            f"{prefix}ServiceSubset {goq(fo.service_subset)} is not a valid subset of "
            f"{goq(fo.service)}",
        )
    for label, value in (
        ("Datacenters", fo.datacenters),
        ("ServiceSubset", fo.service_subset),
        ("Service", fo.service),
    ):
        if value and fo.targets:
            raise ValidationError(where, f"{prefix}Targets cannot be set with {label}")
    for i, t in enumerate(fo.targets):
        tprefix = f"Bad Failover[{goq(key)}].Targets[{i}]: "
        if t.partition and t.datacenter:
            raise ValidationError(where, tprefix + "Partition cannot be set with Datacenter")
        if t.service_subset and t.service in ("", e.name) and t.service_subset not in e.subsets:
            raise ValidationError(
                where,
                f"{tprefix}ServiceSubset {goq(t.service_subset)} is not a valid subset of "
                f"{goq(e.name)}",
            )
    if any(dc == "" for dc in fo.datacenters):
        raise ValidationError(
            where, f"Bad Failover[{goq(key)}].Datacenters: found empty datacenter"
        )


def _parse_hash_policy(raw: JSON, i: int) -> HashPolicy:
    f = Fields(raw, f"LoadBalancer.HashPolicies[{i}]")
    cc = f.obj("CookieConfig")
    cookie = None
    if cc is not None:
        cookie = CookieConfig(
            session=cc.bool("Session"), ttl_ns=cc.duration("TTL"), path=cc.str("Path")
        )
        cc.finish()
    hp = HashPolicy(
        field=f.str("Field"),
        field_value=f.str("FieldValue"),
        cookie_config=cookie,
        source_ip=f.bool("SourceIP"),
        terminal=f.bool("Terminal"),
    )
    f.finish()
    return hp


def _check_hash_policy(hp: HashPolicy, i: int, path: str) -> None:
    where = f"Bad LoadBalancer HashPolicy[{i}]"
    if hp.field and hp.field not in HASH_FIELDS:
        raise ValidationError(path, f"{where}: {goq(hp.field)} is not a supported field")
    if hp.source_ip and hp.field:
        raise ValidationError(
            path,
            f"{where}: A single hash policy cannot hash both a source address "
            f"and a {goq(hp.field)}",
        )
    if hp.source_ip and hp.field_value:
        raise ValidationError(
            path, f"{where}: A FieldValue cannot be specified when hashing SourceIP"
        )
    if hp.field and not hp.field_value:
        raise ValidationError(
            path, f"{where}: Field {goq(hp.field)} was specified without a FieldValue"
        )
    if hp.field_value and not hp.field:
        raise ValidationError(path, f"{where}: FieldValue requires a Field to apply to")
    if hp.cookie_config is not None:
        if hp.field != "cookie":
            raise ValidationError(path, f"{where}: cookie_config provided for {goq(hp.field)}")
        if hp.cookie_config.session and hp.cookie_config.ttl_ns:
            raise ValidationError(path, f"{where}: a session cookie cannot have an associated TTL")


def _parse_load_balancer(f: Fields) -> LoadBalancer | None:
    sub = f.obj("LoadBalancer")
    if sub is None:
        return None
    lr = sub.obj("LeastRequestConfig")
    rh = sub.obj("RingHashConfig")
    lb = LoadBalancer(
        policy=sub.str("Policy"),
        least_request_choice_count=None if lr is None else lr.int("ChoiceCount"),
        ring_hash_minimum=None if rh is None else rh.int("MinimumRingSize"),
        ring_hash_maximum=None if rh is None else rh.int("MaximumRingSize"),
        hash_policies=tuple(
            _parse_hash_policy(raw, i) for i, raw in enumerate(sub.list("HashPolicies"))
        ),
        has_least_request_config=lr is not None,
        has_ring_hash_config=rh is not None,
    )
    for part in (lr, rh):
        if part is not None:
            part.finish()
    sub.finish()
    return lb


def _check_load_balancer(lb: LoadBalancer) -> None:
    if lb.policy not in LB_POLICIES:
        raise ValidationError(
            "LoadBalancer.Policy", f"Bad LoadBalancer policy: {goq(lb.policy)} is not supported"
        )
    if lb.has_ring_hash_config and lb.policy != "ring_hash":
        raise ValidationError(
            "LoadBalancer.RingHashConfig",
            "Bad LoadBalancer configuration. RingHashConfig specified for incompatible "
            f"load balancing policy {goq(lb.policy)}",
        )
    if lb.has_least_request_config and lb.policy != "least_request":
        raise ValidationError(
            "LoadBalancer.LeastRequestConfig",
            "Bad LoadBalancer configuration. LeastRequestConfig specified for incompatible "
            f"load balancing policy {goq(lb.policy)}",
        )
    if lb.hash_policies and lb.policy not in ("ring_hash", "maglev"):
        raise ValidationError(
            "LoadBalancer.HashPolicies",
            "Bad LoadBalancer configuration: HashPolicies specified for non-hash-based "
            f"Policy: {goq(lb.policy)}",
        )
    for i, hp in enumerate(lb.hash_policies):
        _check_hash_policy(hp, i, f"LoadBalancer.HashPolicies[{i}]")


def parse_service_resolver(
    f: Fields, filter_validator: FilterValidator | None = None
) -> ServiceResolverEntry:
    """Decode and validate a ``service-resolver`` entry (Kind already read)."""
    name = f.str("Name")
    if not name:
        raise ValidationError("Name", "Name is required")
    subsets = _parse_subsets(f, filter_validator)
    entry = ServiceResolverEntry(
        name=name,
        default_subset=f.str("DefaultSubset"),
        subsets=subsets,
        redirect=_parse_redirect(f),
        failover=_parse_failover(f),
        connect_timeout_ns=f.duration("ConnectTimeout"),
        request_timeout_ns=f.duration("RequestTimeout"),
        load_balancer=_parse_load_balancer(f),
        meta=f.str_map("Meta"),
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
    )
    extra = f.finish(("PrioritizeByLocality",))
    entry = ServiceResolverEntry(**{**entry.__dict__, "extra": extra})
    _check_resolver(entry)
    return entry


def _check_resolver(e: ServiceResolverEntry) -> None:
    if not e.name:
        raise ValidationError("Name", "Name is required")
    check_meta(e.meta)
    if e.default_subset and e.default_subset not in e.subsets:
        raise ValidationError(
            "DefaultSubset", f"DefaultSubset {goq(e.default_subset)} is not a valid subset"
        )
    if e.redirect is not None:
        _check_redirect(e, e.redirect)
    for key, fo in e.failover.items():
        _check_failover(e, key, fo)
    if e.connect_timeout_ns < 0:
        raise ValidationError(
            "ConnectTimeout",
            f"Bad ConnectTimeout '{format_duration(e.connect_timeout_ns)}', must be >= 0",
        )
    if e.request_timeout_ns < 0:
        raise ValidationError(
            "RequestTimeout",
            f"Bad RequestTimeout '{format_duration(e.request_timeout_ns)}', must be >= 0",
        )
    if e.load_balancer is not None:
        _check_load_balancer(e.load_balancer)


def _check_redirect(e: ServiceResolverEntry, r: Redirect) -> None:
    def bad(text: str) -> ValidationError:
        return ValidationError("Redirect", text)

    if e.failover:
        raise bad("Redirect and Failover cannot both be set")
    if r.is_empty() and "SamenessGroup" not in r.extra:
        raise bad("Redirect is empty")
    if r.peer and r.service_subset:
        raise bad("Redirect.Peer cannot be set with Redirect.ServiceSubset")
    if r.peer and r.partition:
        raise bad("Redirect.Partition cannot be set with Redirect.Peer")
    if r.peer and r.datacenter:
        raise bad("Redirect.Peer cannot be set with Redirect.Datacenter")
    if not r.service:
        for label, value in (
            ("ServiceSubset", r.service_subset),
            ("Namespace", r.namespace),
            ("Partition", r.partition),
            ("Peer", r.peer),
        ):
            if value:
                raise bad(f"Redirect.{label} defined without Redirect.Service")
    elif r.service_subset and r.service == e.name and r.service_subset not in e.subsets:
        raise bad(
            f"Redirect.ServiceSubset {goq(r.service_subset)} is not a valid subset of {goq(e.name)}"
        )
