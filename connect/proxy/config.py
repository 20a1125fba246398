"""What the proxy serves, computed from the agent's service list (sans-I/O).

``sidecars_from_services`` turns ``GET /v1/agent/services`` (Consul's
``AgentService`` shapes) into ``SidecarConfig``s: every entry of
``"Kind": "connect-proxy"`` is a sidecar whose identity is its
``Proxy.DestinationServiceName``. ``desired_listeners`` lists the sockets
those sidecars need and ``diff_listeners`` says which to start, stop or
update in place (same address, new settings: no connection is dropped).

Proxy-level settings live in ``Proxy.Config`` (Consul's opaque proxy config):

* ``idle_timeout`` (seconds, default the CLI's ``--idle-timeout``, 3600),
* ``max_connections`` per listener (default 10,000),
* ``connect_timeout_ms`` for upstream dials (default 5000).

Per upstream, ``Upstreams[].Config.balance`` picks the load-balancing policy:
``round_robin`` (default) or ``least_conn`` (also accepted: ``least_request``
and ``least_connections``, Envoy's and HAProxy's spellings); upstreams may
override ``idle_timeout``, ``max_connections`` and ``connect_timeout_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ProxyConfigError

DEFAULT_IDLE_TIMEOUT = 3600.0
DEFAULT_MAX_CONNECTIONS = 10_000
DEFAULT_CONNECT_TIMEOUT = 5.0

BALANCE_POLICIES: dict[str, str] = {
    "round_robin": "round_robin",
    "roundrobin": "round_robin",
    "least_conn": "least_conn",
    "least_connections": "least_conn",
    "least_request": "least_conn",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-listener limits: idle timeout (s), connection cap, dial timeout (s)."""

    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """One ``Proxy.Upstreams`` entry: a local plain listener for ``destination``."""

    destination: str
    bind_address: str
    bind_port: int
    balance: str = "round_robin"
    datacenter: str = ""
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True, slots=True)
class SidecarConfig:
    """A sidecar registration: its inbound listener and its upstreams."""

    proxy_id: str
    service: str
    address: str
    port: int
    local_address: str
    local_port: int
    limits: Limits = field(default_factory=Limits)
    upstreams: tuple[UpstreamConfig, ...] = ()


ListenerKind = Literal["inbound", "outbound"]


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """A socket to listen on and what to do with its connections.

    ``service`` is the local identity (the sidecar's destination service);
    ``upstream`` is set for outbound listeners.
    """

    kind: ListenerKind
    host: str
    port: int
    proxy_id: str
    service: str
    limits: Limits
    local_address: str = ""
    local_port: int = 0
    upstream: UpstreamConfig | None = None

    @property
    def key(self) -> tuple[str, int]:
        """Listeners are identified by their address."""
        return (self.host, self.port)


@dataclass(frozen=True, slots=True)
class ListenerDiff:
    """What to do to go from the running listeners to the desired ones."""

    start: tuple[ListenerSpec, ...] = ()
    stop: tuple[tuple[str, int], ...] = ()
    update: tuple[ListenerSpec, ...] = ()


def _short(value: Any) -> str:
    """A value for an error message: its repr, cut to a log line's worth."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _num(body: Mapping[str, Any], key: str, path: str, *, lo: float, hi: float) -> float | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ProxyConfigError(f"{path}.{key}", "must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ProxyConfigError(f"{path}.{key}", f"must be a number, got {_short(value)}") from None
    if not lo <= number <= hi:
        raise ProxyConfigError(f"{path}.{key}", f"must be between {lo:g} and {hi:g}")
    return number


def _port(value: Any, path: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ProxyConfigError(path, f"must be a port number, got {_short(value)}")
    try:
        port = int(value)
    except ValueError:
        raise ProxyConfigError(path, f"must be a port number, got {_short(value)}") from None
    if not (0 if allow_zero else 1) <= port <= 65535:
        raise ProxyConfigError(path, f"port {port} out of range 1-65535")
    return port


def _list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ProxyConfigError(path, f"must be a list, got {type(value).__name__}")
    return value


def _text(value: Any, path: str, default: str) -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ProxyConfigError(path, f"must be a string, got {type(value).__name__}")
    return value


def _dict(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ProxyConfigError(path, "must be an object")
    return value


def parse_limits(config: Mapping[str, Any], path: str, base: Limits) -> Limits:
    """``base`` overridden by ``idle_timeout``/``max_connections``/``connect_timeout_ms``."""
    idle = _num(config, "idle_timeout", path, lo=0.001, hi=86400 * 365)
    cap = _num(config, "max_connections", path, lo=1, hi=10_000_000)
    dial = _num(config, "connect_timeout_ms", path, lo=1, hi=600_000)
    return Limits(
        idle_timeout=base.idle_timeout if idle is None else idle,
        max_connections=base.max_connections if cap is None else int(cap),
        connect_timeout=base.connect_timeout if dial is None else dial / 1000.0,
    )


def parse_upstream(body: Any, path: str, base: Limits) -> UpstreamConfig:
    """One upstream entry. Raises ``ProxyConfigError`` naming the bad field."""
    body = _dict(body, path)
    dtype = body.get("DestinationType") or "service"
    if dtype != "service":
        raise ProxyConfigError(f"{path}.DestinationType", f"{_short(dtype)} is not supported")
    name = body.get("DestinationName")
    if not isinstance(name, str) or not name:
        raise ProxyConfigError(f"{path}.DestinationName", "is required")
    config = _dict(body.get("Config"), f"{path}.Config")
    balance_raw = _text(config.get("balance"), f"{path}.Config.balance", "round_robin").lower()
    balance = BALANCE_POLICIES.get(balance_raw)
    if balance is None:
        choices = ", ".join(sorted(set(BALANCE_POLICIES.values())))
        raise ProxyConfigError(
            f"{path}.Config.balance", f"{_short(balance_raw)} is not one of {choices}"
        )
    if body.get("LocalBindSocketPath"):
        raise ProxyConfigError(f"{path}.LocalBindSocketPath", "unix sockets are not supported")
    return UpstreamConfig(
        destination=name,
        bind_address=_text(body.get("LocalBindAddress"), f"{path}.LocalBindAddress", "127.0.0.1"),
        bind_port=_port(body.get("LocalBindPort"), f"{path}.LocalBindPort"),
        balance=balance,
        datacenter=_text(body.get("Datacenter"), f"{path}.Datacenter", ""),
        limits=parse_limits(config, f"{path}.Config", base),
    )


def parse_sidecar(
    proxy_id: str, body: Mapping[str, Any], *, parent_port: int | None, base: Limits
) -> SidecarConfig:
    """A ``connect-proxy`` AgentService as a ``SidecarConfig``.

    ``parent_port`` is the port of the service it fronts (the default
    ``LocalServicePort``). Raises ``ProxyConfigError`` naming the bad field.
    """
    proxy = _dict(body.get("Proxy"), "Proxy")
    service = proxy.get("DestinationServiceName")
    if not isinstance(service, str) or not service:
        raise ProxyConfigError("Proxy.DestinationServiceName", "is required")
    local_port_raw = proxy.get("LocalServicePort") or parent_port
    if not local_port_raw:
        raise ProxyConfigError(
            "Proxy.LocalServicePort", "is required when the parent service has no port"
        )
    config = _dict(proxy.get("Config"), "Proxy.Config")
    limits = parse_limits(config, "Proxy.Config", base)
    upstreams = tuple(
        parse_upstream(u, f"Proxy.Upstreams[{i}]", limits)
        for i, u in enumerate(_list(proxy.get("Upstreams"), "Proxy.Upstreams"))
    )
    return SidecarConfig(
        proxy_id=proxy_id,
        service=service,
        address=_text(body.get("Address"), "Address", "0.0.0.0"),
        port=_port(body.get("Port"), "Port"),
        local_address=_text(
            proxy.get("LocalServiceAddress"), "Proxy.LocalServiceAddress", "127.0.0.1"
        ),
        local_port=_port(local_port_raw, "Proxy.LocalServicePort"),
        limits=limits,
        upstreams=upstreams,
    )


def sidecars_from_services(
    services: Mapping[str, Any], base: Limits | None = None
) -> tuple[dict[str, SidecarConfig], dict[str, ProxyConfigError]]:
    """Every sidecar in an ``/v1/agent/services`` answer, and the refused ones.

    Returns ``(sidecars by proxy ID, errors by proxy ID)``: one bad
    registration does not stop the others from being served, and no
    registration, however malformed, makes this raise.
    """
    base = base or Limits()
    sidecars: dict[str, SidecarConfig] = {}
    errors: dict[str, ProxyConfigError] = {}
    for sid, body in services.items():
        if not isinstance(body, Mapping) or body.get("Kind") != "connect-proxy":
            continue
        try:
            raw_proxy = body.get("Proxy")
            proxy: Mapping[str, Any] = raw_proxy if isinstance(raw_proxy, Mapping) else {}
            parent = services.get(str(proxy.get("DestinationServiceID") or ""))
            parent_port = parent.get("Port") if isinstance(parent, Mapping) else None
            sidecars[sid] = parse_sidecar(
                sid,
                body,
                parent_port=parent_port if isinstance(parent_port, int) else None,
                base=base,
            )
        except ProxyConfigError as exc:
            errors[sid] = exc
        except Exception as exc:  # a shape no rule above foresaw: skip, never crash
            errors[sid] = ProxyConfigError("Proxy", f"unusable registration: {exc!r}"[:300])
    return sidecars, errors


def only_sidecars_for(
    sidecars: Mapping[str, SidecarConfig], services: Mapping[str, Any], wanted: frozenset[str]
) -> dict[str, SidecarConfig]:
    """Consul's ``-sidecar-for``: the sidecars whose destination service ID
    or name is in ``wanted`` (all of them when ``wanted`` is empty)."""
    if not wanted:
        return dict(sidecars)
    kept = {}
    for sid, cfg in sidecars.items():
        body = services.get(sid)
        proxy = body.get("Proxy") if isinstance(body, Mapping) else None
        if isinstance(proxy, Mapping):
            ids = (proxy.get("DestinationServiceID"), proxy.get("DestinationServiceName"))
            if {n for n in ids if isinstance(n, str)} & wanted:
                kept[sid] = cfg
    return kept


def _specs(pid: str, sc: SidecarConfig) -> list[ListenerSpec]:
    specs = [
        ListenerSpec(
            kind="inbound",
            host=sc.address,
            port=sc.port,
            proxy_id=pid,
            service=sc.service,
            limits=sc.limits,
            local_address=sc.local_address,
            local_port=sc.local_port,
        )
    ]
    specs += [
        ListenerSpec(
            kind="outbound",
            host=u.bind_address,
            port=u.bind_port,
            proxy_id=pid,
            service=sc.service,
            limits=u.limits,
            upstream=u,
        )
        for u in sc.upstreams
    ]
    return specs


def desired_listeners(
    sidecars: Mapping[str, SidecarConfig],
    running: Mapping[tuple[str, int], ListenerSpec] | None = None,
) -> tuple[dict[tuple[str, int], ListenerSpec], list[str]]:
    """The listeners the sidecars need, keyed by address, and conflicts.

    A listener that is ``running`` keeps its owner while that sidecar still
    wants it: a sidecar that wants an address another one owns, or one an
    earlier sidecar (by proxy ID) took, is skipped whole, with a message
    naming both. So a new registration, whatever its ID sorts as, never
    takes over another sidecar's upstream listener.
    """
    claimed: dict[tuple[str, int], str] = {}
    for key, spec in (running or {}).items():
        owner = sidecars.get(spec.proxy_id)
        if owner is not None and any(s.key == key for s in _specs(spec.proxy_id, owner)):
            claimed[key] = spec.proxy_id
    wanted: dict[tuple[str, int], ListenerSpec] = {}
    conflicts: list[str] = []
    for pid in sorted(sidecars):
        specs = _specs(pid, sidecars[pid])
        clash = _first_clash(pid, specs, wanted, claimed)
        if clash is not None:
            conflicts.append(clash)
            continue
        for spec in specs:
            wanted[spec.key] = spec
    return wanted, conflicts


def _first_clash(
    pid: str,
    specs: list[ListenerSpec],
    wanted: Mapping[tuple[str, int], ListenerSpec],
    claimed: Mapping[tuple[str, int], str],
) -> str | None:
    seen: dict[tuple[str, int], ListenerSpec] = {}
    for spec in specs:
        where = f"{spec.host}:{spec.port}"
        owner = claimed.get(spec.key, pid)
        other = wanted.get(spec.key)
        if owner != pid:
            return f"{where} wanted by {pid} ({spec.kind}) is bound for {owner}; skipping {pid}"
        if other is not None:
            return (
                f"{where} wanted by {other.proxy_id} ({other.kind}) and {pid} ({spec.kind}); "
                f"skipping {pid}"
            )
        if spec.key in seen:
            return f"{where} wanted twice by {pid}; skipping {pid}"
        seen[spec.key] = spec
    return None


def diff_listeners(
    running: Mapping[tuple[str, int], ListenerSpec],
    desired: Mapping[tuple[str, int], ListenerSpec],
) -> ListenerDiff:
    """Listeners to start, stop and update in place.

    A listener whose kind changes (inbound <-> outbound) is stopped and
    started again; any other change is an in-place update that applies to
    new connections.
    """
    start: list[ListenerSpec] = []
    stop: list[tuple[str, int]] = []
    update: list[ListenerSpec] = []
    for key, spec in desired.items():
        old = running.get(key)
        if old is None:
            start.append(spec)
        elif old.kind != spec.kind:
            stop.append(key)
            start.append(spec)
        elif old != spec:
            update.append(spec)
    stop += [key for key in running if key not in desired]
    return ListenerDiff(start=tuple(start), stop=tuple(stop), update=tuple(update))
