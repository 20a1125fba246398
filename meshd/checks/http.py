"""HTTP checks (Consul agent/checks/check.go ``CheckHTTP``).

One request per interval: ``Method`` (GET) to the ``HTTP`` URL with the
definition's ``Header`` and ``Body``, Consul's User-Agent and Accept headers,
``Connection: close`` (Consul disables keep-alive too, so a check always
sees a fresh connection, as a new client would). 2xx is passing, 429
warning, anything else critical; the output is ``HTTP GET <url>: 200 OK
Output: <body>`` with at most ``OutputMaxSize`` bytes of body read.
Redirects are followed (at most 10), as Go's HTTP client does. HTTPS uses
the ``ssl`` module: ``TLSSkipVerify`` turns verification off and
``TLSServerName`` sets the name sent (SNI) and verified.
"""

from __future__ import annotations

import base64
import ssl
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import h11
import trio

from ..durations import format_duration
from .base import CRITICAL, PASSING, WARNING, CheckOptions, CheckResult
from .dial import DialError, describe_error, open_stream, tls_context

__all__ = ["ACCEPT", "USER_AGENT", "HTTPChecker"]

USER_AGENT = "Consul Health Check"
ACCEPT = "text/plain, text/*, */*"
MAX_REDIRECTS = 10
_READ_SIZE = 16384
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_PHRASES = {s.value: s.phrase for s in HTTPStatus}  # for servers that send no reason


class _HTTPFailure(Exception):
    """A request failed before a complete response head arrived (Go-style text)."""


@dataclass(frozen=True, slots=True)
class _Response:
    code: int
    reason: str
    body: bytes
    location: str


@dataclass(frozen=True, slots=True)
class _Target:
    """A parsed URL and the h11 events of the request to it, built once."""

    url: str
    host: str
    port: int
    tls: bool
    events: tuple[h11.Request | h11.Data | h11.EndOfMessage, ...]


def _header_pairs(raw: Any) -> list[tuple[str, str]]:
    # Consul's Header is map[string][]string; tolerate plain strings as well.
    pairs: list[tuple[str, str]] = []
    if not isinstance(raw, dict):
        return pairs
    for name, values in raw.items():
        for value in [values] if isinstance(values, str) else list(values or ()):
            pairs.append((str(name), str(value)))
    return pairs


def _build_target(url: str, method: str, headers: list[tuple[str, str]], body: bytes) -> _Target:
    """Parse ``url`` and prepare the request; raises ``ValueError`` for a bad URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f'unsupported protocol scheme "{parts.scheme}"')
    if not parts.hostname:
        raise ValueError("no Host in request URL")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    netloc = parts.netloc.rpartition("@")[2]
    names = {name.lower() for name, _ in headers}
    out = [(n, v) for n, v in headers if n.lower() != "host"]
    host = next((v for n, v in headers if n.lower() == "host"), netloc)
    if "user-agent" not in names:
        out.append(("User-Agent", USER_AGENT))
    if "accept" not in names:
        out.append(("Accept", ACCEPT))
    if parts.username is not None and "authorization" not in names:
        creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        out.append(("Authorization", "Basic " + base64.b64encode(creds.encode()).decode()))
    out += [("Content-Length", str(len(body))), ("Connection", "close")]
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        request = h11.Request(method=method, target=path, headers=[("Host", host), *out])
    except h11.LocalProtocolError as exc:  # a header name or value HTTP does not allow
        raise ValueError(f"invalid request: {exc}") from None
    events: tuple[h11.Request | h11.Data | h11.EndOfMessage, ...] = (request,)
    if body:
        events += (h11.Data(data=body),)
    events += (h11.EndOfMessage(),)
    return _Target(url, parts.hostname, port, tls, events)


class HTTPChecker:
    """Probe one HTTP(S) URL; see the module docstring for the semantics."""

    def __init__(self, spec: dict[str, Any], options: CheckOptions) -> None:
        """Build the checker; raises ``ValueError`` for a malformed URL or header."""
        self.url = str(spec["HTTP"])
        self.method = str(spec.get("Method") or "GET").upper()
        self.headers = _header_pairs(spec.get("Header"))
        self.body = str(spec.get("Body") or "").encode()
        self.limit = options.output_max_size
        self.server_name = str(spec.get("TLSServerName") or "")
        self.skip_verify = bool(spec.get("TLSSkipVerify"))
        self._op = self.method[:1] + self.method[1:].lower()  # Go's url.Error wording
        self._target = _build_target(self.url, self.method, self.headers, self.body)

    def _tls(self) -> ssl.SSLContext:
        return tls_context(self.skip_verify)

    async def run(self) -> CheckResult:
        """One request (following redirects); every failure is a critical result."""
        target, method, body = self._target, self.method, self.body
        for _ in range(MAX_REDIRECTS + 1):
            try:
                resp = await self._request(target)
            except _HTTPFailure as exc:
                return CheckResult(CRITICAL, f'{self._op} "{target.url}": {exc}')
            if resp.code not in _REDIRECTS or not resp.location:
                return self._result(resp)
            if resp.code == 303 or (resp.code in (301, 302) and method == "POST"):
                method, body = ("HEAD" if method == "HEAD" else "GET"), b""
            try:
                target = _build_target(
                    urljoin(target.url, resp.location), method, self.headers, body
                )
            except ValueError as exc:
                return CheckResult(CRITICAL, f'{self._op} "{resp.location}": {exc}')
        reason = f"stopped after {MAX_REDIRECTS} redirects"
        return CheckResult(CRITICAL, f'{self._op} "{target.url}": {reason}')

    def timed_out(self, timeout: float) -> CheckResult:
        """Critical, worded like Go's client timeout."""
        reason = "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        return CheckResult(
            CRITICAL, f'{self._op} "{self.url}": {reason} (timeout {format_duration(timeout)})'
        )

    def _result(self, resp: _Response) -> CheckResult:
        if 200 <= resp.code <= 299:
            status = PASSING
        elif resp.code == 429:
            status = WARNING  # Consul: "too many requests" means alive but loaded
        else:
            status = CRITICAL
        text = resp.body.decode("utf-8", "replace")
        head = f"{resp.code} {resp.reason}" if resp.reason else str(resp.code)
        return CheckResult(status, f"HTTP {self.method} {self.url}: {head} Output: {text}")

    async def _request(self, target: _Target) -> _Response:
        """Send the request and read the head and up to ``limit`` bytes of body."""
        try:
            stream = await open_stream(
                target.host,
                target.port,
                tls=self._tls() if target.tls else None,
                server_name=self.server_name,
            )
        except DialError as exc:
            raise _HTTPFailure(str(exc)) from None
        try:
            return await self._exchange(stream, target)
        except (OSError, ssl.SSLError, trio.BrokenResourceError, h11.ProtocolError) as exc:
            raise _HTTPFailure(describe_error(exc)) from None
        finally:
            await trio.aclose_forcefully(stream)

    async def _exchange(self, stream: trio.abc.Stream, target: _Target) -> _Response:
        conn = h11.Connection(h11.CLIENT)
        await stream.send_all(b"".join(conn.send(e) or b"" for e in target.events))
        code, reason, location = 0, "", ""
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(_READ_SIZE)
                if not data:
                    if not code:
                        raise _HTTPFailure("EOF")
                    break  # closed mid-body: report what arrived
                conn.receive_data(bytes(data))
            elif isinstance(event, h11.Response):
                code, reason = event.status_code, event.reason.decode("latin-1")
                reason = reason or _PHRASES.get(code, "")
                location = next(
                    (v.decode("latin-1") for n, v in event.headers if n == b"location"), ""
                )
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) >= self.limit:
                    break
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
            # InformationalResponse (1xx) is skipped: the final response follows.
        return _Response(code, reason, bytes(body[: self.limit]), location)
