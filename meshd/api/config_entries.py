"""/v1/config: config entries (https://developer.hashicorp.com/consul/api-docs/config).

Follows Consul's agent/config_endpoint.go:

* ``PUT /v1/config`` answers bare ``true``/``false``; ``?cas=N`` writes only
  when the entry's ModifyIndex is N (``cas=0``: only when there is none yet),
  and a failed check-and-set answers ``false`` with 200.
* ``GET /v1/config/:kind/:name`` answers the entry with ``CreateIndex`` and
  ``ModifyIndex``, or 404 ``Config entry not found for "kind" / "name"``;
  ``GET /v1/config/:kind`` lists that kind (``[]`` when there is none). Both
  block with ``?index=``/``?wait=`` and send ``X-Consul-Index``.
* ``DELETE /v1/config/:kind/:name`` answers ``{}``; with ``?cas=N`` it
  answers ``true``/``false`` (Consul returns the boolean only for CAS
  deletes, for backwards compatibility).

The six L7 kinds are typed and validated (Consul's texts, 400) and stored
normalised; a write or delete that would break a discovery chain is refused
with Consul's graph error (config_typed). A write without ``?cas=`` is
stored by a ConfigEntryBatch guarded by the index of the graph it was
checked against (re-checked if another write landed in between), as
Consul checks inside its state-store transaction. Other kinds are stored
as given.

meshd extension: ``PUT /v1/internal/config/batch`` takes a JSON array of
entries and stores them all or none, in one Raft command, after validating
them as one graph (so "protocol then router" never fails half-way; Consul
has no such write, hashicorp/consul#6247). It answers ``true``; each entry
needs the ACL rights its single PUT needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connect.l7.entries import ConfigEntry as TypedEntry
from registry.commands import (
    CONFIG_ENTRY_KINDS,
    MAX_CONFIG_BATCH,
    ConfigEntryBatch,
    ConfigEntryRequest,
)
from registry.errors import ErrorCode
from registry.records import ConfigEntry

from ..errors import Conflict, Internal
from ..http import BadRequest, NotFound, Request, Response, Router, decode_json_body
from .common import json_response, read, with_meta
from .config_typed import TYPED_KINDS, check_graph, load_graph, parse_typed, stored_form

if TYPE_CHECKING:
    from ..agent.agent import Agent

NOT_FOUND = "Config entry not found"  # Consul's ConfigEntryNotFoundErr
# A batch validated against a graph that changed before it applied is
# re-validated; past this many tries the writers are told to retry.
_BATCH_TRIES = 5
# Accepted from a GET body being PUT back; the indexes are the store's.
_IGNORED = ("CreateIndex", "ModifyIndex", "Hash")


def _cas(req: Request) -> int | None:
    raw = req.query_value("cas")
    if raw == "":
        return None
    if not raw.isdigit():
        raise BadRequest(f"Invalid cas value {raw!r}: must be an unsigned integer", "cas")
    return int(raw)


def _kind(raw: str) -> str:
    kind = raw.lower()
    if kind not in CONFIG_ENTRY_KINDS:
        raise BadRequest(f"invalid config entry kind: {raw}", "Kind")
    return kind


def entry_from_body(body: Any) -> ConfigEntry:
    """The ``ConfigEntry`` a PUT body describes. Raises ``BadRequest``
    (Consul's ``Request decoding failed: ...``) naming the field."""
    if not isinstance(body, Mapping):
        raise BadRequest("Request decoding failed: body must be a JSON object")
    fields = {k.lower(): k for k in body}
    kind_raw, name = body.get(fields.get("kind", "Kind")), body.get(fields.get("name", "Name"))
    if not isinstance(kind_raw, str) or not kind_raw:
        raise BadRequest("Request decoding failed: Payload does not contain a Kind key", "Kind")
    if not isinstance(name, str):
        raise BadRequest("Request decoding failed: Name must be a string", "Name")
    kind = _kind(kind_raw)
    skip = {"kind", "name", *(k.lower() for k in _IGNORED)}
    rest = {k: v for k, v in body.items() if k.lower() not in skip}
    return ConfigEntry(kind, name, rest)


def _bool_result(ok: bool, error: str | None, message: str) -> Response:
    if ok:
        return Response.json(True)
    if error is None or error == ErrorCode.CAS_CONFLICT:
        return Response.json(False)
    if error == ErrorCode.INVALID:
        raise BadRequest(f"Invalid request: {message}")
    raise Internal(message or str(error))


def register(router: Router, agent: Agent) -> None:
    """Add the /v1/config routes to the one route table."""

    async def apply(req: Request) -> Response:
        body = decode_json_body(req)
        entry = entry_from_body(body)
        cas = _cas(req)
        if entry.kind in TYPED_KINDS:
            typed = parse_typed(entry.kind, body)
            if cas is None:
                # Validated and stored against the same graph (the guard).
                return await validated_write([typed], (stored_form(typed),))
            graph, _ = await load_graph(agent)
            check_graph(agent, graph, [typed])
            entry = stored_form(typed)
        op = "upsert" if cas is None else "upsert-cas"
        result = await agent.write(ConfigEntryRequest(op=op, entry=entry, cas=cas or 0))
        return _bool_result(result.ok, result.error, result.message)

    async def get_one(req: Request) -> Response:
        kind, name = req.path_params["kind"], req.path_params["name"]
        result, opts = await read(agent, req, "config.get", {"kind": kind.lower(), "name": name})
        if result.value is None:
            text = f"{NOT_FOUND} for {_quote(kind)} / {_quote(name)}"
            return with_meta(Response.text(text, status=404), result)
        return json_response(result.value, result, opts)

    async def list_kind(req: Request) -> Response:
        kind = _kind(req.path_params["kind"])
        result, opts = await read(agent, req, "config.list", {"kind": kind})
        return json_response(result.value or [], result, opts)

    async def delete(req: Request) -> Response:
        kind, name = _kind(req.path_params["kind"]), req.path_params["name"]
        if not name:
            raise NotFound("Must provide both a kind and name to delete")
        cas = _cas(req)
        if kind in TYPED_KINDS:
            graph, _ = await load_graph(agent)
            if graph.get(kind, name) is not None:
                check_graph(agent, graph, deletes=[(kind, name)])
        op = "delete" if cas is None else "delete-cas"
        cmd = ConfigEntryRequest(op=op, entry=ConfigEntry(kind, name), cas=cas or 0)
        result = await agent.write(cmd)
        if cas is None:
            if not result.ok:
                _bool_result(False, result.error or ErrorCode.INVALID, result.message)
            return Response.json({})
        return _bool_result(result.ok, result.error, result.message)

    async def validated_write(
        typed: list[TypedEntry], entries: tuple[ConfigEntry, ...]
    ) -> Response:
        """Check ``typed`` against the stored graph and store ``entries`` in
        one command that applies only if the graph has not changed since."""
        for _ in range(_BATCH_TRIES):
            graph, index = await load_graph(agent)
            check_graph(agent, graph, typed)
            result = await agent.write(ConfigEntryBatch(entries=entries, index=index))
            if result.ok or result.error != ErrorCode.CAS_CONFLICT:
                return _bool_result(result.ok, result.error, result.message)
        raise Conflict("config entries kept changing during the write; retry")

    async def batch(req: Request) -> Response:
        typed, entries = _batch_entries(decode_json_body(req))
        return await validated_write(typed, entries)

    router.add("PUT", "/v1/config", apply, name="config.apply")
    router.add("PUT", "/v1/internal/config/batch", batch, name="config.batch")
    router.add("GET", "/v1/config/:kind", list_kind, name="config.list")
    router.add("GET", "/v1/config/:kind/*name", get_one, name="config.get")
    router.add("DELETE", "/v1/config/:kind/*name", delete, name="config.delete")


def _batch_entries(body: Any) -> tuple[list[TypedEntry], tuple[ConfigEntry, ...]]:
    """The typed entries (for the graph check) and the records to store of a
    batch body. Raises ``BadRequest`` naming the entry (``Entries[i]``)."""
    if not isinstance(body, list) or not body:
        raise BadRequest("Request decoding failed: body must be a non-empty JSON array", "Entries")
    if len(body) > MAX_CONFIG_BATCH:
        raise BadRequest(f"too many entries (max {MAX_CONFIG_BATCH})", "Entries")
    typed: list[TypedEntry] = []
    entries: list[ConfigEntry] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(body):
        prefix = f"Entries[{i}]: "
        try:
            entry = entry_from_body(item)
        except BadRequest as exc:
            raise BadRequest(prefix + exc.message, exc.field) from None
        if (entry.kind, entry.name) in seen:
            text = f"{prefix}duplicate config entry {entry.kind}/{entry.name}"
            raise BadRequest(text, "Entries")
        seen.add((entry.kind, entry.name))
        if entry.kind in TYPED_KINDS:
            typed.append(parse_typed(entry.kind, item, prefix))
            entry = stored_form(typed[-1])
        entries.append(entry)
    return typed, tuple(entries)


def _quote(text: str) -> str:
    """Go's %q for the plain names config entries have."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
