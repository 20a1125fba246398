"""Consul's common query options, response metadata and JSON body decoding.

Parsing follows Consul's agent/http.go (``parseWait``, ``parseConsistency``,
``parseCacheControl``, ``parseMetaFilter``, ``setMeta``) so that the same
request gets the same 400 text and the same ``X-Consul-*`` headers. One
deliberate difference: a boolean flag such as ``?stale`` or ``?pretty`` is
true when present with a blank or any value except ``false``/``0`` (Consul
only checks presence, so ``?pretty=false`` is pretty there); no Consul client
sends those values.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from meshd.durations import parse_duration
from meshd.http.errors import BadRequest, PayloadTooLarge
from meshd.http.message import Request, Response

__all__ = [
    "DEFAULT_WAIT",
    "MAX_WAIT",
    "Consistency",
    "JSONFields",
    "QueryMeta",
    "QueryOptions",
    "decode_json_body",
    "validate_fields",
]

Consistency = Literal["default", "stale", "consistent"]

DEFAULT_WAIT = 300.0
"""Seconds a blocking query waits when ``?wait`` is absent or not positive (Consul: 5 min)."""
MAX_WAIT = 600.0
"""Longest ``?wait`` honoured, in seconds; longer values are capped (Consul: 10 min)."""

_FALSE_VALUES = frozenset({"false", "0"})


def _flag(query: Mapping[str, list[str]], name: str) -> bool:
    values = query.get(name)
    return values is not None and values[0].lower() not in _FALSE_VALUES


def _first(query: Mapping[str, list[str]], name: str) -> str:
    values = query.get(name)
    return values[0] if values else ""


def _go_quote(text: str) -> str:
    # Close enough to Go's %q for error messages: double quotes, escapes.
    return json.dumps(text, ensure_ascii=False)


def _parse_wait(text: str) -> float:
    """``?wait`` in seconds: Go duration; <= 0 means the default; capped at ``MAX_WAIT``.

    Raises ``BadRequest("Invalid wait time")``. Go accepts negative durations
    here (Consul then uses the default), so a leading "-" is allowed.
    """
    try:
        seconds = -parse_duration(text[1:]) if text.startswith("-") else parse_duration(text)
    except ValueError:
        raise BadRequest("Invalid wait time", "wait") from None
    if seconds <= 0:
        return DEFAULT_WAIT
    return min(seconds, MAX_WAIT)


def _parse_index(text: str) -> int:
    # strconv.ParseUint(idx, 10, 64): ASCII digits only, no sign, fits in 64 bits.
    if not text.isascii() or not text.isdigit() or int(text) >= 1 << 64:
        raise BadRequest("Invalid index", "index")
    return int(text)


def _parse_max_stale(text: str) -> float:
    try:
        if text.startswith("-"):
            parse_duration(text[1:])
            return 0.0
        return parse_duration(text)
    except ValueError:
        raise BadRequest(f"Invalid max_stale value {_go_quote(text)}", "max_stale") from None


@dataclass(frozen=True, slots=True)
class _CacheControl:
    max_age: float | None = None
    stale_if_error: float | None = None
    must_revalidate: bool = False


def _parse_cache_control(raw: str) -> _CacheControl:
    # Consul's parseCacheControl: comma-separated directives, integer seconds.
    max_age: float | None = None
    stale_if_error: float | None = None
    must_revalidate = False
    for directive in raw.lower().split(","):
        d = directive.strip()
        if d == "must-revalidate":
            must_revalidate = True
        elif d.startswith("max-age="):
            max_age = _cache_seconds(d[8:])
            if max_age == 0:
                must_revalidate = True  # max-age=0: treat the cached value as stale now
        elif d.startswith("stale-if-error="):
            stale_if_error = _cache_seconds(d[15:])
    return _CacheControl(max_age, stale_if_error, must_revalidate)


def _cache_seconds(text: str) -> float:
    try:
        return float(int(text))
    except ValueError:
        raise BadRequest("Invalid Cache-Control header.", "Cache-Control") from None


def _check_default_tenancy(req: Request) -> None:
    # meshd has one namespace and one partition; Consul CE refuses any value,
    # meshd also accepts the explicit name "default".
    checks = (
        ("ns", req.query_value("ns"), "query parameter", "Namespaces"),
        ("X-Consul-Namespace", req.headers.get("x-consul-namespace", ""), "header", "Namespaces"),
        ("partition", req.query_value("partition"), "query parameter", "Partitions"),
        ("X-Consul-Partition", req.headers.get("x-consul-partition", ""), "header", "Partitions"),
    )
    for name, value, where, feature in checks:
        if value and value.lower() != "default":
            message = f'Invalid {where}: "{name}" - {feature} are a Consul Enterprise feature'
            raise BadRequest(f"Bad request: {message}", name)


def _parse_node_meta(values: Iterable[str]) -> dict[str, str]:
    # parseMetaFilter/parseMetaPair: "key:value", value may contain ':'; no ':' means "".
    result: dict[str, str] = {}
    for item in values:
        key, _, value = item.partition(":")
        result[key] = value
    return result


# QueryOptions.from_request's parsed options by (query string, token, headers).
_PARSED: dict[tuple[str, str, str | None, str | None, str | None], QueryOptions] = {}
_PARSED_MAX = 512


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """Options common to Consul's read endpoints (consul/api ``QueryOptions`` on the wire).

    ``wait``, ``max_stale``, ``max_age`` and ``stale_if_error`` are seconds.
    ``consistency`` is "stale", "consistent" or "default" (leader lease).
    ``max_age``/``stale_if_error``/``must_revalidate`` come from the
    ``Cache-Control`` request header, as in Consul.
    """

    dc: str = ""
    index: int = 0
    wait: float = DEFAULT_WAIT
    consistency: Consistency = "default"
    cached: bool = False
    max_stale: float = 0.0
    max_age: float | None = None
    stale_if_error: float | None = None
    must_revalidate: bool = False
    filter: str = ""
    near: str = ""
    node_meta: Mapping[str, str] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    pretty: bool = False
    token: str = ""

    @property
    def blocking(self) -> bool:
        """True for a blocking query (``?index`` > 0)."""
        return self.index > 0

    @classmethod
    def from_request(cls, req: Request) -> QueryOptions:
        """Parse the query options of ``req``.

        Raises ``BadRequest`` with Consul's texts: ``Invalid index``,
        ``Invalid wait time``, ``Invalid max_stale value "x"``, ``Invalid
        Cache-Control header.``, ``Cannot specify ?stale with ?consistent,
        conflicting semantics.`` (and the same for ``?cached``), and the
        Enterprise-feature message for a namespace or partition other than
        "default". Pure function of the request's query string, token and
        ``Cache-Control``/``X-Consul-Namespace``/``X-Consul-Partition``
        headers: parsed once per distinct combination (every read asks, and
        clients repeat the same few queries), the value shared (frozen).
        """
        headers = req.headers
        key = (
            req.query_string,
            req.token,
            headers.get("cache-control"),
            headers.get("x-consul-namespace"),
            headers.get("x-consul-partition"),
        )
        opts = _PARSED.get(key)
        if opts is None:
            opts = cls._parse(req)
            if len(_PARSED) >= _PARSED_MAX:
                _PARSED.clear()
            _PARSED[key] = opts
        return opts

    @classmethod
    def _parse(cls, req: Request) -> QueryOptions:
        q = req.query
        cache_header = req.headers.get("cache-control")
        cache = _parse_cache_control(cache_header) if cache_header else _CacheControl()
        if not q:
            return cls(
                max_age=cache.max_age,
                stale_if_error=cache.stale_if_error,
                must_revalidate=cache.must_revalidate,
                token=req.token,
            )
        _check_default_tenancy(req)
        wait_text, index_text = _first(q, "wait"), _first(q, "index")
        max_stale_text = _first(q, "max_stale")
        max_stale = _parse_max_stale(max_stale_text) if max_stale_text else 0.0
        stale = _flag(q, "stale") or max_stale > 0
        consistent = _flag(q, "consistent")
        cached = _flag(q, "cached")
        if stale and consistent:
            raise BadRequest("Cannot specify ?stale with ?consistent, conflicting semantics.")
        if cached and consistent:
            raise BadRequest("Cannot specify ?cached with ?consistent, conflicting semantics.")
        consistency: Consistency = "stale" if stale else "consistent" if consistent else "default"
        return cls(
            dc=_first(q, "dc"),
            index=_parse_index(index_text) if index_text else 0,
            wait=_parse_wait(wait_text) if wait_text else DEFAULT_WAIT,
            consistency=consistency,
            cached=cached,
            max_stale=max_stale,
            max_age=cache.max_age,
            stale_if_error=cache.stale_if_error,
            must_revalidate=cache.must_revalidate,
            filter=_first(q, "filter"),
            near=_first(q, "near"),
            node_meta=_parse_node_meta(q.get("node-meta", ())),
            tags=tuple(q.get("tag", ())),
            pretty=_flag(q, "pretty"),
            token=req.token,
        )


_META_HEADERS = frozenset(
    {
        "x-consul-index",
        "x-consul-knownleader",
        "x-consul-lastcontact",
        "x-consul-effective-consistency",
        "x-consul-query-backend",
        "x-consul-results-filtered-by-acls",
    }
)


@dataclass(slots=True)
class QueryMeta:
    """Metadata of a read answer, sent as Consul's ``X-Consul-*`` headers.

    ``last_contact`` is seconds since the answering server last heard from
    the leader (0 on the leader). ``effective_consistency`` is "leader",
    "consistent" or "stale"; "" omits the header.
    """

    index: int = 0
    known_leader: bool = True
    last_contact: float = 0.0
    effective_consistency: str = "leader"
    query_backend: str = ""
    results_filtered_by_acls: bool = False

    def apply_headers(self, response: Response) -> Response:
        """Set the metadata headers on ``response`` (replacing old values); return it.

        ``X-Consul-Index`` is never 0: a client blocking on index 0 would
        never block and would spin, so 0 is sent as 1 (Consul's setIndex).
        """
        return set_meta_headers(
            response,
            self.index,
            self.known_leader,
            self.last_contact,
            self.effective_consistency,
            self.query_backend,
            self.results_filtered_by_acls,
        )


def set_meta_headers(
    response: Response,
    index: int,
    known_leader: bool,
    last_contact: float,
    effective_consistency: str = "leader",
    query_backend: str = "",
    results_filtered_by_acls: bool = False,
) -> Response:
    """``QueryMeta(...).apply_headers(response)`` without building the
    QueryMeta: every read answer sets these."""
    headers = [(n, v) for n, v in response.headers if n.lower() not in _META_HEADERS]
    headers.append(("X-Consul-Index", str(index) if index > 1 else "1"))
    headers.append(("X-Consul-KnownLeader", "true" if known_leader else "false"))
    headers.append(
        ("X-Consul-LastContact", str(int(last_contact * 1000)) if last_contact > 0 else "0")
    )
    if effective_consistency:
        headers.append(("X-Consul-Effective-Consistency", effective_consistency))
    if query_backend:
        headers.append(("X-Consul-Query-Backend", query_backend))
    if results_filtered_by_acls:
        headers.append(("X-Consul-Results-Filtered-By-ACLs", "true"))
    response.headers = headers
    return response


class JSONFields:
    """The JSON object keys an endpoint accepts, matched like Go's ``encoding/json``.

    Go matches field names case-insensitively (an exact match preferred), so
    ``{"name": "web"}`` fills ``Name``. Build one per request type at import
    time and call ``validate``.
    """

    __slots__ = ("_by_lower", "names")

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)
        self._by_lower = {n.lower(): n for n in self.names}

    def validate(
        self,
        obj: Any,
        *,
        path: str = "",
        allow_unknown: bool = False,
    ) -> dict[str, Any]:
        """Return ``obj`` with keys renamed to their canonical spelling.

        Raises ``BadRequest`` ``Request decode failed: json: unknown field
        "Foo"`` for a key that is not accepted (unless ``allow_unknown``, in
        which case it is kept as sent), and ``Request decode failed: ...
        expected a JSON object`` when ``obj`` is not an object. ``path``
        prefixes the reported field of nested objects (``Check.Foo``).
        """
        where = path or "request body"
        if not isinstance(obj, dict):
            raise BadRequest(
                f"Request decode failed: {where}: expected a JSON object, got {_json_type(obj)}",
                path or None,
            )
        out: dict[str, Any] = {}
        for key, value in obj.items():
            canonical = key if key in self.names else self._by_lower.get(key.lower())
            if canonical is None:
                if not allow_unknown:
                    raise BadRequest(
                        f"Request decode failed: json: unknown field {_go_quote(key)}",
                        f"{path}.{key}" if path else key,
                    )
                canonical = key
            out[canonical] = value
        return out


def _json_type(obj: Any) -> str:
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "boolean"
    if isinstance(obj, int | float):
        return "number"
    if isinstance(obj, str):
        return "string"
    return "array" if isinstance(obj, list) else type(obj).__name__


def validate_fields(
    obj: Any,
    allowed: Collection[str] | JSONFields,
    *,
    path: str = "",
    allow_unknown: bool = False,
) -> dict[str, Any]:
    """Check ``obj`` is an object with only ``allowed`` keys; see ``JSONFields.validate``."""
    fields = allowed if isinstance(allowed, JSONFields) else JSONFields(allowed)
    return fields.validate(obj, path=path, allow_unknown=allow_unknown)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON value {name}")


def decode_json_body(
    req: Request,
    *,
    fields: Collection[str] | JSONFields | None = None,
    allow_unknown_fields: bool = False,
    max_bytes: int | None = None,
    allow_empty: bool = False,
) -> Any:
    """Decode the request body as JSON (UTF-8) and optionally check its top-level keys.

    With ``fields``, the body must be an object whose keys are among them
    (case-insensitive, Go style) and the returned dict uses their canonical
    spelling; ``allow_unknown_fields`` keeps unknown keys instead of failing.
    An empty body returns None when ``allow_empty``.

    Raises ``PayloadTooLarge`` when the body exceeds ``max_bytes``, and
    ``BadRequest`` ``Request decode failed: <reason>`` naming the problem and
    its position for invalid UTF-8, malformed JSON, NaN/Infinity, an empty
    body or an unknown field.
    """
    body = req.body
    if max_bytes is not None and len(body) > max_bytes:
        raise PayloadTooLarge(
            f"Request body({len(body)} bytes) too large, max size: {max_bytes} bytes"
        )
    if not body.strip():
        if allow_empty:
            return None
        raise BadRequest("Request decode failed: empty request body (EOF)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"Request decode failed: invalid UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"Request decode failed: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"Request decode failed: {exc}") from None
    if fields is None:
        return obj
    return validate_fields(obj, fields, allow_unknown=allow_unknown_fields)
