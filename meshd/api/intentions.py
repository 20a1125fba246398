"""/v1/connect/intentions/* and /v1/agent/connect/authorize.

Follows Consul's agent/intentions_endpoint.go and agent/connect_auth.go
(https://developer.hashicorp.com/consul/api-docs/connect/intentions,
https://developer.hashicorp.com/consul/api-docs/agent/connect#authorize).

Both the ID-based (pre-1.9, "legacy") endpoints and the name-based ``exact``
ones are served; an intention's UUID is chosen here, at the API edge, so the
replicated command is deterministic. Status codes are Consul's: a duplicate
source/destination pair is a 500 ``duplicate intention found: ...`` (the
Consul UI matches on that status and prefix), a missing intention a 404
``Intention not found``. Where Consul answers 500 for a write naming an
unknown ID (``Cannot modify non-existent intention``) meshd answers 404 with
the same text, and every invalid field is a 400 naming the field.

Only the default namespace and partition exist (Consul OSS): a
``Namespace``/``Partition`` or ``ns/name`` form naming another one is
refused with 400. ``/check`` and ``authorize`` fall back to
``connect.default_intention_policy`` when no intention matches.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from connect.errors import SpiffeError
from connect.l7.entries_intentions import SERVICE_INTENTIONS
from connect.spiffe import ServiceID, parse_spiffe_id
from registry.commands import IntentionDelete, IntentionUpsert
from registry.errors import ErrorCode
from registry.records import Intention

from ..agent.wire import ReadOptions, WriteResult
from ..errors import Internal, RequestError
from ..http import (
    BadRequest,
    JSONFields,
    NotFound,
    QueryOptions,
    Request,
    Response,
    Router,
    decode_json_body,
)
from .common import check_dc, read, read_options, with_meta
from .config_typed import check_graph, load_graph, parse_typed

if TYPE_CHECKING:
    from ..agent.agent import Agent

# Consul's structs.Intention as JSON. The indexes, times, precedence and hash
# are accepted (a GET body can be PUT back) and ignored.
INTENTION_FIELDS = JSONFields(
    (
        "ID",
        "Description",
        "SourceNS",
        "SourceName",
        "DestinationNS",
        "DestinationName",
        "SourcePartition",
        "DestinationPartition",
        "SourcePeer",
        "SourceSamenessGroup",
        "SourceType",
        "Action",
        "Permissions",
        "Meta",
        "Precedence",
        "CreatedAt",
        "UpdatedAt",
        "CreateIndex",
        "ModifyIndex",
        "Hash",
    )
)
AUTHORIZE_FIELDS = JSONFields(
    ("Target", "ClientCertURI", "ClientCertSerial", "Namespace", "Partition")
)
_TENANCY_FIELDS = ("SourceNS", "DestinationNS", "SourcePartition", "DestinationPartition")
_UNSUPPORTED_FIELDS = ("SourcePeer", "SourceSamenessGroup")
NOT_FOUND = "Intention not found"  # Consul's ErrIntentionNotFound
CA_NOT_READY = "Connect CA not bootstrapped yet"
DUPLICATE = "duplicate intention found"


def _decode_error(message: str, field: str) -> BadRequest:
    return BadRequest(f"Request decode failed: {message}", field)


def _str_field(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _decode_error(f"{key} must be a string", key)
    return value


def _meta(body: Mapping[str, Any]) -> dict[str, str]:
    raw = body.get("Meta")
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise _decode_error("Meta must be an object of strings", "Meta")
    return dict(raw)


def _permissions(body: Mapping[str, Any]) -> tuple[Any, ...]:
    raw = body.get("Permissions")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(p, dict) for p in raw):
        raise _decode_error("Permissions must be a list of objects", "Permissions")
    return tuple(raw)


def _default_tenancy(value: str, field: str) -> None:
    if value not in ("", "default"):
        kind = "Partitions" if "Partition" in field else "Namespaces"
        raise BadRequest(f"{kind} are a Consul Enterprise feature ({field} {value!r})", field)


def intention_from_body(body: Mapping[str, Any], intention_id: str, *, legacy: bool) -> Intention:
    """The ``Intention`` a request body describes, under ``intention_id``.

    ``legacy`` (the ID-based endpoints) refuses ``Permissions`` as Consul
    does. Raises ``BadRequest`` naming the field for a value of the wrong
    type, another namespace or partition, or an unsupported feature; the
    command's ``validate`` checks the rest (names, Action, Meta limits).
    """
    for key in _TENANCY_FIELDS:
        _default_tenancy(_str_field(body, key), key)
    for key in _UNSUPPORTED_FIELDS:
        if _str_field(body, key):
            raise BadRequest(f"{key} is not supported by meshd", key)
    permissions = _permissions(body)
    if legacy and permissions:
        raise BadRequest("cannot use legacy intention API to set permissions", "Permissions")
    return Intention(
        id=intention_id,
        source_name=_str_field(body, "SourceName"),
        destination_name=_str_field(body, "DestinationName"),
        source_type=_str_field(body, "SourceType") or "consul",
        action=_str_field(body, "Action").lower(),
        permissions=permissions,
        description=_str_field(body, "Description"),
        meta=_meta(body),
    )


def parse_target(text: str, param: str) -> str:
    """A service name from a query parameter, Consul's ``name``, ``ns/name``
    or ``partition/ns/name`` (parseIntentionStringComponent); raises
    ``BadRequest`` for more parts or a namespace/partition other than default."""
    parts = text.split("/")
    if len(parts) > 3:
        raise BadRequest(f"{param} {text!r} is invalid: input can contain at most two '/'", param)
    for tenancy, field in zip(parts[:-1][::-1], ("Namespace", "Partition"), strict=False):
        _default_tenancy(tenancy, field)
    return parts[-1]


def required_param(req: Request, name: str) -> str:
    """``?name=``, exactly once and non-empty; raises ``BadRequest`` as Consul words it."""
    values = req.query.get(name)
    if not values or len(values) != 1 or not values[0]:
        raise BadRequest(f"required query parameter '{name}' not set", name)
    return values[0]


def _intention_id(req: Request) -> str:
    raw = req.path_params["uuid"]
    try:
        parsed = uuid.UUID(raw)
    except ValueError:
        parsed = None
    if parsed is None or len(raw) != 36:
        raise BadRequest(f"Invalid intention ID {raw!r}: must be a UUID", "uuid")
    return raw


def _write_error(result: WriteResult, missing: str) -> RequestError:
    if result.error == ErrorCode.NOT_FOUND:
        return NotFound(missing)
    if result.error == ErrorCode.INVALID:
        return BadRequest(f"Invalid request: {result.message}")
    # CONFLICT (a duplicate pair) included: Consul answers 500 with the text.
    return Internal(result.message or str(result.error))


class IntentionWrites:
    """The replicated writes behind the endpoints (validated commands)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    async def upsert(self, ixn: Intention, missing: str = NOT_FOUND) -> WriteResult:
        """Validate and replicate ``ixn``; raises the HTTP error of a refusal."""
        cmd = IntentionUpsert(intention=ixn, now=time.time())
        cmd.validate()
        result = await self.agent.write(cmd)
        if not result.ok:
            raise _write_error(result, missing)
        return result

    async def delete(
        self, intention_id: str, missing: str = NOT_FOUND, pair: tuple[str, str] = ("", "")
    ) -> WriteResult:
        """Delete by ID, or by (source, destination) ``pair`` when the ID is
        empty; raises ``NotFound(missing)`` when there is no such intention."""
        cmd = IntentionDelete(id=intention_id, source=pair[0], destination=pair[1])
        cmd.validate()
        result = await self.agent.write(cmd)
        if not result.ok:
            raise _write_error(result, missing)
        return result

    async def lookup(self, name: str, args: Mapping[str, Any]) -> Any:
        """A non-blocking read's value (the current state before a write)."""
        return (await self.agent.read(name, args, ReadOptions())).value


async def _read_one(agent: Agent, req: Request, name: str, args: Mapping[str, Any]) -> Response:
    result, opts = await read(agent, req, name, args)
    if result.value is None:
        return with_meta(Response.text(NOT_FOUND, status=404), result)
    return with_meta(Response.json(result.value, pretty=opts.pretty), result)


async def _checked_permissions(
    agent: Agent, source: str, destination: str, ixn: Intention
) -> tuple[Any, ...]:
    """``ixn``'s Permissions validated and normalised as the source of a
    service-intentions entry (where they are stored), the destination's
    protocol included (Consul's graph check); raises ``BadRequest``."""
    source_json = {"Name": source, "Permissions": list(ixn.permissions)}
    entry = parse_typed(SERVICE_INTENTIONS, {"Name": destination, "Sources": [source_json]})
    graph, _ = await load_graph(agent)
    check_graph(agent, graph, [entry])
    sources: Any = entry.to_json().get("Sources") or [{}]
    return tuple(sources[0].get("Permissions") or ())


def _exact_pair(req: Request) -> tuple[str, str]:
    source = parse_target(required_param(req, "source"), "source")
    destination = parse_target(required_param(req, "destination"), "destination")
    return source, destination


def _default_allow(agent: Agent) -> bool:
    return agent.config.connect.default_intention_policy == "allow"


def register(router: Router, agent: Agent) -> None:
    """Add the /v1/connect/intentions routes and /v1/agent/connect/authorize."""
    writes = IntentionWrites(agent)

    async def list_all(req: Request) -> Response:
        result, opts = await read(agent, req, "intentions.list", {})
        return with_meta(Response.json(result.value or [], pretty=opts.pretty), result)

    async def create(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        body = decode_json_body(req, fields=INTENTION_FIELDS)
        if _str_field(body, "ID"):
            raise BadRequest("ID must be empty when creating a new intention", "ID")
        ixn = intention_from_body(body, str(uuid.uuid4()), legacy=True)
        await writes.upsert(ixn)
        return Response.json({"ID": ixn.id}, pretty=opts.pretty)

    async def get_by_id(req: Request) -> Response:
        return await _read_one(agent, req, "intentions.get", {"id": _intention_id(req)})

    async def update_by_id(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        intention_id = _intention_id(req)
        body = decode_json_body(req, fields=INTENTION_FIELDS)
        ixn = intention_from_body(body, intention_id, legacy=True)
        missing = f"Cannot modify non-existent intention: '{intention_id}'"
        if await writes.lookup("intentions.get", {"id": intention_id}) is None:
            raise NotFound(missing)
        await writes.upsert(ixn, missing)
        return Response.json({"ID": intention_id}, pretty=opts.pretty)

    async def delete_by_id(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        intention_id = _intention_id(req)
        await writes.delete(intention_id, f"Cannot delete non-existent intention: '{intention_id}'")
        return Response.json(True, pretty=opts.pretty)

    async def get_exact(req: Request) -> Response:
        source, destination = _exact_pair(req)
        args = {"source": source, "destination": destination}
        return await _read_one(agent, req, "intentions.exact", args)

    async def put_exact(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        source, destination = _exact_pair(req)
        body = decode_json_body(req, fields=INTENTION_FIELDS)
        pair = {"source": source, "destination": destination}
        # The identity comes from the URL; the body's ID and names are ignored.
        ixn = intention_from_body(
            {**body, "SourceName": source, "DestinationName": destination}, "", legacy=False
        )
        if ixn.permissions:
            perms = await _checked_permissions(agent, source, destination, ixn)
            ixn = replace(ixn, permissions=perms)
        for attempt in range(2):
            existing = await writes.lookup("intentions.exact", pair)
            # An existing source keeps its LegacyID (or none: by name); a
            # new one gets an ID so the ID endpoints can address it too.
            ixn_id = existing["ID"] if existing else str(uuid.uuid4())
            try:
                await writes.upsert(replace(ixn, id=ixn_id))
                break
            except Internal as exc:
                # Another writer created the pair between our read and our
                # write: read it again and replace that one.
                if attempt or not exc.message.startswith(DUPLICATE):
                    raise
        return Response.json(True, pretty=opts.pretty)

    async def delete_exact(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        source, destination = _exact_pair(req)
        # Deleted concurrently (or never there) is the outcome the caller wanted.
        with suppress(NotFound):
            await writes.delete("", pair=(source, destination))
        return Response.json(True, pretty=opts.pretty)

    async def match(req: Request) -> Response:
        by = req.query.get("by")
        if not by or len(by) != 1:
            raise BadRequest("required query parameter 'by' not set", "by")
        if by[0] not in ("source", "destination"):
            raise BadRequest("'by' parameter must be one of 'source' or 'destination'", "by")
        names = req.query.get("name")
        if not names:
            raise BadRequest("required query parameter 'name' not set", "name")
        parsed = {raw: parse_target(raw, "name") for raw in names}
        args = {"by": by[0], "names": list(dict.fromkeys(parsed.values()))}
        result, opts = await read(agent, req, "intentions.match", args)
        body = {raw: result.value[name] for raw, name in parsed.items()}
        return with_meta(Response.json(body, pretty=opts.pretty), result)

    async def check(req: Request) -> Response:
        source_type = req.query_value("source-type", "consul")
        if source_type != "consul":
            raise BadRequest(f"source-type {source_type!r} is not supported", "source-type")
        source, destination = _exact_pair(req)
        args = {
            "source": source,
            "destination": destination,
            "default_allow": _default_allow(agent),
        }
        result, opts = await read(agent, req, "intentions.check", args)
        return with_meta(Response.json(result.value, pretty=opts.pretty), result)

    async def authorize(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        check_dc(agent, opts)
        body = decode_json_body(req, fields=AUTHORIZE_FIELDS)
        answer, result = await authorize_request(agent, body, opts)
        return with_meta(Response.json(answer, pretty=opts.pretty), result)

    router.add("GET", "/v1/connect/intentions", list_all, name="intentions.list")
    router.add("POST", "/v1/connect/intentions", create, name="intentions.create")
    router.add("GET", "/v1/connect/intentions/match", match, name="intentions.match")
    router.add("GET", "/v1/connect/intentions/check", check, name="intentions.check")
    router.add("GET", "/v1/connect/intentions/exact", get_exact, name="intentions.exact")
    router.add("PUT", "/v1/connect/intentions/exact", put_exact, name="intentions.exact")
    router.add("DELETE", "/v1/connect/intentions/exact", delete_exact, name="intentions.exact")
    router.add("GET", "/v1/connect/intentions/:uuid", get_by_id, name="intentions.id")
    router.add("PUT", "/v1/connect/intentions/:uuid", update_by_id, name="intentions.id")
    router.add("DELETE", "/v1/connect/intentions/:uuid", delete_by_id, name="intentions.id")
    router.add("POST", "/v1/agent/connect/authorize", authorize, name="agent.connect.authorize")


async def authorize_request(
    agent: Agent, body: Mapping[str, Any], opts: QueryOptions
) -> tuple[dict[str, Any], Any]:
    """Consul's ``ConnectAuthorize`` for a decoded request body: returns
    ``({"Authorized", "Reason"}, read result)``.

    Raises ``BadRequest`` for a missing Target or a ClientCertURI that is not
    a service SPIFFE ID, and ``Internal`` while the CA has no trust
    domain yet. An identity from another trust domain is not authorized
    (reason given; Consul 1.2's check); otherwise the highest-precedence
    intention for Target that applies to the identity's namespace and name
    decides, or ``connect.default_intention_policy``.
    """
    target = _str_field(body, "Target")
    if not target:
        raise BadRequest("Target service must be specified", "Target")
    for key in ("Namespace", "Partition"):
        _default_tenancy(_str_field(body, key), key)
    uri = _str_field(body, "ClientCertURI")
    try:
        ident = parse_spiffe_id(uri)
    except SpiffeError as exc:
        raise BadRequest(
            f"ClientCertURI not a valid Connect identifier: {exc}", "ClientCertURI"
        ) from None
    if not isinstance(ident, ServiceID):
        raise BadRequest("ClientCertURI not a valid Service identifier", "ClientCertURI")
    args = {
        "source": ident.service,
        "source_ns": ident.namespace,
        "destination": target,
        "default_allow": _default_allow(agent),
    }
    # A POST never blocks; only the consistency mode of the query applies.
    result = await agent.read(
        "intentions.decide", args, ReadOptions(consistency=read_options(opts).consistency)
    )
    decision = result.value
    trust_domain = decision["TrustDomain"]
    if not trust_domain:
        raise Internal(CA_NOT_READY)
    if trust_domain.lower() != ident.trust_domain.lower():
        reason = f"Identity from an external trust domain: {ident.trust_domain}"
        return {"Authorized": False, "Reason": reason}, result
    return {"Authorized": bool(decision["Allowed"]), "Reason": decision["Reason"]}, result
