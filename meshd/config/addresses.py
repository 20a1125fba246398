"""Addresses in the configuration: bind/advertise/client IPs, join targets, recursors.

Consul also accepts go-sockaddr templates (``{{ GetPrivateIP }}``) and cloud
auto-join strings (``provider=aws ...``); meshd does not, and says so.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from meshd.config.values import Invalid, Parser, list_of, shown, string

__all__ = ["JoinAddress", "client_addrs", "ip_address", "join_address", "recursor"]

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_\-]{0,61}[A-Za-z0-9_])?)*\.?"
)
_TEMPLATE_HINT = "go-sockaddr templates are not supported; give an IP address"


@dataclass(frozen=True)
class JoinAddress:
    """A server to join: host name or IP and the server RPC port (default 8300)."""

    host: str
    port: int = 8300

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"


def _ip(text: str) -> str:
    if "{{" in text:
        raise Invalid(f"{_TEMPLATE_HINT}, got {shown(text)}")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise Invalid(f"must be an IP address, got {shown(text)}") from None


def ip_address(value: object) -> str:
    """One IPv4 or IPv6 address, normalised (``::1``, ``10.0.0.1``)."""
    return _ip(str(string(max_len=64)(value)))


def client_addrs(value: object) -> tuple[str, ...]:
    """Consul's client_addr: one or more IP addresses separated by spaces."""
    text = str(string(max_len=1024)(value))
    if "{{" in text:
        raise Invalid(f"{_TEMPLATE_HINT}, got {shown(text)}")
    parts = text.split()
    if not parts:
        raise Invalid("must list at least one IP address")
    return tuple(_ip(part) for part in parts)


def _split_host_port(text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise Invalid(f'must be "host", "host:port" or "[ipv6]:port", got {shown(text)}')
        return host, (rest[1:] if rest else None)
    if text.count(":") > 1:  # a bare IPv6 address
        return text, None
    host, sep, port_text = text.partition(":")
    return host, (port_text if sep else None)


def _port_number(text: str | None, default: int, whole: str) -> int:
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise Invalid(f"port must be between 1 and 65535, got {shown(whole)}")
    return int(text)


def join_address(value: object) -> JoinAddress:
    """``host``, ``host:port``, ``ipv6`` or ``[ipv6]:port``; the port defaults to 8300."""
    text = str(string(max_len=260)(value))
    if text.startswith("provider="):
        raise Invalid("cloud auto-join (provider=...) is not supported; list server addresses")
    host, port_text = _split_host_port(text)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            raise Invalid(f"must be a host name or IP address, got {shown(text)}") from None
    return JoinAddress(host.rstrip("."), _port_number(port_text, 8300, text))


def recursor(value: object) -> str:
    """An upstream DNS server: ``ip`` or ``ip:port`` (port 53 by default), as ``ip:port``."""
    text = str(string(max_len=64)(value))
    host, port_text = _split_host_port(text)
    address = JoinAddress(_ip(host), _port_number(port_text, 53, text))
    return str(address)


join_list: Parser = list_of(join_address)
recursor_list: Parser = list_of(recursor)


def is_unspecified(address: str) -> bool:
    """True for 0.0.0.0 and ::, the "all interfaces" addresses."""
    return ipaddress.ip_address(address).is_unspecified
