"""Typed, validated Consul config entries: parse from JSON, write back.

``parse_entry(data)`` decodes one entry of the six L7 kinds from the JSON
body of ``PUT /v1/config`` (CamelCase or snake_case keys, as Consul's
decoder accepts) and validates it on its own, raising ValidationError with
Consul's text. Graph checks across entries (protocols, subsets, loops) are
``connect.l7.chain.validate_entries``. Every entry has ``kind``, ``name``
and ``to_json()``, which gives Consul's JSON shape (without the
CreateIndex/ModifyIndex, which the store adds).

The kinds live in entries_defaults, entries_routing, entries_resolver and
entries_intentions; this module only dispatches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

from connect.l7.decode import JSON, ChainError, DecodeError, Fields, ValidationError
from connect.l7.entries_defaults import (
    PROXY_DEFAULTS,
    SERVICE_DEFAULTS,
    ProxyDefaultsEntry,
    ServiceDefaultsEntry,
    parse_proxy_defaults,
    parse_service_defaults,
)
from connect.l7.entries_intentions import (
    SERVICE_INTENTIONS,
    ServiceIntentionsEntry,
    parse_service_intentions,
)
from connect.l7.entries_resolver import (
    SERVICE_RESOLVER,
    FilterValidator,
    ServiceResolverEntry,
    parse_service_resolver,
)
from connect.l7.entries_routing import (
    SERVICE_ROUTER,
    SERVICE_SPLITTER,
    ServiceRouterEntry,
    ServiceSplitterEntry,
    parse_service_router,
    parse_service_splitter,
)

ConfigEntry = Union[  # noqa: UP007 - a runtime alias, kept readable
    ServiceDefaultsEntry,
    ProxyDefaultsEntry,
    ServiceRouterEntry,
    ServiceSplitterEntry,
    ServiceResolverEntry,
    ServiceIntentionsEntry,
]

KINDS = (
    SERVICE_DEFAULTS,
    PROXY_DEFAULTS,
    SERVICE_ROUTER,
    SERVICE_SPLITTER,
    SERVICE_RESOLVER,
    SERVICE_INTENTIONS,
)

_PARSERS: dict[str, Callable[[Fields], ConfigEntry]] = {
    SERVICE_DEFAULTS: parse_service_defaults,
    PROXY_DEFAULTS: parse_proxy_defaults,
    SERVICE_ROUTER: parse_service_router,
    SERVICE_SPLITTER: parse_service_splitter,
    SERVICE_INTENTIONS: parse_service_intentions,
}

__all__ = [
    "KINDS",
    "PROXY_DEFAULTS",
    "SERVICE_DEFAULTS",
    "SERVICE_INTENTIONS",
    "SERVICE_RESOLVER",
    "SERVICE_ROUTER",
    "SERVICE_SPLITTER",
    "ChainError",
    "ConfigEntry",
    "DecodeError",
    "FilterValidator",
    "ProxyDefaultsEntry",
    "ServiceDefaultsEntry",
    "ServiceIntentionsEntry",
    "ServiceResolverEntry",
    "ServiceRouterEntry",
    "ServiceSplitterEntry",
    "ValidationError",
    "parse_entry",
]


def parse_entry(
    data: JSON, *, filter_validator: FilterValidator | None = None, stored: bool = False
) -> ConfigEntry:
    """Decode and validate one config entry from its JSON (a dict).

    ``filter_validator`` checks service-resolver subset filters (meshd's
    filter language; raise ValueError with the reason). Raises
    ValidationError for an unknown kind (``invalid config entry kind: x``),
    an unknown key, a wrongly typed value or any of Consul's per-entry
    validation failures; DecodeError (a ValidationError) when the JSON
    itself does not decode (Consul's 400 "Request decoding failed: ...").
    ``stored``: the entry is read back from the registry, not written (a
    service-intentions source may carry its ``Legacy*`` fields). Pure; no I/O.
    """
    f = Fields(data, "")
    raw_kind = f.raw("Kind")
    if raw_kind is None:
        raise DecodeError("Kind", "Payload does not contain a kind/Kind key at the top level")
    if not isinstance(raw_kind, str):
        raise DecodeError("Kind", "Kind value in payload is not a string")
    kind = raw_kind
    if kind == SERVICE_RESOLVER:
        return parse_service_resolver(f, filter_validator)
    if kind == SERVICE_INTENTIONS:
        return parse_service_intentions(f, stored=stored)
    parser = _PARSERS.get(kind)
    if parser is None:
        raise DecodeError("Kind", f"invalid config entry kind: {kind}")
    return parser(f)


def entry_key(entry: ConfigEntry) -> tuple[str, str]:
    """``(kind, name)``: how the store and the chain compiler address an entry."""
    return entry.kind, entry.name


def describe(entry: ConfigEntry) -> str:
    """``service-router/web``, as Consul's CLI names entries."""
    return f"{entry.kind}/{entry.name}"
