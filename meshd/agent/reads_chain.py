"""The registry read behind /v1/discovery-chain/:service (Consul's
``DiscoveryChain.Get``).

The chain is compiled inside the read from every stored config entry, so a
blocking query (``?index=``) wakes on any config-entry write: Consul watches
the config-entries table the same way (agent/consul/discovery_chain_endpoint.go).
Entries are stored as written; one that no longer parses is left out of the
graph rather than failing every chain.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from connect.l7.chain import compile_chain, parse_overrides
from connect.l7.chain_validate import EntrySet
from connect.l7.decode import ValidationError
from connect.l7.entries import ConfigEntry, parse_entry
from registry import queries as q
from registry.state.store import StateStore
from registry.state.watch import WatchSet

log = logging.getLogger(__name__)

JSON = Any


def _entry_json(kind: str, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return {**body, "Kind": kind, "Name": name}


def stored_entries(store: StateStore, ws: WatchSet | None) -> tuple[int, list[ConfigEntry]]:
    """Every stored config entry decoded by ``parse_entry`` (undecodable ones skipped)."""
    idx, records = q.config_entry_list(store, ws, None)
    out: list[ConfigEntry] = []
    for rec in records:
        try:
            out.append(parse_entry(_entry_json(rec.kind, rec.name, rec.body), stored=True))
        except ValidationError as exc:
            log.debug("event=config_entry_skipped entry=%s/%s error=%r", rec.kind, rec.name, exc)
    return idx, out


def discovery_chain(
    store: StateStore, ws: WatchSet | None, a: Mapping[str, Any]
) -> tuple[int, JSON]:
    """``{"Chain": ...}`` for ``a["name"]``, or ``{"Error": text}`` when the
    graph does not compile (the handler answers 500 with it, as Consul)."""
    idx, entries = stored_entries(store, ws)
    _, roots = q.ca_roots(store, ws)
    trust_domain = roots.trust_domain or "consul"
    overrides = parse_overrides(a.get("overrides"))
    try:
        chain = compile_chain(
            str(a["name"]), EntrySet.of(entries), str(a["datacenter"]), trust_domain, overrides
        )
    except ValidationError as exc:
        return idx, {"Error": str(exc)}
    return idx, {"Chain": chain.to_json()}


CHAIN_READS = {"discovery_chain": discovery_chain}
