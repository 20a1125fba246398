"""Deprecated Consul keys, mapped to their current names with a warning.

Follows Consul's agent/config/deprecated.go: when a file sets both the old
and the new key, the new one wins; either way the old key is reported.
``acl_datacenter`` also turns ACLs on, as it did in Consul.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from meshd.config.model import AgentConfig
from meshd.config.schema import Origin, field_at
from meshd.config.values import Invalid

__all__ = ["DEPRECATED_KEYS", "apply_deprecated"]

# Old dotted key -> current dotted key. Nested renames first: they are newer
# than the top-level legacy keys, so they win when a file has both.
DEPRECATED_KEYS: Mapping[str, str] = {
    "acl.tokens.master": "acl.tokens.initial_management",
    "acl.tokens.agent_master": "acl.tokens.agent_recovery",
    "acl_datacenter": "primary_datacenter",
    "acl_default_policy": "acl.default_policy",
    "acl_down_policy": "acl.down_policy",
    "acl_ttl": "acl.token_ttl",
    "acl_token": "acl.tokens.default",
    "acl_agent_token": "acl.tokens.agent",
    "acl_master_token": "acl.tokens.initial_management",
    "acl_agent_master_token": "acl.tokens.agent_recovery",
    "acl_replication_token": "acl.tokens.replication",
    "ca_file": "tls.defaults.ca_file",
    "ca_path": "tls.defaults.ca_path",
    "cert_file": "tls.defaults.cert_file",
    "key_file": "tls.defaults.key_file",
    "tls_min_version": "tls.defaults.tls_min_version",
    "verify_incoming": "tls.defaults.verify_incoming",
    "verify_incoming_rpc": "tls.internal_rpc.verify_incoming",
    "verify_incoming_https": "tls.https.verify_incoming",
    "verify_outgoing": "tls.defaults.verify_outgoing",
    "verify_server_hostname": "tls.internal_rpc.verify_server_hostname",
    "ui": "ui_config.enabled",
}

# The top-level tls_min_version took "tls12"; tls.*.tls_min_version takes "TLSv1_2".
_OLD_TLS_VERSIONS = {"tls10": "TLSv1_0", "tls11": "TLSv1_1", "tls12": "TLSv1_2", "tls13": "TLSv1_3"}
_TRANSFORMS: Mapping[str, Callable[[Any], Any]] = {
    "tls_min_version": lambda v: _OLD_TLS_VERSIONS.get(v, v) if isinstance(v, str) else v,
}


def _pop(data: dict[str, Any], path: str) -> tuple[bool, Any]:
    *parents, leaf = path.split(".")
    node: Any = data
    for name in parents:
        node = node.get(name)
        if not isinstance(node, dict):
            return False, None
    if leaf not in node:
        return False, None
    return True, node.pop(leaf)


def _set_default(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node: Any = data
    for name in parents:
        node = node.setdefault(name, {})
        if not isinstance(node, dict):
            return  # a type error the schema check reports
    if node.get(leaf) is None:
        node[leaf] = value


def apply_deprecated(raw: Mapping[str, Any], origin: Origin, warnings: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with deprecated keys moved to their current names.

    Adds one warning per deprecated key found. A bad value under an old key
    raises ``ConfigError`` naming the old key.
    """
    data = copy.deepcopy(dict(raw))
    for old, new in DEPRECATED_KEYS.items():
        found, value = _pop(data, old)
        if not found:
            continue
        warnings.append(origin.warning(old, f"deprecated; use {new} instead"))
        if value is None:
            continue
        value = _TRANSFORMS.get(old, lambda v: v)(value)
        try:
            field_at(AgentConfig, new).metadata["parse"](value)
        except Invalid as err:
            raise origin.error(old + err.suffix, err.reason) from None
        _set_default(data, new, value)
        if old == "acl_datacenter":
            _set_default(data, "acl.enabled", True)
    return data
