"""Typed validation of config entries at the /v1/config edge.

The six L7 kinds (connect.l7.entries.KINDS) are decoded and validated with
``parse_entry`` and stored in their normalised form (``to_json()``: snake_case
input is stored CamelCase, as Consul's decoder normalises). A write or
delete is then checked against the whole graph of stored entries with
``validate_entries``, refusing one that would break any discovery chain with
Consul's graph error text (agent/consul/state/config_entry.go,
``validateProposedConfigEntryInGraph``). Other kinds (gateways, mesh, ...)
pass through unchanged.

Consul answers 400 ``Request decoding failed: ...`` for a body that does not
decode and 500 for its Validate() and graph errors; meshd answers those with
400 too (bad input is never a 5xx), keeping Consul's text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from connect.l7.chain_validate import EntrySet, validate_entries
from connect.l7.decode import DecodeError, ValidationError
from connect.l7.entries import KINDS, ConfigEntry, parse_entry
from registry.records import ConfigEntry as StoredEntry

from ..filter import FilterError, compile_filter
from ..http import BadRequest
from ..wire import ReadOptions
from . import ports


class Ports(ports.Registry, ports.RawReads, Protocol):
    """What this module needs from the agent."""


TYPED_KINDS = frozenset(KINDS)
# Fields a GET answer carries that a PUT body may repeat; the store sets them.
_IGNORED = frozenset({"createindex", "modifyindex", "hash"})
_NAMES = frozenset({"kind", "name"})


def check_filter(expression: str) -> None:
    """service-resolver ``Subsets[].Filter``: meshd's filter language.
    Raises ValueError with the reason, as ``parse_entry`` expects."""
    try:
        compile_filter(expression)
    except FilterError as exc:
        raise ValueError(str(exc)) from None


def _refusal(exc: ValidationError, prefix: str = "") -> BadRequest:
    if isinstance(exc, DecodeError):
        return BadRequest(f"{prefix}Request decoding failed: {exc.message}", exc.field or None)
    return BadRequest(f"{prefix}{exc.message}", exc.field or None)


def parse_typed(
    kind: str, body: Mapping[str, Any], prefix: str = "", *, stored: bool = False
) -> ConfigEntry:
    """The typed entry a PUT body describes (``kind`` already normalised),
    or a ``stored`` one read back (see ``parse_entry``).

    Raises ``BadRequest`` with Consul's text (prefixed by ``prefix``).
    """
    data = {k: v for k, v in body.items() if k.lower() not in _IGNORED}
    data = {**{k: v for k, v in data.items() if k.lower() != "kind"}, "Kind": kind}
    try:
        return parse_entry(data, filter_validator=check_filter, stored=stored)
    except ValidationError as exc:
        raise _refusal(exc, prefix) from None


def stored_form(entry: ConfigEntry) -> StoredEntry:
    """The record to store: Consul's CamelCase JSON past Kind and Name."""
    body = {k: v for k, v in entry.to_json().items() if k.lower() not in _NAMES}
    return StoredEntry(entry.kind, entry.name, body)


async def load_graph(agent: Ports) -> tuple[EntrySet, int]:
    """Every stored entry of the typed kinds and the config-entries index.

    Reads the whole graph (not filtered by the caller's token: a chain may
    read entries the caller cannot see, as Consul's state store does). A
    stored entry that no longer parses (written before typing) is left out.
    """
    result = await agent.read_unfiltered("config.list", {}, ReadOptions())
    entries: list[ConfigEntry] = []
    for raw in result.value or []:
        if isinstance(raw, Mapping) and raw.get("Kind") in TYPED_KINDS:
            try:
                entries.append(parse_typed(str(raw["Kind"]), raw, stored=True))
            except BadRequest:
                continue
    return EntrySet.of(entries), int(result.index)


def check_graph(
    agent: Ports,
    graph: EntrySet,
    writes: Iterable[ConfigEntry] = (),
    deletes: Iterable[tuple[str, str]] = (),
) -> None:
    """Raise ``BadRequest`` with Consul's graph error if applying ``writes``
    and ``deletes`` to ``graph`` would break a discovery chain."""
    try:
        validate_entries(graph, writes, deletes, datacenter=agent.datacenter)
    except ValidationError as exc:
        raise _refusal(exc) from None
