"""/v1/txn (https://developer.hashicorp.com/consul/api-docs/txn).

Follows Consul's agent/txn_endpoint.go: the body is a JSON list of at most
64 ops in the API format (``{"KV": {...}}``, ``{"Node": {...}}``,
``{"Service": {...}}``, ``{"Check": {...}}``), KV values base64. A
transaction of reads only (``get``, ``get-tree``, ``check-*``) is answered
from the state store without Raft (read ``txn.read``, consistency modes
honoured, never blocking); anything else is one Raft write applied all or
nothing. The answer is ``{"Results": [...], "Errors": null}`` with 200, or
``{"Results": null, "Errors": [{"OpIndex", "What"}]}`` with 409.

Decoding is Go's ``DisallowUnknownFields``: an unknown key anywhere in an op
is a 400 ``Failed to parse body: json: unknown field "X"``. As in Consul,
only the fields ``convertOps`` copies reach the command (a service's
``Kind``, ``Proxy`` and ``Connect`` are accepted and ignored).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from registry.codec import to_obj
from registry.commands import (
    MAX_KV_VALUE,
    MAX_TXN_OPS,
    TxnCheckOp,
    TxnKVOp,
    TxnNodeOp,
    TxnOp,
    TxnRequest,
    TxnServiceOp,
)
from registry.errors import ErrorCode
from registry.records import HealthCheck, Node, ServiceInstance, Weights

from ..defs.definitions import tagged_addresses
from ..defs.field_rules import (
    ADDRESS_MAX,
    CHECK_RULES,
    COUNT_MAX,
    NAME_MAX,
    SERVICE_RULES,
    Rule,
    check_fields,
    integer,
    string,
    string_map,
)
from ..defs.json_bounds import check_json_value
from ..errors import Internal
from ..http import (
    BadRequest,
    JSONFields,
    PayloadTooLarge,
    QueryOptions,
    Request,
    Response,
)
from ..wire import ReadOptions
from .common import check_dc, read_options

if TYPE_CHECKING:
    from .ports import Registry

# Consul's txn_max_req_len default (the suggested Raft entry size).
TXN_MAX_REQ_LEN = 512 * 1024

OP_FIELDS = JSONFields(("KV", "Node", "Service", "Check"))
KV_FIELDS = JSONFields(
    ("Verb", "Key", "Value", "Flags", "Index", "Session", "Namespace", "Partition")
)
NODE_OP_FIELDS = JSONFields(("Verb", "Node"))
SERVICE_OP_FIELDS = JSONFields(("Verb", "Node", "Service"))
CHECK_OP_FIELDS = JSONFields(("Verb", "Check"))
# consul/api Node, AgentService and HealthCheck: what Go clients marshal.
NODE_FIELDS = JSONFields(
    (
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "TaggedAddresses",
        "Meta",
        "CreateIndex",
        "ModifyIndex",
        "Partition",
        "PeerName",
        "Locality",
    )
)
SERVICE_FIELDS = JSONFields(
    (
        "Kind",
        "ID",
        "Service",
        "Tags",
        "Meta",
        "Port",
        "Address",
        "SocketPath",
        "TaggedAddresses",
        "Weights",
        "EnableTagOverride",
        "CreateIndex",
        "ModifyIndex",
        "ContentHash",
        "Proxy",
        "Connect",
        "PeerName",
        "Namespace",
        "Partition",
        "Datacenter",
        "Locality",
    )
)
CHECK_FIELDS = JSONFields(
    (
        "Node",
        "CheckID",
        "Name",
        "Status",
        "Notes",
        "Output",
        "ServiceID",
        "ServiceName",
        "ServiceTags",
        "Type",
        "Namespace",
        "Partition",
        "ExposedPort",
        "PeerName",
        "Definition",
        "CreateIndex",
        "ModifyIndex",
    )
)


# The same field rules as agent and catalog registration (issue 13, item 7):
# a txn op is one more way to write a service, node or check into the catalog.
TXN_SERVICE_RULES: dict[str, Rule] = {
    **{k: v for k, v in SERVICE_RULES.items() if k != "Name"},
    "Service": SERVICE_RULES["Name"],
    "Datacenter": string(NAME_MAX),
}
_WEIGHT_RULES: dict[str, Rule] = {
    "Passing": integer(1, COUNT_MAX),
    "Warning": integer(0, COUNT_MAX),
}
TXN_NODE_RULES: dict[str, Rule] = {
    "ID": string(64),
    "Node": string(NAME_MAX),
    "Address": string(ADDRESS_MAX),
    "Datacenter": string(NAME_MAX),
    "Meta": string_map(128, 512),
    "TaggedAddresses": string_map(64, ADDRESS_MAX),
}


def _check_rules(obj: _Obj, rules: dict[str, Rule]) -> None:
    """Bounds and field rules of a decoded op object (keys already in
    Consul's spelling), errors naming ``Ops[i].Kind.Object.Field`` (400)."""
    check_json_value(obj.data, obj.path)
    check_fields(obj.data, rules, f"{obj.path}.")


def _parse_error(message: str, field: str | None = None) -> BadRequest:
    # Consul answers every body it cannot decode with this prefix.
    return BadRequest(f"Failed to parse body: {message}", field)


class _Obj:
    """Typed access to one decoded JSON object of an op, errors naming ``path``."""

    def __init__(self, raw: Any, fields: JSONFields, path: str) -> None:
        try:
            self.data = fields.validate(raw, path=path)
        except BadRequest as exc:
            raise _parse_error(exc.message.removeprefix("Request decode failed: "), path) from None
        self.path = path
        for key in ("Namespace", "Partition"):
            if self.text(key) not in ("", "default"):
                raise BadRequest(f"{key}s are a Consul Enterprise feature", f"{path}.{key}")

    def _bad(self, key: str, what: str) -> BadRequest:
        where = f"{self.path}.{key}"
        return _parse_error(f"{where}: {what}", where)

    def text(self, key: str, default: str = "") -> str:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self._bad(key, "expected a string")
        return value

    def uint(self, key: str) -> int:
        value = self.data.get(key)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
            raise self._bad(key, "expected an unsigned integer")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(key, "expected a list of strings")
        return tuple(value)

    def text_map(self, key: str) -> dict[str, str]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._bad(key, "expected an object of strings")
        return dict(value)

    def child(self, key: str, fields: JSONFields) -> _Obj:
        return _Obj(self.data.get(key) or {}, fields, f"{self.path}.{key}")

    def raw_map(self, key: str) -> dict[str, Any]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._bad(key, "expected an object")
        return dict(value)


def _kv_value(kv: _Obj) -> bytes:
    raw = kv.data.get("Value")
    if raw is None:
        return b""
    if not isinstance(raw, str):
        raise _parse_error("expected a base64 string", f"{kv.path}.Value")
    try:
        value = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _parse_error(f"illegal base64 data: {exc}", f"{kv.path}.Value") from None
    if len(value) > MAX_KV_VALUE:
        key = kv.text("Key")
        raise PayloadTooLarge(
            f"Value for key {json.dumps(key)} is too large ({len(value)} > {MAX_KV_VALUE} bytes)"
        )
    return value


def kv_op(raw: Any, path: str) -> TxnKVOp:
    """A ``{"KV": {...}}`` op (consul/api ``KVTxnOp``)."""
    kv = _Obj(raw, KV_FIELDS, path)
    return TxnKVOp(
        verb=kv.text("Verb"),
        key=kv.text("Key"),
        value=_kv_value(kv),
        flags=kv.uint("Flags"),
        index=kv.uint("Index"),
        session=kv.text("Session"),
    )


def node_op(raw: Any, path: str, datacenter: str) -> TxnNodeOp:
    """A ``{"Node": {...}}`` op; the datacenter defaults to the agent's."""
    op = _Obj(raw, NODE_OP_FIELDS, path)
    node = op.child("Node", NODE_FIELDS)
    _check_rules(node, TXN_NODE_RULES)
    return TxnNodeOp(
        verb=op.text("Verb"),
        node=Node(
            node=node.text("Node"),
            id=node.text("ID"),
            address=node.text("Address"),
            datacenter=node.text("Datacenter") or datacenter,
            tagged_addresses=node.text_map("TaggedAddresses"),
            meta=node.text_map("Meta"),
            modify_index=node.uint("ModifyIndex"),
        ),
    )


def _weights(svc: _Obj) -> Weights:
    raw = svc.data.get("Weights")
    if raw is None:
        return Weights()
    weights = _Obj(raw, JSONFields(("Passing", "Warning")), f"{svc.path}.Weights")
    check_fields(weights.data, _WEIGHT_RULES, f"{svc.path}.Weights.")
    return Weights(
        passing=weights.uint("Passing") if "Passing" in weights.data else 1,
        warning=weights.uint("Warning") if "Warning" in weights.data else 1,
    )


def service_op(raw: Any, path: str) -> TxnServiceOp:
    """A ``{"Service": {...}}`` op; the service ID defaults to its name."""
    op = _Obj(raw, SERVICE_OP_FIELDS, path)
    svc = op.child("Service", SERVICE_FIELDS)
    _check_rules(svc, TXN_SERVICE_RULES)
    port = svc.uint("Port")
    name = svc.text("Service")
    node = op.text("Node")
    return TxnServiceOp(
        verb=op.text("Verb"),
        node=node,
        service=ServiceInstance(
            service=name,
            id=svc.text("ID") or name,
            node=node,
            tags=svc.texts("Tags"),
            address=svc.text("Address"),
            port=port,
            meta=svc.text_map("Meta"),
            tagged_addresses=tagged_addresses(
                svc.data.get("TaggedAddresses"), f"{path}.TaggedAddresses"
            ),
            weights=_weights(svc),
            enable_tag_override=svc.data.get("EnableTagOverride") is True,
            modify_index=svc.uint("ModifyIndex"),
        ),
    )


def check_op(raw: Any, path: str) -> TxnCheckOp:
    """A ``{"Check": {...}}`` op; a check set without a status is critical."""
    op = _Obj(raw, CHECK_OP_FIELDS, path)
    verb = op.text("Verb")
    chk = op.child("Check", CHECK_FIELDS)
    _check_rules(chk, CHECK_RULES)
    definition = chk.raw_map("Definition")
    interval = definition.get("Interval") or definition.get("IntervalDuration") or ""
    timeout = definition.get("Timeout") or definition.get("TimeoutDuration") or ""
    status = chk.text("Status")
    if not status and verb in ("set", "cas"):
        status = "critical"
    return TxnCheckOp(
        verb=verb,
        check=HealthCheck(
            check_id=chk.text("CheckID"),
            node=chk.text("Node"),
            name=chk.text("Name"),
            status=status,
            notes=chk.text("Notes"),
            output=chk.text("Output"),
            service_id=chk.text("ServiceID"),
            service_name=chk.text("ServiceName"),
            service_tags=chk.texts("ServiceTags"),
            type=chk.text("Type"),
            interval=str(interval),
            timeout=str(timeout),
            definition=definition,
            modify_index=chk.uint("ModifyIndex"),
        ),
    )


def _op(raw: Any, i: int, datacenter: str) -> TxnOp:
    path = f"Ops[{i}]"
    top = _Obj(raw, OP_FIELDS, path)
    data = top.data
    return TxnOp(
        kv=kv_op(data["KV"], f"{path}.KV") if data.get("KV") is not None else None,
        node=node_op(data["Node"], f"{path}.Node", datacenter)
        if data.get("Node") is not None
        else None,
        service=service_op(data["Service"], f"{path}.Service")
        if data.get("Service") is not None
        else None,
        check=check_op(data["Check"], f"{path}.Check") if data.get("Check") is not None else None,
    )


def decode_ops(body: bytes, datacenter: str) -> tuple[TxnOp, ...]:
    """The ops of a /v1/txn body, validated (``TxnRequest.validate``).

    Raises ``PayloadTooLarge`` for a body over 512 KiB, more than 64 ops or a
    value over 512 KiB; ``BadRequest`` for a body that does not decode; and
    ``ValidationError`` naming ``Ops[i]...`` for an invalid op.
    """
    if len(body) > TXN_MAX_REQ_LEN:
        raise PayloadTooLarge(f"Request body too large, max size: {TXN_MAX_REQ_LEN} bytes")
    if not body.strip():
        raise _parse_error("EOF")
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _parse_error(str(exc)) from None
    if not isinstance(raw, list):
        raise _parse_error("json: cannot unmarshal non-array into Go value of type api.TxnOps")
    if len(raw) > MAX_TXN_OPS:
        raise PayloadTooLarge(
            f"Transaction contains too many operations ({len(raw)} > {MAX_TXN_OPS})"
        )
    ops = tuple(_op(item, i, datacenter) for i, item in enumerate(raw))
    TxnRequest(ops=ops).validate()
    return ops


def _txn_response(value: Mapping[str, Any], pretty: bool) -> Response:
    status = 409 if value.get("Errors") else 200
    return Response.json(value, status=status, pretty=pretty)


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def read_only(p: Registry, ops: tuple[TxnOp, ...], opts: QueryOptions) -> Response:
    # Consul's Txn.Read honours consistency modes but never blocks, and
    # reports only KnownLeader and LastContact.
    base = read_options(opts)
    ropts = ReadOptions(0, base.wait, base.consistency, base.max_stale)
    args = {"ops": to_obj(ops, tuple[TxnOp, ...])}
    result = await p.read("txn.read", args, ropts)
    resp = _txn_response(result.value, opts.pretty)
    resp.set_header("X-Consul-KnownLeader", "true" if result.known_leader else "false")
    resp.set_header("X-Consul-LastContact", str(max(int(result.last_contact * 1000), 0)))
    return resp


async def txn(p: Registry, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    ops = decode_ops(req.body, p.datacenter)
    if all(op.is_read for op in ops):
        return await read_only(p, ops, opts)
    result = await p.write(TxnRequest(ops=ops))
    if result.ok or result.error == ErrorCode.TXN_FAILED:
        return _txn_response(result.value, opts.pretty)
    if result.error == ErrorCode.INVALID:
        raise BadRequest(f"Invalid request: {result.message}")
    raise Internal(result.message or str(result.error))
