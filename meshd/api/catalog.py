"""/v1/catalog/* (https://developer.hashicorp.com/consul/api-docs/catalog)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from registry.commands import DeregisterRequest, RegisterRequest
from registry.errors import ValidationError
from registry.records import HealthCheck, ServiceInstance

from .. import filter_schemas
from ..defs.definitions import parse_service
from ..defs.field_rules import (
    ADDRESS_MAX,
    CHECK_RULES,
    NAME_MAX,
    Rule,
    array,
    boolean,
    check_fields,
    obj,
    string,
    string_map,
)
from ..defs.json_bounds import check_json_value
from ..filter import Schema, compile_filter
from ..http import QueryOptions, Request, Response, decode_json_body
from .common import NULL, check_dc, read_json

if TYPE_CHECKING:
    from .ports import Registry

REGISTER_FIELDS = (
    "ID",
    "Node",
    "Address",
    "Datacenter",
    "TaggedAddresses",
    "NodeMeta",
    "Service",
    "Check",
    "Checks",
    "SkipNodeUpdate",
    "Namespace",
    "Partition",
    "Locality",
)
DEREGISTER_FIELDS = ("Node", "Datacenter", "CheckID", "ServiceID", "Namespace", "Partition")
_REGISTER_RULES: dict[str, Rule] = {
    "ID": string(64),
    "Node": string(NAME_MAX),
    "Address": string(ADDRESS_MAX),
    "Datacenter": string(NAME_MAX),
    "TaggedAddresses": string_map(NAME_MAX, ADDRESS_MAX),
    "NodeMeta": string_map(128, 512),
    "Service": obj,
    "Check": obj,
    "Checks": array,
    "SkipNodeUpdate": boolean,
    "Namespace": string(NAME_MAX),
    "Partition": string(NAME_MAX),
    "Locality": obj,
}
_DEREGISTER_RULES: dict[str, Rule] = {
    "Node": string(NAME_MAX),
    "Datacenter": string(NAME_MAX),
    "CheckID": string(512),
    "ServiceID": string(512),
    "Namespace": string(NAME_MAX),
    "Partition": string(NAME_MAX),
}
_CHECK_KEYS = {k.lower(): k for k in CHECK_RULES}


def check_register_body(body: Mapping[str, Any]) -> None:
    """Types, sizes and encodable values of a catalog register body (400
    naming the field); the service and checks are checked as they parse."""
    check_json_value(body, "")
    check_fields(body, _REGISTER_RULES, "")


def check_deregister_body(body: Mapping[str, Any]) -> None:
    """Types and sizes of a catalog deregister body."""
    check_json_value(body, "")
    check_fields(body, _DEREGISTER_RULES, "")


def _str_map(body: Mapping[str, Any], key: str) -> dict[str, str]:
    value = body.get(key) or {}
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ValidationError(key, "must be an object of strings")
    return dict(value)


def _service(body: Mapping[str, Any], node: str) -> ServiceInstance | None:
    raw = body.get("Service")
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise ValidationError("Service", "must be an object")
    spec = {("Name" if k.lower() == "service" else k): v for k, v in raw.items()}
    try:
        return parse_service(spec, node=node).service
    except ValidationError as exc:
        name = "Service" if exc.field == "Name" else exc.field
        raise ValidationError(f"Service.{name}", exc.message) from None


def register_request(body: Mapping[str, Any], datacenter: str = "") -> RegisterRequest:
    """Consul's catalog RegisterRequest JSON as a registry command."""
    node = body.get("Node")
    if not isinstance(node, str) or not node:
        raise ValidationError("Node", "Must provide node")
    address = body.get("Address", "")
    if not isinstance(address, str) or not address:
        raise ValidationError("Address", "Must provide address if SkipNodeUpdate is not set")
    svc = _service(body, node)
    raw_checks: list[Any] = []
    if body.get("Check"):
        raw_checks.append(body["Check"])
    raw_checks.extend(body.get("Checks") or [])
    checks = []
    for i, raw in enumerate(raw_checks):
        if not isinstance(raw, Mapping):
            raise ValidationError(f"Checks[{i}]", "must be an object")
        checks.append(_catalog_check(raw, node, svc, i))
    return RegisterRequest(
        node=node,
        id=str(body.get("ID") or ""),
        address=address,
        datacenter=str(body.get("Datacenter") or datacenter),
        tagged_addresses=_str_map(body, "TaggedAddresses"),
        node_meta=_str_map(body, "NodeMeta"),
        service=svc,
        checks=tuple(checks),
        skip_node_update=bool(body.get("SkipNodeUpdate", False)),
    )


def _catalog_check(
    raw: Mapping[str, Any], node: str, svc: ServiceInstance | None, i: int
) -> HealthCheck:
    """Catalog checks are records only (no Interval/TTL needed): Consul
    stores whatever status the caller sends; an agent does not run them."""

    canon = {_CHECK_KEYS.get(str(k).lower(), str(k)): v for k, v in raw.items()}
    check_fields(canon, CHECK_RULES, f"Checks[{i}].")
    raw = canon

    def s(key: str, default: str = "") -> str:
        value = raw.get(key, default)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ValidationError(f"Checks[{i}].{key}", "must be a string")
        return value

    check_id = s("CheckID") or s("ID") or s("Name")
    if not check_id:
        raise ValidationError(f"Checks[{i}].CheckID", "a check needs a CheckID or Name")
    status = s("Status", "critical") or "critical"
    if status not in ("passing", "warning", "critical"):
        raise ValidationError(f"Checks[{i}].Status", f"invalid check status {status!r}")
    service_id = s("ServiceID")
    definition = raw.get("Definition") or {}
    if not isinstance(definition, Mapping):
        raise ValidationError(f"Checks[{i}].Definition", "must be an object")
    return HealthCheck(
        check_id=check_id,
        node=node,
        name=s("Name") or check_id,
        status=status,
        notes=s("Notes"),
        output=s("Output"),
        # Consul attaches a check to the registration's service only when
        # ServiceID names it; otherwise it is a node-level check.
        service_id=service_id,
        type=s("Type"),
        definition=dict(definition),
    )


def _check_filter(opts: QueryOptions, schema: Schema) -> None:
    """Refuse (``FilterError``, 400) a ``?filter`` that does not parse or names
    a selector the endpoint does not have, before anything is read."""
    if opts.filter:
        compile_filter(opts.filter, schema)


async def register(p: Registry, req: Request) -> Response:
    body = decode_json_body(req, fields=REGISTER_FIELDS)
    check_register_body(body)
    check_dc(p, QueryOptions.from_request(req))
    result = await p.write(register_request(body, p.datacenter))
    if not result.ok:
        raise ValidationError(result.error or "", result.message)
    return Response.json(True)


async def deregister(p: Registry, req: Request) -> Response:
    body = decode_json_body(req, fields=DEREGISTER_FIELDS)
    check_deregister_body(body)
    node = body.get("Node")
    if not isinstance(node, str) or not node:
        raise ValidationError("Node", "Must provide node")
    cmd = DeregisterRequest(
        node=node,
        service_id=str(body.get("ServiceID") or ""),
        check_id=str(body.get("CheckID") or ""),
    )
    result = await p.write(cmd)
    if not result.ok and result.error not in (None, "not_found"):
        raise ValidationError(result.error or "", result.message)
    return Response.json(True)


async def datacenters(p: Registry, req: Request) -> Response:
    return Response.json([p.datacenter], pretty=QueryOptions.from_request(req).pretty)


async def nodes(p: Registry, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    return await read_json(p, req, "catalog.nodes", {"node_meta": dict(opts.node_meta)}, empty=[])


async def services(p: Registry, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    _check_filter(opts, filter_schemas.SERVICE_NODE)
    return await read_json(
        p, req, "catalog.services", {"node_meta": dict(opts.node_meta)}, empty={}
    )


async def service(p: Registry, req: Request) -> Response:
    name = req.path_params["service"]
    if not name:
        raise ValidationError("service", "Missing service name")
    opts = QueryOptions.from_request(req)
    args = {"name": name, "tags": list(opts.tags), "node_meta": dict(opts.node_meta)}
    return await read_json(p, req, "catalog.service", args, empty=[])


async def connect(p: Registry, req: Request) -> Response:
    name = req.path_params["service"]
    if not name:
        raise ValidationError("service", "Missing service name")
    return await read_json(p, req, "catalog.connect", {"name": name}, empty=[])


async def node(p: Registry, req: Request) -> Response:
    name = req.path_params["node"]
    if not name:
        raise ValidationError("node", "Missing node name")
    _check_filter(QueryOptions.from_request(req), filter_schemas.NODE_SERVICE)
    return await read_json(p, req, "catalog.node", {"name": name}, empty=NULL)


async def node_services(p: Registry, req: Request) -> Response:
    name = req.path_params["node"]
    if not name:
        raise ValidationError("node", "Missing node name")
    _check_filter(QueryOptions.from_request(req), filter_schemas.NODE_SERVICE)
    return await read_json(p, req, "catalog.node_services", {"name": name}, empty=NULL)
