"""Values derived when the configuration does not set them (Consul's builder does the same).

The host name and addresses come from a ``HostInfo`` so tests can supply
their own; ``SystemHost`` asks the operating system, and only when needed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import fields
from typing import Any, Protocol

from meshd.config.addresses import is_unspecified
from meshd.config.model import AgentConfig, TLSSettings

__all__ = ["HostInfo", "SystemHost", "derive"]


class HostInfo(Protocol):
    """What configuration defaults need to know about the host."""

    def hostname(self) -> str:
        """The host name, the default ``node_name``."""
        ...

    def private_ipv4(self) -> str | None:
        """The first non-loopback IPv4 address of the host, or None."""
        ...


class SystemHost:
    """``HostInfo`` from the operating system (``socket.gethostname``/``getaddrinfo``)."""

    def hostname(self) -> str:
        """``socket.gethostname()``."""
        return socket.gethostname()

    def private_ipv4(self) -> str | None:
        """First non-loopback IPv4 address the host name resolves to (blocking lookup)."""
        try:
            infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        except OSError:
            return None
        for info in infos:
            address = str(info[4][0])
            if not ipaddress.ip_address(address).is_loopback:
                return address
        return None


def _default(cls: type, name: str) -> Any:
    return next(f.default for f in fields(cls) if f.name == name)


def _inherit_tls(tls: dict[str, Any]) -> None:
    # tls.internal_rpc and tls.https take every key they leave unset from tls.defaults.
    defaults = tls.get("defaults", {})
    for proto in ("internal_rpc", "https"):
        settings = tls.setdefault(proto, {})
        for f in fields(TLSSettings):
            if f.name not in settings and f.name in defaults:
                settings[f.name] = defaults[f.name]


def derive(merged: dict[str, Any], *, dev: bool, host: HostInfo) -> None:
    """Fill in derived values in the merged configuration, in place.

    ``node_name`` defaults to the host name; ``primary_datacenter`` to
    ``datacenter``; ``advertise_addr`` to ``bind_addr``, or when that is
    0.0.0.0/:: to the host's first private IPv4 (127.0.0.1 if none);
    ``leave_on_terminate`` is true for clients and ``skip_leave_on_interrupt``
    true for servers, as in Consul; RSA CA keys default to 2048 bits.
    """
    merged["dev"] = dev
    if "node_name" not in merged:
        merged["node_name"] = host.hostname()
    merged.setdefault(
        "primary_datacenter", merged.get("datacenter", _default(AgentConfig, "datacenter"))
    )
    server = bool(merged.get("server", False))
    merged.setdefault("leave_on_terminate", not server)
    merged.setdefault("skip_leave_on_interrupt", server)
    if "advertise_addr" not in merged:
        bind = str(merged.get("bind_addr", _default(AgentConfig, "bind_addr")))
        advertise = (host.private_ipv4() or "127.0.0.1") if is_unspecified(bind) else bind
        merged["advertise_addr"] = advertise
    _inherit_tls(merged.setdefault("tls", {}))
    ca = merged.setdefault("connect", {}).setdefault("ca_config", {})
    if ca.get("private_key_type") == "rsa":
        ca.setdefault("private_key_bits", 2048)
