"""A small synchronous client for the local agent's HTTP API (Consul v1).

The CLI makes one or two requests per run, so this is plain ``http.client``
(no extra dependency), one connection per request. Addresses are written as
Consul's ``CONSUL_HTTP_ADDR``: ``127.0.0.1:8500``, ``http://host:port``,
``https://host:port`` or ``unix:///path/to/socket``; the default is
``127.0.0.1:8500``. The ACL token goes in ``X-Consul-Token``.

Every failure becomes a one-line ``CLIError``: no answer at all is
``AgentUnreachable`` (``Error querying agent: connection refused
(127.0.0.1:8500): is the agent running?``) and an answer outside 2xx is
``UnexpectedResponse`` (``Unexpected response code: 400 (<body>)``), as
Consul's api package words them.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import sys
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from connect.agent_http import Param, Response, error_text, query_string, request_headers

from .errors import AgentUnreachable, CLIError, UnexpectedResponse

__all__ = [
    "DEFAULT_ADDRESS",
    "Address",
    "AgentClient",
    "Param",
    "Response",
    "TLSFiles",
    "parse_address",
    "quote_path",
]

DEFAULT_ADDRESS = "127.0.0.1:8500"
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Address:
    """Where the agent's HTTP API listens."""

    scheme: str  # "http", "https" or "unix"
    host: str = ""
    port: int = 0
    path: str = ""  # the socket path for "unix"

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        prefix = "https://" if self.scheme == "https" else ""
        return f"{prefix}{host}:{self.port}"


def _bad(text: str, why: str) -> CLIError:
    return CLIError(f"Error: invalid HTTP address {text!r}: {why}")


def parse_address(text: str) -> Address:
    """Parse an address the way Consul reads ``CONSUL_HTTP_ADDR``.

    A bare ``host`` or ``host:port`` means plain HTTP (port 8500 when
    omitted); URLs without a port use 80/443. Raises ``CLIError`` naming
    the problem.
    """
    text = text.strip() or DEFAULT_ADDRESS
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path:
            raise _bad(text, "a unix socket address needs a path (unix:///path/to/socket)")
        return Address("unix", path=path)
    scheme = "http"
    rest = text
    if "://" in text:
        scheme, _, rest = text.partition("://")
        scheme = scheme.lower()
        if scheme not in ("http", "https"):
            raise _bad(text, f"unsupported scheme {scheme!r} (use http, https or unix)")
    parts = urlsplit(f"//{rest}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise _bad(text, "expected host:port without a path")
    host = parts.hostname or ""
    if not host:
        raise _bad(text, "missing host")
    try:
        port = parts.port
    except ValueError:
        raise _bad(text, "port must be a number between 1 and 65535") from None
    if port is None:
        port = 8500 if "://" not in text else (443 if scheme == "https" else 80)
    if port == 0:
        raise _bad(text, "port must be a number between 1 and 65535")
    return Address(scheme, host=host, port=port)


def quote_path(segment: str) -> str:
    """Percent-encode a path part such as a KV key, keeping ``/``."""
    return quote(segment, safe="/")


@dataclass(frozen=True)
class TLSFiles:
    """Client TLS settings for an ``https://`` address."""

    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""
    server_name: str = ""


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _HTTPSConnection(http.client.HTTPConnection):
    """HTTPS with an explicit SNI/verification name (``--tls-server-name``)."""

    default_port = 443

    def __init__(
        self, host: str, port: int, timeout: float, context: ssl.SSLContext, server_name: str
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ssl_context = context
        self._server_name = server_name

    def connect(self) -> None:
        super().connect()
        self.sock = self._ssl_context.wrap_socket(self.sock, server_hostname=self._server_name)


def _ssl_context(tls: TLSFiles) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_file or None)
        if tls.client_cert:
            ctx.load_cert_chain(tls.client_cert, tls.client_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise CLIError(f"Error: cannot load TLS files: {exc}") from None
    return ctx


class AgentClient:
    """Requests to one agent. Blocking; not for use from a trio task."""

    def __init__(
        self,
        address: Address,
        token: str = "",
        *,
        tls: TLSFiles | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.address = address
        self.token = token
        self.tls = tls or TLSFiles()
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        a = self.address
        if a.scheme == "unix":
            return _UnixHTTPConnection(a.path, self.timeout)
        if a.scheme == "https":
            ctx = _ssl_context(self.tls)
            return _HTTPSConnection(
                a.host, a.port, self.timeout, ctx, self.tls.server_name or a.host
            )
        return http.client.HTTPConnection(a.host, a.port, timeout=self.timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Param] | None = None,
        body: bytes | None = None,
        json_body: Any = None,
        allow: Collection[int] = (),
    ) -> Response:
        """Send one request and read the whole answer (query built per ``Param``).

        Statuses outside 2xx raise ``UnexpectedResponse`` unless listed in
        ``allow``; transport failures and timeouts (``timeout`` seconds per
        socket operation) raise ``AgentUnreachable``.
        """
        target = path + query_string(params or {})
        headers = {**request_headers("meshd-cli", self.token), "Accept": "application/json"}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        try:
            result = self.exchange(method, target, body=body, headers=headers)
        except (OSError, http.client.HTTPException) as exc:
            raise self._transport_error(exc) from None
        if not 200 <= result.status < 300 and result.status not in allow:
            raise UnexpectedResponse(result.status, error_text(result.body))
        if method == "GET" and _emptied_by_acls(result):
            print(FILTERED_HINT, file=sys.stderr)
        return result

    def exchange(
        self,
        method: str,
        target: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """One request exactly as given (``target`` is path and query, ``headers``
        are all the headers sent besides http.client's own) and its whole answer,
        whatever the status. Raises ``OSError``/``http.client.HTTPException`` as
        the transport does; ``request`` maps them to one-line errors."""
        conn = self._connection()
        try:
            conn.request(method, target, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    @contextlib.contextmanager
    def stream(
        self, path: str, *, params: Mapping[str, Param] | None = None
    ) -> Iterator[http.client.HTTPResponse]:
        """GET ``path`` and hand over the open answer to read as it arrives
        (``/v1/agent/monitor``): no read timeout once the head is in. Raises
        like ``request`` for a status outside 2xx or no answer; reading the
        body may raise ``OSError``/``http.client.HTTPException`` when the
        agent goes away."""
        headers = request_headers("meshd-cli", self.token)
        conn = self._connection()
        try:
            try:
                conn.request("GET", path + query_string(params or {}), headers=headers)
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise self._transport_error(exc) from None
            if not 200 <= resp.status < 300:
                raise UnexpectedResponse(resp.status, error_text(resp.read()))
            if conn.sock is not None:
                conn.sock.settimeout(None)
            yield resp
        finally:
            conn.close()

    def get_json(self, path: str, **params: Param) -> Any:
        """GET ``path`` and decode the JSON answer."""
        return self.request("GET", path, params=params).json()

    def _transport_error(self, exc: BaseException) -> AgentUnreachable:
        addr = str(self.address)
        if isinstance(exc, ConnectionRefusedError):
            return AgentUnreachable("connection refused", addr, "is the agent running?")
        if isinstance(exc, FileNotFoundError) and self.address.scheme == "unix":
            return AgentUnreachable("no such socket", addr, "is the agent running?")
        if isinstance(exc, TimeoutError):
            return AgentUnreachable(f"no answer within {self.timeout:g}s", addr)
        if isinstance(exc, socket.gaierror):
            return AgentUnreachable(f"cannot resolve host {self.address.host!r}", addr)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return AgentUnreachable(f"TLS certificate not trusted: {exc.verify_message}", addr)
        if isinstance(exc, ssl.SSLError):
            reason = exc.reason or str(exc)
            return AgentUnreachable(f"TLS error: {reason}", addr, "does the agent serve https?")
        if isinstance(exc, http.client.HTTPException | ConnectionResetError):
            hint = "does the agent serve https?" if self.address.scheme == "http" else ""
            return AgentUnreachable("the connection closed without an HTTP answer", addr, hint)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return AgentUnreachable(reason or type(exc).__name__, addr)


FILTERED_HEADER = "x-consul-results-filtered-by-acls"
FILTERED_HINT = (
    "Note: the answer is empty because ACLs filtered it "
    "(X-Consul-Results-Filtered-By-ACLs): the token may not read these entries."
)


def _emptied_by_acls(result: Response) -> bool:
    """An empty JSON list or object the agent says ACLs filtered (Consul sets
    ``X-Consul-Results-Filtered-By-ACLs: true`` when it dropped entries)."""
    if result.headers.get(FILTERED_HEADER, "").lower() != "true":
        return False
    return result.body.strip() in (b"[]", b"{}", b"null")
