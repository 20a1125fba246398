"""Request and response values passed between the HTTP server and handlers.

Both are plain in-memory values: the server (``meshd.http.server``) builds a
``Request`` once the whole body has arrived and writes the ``Response`` the
handler returns. Nothing here does I/O, so handlers and the error mapping can
be tested without sockets.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

__all__ = ["TEXT_PLAIN", "Headers", "Request", "Response", "StreamingResponse"]

TEXT_PLAIN = "text/plain; charset=utf-8"
_APPLICATION_JSON = "application/json"

# Built once: json.dumps() constructs a new encoder on every call whenever an
# option differs from the defaults. allow_nan=False because Go's encoder
# refuses NaN/Inf too (the handler then fails with a 500, as Consul does).
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
# Consul's ?pretty output is json.MarshalIndent(obj, "", "    ") plus "\n".
_PRETTY_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=4)


class Headers:
    """Case-insensitive read-only view of request headers.

    Built from h11's header list (names already lowercase bytes). ``get``
    returns the first value of a repeated header, like Go's ``Header.Get``;
    ``get_all`` returns every value in order. Values are decoded as latin-1
    (HTTP's historical charset, lossless for any byte) on first lookup.
    """

    __slots__ = ("_first", "_raw")

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._first: dict[str, str] | None = None

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> Headers:
        """Build headers from ``(name, value)`` strings (any case); for tests and tools."""
        return cls([(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in pairs])

    def _index(self) -> dict[str, str]:
        first = self._first
        if first is None:
            first = {}
            for name, value in self._raw:
                key = name.decode("latin-1")
                if key not in first:
                    first[key] = value.decode("latin-1")
            self._first = first
        return first

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of header ``name`` (any case), or ``default``."""
        return self._index().get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        """Return every value of header ``name`` (any case), in arrival order."""
        key = name.lower().encode("latin-1")
        return [v.decode("latin-1") for n, v in self._raw if n == key]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for name, value in self._raw:
            yield name.decode("latin-1"), value.decode("latin-1")

    def __len__(self) -> int:
        return len(self._raw)

    def __repr__(self) -> str:
        # Never print values: Authorization and X-Consul-Token carry secrets.
        return f"Headers({[n for n, _ in self]!r})"


_NO_HEADERS = Headers(())


def _parse_query(qs: str) -> dict[str, list[str]]:
    """``parse_qs(qs, keep_blank_values=True)``; query strings with nothing
    to unquote (``consistent``, ``index=12&wait=5s``: nearly all of them)
    are split here, at a fraction of parse_qs's cost on every read."""
    if "%" in qs or "+" in qs:
        return parse_qs(qs, keep_blank_values=True)
    out: dict[str, list[str]] = {}
    for item in qs.split("&"):
        if item:
            name, _, value = item.partition("=")
            values = out.get(name)
            if values is None:
                out[name] = [value]
            else:
                values.append(value)
    return out


def _bearer_token(authorization: str) -> str | None:
    # Mirrors Consul's parseTokenFromHeaders: "<scheme> <value>", scheme
    # compared case-insensitively, only the first word of the value is used.
    parts = authorization.split(" ")
    if len(parts) < 2 or parts[0].lower() != "bearer":
        return None
    value = " ".join(parts[1:]).strip()
    return value.split(" ")[0].strip()


class Request:
    """One HTTP request as handlers see it: fully read, immutable by convention.

    ``path`` is percent-decoded (like Go's ``URL.Path``, which Consul routes
    on: ``/v1/kv/a%2Fb`` addresses key ``a/b``); ``raw_path`` is as sent.
    ``query`` is ``parse_qs(query_string, keep_blank_values=True)``, parsed on
    first use, so ``?recurse`` appears as ``{"recurse": [""]}``.
    ``path_params`` and ``route_name`` are filled in by the router.
    """

    __slots__ = (
        "_query",
        "_token",
        "authz",
        "bad_path",
        "body",
        "headers",
        "method",
        "path",
        "path_params",
        "query_string",
        "raw_path",
        "remote_addr",
        "request_id",
        "route_name",
        "scheme",
    )

    def __init__(
        self,
        method: str,
        raw_path: str,
        query_string: str = "",
        headers: Headers = _NO_HEADERS,
        body: bytes = b"",
        *,
        remote_addr: tuple[str, int] | None = None,
        request_id: str = "",
        scheme: str = "http",
        valid_utf8: bool = True,
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        # True when the target (``valid_utf8``) or its percent-decoded path is
        # not UTF-8: the App answers 400 rather than let two different byte
        # strings decode to the same U+FFFD-replaced path (and KV key).
        self.bad_path = not valid_utf8
        self.path = raw_path
        if "%" in raw_path:
            decoded = unquote_to_bytes(raw_path)
            try:
                self.path = decoded.decode("utf-8")
            except UnicodeDecodeError:
                self.path = decoded.decode("utf-8", "replace")
                self.bad_path = True
        self.query_string = query_string
        self.headers = headers
        self.body = body
        self.remote_addr = remote_addr
        self.request_id = request_id
        self.scheme = scheme
        self.path_params: dict[str, str] = {}
        self.route_name: str | None = None
        self._query: dict[str, list[str]] | None = None
        self._token: str | None = None
        # The caller's ACL authorizer, set by the ACL layer before routing
        # (meshd.acl.request); None until then.
        self.authz: Any = None

    @classmethod
    def build(
        cls,
        method: str,
        target: str,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        remote_addr: tuple[str, int] | None = None,
    ) -> Request:
        """Build a request from a target like ``/v1/kv/a?recurse`` (tests, internal calls)."""
        path, _, query = target.partition("?")
        return cls(
            method,
            path,
            query,
            Headers.from_pairs(headers),
            body,
            remote_addr=remote_addr,
        )

    @property
    def query(self) -> dict[str, list[str]]:
        """Query parameters: name -> every value, blank values kept."""
        q = self._query
        if q is None:
            q = _parse_query(self.query_string) if self.query_string else {}
            self._query = q
        return q

    def query_value(self, name: str, default: str = "") -> str:
        """Return the first value of query parameter ``name`` (Go's ``Query().Get``)."""
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def token(self) -> str:
        """The ACL token the caller presented, or "" when none.

        Resolution follows Consul's ``parseTokenInternal``
        (agent/http.go): a non-empty ``?token=`` wins, then a non-empty
        ``X-Consul-Token`` header, then ``Authorization: Bearer <token>``.
        """
        token = self._token
        if token is None:
            token = self._resolve_token()
            self._token = token
        return token

    def _resolve_token(self) -> str:
        if self.query_string:
            from_query = self.query_value("token")
            if from_query:
                return from_query
        header = self.headers.get("x-consul-token")
        if header:
            return header
        authorization = self.headers.get("authorization")
        if authorization:
            bearer = _bearer_token(authorization)
            if bearer is not None:
                return bearer
        return ""

    def __repr__(self) -> str:
        # The query string may carry ?token=, so only the path is shown.
        return f"<Request {self.method} {self.path} id={self.request_id}>"


class Response:
    """A complete response: status, headers in order, body bytes.

    The server adds ``Content-Length`` (and ``Date``); handlers must not set
    framing headers. A ``Connection: close`` header makes the server close the
    connection after this response.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> None:
        self.status = status
        self.headers: list[tuple[str, str]] = headers if headers is not None else []
        self.body = body

    @classmethod
    def json(cls, obj: Any, status: int = 200, *, pretty: bool = False) -> Response:
        """Serialize ``obj`` as JSON the way Consul does (compact, or 4-space indent + newline).

        Raises ``TypeError`` for objects JSON cannot represent and
        ``ValueError`` for NaN/infinity (Go refuses them too).
        """
        if obj is True or obj is False:
            # Every KV PUT and DELETE answers one of these: no encoder call.
            body = (b"true" if obj else b"false") + (b"\n" if pretty else b"")
        elif pretty:
            body = (_PRETTY_JSON.encode(obj) + "\n").encode()
        else:
            body = _COMPACT_JSON.encode(obj).encode()
        return cls(status, [("Content-Type", _APPLICATION_JSON)], body)

    @classmethod
    def text(cls, text: str, status: int = 200, *, content_type: str = TEXT_PLAIN) -> Response:
        """A plain-text response (UTF-8), Consul's format for errors and scalars.
        Text that is not valid Unicode (an error echoing a lone surrogate from
        a request) is sent with "?" in its place, never a failure."""
        return cls(status, [("Content-Type", content_type)], text.encode("utf-8", "replace"))

    def get_header(self, name: str) -> str | None:
        """Return the first value of header ``name`` (any case), or None."""
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None

    def set_header(self, name: str, value: str) -> None:
        """Set header ``name`` to ``value``, replacing every existing value (any case)."""
        lname = name.lower()
        self.headers = [(n, v) for n, v in self.headers if n.lower() != lname]
        self.headers.append((name, value))

    def add_header(self, name: str, value: str) -> None:
        """Append a header, keeping existing ones with the same name."""
        self.headers.append((name, value))

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class StreamingResponse(Response):
    """A response whose body is sent as ``chunks`` yields it (chunked transfer
    encoding, e.g. ``/v1/agent/monitor``); the server closes the connection
    after it. The iterator is closed by cancellation when the client goes
    away or the server stops, so it must not hold anything a ``finally``
    cannot release."""

    __slots__ = ("chunks",)

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(status, headers)
        self.chunks = chunks
