"""Service and check definitions in the agent configuration (``services``, ``checks``).

They are kept as the dicts the file holds, with Consul's snake_case keys,
after a light validation: known keys only, the right types, a service has a
name, a check has exactly one kind and, when it runs periodically, an
interval. Durations stay strings (``"10s"``) because that is how they are
registered through the API (https://developer.hashicorp.com/consul/docs/
services/configuration/services-configuration-reference).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import Any

from meshd.config.values import (
    Invalid,
    Parser,
    boolean,
    child_key,
    choice,
    duration,
    integer,
    list_of,
    map_of,
    node_meta_key,
    obj,
    secret,
    string,
)

__all__ = ["check_definition", "service_definition"]

_text = string()
_strings = list_of(string(empty=True, max_len=1024))
_count = integer(0)


def _duration_text(value: object) -> str:
    duration()(value)  # validate, keep Consul's text form
    return str(value)


_CHECK_KEYS: Mapping[str, Parser] = {
    "id": _text,
    "check_id": _text,
    "name": _text,
    "notes": string(empty=True),
    "service_id": _text,
    "token": secret,
    "status": choice("passing", "warning", "critical"),
    "args": list_of(string(empty=True), max_items=256),
    "http": _text,
    "header": map_of(_strings),
    "method": _text,
    "body": string(empty=True, max_len=65536),
    "disable_redirects": boolean,
    "tcp": _text,
    "tcp_use_tls": boolean,
    "udp": _text,
    "grpc": _text,
    "grpc_use_tls": boolean,
    "h2ping": _text,
    "h2ping_use_tls": boolean,
    "tls_server_name": _text,
    "tls_skip_verify": boolean,
    "os_service": _text,
    "docker_container_id": _text,
    "shell": _text,
    "alias_node": _text,
    "alias_service": _text,
    "ttl": _duration_text,
    "interval": _duration_text,
    "timeout": _duration_text,
    "deregister_critical_service_after": _duration_text,
    "success_before_passing": _count,
    "failures_before_critical": _count,
    "failures_before_warning": _count,
    "output_max_size": integer(1),
}

# Check kinds that run on a timer and so need an interval.
_PERIODIC = ("args", "http", "tcp", "udp", "grpc", "h2ping", "os_service", "docker_container_id")
_KINDS_TEXT = "args, http, tcp, udp, grpc, h2ping, os_service, ttl or alias_service/alias_node"


def _fields(value: object, known: Mapping[str, Parser], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{what} must be an object, got {json.dumps(value, default=str)[:60]}")
    out: dict[str, Any] = {}
    for key, element in value.items():
        if element is None:
            continue
        parser = known.get(key)
        if parser is None:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            raise Invalid(f"unknown key{hint}", child_key(key))
        try:
            out[key] = _plain(parser(element))
        except Invalid as err:
            raise err.under(child_key(key)) from None
    return out


def _plain(value: Any) -> Any:
    # Parsers return tuples for lists; these dicts stay JSON-shaped.
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _check_kind(check: Mapping[str, Any]) -> str:
    kinds = []
    if "docker_container_id" in check:
        if "args" not in check:
            raise Invalid("docker checks need args (the command to run in the container)")
        kinds.append("docker_container_id")
    elif "args" in check:
        kinds.append("args")
    kinds += [
        k for k in ("http", "tcp", "udp", "grpc", "h2ping", "os_service", "ttl") if k in check
    ]
    if "alias_service" in check or "alias_node" in check:
        kinds.append("alias")
    if len(kinds) != 1:
        found = f" (found {', '.join(kinds)})" if kinds else ""
        raise Invalid(f"a check needs exactly one of {_KINDS_TEXT}{found}")
    return kinds[0]


def _check(value: object, *, top_level: bool) -> dict[str, Any]:
    check = _fields(value, _CHECK_KEYS, "a check")
    if top_level and "name" not in check:
        raise Invalid("required", ".name")
    if not top_level and "service_id" in check:
        raise Invalid("not allowed in a service's own checks", ".service_id")
    kind = _check_kind(check)
    if kind in _PERIODIC and "interval" not in check:
        raise Invalid(f"required for {kind} checks", ".interval")
    if kind == "ttl" and "interval" in check:
        raise Invalid("ttl checks take no interval", ".interval")
    return check


def check_definition(value: object) -> dict[str, Any]:
    """A top-level check (``checks`` / ``check``): it must have a name."""
    return _check(value, top_level=True)


def _service_check(value: object) -> dict[str, Any]:
    return _check(value, top_level=False)


def _one_or_many_checks(value: object) -> Any:
    # HCL repeats the block (check { } check { }): a list of checks.
    if isinstance(value, list):
        return list_of(_service_check, max_items=64)(value)
    return _service_check(value)


def _weights(value: object) -> dict[str, Any]:
    known = {"passing": integer(1, 65535), "warning": integer(0, 65535)}
    return _fields(value, known, "weights")


_SERVICE_KEYS: Mapping[str, Parser] = {
    "id": _text,
    "name": string(max_len=256),
    "kind": choice("", "connect-proxy"),
    "tags": list_of(string(max_len=256), max_items=256),
    "address": string(max_len=256),
    "tagged_addresses": obj,
    "meta": map_of(string(max_len=512, empty=True), key=node_meta_key, max_keys=64),
    "port": integer(0, 65535),
    "socket_path": _text,
    "enable_tag_override": boolean,
    "token": secret,
    "weights": _weights,
    "proxy": obj,
    "connect": obj,
    "check": _one_or_many_checks,
    "checks": list_of(_service_check, max_items=64),
}


def service_definition(value: object) -> dict[str, Any]:
    """A service (``services`` / ``service``); ``check`` is folded into ``checks``."""
    service = _fields(value, _SERVICE_KEYS, "a service")
    if "name" not in service:
        raise Invalid("required", ".name")
    single = service.pop("check", None)
    if single is not None:
        first = single if isinstance(single, list) else [single]
        service["checks"] = [*first, *service.get("checks", [])]
    return service
