"""Rules that span keys, checked on the built configuration.

Each error names the key to change and, through the recorded origins, the
file (or flag) that set it; a key nobody set is reported without a file.
Rules follow Consul's agent/config/builder.go where Consul has them, plus
meshd's own security rule: server RPC is mutual TLS only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from meshd.config.merge import Layer
from meshd.config.model import HOUR, AgentConfig
from meshd.config.schema import Origin
from meshd.config.values import NODE_META_MAX_KEYS
from meshd.durations import format_duration
from meshd.errors import ConfigError

__all__ = ["Locator", "validate"]

_DEFAULTS = Origin()
_TLS_HINT = "create them with `meshd tls ca create` and `meshd tls cert create --server`"


class Locator:
    """Turns a dotted key into an error or warning naming the source that set it."""

    def __init__(self, origins: Mapping[str, Origin]) -> None:
        self._origins = origins

    def is_set(self, path: str) -> bool:
        """Whether any source set ``path``."""
        return path in self._origins

    def set_by_user(self, path: str) -> bool:
        """Whether a file or a flag (not the defaults or ``-dev``) set ``path``."""
        origin = self._origins.get(path)
        return origin is not None and origin != _DEFAULTS

    def first_set(self, *paths: str) -> str:
        """The first of ``paths`` some source set (the first one if none was)."""
        return next((p for p in paths if p in self._origins), paths[0])

    def error(self, path: str, reason: str, *, like: str | None = None) -> ConfigError:
        """A ``ConfigError`` for ``path``, located where ``path`` (else ``like``) was set."""
        origin = self._origins.get(path) or self._origins.get(like or path, _DEFAULTS)
        return origin.error(path, reason)

    def warning(self, path: str, text: str) -> str:
        """A warning line for ``path``."""
        return self._origins.get(path, _DEFAULTS).warning(path, text)


def _check_roles(cfg: AgentConfig, loc: Locator, warnings: list[str]) -> None:
    expect = cfg.bootstrap_expect
    if cfg.bootstrap and not cfg.server:
        raise loc.error("bootstrap", "requires server = true")
    if expect == 0:
        return
    if cfg.dev:
        raise loc.error(
            "bootstrap_expect", "not allowed in dev mode (a dev agent bootstraps alone)"
        )
    if not cfg.server:
        raise loc.error("bootstrap_expect", "requires server = true (only servers vote)")
    if cfg.bootstrap:
        raise loc.error(
            "bootstrap_expect", "cannot be combined with bootstrap = true; set only one of them"
        )
    if expect == 1:
        text = "1 is the same as bootstrap mode: a single server, no failure tolerance"
    elif expect == 2:
        text = "a cluster of 2 servers tolerates no failure; use 3 or 5"
    elif expect % 2 == 0:
        text = f"{expect} servers tolerate no more failures than {expect - 1}; use an odd number"
    else:
        return
    warnings.append(loc.warning("bootstrap_expect", text))


def _check_node(cfg: AgentConfig, loc: Locator, warnings: list[str]) -> None:
    if not cfg.data_dir and not cfg.dev:
        raise loc.error("data_dir", "required (only a -dev agent keeps its state in memory)")
    if not cfg.node_name:
        raise loc.error("node_name", "must not be empty (the host name is empty: set node_name)")
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?", cfg.node_name):
        text = "is not a valid DNS label; this node will not be found through DNS"
        warnings.append(loc.warning("node_name", text))
    if len(cfg.node_meta) > NODE_META_MAX_KEYS:
        count = len(cfg.node_meta)
        raise loc.error("node_meta", f"must have at most {NODE_META_MAX_KEYS} keys, got {count}")


_LISTENERS = ("http", "https", "dns", "server", "grpc")


def _check_ports(cfg: AgentConfig, loc: Locator) -> None:
    ports = cfg.ports
    seen: dict[int, str] = {}
    for name in _LISTENERS:
        number = getattr(ports, name)
        if number == -1:
            continue
        if number in seen:
            first, second = f"ports.{seen[number]}", f"ports.{name}"
            blame, other = (second, first) if loc.is_set(second) else (first, second)
            raise loc.error(blame, f"port {number} is also used by {other}")
        seen[number] = name
    if ports.sidecar_min_port > ports.sidecar_max_port:
        path = loc.first_set("ports.sidecar_min_port", "ports.sidecar_max_port")
        reason = (
            f"ports.sidecar_min_port ({ports.sidecar_min_port}) must not be greater than "
            f"ports.sidecar_max_port ({ports.sidecar_max_port})"
        )
        raise loc.error(path, reason)


def _check_tls_settings(cfg: AgentConfig, loc: Locator) -> None:
    for proto in ("defaults", "internal_rpc", "https"):
        settings = getattr(cfg.tls, proto)
        has_ca = bool(settings.ca_file or settings.ca_path)

        def where(name: str, proto: str = proto) -> str:
            return loc.first_set(f"tls.{proto}.{name}", f"tls.defaults.{name}")

        for flag in ("verify_incoming", "verify_outgoing"):
            if getattr(settings, flag) and not has_ca:
                peers = "clients" if flag == "verify_incoming" else "servers"
                reason = f"needs tls.{proto}.ca_file or ca_path to verify {peers} against"
                raise loc.error(where(flag), reason)
        if bool(settings.cert_file) != bool(settings.key_file):
            given, missing = (
                ("cert_file", "key_file") if settings.cert_file else ("key_file", "cert_file")
            )
            raise loc.error(where(given), f"needs {missing} as well")


def _listed(names: list[str]) -> str:
    if len(names) == 1:
        return f"{names[0]} is"
    return f"{', '.join(names[:-1])} and {names[-1]} are"


def _check_tls_roles(cfg: AgentConfig, loc: Locator, warnings: list[str]) -> None:
    rpc = cfg.tls.internal_rpc
    present = {
        "ca_file": rpc.ca_file or rpc.ca_path,
        "cert_file": rpc.cert_file,
        "key_file": rpc.key_file,
    }
    missing = [name for name, value in present.items() if not value]
    if missing and not cfg.dev:
        if cfg.server:
            reason = (
                f"{_listed(missing)} required on a server (server RPC is mutual TLS only); "
                + _TLS_HINT
            )
            raise loc.error("tls.defaults", reason, like="server")
        text = f"{_listed(missing)} not set, but servers accept only mutual TLS"
        warnings.append(loc.warning("tls.defaults", text))
    https = cfg.tls.https
    if cfg.ports.https != -1 and not (https.cert_file and https.key_file):
        reason = "the HTTPS listener needs tls.https (or tls.defaults) cert_file and key_file"
        raise loc.error("ports.https", reason)


def _check_ca(cfg: AgentConfig, loc: Locator) -> None:
    ca = cfg.connect.ca_config
    prefix = "connect.ca_config."
    if not HOUR <= ca.leaf_cert_ttl <= 8760 * HOUR:
        raise loc.error(prefix + "leaf_cert_ttl", "must be between 1h and 8760h")
    if ca.intermediate_cert_ttl < 3 * ca.leaf_cert_ttl:
        least = format_duration(3 * ca.leaf_cert_ttl)
        reason = f"must be at least 3 times leaf_cert_ttl ({least})"
        raise loc.error(prefix + "intermediate_cert_ttl", reason, like=prefix + "leaf_cert_ttl")
    if ca.root_cert_ttl < ca.intermediate_cert_ttl:
        reason = "must not be shorter than intermediate_cert_ttl"
        raise loc.error(prefix + "root_cert_ttl", reason, like=prefix + "intermediate_cert_ttl")
    bits = ca.private_key_bits
    if ca.private_key_type == "ec" and bits not in (224, 256, 384, 521):
        raise loc.error(
            prefix + "private_key_bits", f"ec keys must be 224, 256, 384 or 521 bits, got {bits}"
        )
    if ca.private_key_type == "rsa" and not 2048 <= bits <= 8192:
        raise loc.error(
            prefix + "private_key_bits", f"rsa keys must be 2048 to 8192 bits, got {bits}"
        )


def _script_checks(layers: Sequence[Layer]) -> Iterator[tuple[Origin, str]]:
    # (origin, dotted key) of every script check a file defines.
    for layer in layers:
        data = layer.data
        for name in ("services", "service"):
            for i, service in enumerate(data.get(name, ())):
                base = f"{name}[{i}]" if name == "services" else name
                for j, check in enumerate(service.get("checks", ())):
                    if "args" in check:
                        yield layer.origin, f"{base}.checks[{j}].args"
        for name in ("checks", "check"):
            for i, check in enumerate(data.get(name, ())):
                if "args" in check:
                    yield layer.origin, (f"{name}[{i}]" if name == "checks" else name) + ".args"


def _check_scripts(
    cfg: AgentConfig, loc: Locator, layers: Sequence[Layer], warnings: list[str]
) -> None:
    if not (cfg.enable_script_checks or cfg.enable_local_script_checks):
        for origin, path in _script_checks(layers):
            reason = "script checks are disabled; set enable_local_script_checks = true to run them"
            raise origin.error(path, reason)
    if cfg.enable_script_checks and not cfg.acl.enabled:
        text = (
            "lets anyone who can reach the HTTP API run commands on this host; "
            "enable ACLs or use enable_local_script_checks instead"
        )
        warnings.append(loc.warning("enable_script_checks", text))


# Keys accepted for Consul compatibility that change nothing yet: one warning
# line each at startup, until they do something.
INERT_KEYS: Mapping[str, str] = {
    "telemetry.disable_hostname": "metrics carry no host name anyway",
    "telemetry.prometheus_retention_time": "?format=prometheus answers regardless",
    "ports.grpc": "meshd serves no gRPC/xDS listener",
}


def _warn_inert(loc: Locator, warnings: list[str]) -> None:
    for path, why in INERT_KEYS.items():
        if loc.set_by_user(path):
            warnings.append(loc.warning(path, f"has no effect yet ({why}); ignored"))


def validate(cfg: AgentConfig, origins: Mapping[str, Origin], layers: Sequence[Layer]) -> list[str]:
    """Check the rules that span keys; return warnings, raise ``ConfigError`` on the first error."""
    loc = Locator(origins)
    warnings: list[str] = []
    _check_roles(cfg, loc, warnings)
    _check_node(cfg, loc, warnings)
    _check_ports(cfg, loc)
    _check_tls_settings(cfg, loc)
    _check_tls_roles(cfg, loc, warnings)
    _check_ca(cfg, loc)
    _check_scripts(cfg, loc, layers, warnings)
    _warn_inert(loc, warnings)
    return warnings
