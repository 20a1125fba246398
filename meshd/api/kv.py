"""/v1/kv/*key (https://developer.hashicorp.com/consul/api-docs/kv).

Follows Consul's agent/kvs_endpoint.go: the key is the decoded path after
``/v1/kv/``; ``?keys`` wins over ``?recurse``, which wins over ``?raw``; a
missing key, an empty ``?recurse`` listing and an empty ``?keys`` listing
under a non-empty prefix answer 404 with the ``X-Consul-*`` headers, so a
client can block on a key that does not exist yet. PUT and DELETE answer
``true``/``false``: ``false`` only for a CAS that lost, a lock held by
another session or in its lock-delay, or a release by a non-holder.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from raft.stages import stamp
from registry.commands import MAX_KV_VALUE, KVRequest, plain_kv_valid, validate_kv_key
from registry.errors import ErrorCode
from registry.kv_codec import new_kv

from ..errors import Internal
from ..http import (
    BadRequest,
    PayloadTooLarge,
    QueryOptions,
    Request,
    Response,
)
from ..wire import WriteResult
from .common import check_dc, read, read_json, with_meta

if TYPE_CHECKING:
    from .ports import Registry

KV_MAX_VALUE_SIZE = MAX_KV_VALUE  # Consul's kv_max_value_size default (512 KiB)
_KV_SIZE_DOC = "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size"
# Outcomes Consul answers with a plain ``false`` rather than an error.
_FALSE_OUTCOMES = frozenset({ErrorCode.CAS_CONFLICT, ErrorCode.LOCK_HELD, ErrorCode.LOCK_DELAY})
_RAW_HEADERS = (
    # Consul sets these on ?raw so a browser never sniffs a stored value as
    # HTML or script (kvs_endpoint.go, KVSGet).
    ("Content-Type", "text/plain"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "sandbox"),
)


def request_key(req: Request) -> str:
    """The key named by the path (may be empty); raises ``BadRequest`` for a
    key with a leading ``/`` (Consul's client and newer servers refuse it)."""
    key = req.path_params["key"]
    if key.startswith("/"):
        raise BadRequest("key must not begin with a '/'", "key")
    return key


def uint_param(req: Request, name: str) -> int | None:
    """``?name=`` as Go's ``strconv.ParseUint(v, 10, 64)``; None when absent.

    Raises ``BadRequest`` naming the parameter for anything else.
    """
    values = req.query.get(name)
    if values is None:
        return None
    text = values[0]
    if not text.isascii() or not text.isdigit() or int(text) >= 1 << 64:
        raise BadRequest(
            f"Invalid value for ?{name}: {text!r} is not an unsigned 64-bit integer", name
        )
    return int(text)


def reject_conflicting(req: Request, *flags: str) -> None:
    """Consul's ``conflictingFlags``: at most one of ``flags`` may be present.

    Raises ``BadRequest("Conflicting flags: <query>")``; the query is echoed
    as Go's ``url.Values.Encode`` does (sorted by name), without ``token``.
    """
    if sum(1 for f in flags if f in req.query) < 2:
        return
    pairs = [(k, v) for k in sorted(req.query) if k != "token" for v in req.query[k]]
    raise BadRequest(f"Conflicting flags: {urlencode(pairs)}\n")


def write_outcome(result: WriteResult, session: str = "") -> bool:
    """Consul's JSON answer of a KV write: True, False, or an error.

    Raises ``Internal`` ``invalid session "<id>"`` for a lock on an
    unknown session (Consul's state store error) and ``BadRequest`` for a
    command the FSM refused as invalid.
    """
    if result.ok:
        return True
    if result.error in _FALSE_OUTCOMES:
        return False
    if result.error == ErrorCode.INVALID_SESSION:
        raise Internal(f'invalid session "{session}"')
    if result.error == ErrorCode.INVALID:
        raise BadRequest(f"Invalid request: {result.message}")
    raise Internal(result.message or str(result.error))


def put_request(req: Request, key: str) -> KVRequest:
    """The KV command of ``PUT /v1/kv/<key>`` (validated, or one that
    ``KVRequest.validate`` accepts as built: ``plain_kv_valid``).

    Raises ``BadRequest`` for a missing key, conflicting or malformed
    parameters, ``PayloadTooLarge`` for a value over 512 KiB and
    ``ValidationError`` for a key over 16 KiB (``MAX_KV_KEY``) or anything
    else the command itself refuses.
    """
    if not key:
        raise BadRequest("Missing key name", "key")
    body = req.body
    if not req.query_string and plain_kv_valid("set", key, body, 0, 0):
        # The common PUT (no parameters, an ASCII key within limits): a plain
        # set, valid as built (the same check as KVRequest.validate's own
        # fast one), so built by slots and not validated again here.
        return new_kv(KVRequest, "set", key, body, 0, "", 0, 0.0)
    validate_kv_key(key, "key")  # at most MAX_KV_KEY bytes (16 KiB) of UTF-8
    reject_conflicting(req, "cas", "acquire", "release")
    flags = uint_param(req, "flags")
    cas = uint_param(req, "cas")
    op, session = ("set" if cas is None else "cas"), ""
    if "acquire" in req.query:
        op, session = "lock", req.query_value("acquire")
    if "release" in req.query:
        op, session = "unlock", req.query_value("release")
    size = len(req.body)
    if size > KV_MAX_VALUE_SIZE:
        raise PayloadTooLarge(
            f"Request body({size} bytes) too large, max size: {KV_MAX_VALUE_SIZE} bytes. "
            f"See {_KV_SIZE_DOC}."
        )
    cmd = KVRequest(
        op=op,
        key=key,
        value=req.body,
        flags=flags or 0,
        session=session,
        cas=cas or 0,
    )
    cmd.validate()
    return cmd


def delete_request(req: Request, key: str) -> KVRequest:
    """The KV command of ``DELETE /v1/kv/<key>`` (validated); raises ``BadRequest``."""
    reject_conflicting(req, "recurse", "cas")
    validate_kv_key(key, "key")
    op = "delete"
    if "recurse" in req.query:
        op = "delete-tree"
    elif not key:
        raise BadRequest("Missing key name", "key")
    cas = uint_param(req, "cas")
    if cas is not None:
        op = "delete-cas"
    cmd = KVRequest(op=op, key=key, cas=cas or 0)
    cmd.validate()
    return cmd


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


async def get_raw(p: Registry, req: Request, key: str) -> Response:
    result, _opts = await read(p, req, "kv.get", {"key": key})
    if not result.value:
        return with_meta(Response(404), result)
    encoded = result.value[0].get("Value")
    body = base64.b64decode(encoded) if encoded else b""
    return with_meta(Response(200, list(_RAW_HEADERS), body), result)


async def get_keys(p: Registry, req: Request, key: str) -> Response:
    # Consul still honours its historic misspelling; ?separator wins.
    sep = req.query_value("seperator")
    if "separator" in req.query:
        sep = req.query_value("separator")
    args = {"key": key, "separator": sep}
    # An empty listing of the root is [], of any other prefix 404.
    return await read_json(p, req, "kv.keys", args, empty=None if key else [])


async def get(p: Registry, req: Request) -> Response:
    key = request_key(req)
    query = req.query
    if "keys" in query:
        return await get_keys(p, req, key)
    if "recurse" in query:
        return await read_json(p, req, "kv.list", {"key": key})
    if not key:
        raise BadRequest("Missing key name", "key")
    if "raw" in query:
        return await get_raw(p, req, key)
    return await read_json(p, req, "kv.get", {"key": key})


async def put(p: Registry, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    cmd = put_request(req, request_key(req))
    stamp("command")  # benchmarks only (raft/stages.py)
    outcome = write_outcome(await p.write(cmd), cmd.session)
    # Consul answers a plain set with true whatever the FSM said.
    answer: Any = True if cmd.op == "set" else outcome
    return Response.json(answer, pretty=opts.pretty)


async def delete(p: Registry, req: Request) -> Response:
    opts = QueryOptions.from_request(req)
    check_dc(p, opts)
    cmd = delete_request(req, request_key(req))
    outcome = write_outcome(await p.write(cmd))
    answer: Any = outcome if cmd.op == "delete-cas" else True
    return Response.json(answer, pretty=opts.pretty)
