"""Merging sources in order, as Consul does (agent/config/merge.go).

Later sources win for scalars; lists (``retry_join``, ``recursors``,
``services``, ``checks``...) are appended; maps (``node_meta``,
``dns_config.service_ttl``) are updated key by key; sections merge
recursively. The result remembers which source set each key, so rules that
span keys can name the file to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshd.config.model import AgentConfig
from meshd.config.schema import Origin, extra_keys, file_keys, section_class

__all__ = ["Layer", "merge_layers"]


@dataclass(frozen=True)
class Layer:
    """One source's parsed values (see ``schema.normalize``) and where they came from."""

    origin: Origin
    data: Mapping[str, Any]


def _merge(
    acc: dict[str, Any],
    data: Mapping[str, Any],
    cls: type,
    origin: Origin,
    origins: dict[str, Origin],
    prefix: str,
) -> None:
    known, extras = file_keys(cls), extra_keys(cls)
    for name, value in data.items():
        if name not in known:  # an extra folded into a field (service -> services)
            target = extras[name].target
            assert target is not None, name
            name = target
        f, path = known[name], prefix + name
        sub = section_class(f)
        if sub is not None:
            _merge(acc.setdefault(name, {}), value, sub, origin, origins, path + ".")
            continue
        rule = f.metadata["merge"]
        if rule == "append":
            acc[name] = (*acc.get(name, ()), *value)
        elif rule == "update":
            acc[name] = {**acc.get(name, {}), **value}
        else:
            acc[name] = value
        origins[path] = origin


def merge_layers(layers: list[Layer]) -> tuple[dict[str, Any], dict[str, Origin]]:
    """Merge parsed layers in order; return the values and the origin of each dotted key."""
    merged: dict[str, Any] = {}
    origins: dict[str, Origin] = {}
    for layer in layers:
        _merge(merged, layer.data, AgentConfig, layer.origin, origins, "")
    return merged, origins
