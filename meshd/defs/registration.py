"""Rules a local registration must pass against what the agent already holds.

Two concerns, both about other services on the same agent:

* **Who may replace what** (Consul's ``vetServiceRegister`` and
  ``vetCheckRegister``): registering under an existing service ID replaces
  that service, so the token needs ``service:write`` on the existing
  service's name as well as the new one; a connect proxy also needs it on
  the service it fronts (the servers apply the same rule, so a registration
  the agent accepts is one anti-entropy can sync). A check that replaces an
  existing check needs the right to write that check's service (or node).
* **Listener ownership**: a connect proxy's public port and its upstreams'
  local bind addresses are listeners ``meshd proxy`` opens. One already
  owned by another local proxy keeps its owner: a registration that would
  bind the same address and port is refused (400 naming the field), so a
  new registration cannot take over another sidecar's upstream traffic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from registry.errors import ValidationError
from registry.records import ServiceInstance

from . import sidecar
from .definitions import CheckDefinition, ServiceDefinition

SERVICE = "service"
NODE = "node"
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def expand(
    defn: ServiceDefinition, services: Mapping[str, ServiceDefinition], node: str
) -> list[tuple[ServiceDefinition, str]]:
    """``defn`` and the sidecar it asks for, each with its field prefix."""
    parent, proxy = sidecar.expand(defn, services, node=node)
    out = [(parent, "")]
    if proxy is not None:
        out.append((proxy, "Connect.SidecarService."))
    return out


def service_targets(
    defs: Iterable[ServiceDefinition],
    services: Mapping[str, ServiceDefinition],
    checks: Mapping[str, CheckDefinition],
) -> list[tuple[str, str]]:
    """``(kind, name)`` pairs (kind ``service`` or ``node``) a token must be
    allowed to write to register ``defs`` over ``services``/``checks``."""
    out: list[tuple[str, str]] = []
    for d in defs:
        svc = d.service
        out.append((SERVICE, svc.service))
        if svc.kind == "connect-proxy" and svc.destination:
            out.append((SERVICE, svc.destination))
        existing = services.get(svc.id)
        if existing is not None:
            out.append((SERVICE, existing.service.service))
        for c in d.checks:
            out.extend(check_owner(checks.get(c.check.check_id), svc.id))
    return list(dict.fromkeys(out))


def check_owner(existing: CheckDefinition | None, new_service_id: str) -> list[tuple[str, str]]:
    """What replacing ``existing`` (a check with the same ID) needs, beyond
    what the new check itself needs: nothing when it is new or already
    belongs to ``new_service_id``."""
    if existing is None or (new_service_id and existing.check.service_id == new_service_id):
        return []
    if existing.check.service_name:
        return [(SERVICE, existing.check.service_name)]
    return [(NODE, existing.check.node)]


@dataclass(frozen=True)
class _Listener:
    host: str
    port: int
    owner: str  # the proxy's service ID
    what: str  # "public port" or 'upstream "api"'
    field: str

    def overlaps(self, other: _Listener) -> bool:
        if self.port != other.port or not self.port:
            return False
        return self.host == other.host or self.host in _WILDCARDS or other.host in _WILDCARDS


def _listeners(svc: ServiceInstance, prefix: str) -> Iterator[_Listener]:
    if svc.kind != "connect-proxy":
        return
    yield _Listener(svc.address, svc.port, svc.id, "public port", prefix + "Port")
    proxy: Mapping[str, Any] = svc.proxy or {}
    for i, up in enumerate(proxy.get("Upstreams") or ()):
        if not isinstance(up, Mapping):
            continue
        port = up.get("LocalBindPort")
        if isinstance(port, bool) or not isinstance(port, int) or not port:
            continue
        host = up.get("LocalBindAddress") or "127.0.0.1"
        yield _Listener(
            str(host),
            port,
            svc.id,
            f"upstream {json_str(up.get('DestinationName'))}",
            f"{prefix}Proxy.Upstreams[{i}].LocalBindPort",
        )


def json_str(value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    return '"' + text[:100] + '"'


def check_listeners(
    defs: Iterable[tuple[ServiceDefinition, str]], services: Mapping[str, ServiceDefinition]
) -> None:
    """Raise ``ValidationError`` naming the field when a proxy in ``defs``
    would listen where another local proxy (or another listener of its own)
    already does. Services being replaced by ``defs`` do not count."""
    new = list(defs)
    replaced = {d.service.id for d, _ in new}
    taken = [
        lst
        for sid, d in services.items()
        if sid not in replaced
        for lst in _listeners(d.service, "")
    ]
    for d, prefix in new:
        for lst in _listeners(d.service, prefix):
            for other in taken:
                if lst.overlaps(other):
                    where = f"{other.host or '0.0.0.0'}:{other.port}"
                    raise ValidationError(
                        lst.field,
                        f"{where} is already bound by the {other.what} of proxy "
                        f"{json_str(other.owner)}",
                    )
            taken.append(lst)
