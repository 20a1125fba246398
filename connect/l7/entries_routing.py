"""``service-router`` and ``service-splitter`` config entries.

Follows Consul's ServiceRouterConfigEntry / ServiceSplitterConfigEntry
(agent/structs/config_entry_discoverychain.go) and their validation texts.

meshd extension (no Consul shape exists, hashicorp/consul#9827): a route's
``Destination.Mirror`` = ``{Service, ServiceSubset, Namespace, Percent}``
copies the matching requests (``Percent`` of them, default 100) to another
service, fire-and-forget; the caller's response never depends on it.
Consul would refuse the key, so entries using it are meshd-only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connect.l7.decode import (
    JSON,
    Fields,
    ValidationError,
    check_meta,
    finish_entry,
    format_duration,
    goq,
    put,
    put_entry_tail,
    put_service_ref,
)
from connect.l7.entries_http import (
    HeaderMatch,
    HeaderModifiers,
    QueryParamMatch,
    check_methods,
    check_paths,
    http_match_json,
    parse_header_match,
    parse_header_modifiers,
)

SERVICE_ROUTER = "service-router"
SERVICE_SPLITTER = "service-splitter"

VALID_RETRY_ON = (
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
)


@dataclass(frozen=True)
class HTTPMatch:
    path_exact: str = ""
    path_prefix: str = ""
    path_regex: str = ""
    header: tuple[HeaderMatch, ...] = ()
    query_param: tuple[QueryParamMatch, ...] = ()
    methods: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (
            self.path_exact
            or self.path_prefix
            or self.path_regex
            or self.header
            or self.query_param
            or self.methods
        )

    def to_json(self) -> dict[str, JSON]:
        return http_match_json(
            self.path_exact,
            self.path_prefix,
            self.path_regex,
            self.header,
            self.methods,
            self.query_param,
        )


@dataclass(frozen=True)
class Mirror:
    """meshd extension: shadow-copy matching requests to ``service``."""

    service: str
    service_subset: str = ""
    namespace: str = ""
    percent: float = 100.0

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Service": self.service}
        put(out, "ServiceSubset", self.service_subset)
        put(out, "Namespace", self.namespace)
        out["Percent"] = _num(self.percent)
        return out


@dataclass(frozen=True)
class RouteDestination:
    service: str = ""
    service_subset: str = ""
    namespace: str = ""
    partition: str = ""
    prefix_rewrite: str = ""
    request_timeout_ns: int = 0
    idle_timeout_ns: int = 0
    num_retries: int = 0
    retry_on_connect_failure: bool = False
    retry_on: tuple[str, ...] = ()
    retry_on_status_codes: tuple[int, ...] = ()
    request_headers: HeaderModifiers = field(default_factory=HeaderModifiers)
    response_headers: HeaderModifiers = field(default_factory=HeaderModifiers)
    mirror: Mirror | None = None

    def has_retry_features(self) -> bool:
        return bool(
            self.num_retries
            or self.retry_on_connect_failure
            or self.retry_on
            or self.retry_on_status_codes
        )

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        put_service_ref(out, self.service, self.service_subset, self.namespace, self.partition)
        put(out, "PrefixRewrite", self.prefix_rewrite)
        if self.request_timeout_ns:
            out["RequestTimeout"] = format_duration(self.request_timeout_ns)
        if self.idle_timeout_ns:
            out["IdleTimeout"] = format_duration(self.idle_timeout_ns)
        put(out, "NumRetries", self.num_retries)
        put(out, "RetryOnConnectFailure", self.retry_on_connect_failure)
        put(out, "RetryOn", list(self.retry_on))
        put(out, "RetryOnStatusCodes", list(self.retry_on_status_codes))
        put(out, "RequestHeaders", self.request_headers.to_json())
        put(out, "ResponseHeaders", self.response_headers.to_json())
        if self.mirror is not None:
            out["Mirror"] = self.mirror.to_json()
        return out


@dataclass(frozen=True)
class ServiceRoute:
    match: HTTPMatch | None = None
    destination: RouteDestination | None = None

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        if self.match is not None:
            out["Match"] = {"HTTP": self.match.to_json()}
        if self.destination is not None:
            out["Destination"] = self.destination.to_json()
        return out


@dataclass(frozen=True)
class ServiceRouterEntry:
    name: str
    routes: tuple[ServiceRoute, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    namespace: str = ""
    partition: str = ""
    kind: str = SERVICE_ROUTER

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Kind": self.kind, "Name": self.name}
        put(out, "Routes", [r.to_json() for r in self.routes])
        return put_entry_tail(out, self.meta, self.namespace, self.partition)


def _num(x: float) -> JSON:
    return int(x) if float(x).is_integer() else x


def _uint(f: Fields, name: str) -> int:
    value = f.int(name)
    if value is not None and value < 0:
        raise ValidationError(f.sub(name), f"{f.sub(name)} cannot be negative")
    return value or 0


def _parse_query_param(raw: JSON, path: str, where: str) -> QueryParamMatch:
    f = Fields(raw, path)
    qp = QueryParamMatch(
        name=f.str("Name"), present=f.bool("Present"), exact=f.str("Exact"), regex=f.str("Regex")
    )
    f.finish()
    if not qp.name:
        raise ValidationError(path + ".Name", f"{where} missing required Name field")
    if sum(bool(x) for x in (qp.present, qp.exact, qp.regex)) != 1:
        raise ValidationError(path, f"{where} should only contain one of Present, Exact, or Regex")
    return qp


def _parse_http_match(f: Fields, i: int) -> HTTPMatch:
    where = f"Route[{i}]"
    headers = tuple(
        parse_header_match(raw, f"{f.sub('Header')}[{j}]", f"{where} Header[{j}]")
        for j, raw in enumerate(f.list("Header"))
    )
    params = tuple(
        _parse_query_param(raw, f"{f.sub('QueryParam')}[{j}]", f"{where} QueryParam[{j}]")
        for j, raw in enumerate(f.list("QueryParam"))
    )
    m = HTTPMatch(
        path_exact=f.str("PathExact"),
        path_prefix=f.str("PathPrefix"),
        path_regex=f.str("PathRegex"),
        header=headers,
        query_param=params,
        methods=check_methods(f.str_list("Methods"), f.sub("Methods"), f"{where} Methods"),
    )
    f.finish()
    check_paths(m.path_exact, m.path_prefix, m.path_regex, f.path, where)
    return m


def _parse_mirror(f: Fields, where: str) -> Mirror | None:
    sub = f.obj("Mirror")
    if sub is None:
        return None
    percent = sub.float("Percent")
    mirror = Mirror(
        service=sub.str("Service"),
        service_subset=sub.str("ServiceSubset"),
        namespace=sub.str("Namespace"),
        percent=100.0 if percent is None else percent,
    )
    sub.finish()
    if not mirror.service:
        raise ValidationError(sub.sub("Service"), f"{where} Mirror.Service is required")
    if not 0 <= mirror.percent <= 100:
        raise ValidationError(
            sub.sub("Percent"), f"{where} Mirror.Percent must be between 0 and 100"
        )
    return mirror


def _parse_destination(f: Fields, i: int) -> RouteDestination:
    where = f"Route[{i}]"
    codes = []
    for j, code in enumerate(f.list("RetryOnStatusCodes")):
        if isinstance(code, bool) or not isinstance(code, int) or code < 0:
            field_ = f"{f.sub('RetryOnStatusCodes')}[{j}]"
            raise ValidationError(field_, f"{field_} must be a non-negative integer")
        codes.append(code)
    d = RouteDestination(
        service=f.str("Service"),
        service_subset=f.str("ServiceSubset"),
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
        prefix_rewrite=f.str("PrefixRewrite"),
        request_timeout_ns=f.duration("RequestTimeout"),
        idle_timeout_ns=f.duration("IdleTimeout"),
        num_retries=_uint(f, "NumRetries"),
        retry_on_connect_failure=f.bool("RetryOnConnectFailure"),
        retry_on=f.str_list("RetryOn"),
        retry_on_status_codes=tuple(codes),
        request_headers=parse_header_modifiers(f, "RequestHeaders"),
        response_headers=parse_header_modifiers(f, "ResponseHeaders"),
        mirror=_parse_mirror(f, where),
    )
    f.finish()
    for cond in d.retry_on:
        if cond not in VALID_RETRY_ON:
            raise ValidationError(
                f.sub("RetryOn"), f"{where} contains an invalid retry condition: {goq(cond)}"
            )
    if d.request_timeout_ns < 0:
        raise ValidationError(f.sub("RequestTimeout"), f"{where} RequestTimeout cannot be negative")
    if d.idle_timeout_ns < 0:
        raise ValidationError(f.sub("IdleTimeout"), f"{where} IdleTimeout cannot be negative")
    return d


def _parse_route(raw: JSON, i: int) -> ServiceRoute:
    f = Fields(raw, f"Routes[{i}]")
    match = None
    m = f.obj("Match")
    if m is not None:
        http = m.obj("HTTP")
        m.finish()
        if http is not None:
            match = _parse_http_match(http, i)
    d = f.obj("Destination")
    dest = None if d is None else _parse_destination(d, i)
    f.finish()
    no_path = match is None or not (match.path_exact or match.path_prefix)
    if dest is not None and dest.prefix_rewrite and no_path:
        raise ValidationError(
            f.sub("Destination.PrefixRewrite"),
            f"Route[{i}] cannot make use of PrefixRewrite without configuring either "
            "PathExact or PathPrefix",
        )
    return ServiceRoute(match=match, destination=dest)


def parse_service_router(f: Fields) -> ServiceRouterEntry:
    """Decode and validate a ``service-router`` entry (Kind already read)."""
    name = f.str("Name")
    entry = ServiceRouterEntry(
        name=name,
        routes=tuple(_parse_route(raw, i) for i, raw in enumerate(f.list("Routes"))),
        meta=f.str_map("Meta"),
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
    )
    finish_entry(f)
    if not name:
        raise ValidationError("Name", "Name is required")
    check_meta(entry.meta)
    return entry


# --- service-splitter ---------------------------------------------------------


@dataclass(frozen=True)
class Split:
    weight: float
    service: str = ""
    service_subset: str = ""
    namespace: str = ""
    partition: str = ""
    request_headers: HeaderModifiers = field(default_factory=HeaderModifiers)
    response_headers: HeaderModifiers = field(default_factory=HeaderModifiers)

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Weight": _num(self.weight)}
        put_service_ref(out, self.service, self.service_subset, self.namespace, self.partition)
        put(out, "RequestHeaders", self.request_headers.to_json())
        put(out, "ResponseHeaders", self.response_headers.to_json())
        return out


@dataclass(frozen=True)
class ServiceSplitterEntry:
    name: str
    splits: tuple[Split, ...] = ()
    meta: dict[str, str] = field(default_factory=dict)
    namespace: str = ""
    partition: str = ""
    kind: str = SERVICE_SPLITTER

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Kind": self.kind, "Name": self.name}
        put(out, "Splits", [s.to_json() for s in self.splits])
        return put_entry_tail(out, self.meta, self.namespace, self.partition)


def scale_weight(weight: float) -> int:
    """Weight in 0.01 % units (Consul's ``scaleWeight``; 10000 = 100 %)."""
    return round(weight * 100)


def _parse_split(raw: JSON, i: int) -> Split:
    f = Fields(raw, f"Splits[{i}]")
    weight = f.float("Weight")
    split = Split(
        # Consul's Normalize: the smallest representable weight is 0.01 %.
        weight=0.0 if weight is None else scale_weight(weight) / 100,
        service=f.str("Service"),
        service_subset=f.str("ServiceSubset"),
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
        request_headers=parse_header_modifiers(f, "RequestHeaders"),
        response_headers=parse_header_modifiers(f, "ResponseHeaders"),
    )
    f.finish()
    if not 0 <= split.weight <= 100:
        raise ValidationError(f.sub("Weight"), f"Splits[{i}].Weight must be between 0 and 100")
    return split


def parse_service_splitter(f: Fields) -> ServiceSplitterEntry:
    """Decode and validate a ``service-splitter`` entry (Kind already read)."""
    name = f.str("Name")
    entry = ServiceSplitterEntry(
        name=name,
        splits=tuple(_parse_split(raw, i) for i, raw in enumerate(f.list("Splits"))),
        meta=f.str_map("Meta"),
        namespace=f.str("Namespace"),
        partition=f.str("Partition"),
    )
    finish_entry(f)
    if not name:
        raise ValidationError("Name", "Name is required")
    if not entry.splits:
        raise ValidationError("Splits", "no splits configured")
    check_meta(entry.meta)
    seen: set[tuple[str, str, str, str]] = set()
    for s in entry.splits:
        key = (s.service or name, s.service_subset, s.namespace, s.partition)
        if key in seen:
            raise ValidationError(
                "Splits",
                "split destination occurs more than once: "
                f"service={goq(key[0])}, subset={goq(key[1])}, "
                f"namespace={goq(key[2])}, partition={goq(key[3])}",
            )
        seen.add(key)
    total = sum(scale_weight(s.weight) for s in entry.splits)
    if total != 10000:
        raise ValidationError(
            "Splits", f"the sum of all split weights must be 100, not {total / 100:f}"
        )
    return entry
