"""Checks of the agent's environment at start, each failure one ``StartupError``.

The configuration has parsed by then; what can still be wrong is outside it:
a data_dir that cannot be created or written, TLS files that are missing,
not PEM, a key that does not belong to its certificate, a client
certificate given to a server, a port in use or an address this host does
not have. Each becomes one line naming the configuration key, its value and
the fix, instead of a traceback from deep inside ``ssl`` or ``socket``.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..config import AgentConfig
from ..errors import StartupError

__all__ = [
    "Listener",
    "check_data_dir",
    "check_tls_files",
    "dns_listener",
    "find_os_error",
    "http_listener",
    "listen_failure",
    "listening",
    "rpc_listener",
]

T = TypeVar("T")


def check_data_dir(path: str) -> None:
    """Create ``data_dir`` if needed and prove it writable; raises ``StartupError``."""
    fix = "point data_dir (-data-dir) at a directory meshd can create and write"
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except FileExistsError:
        raise StartupError("data_dir", path, "exists and is not a directory", fix) from None
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        if exc.filename and os.fspath(exc.filename) != path:
            reason = f"{exc.filename}: {reason}"
        raise StartupError("data_dir", path, reason, fix) from None


def _tls_key(config: AgentConfig, name: str, value: str) -> str:
    # internal_rpc inherits from defaults: name the section the value is set in.
    section = "defaults" if getattr(config.tls.defaults, name) == value else "internal_rpc"
    return f"tls.{section}.{name}"


def _read(key: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise StartupError(key, path, reason, f"set {key} to a readable PEM file") from None


def check_tls_files(config: AgentConfig) -> None:
    """Check ``tls.internal_rpc``'s CA, certificate and key before ``ssl`` does.

    Raises ``StartupError`` for a file that is missing or unreadable, not
    PEM, a key that does not match the certificate, or (on a server) a
    certificate without the ``server.<dc>.<domain>`` name other servers and
    clients verify. Blocking file I/O; called once at start.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    tls = config.tls.internal_rpc
    if not (tls.ca_file and tls.cert_file and tls.key_file):
        return
    ca_key, cert_key, key_key = (
        _tls_key(config, n, v)
        for n, v in (
            ("ca_file", tls.ca_file),
            ("cert_file", tls.cert_file),
            ("key_file", tls.key_file),
        )
    )
    try:
        x509.load_pem_x509_certificates(_read(ca_key, tls.ca_file))
    except ValueError:
        raise StartupError(
            ca_key,
            tls.ca_file,
            "not a PEM certificate",
            "give the CA certificate (meshd-agent-ca.pem)",
        ) from None
    try:
        cert = x509.load_pem_x509_certificate(_read(cert_key, tls.cert_file))
    except ValueError:
        raise StartupError(
            cert_key, tls.cert_file, "not a PEM certificate", "give the agent's certificate"
        ) from None
    try:
        key = serialization.load_pem_private_key(_read(key_key, tls.key_file), password=None)
    except (ValueError, TypeError):
        raise StartupError(
            key_key, tls.key_file, "not an unencrypted PEM private key", "give cert_file's key"
        ) from None
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        raise StartupError(
            key_key,
            tls.key_file,
            f"does not match the certificate {tls.cert_file}",
            "give the key created with that certificate (its -key.pem)",
        )
    if config.server:
        _check_server_name(cert, cert_key, tls.cert_file, config)


def _check_server_name(cert: object, key: str, path: str, config: AgentConfig) -> None:
    from cryptography import x509

    assert isinstance(cert, x509.Certificate)
    wanted = f"server.{config.datacenter}.{config.domain}"
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        dns = []
    if wanted not in dns:
        has = ", ".join(dns) or "no DNS name"
        raise StartupError(
            key,
            path,
            f"a server needs a certificate for {wanted} (this one is for {has})",
            f"create one with 'meshd tls cert create -server -dc {config.datacenter}'",
        )


def find_os_error(exc: BaseException) -> OSError | None:
    """The ``OSError`` behind ``exc``: itself, its cause, or inside a group."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        if isinstance(current, BaseExceptionGroup):
            todo.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                todo.append(linked)
    return None


_BIND_ERRNOS = (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


@dataclass(frozen=True)
class Listener:
    """What a listener is configured by, for naming it in an error."""

    port_key: str  # ports.http
    port_flag: str  # -http-port
    host_key: str  # client_addr
    host_flag: str  # -client
    addresses: tuple[tuple[str, int], ...]


def http_listener(cfg: AgentConfig) -> Listener:
    """The HTTP API's listeners (``ports.http`` on every ``client_addr``)."""
    addrs = tuple((host, cfg.ports.http) for host in cfg.client_addr)
    return Listener("ports.http", "-http-port", "client_addr", "-client", addrs)


def dns_listener(cfg: AgentConfig, host: str) -> Listener:
    """The DNS listener on ``host`` (``ports.dns``)."""
    return Listener("ports.dns", "-dns-port", "client_addr", "-client", ((host, cfg.ports.dns),))


def rpc_listener(cfg: AgentConfig) -> Listener:
    """A server's RPC/Raft listener (``ports.server`` on ``bind_addr``)."""
    addrs = ((cfg.bind_addr, cfg.ports.server),)
    return Listener("ports.server", "-server-port", "bind_addr", "-bind", addrs)


async def listening(opening: Awaitable[T], listener: Listener) -> T:
    """Await ``opening``; a failure to bind ``listener`` becomes a ``StartupError``."""
    try:
        return await opening
    except Exception as exc:  # trio may hand the task's OSError over in a group
        failure = listen_failure(exc, listener)
        if failure is None:
            raise
        raise failure from None


def listen_failure(exc: BaseException, listener: Listener) -> StartupError | None:
    """``exc`` as a ``StartupError`` when it is a failure to bind
    ``listener``'s addresses (in use, not this host's, not permitted)."""
    found = find_os_error(exc)
    if found is None or found.errno not in _BIND_ERRNOS:
        return None
    where = ", ".join(f"{host}:{port}" for host, port in listener.addresses)
    port = listener.addresses[0][1] if listener.addresses else 0
    if found.errno == errno.EADDRNOTAVAIL:
        hosts = ", ".join(dict.fromkeys(host for host, _ in listener.addresses))
        return StartupError(
            listener.host_key,
            hosts,
            f"cannot listen on {where}: not an address of this host",
            f"set {listener.host_key} ({listener.host_flag}) to one of this host's addresses",
        )
    if found.errno == errno.EACCES:
        return StartupError(
            listener.port_key,
            port,
            f"cannot listen on {where}: permission denied (ports below 1024 need privileges)",
            f"choose a port above 1023 ({listener.port_flag})",
        )
    return StartupError(
        listener.port_key,
        port,
        f"cannot listen on {where}: address already in use (is another meshd running?)",
        f"stop it or choose another port ({listener.port_flag})",
    )
