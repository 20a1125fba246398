"""A small HTTP/1.1 client for the local agent's API (h11 over trio).

Kept tiny on purpose (the proxy's RSS budget rules out httpx): plain HTTP
to ``host:port``, keep-alive connections reused from an idle pool, one
connection per in-flight request (blocking queries hold theirs for the
whole wait), ``X-Consul-Token`` on every request, and a per-request
deadline. Every failure is mapped to ``AgentUnavailableError`` (no answer)
or ``AgentResponseError`` (a non-2xx answer).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import h11
import trio

from ..agent_http import InvalidJSONError, Response, error_text, query_string, request_headers
from .errors import AgentResponseError, AgentUnavailableError

__all__ = ["AgentClient", "Response", "answer_json", "path_segment"]

MAX_BODY = 32 * 1024 * 1024
MAX_IDLE = 4


class _Conn:
    __slots__ = ("h11", "stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)


def answer_json(resp: Response) -> Any:
    """``resp.json()``; a body that is not JSON raises ``AgentUnavailableError``."""
    try:
        return resp.json()
    except InvalidJSONError as exc:
        raise AgentUnavailableError(f"malformed JSON from agent: {exc}") from None


def path_segment(text: str) -> str:
    """Percent-encode one URL path segment (a service name)."""
    return quote(text, safe="")


class AgentClient:
    """HTTP client for one agent. Safe to share between tasks."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8500,
        *,
        token: str = "",
        connect_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.connect_timeout = connect_timeout
        self._idle: list[_Conn] = []

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def aclose(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.stream.aclose()

    async def _connect(self) -> _Conn:
        try:
            with trio.fail_after(self.connect_timeout):
                stream = await trio.open_tcp_stream(self.host, self.port)
        except trio.TooSlowError:
            raise AgentUnavailableError(f"connect to {self.address} timed out") from None
        except OSError as exc:
            raise AgentUnavailableError(
                f"connect to {self.address}: {exc.strerror or exc}"
            ) from None
        return _Conn(stream)

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        timeout: float = 10.0,
    ) -> Response:
        """Send one request and read the whole answer within ``timeout`` seconds.

        Raises ``AgentUnavailableError`` (no/garbled answer, timeout) or
        ``AgentResponseError`` (status >= 300). On cancellation the
        connection is closed, never reused.
        """
        target = path + query_string(query or {})
        if body is None or isinstance(body, bytes):  # bytes: JSON encoded already
            payload = body or b""
        else:
            payload = json.dumps(body).encode()
        headers = [("Host", self.address), *request_headers("meshd-proxy", self.token).items()]
        if body is not None:
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
        reused = bool(self._idle)
        conn = self._idle.pop() if reused else await self._connect()
        ok = False
        try:
            with trio.fail_after(timeout):
                resp = await self._exchange(conn, method, target, headers, payload)
            ok = True
        except trio.TooSlowError:
            raise AgentUnavailableError(f"{method} {path}: no answer in {timeout:g}s") from None
        except (
            OSError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            h11.ProtocolError,
        ) as exc:
            if reused:
                # A kept-alive connection the agent closed meanwhile: retry once on a fresh one.
                with trio.CancelScope(shield=True):
                    await conn.stream.aclose()
                return await self.request(method, path, query=query, body=body, timeout=timeout)
            raise AgentUnavailableError(f"{method} {path}: {exc}") from None
        finally:
            if ok and conn.h11.our_state is h11.DONE and conn.h11.their_state is h11.DONE:
                conn.h11.start_next_cycle()
                self._idle.append(conn)
                if len(self._idle) > MAX_IDLE:
                    with trio.CancelScope(shield=True):
                        await self._idle.pop(0).stream.aclose()
            else:
                with trio.CancelScope(shield=True):
                    await conn.stream.aclose()
        if resp.status >= 300:
            raise AgentResponseError(resp.status, error_text(resp.body))
        return resp

    async def _exchange(
        self, conn: _Conn, method: str, target: str, headers: list[tuple[str, str]], payload: bytes
    ) -> Response:
        out = conn.h11.send(h11.Request(method=method, target=target, headers=headers))
        if payload:
            out += conn.h11.send(h11.Data(data=payload))
        out += conn.h11.send(h11.EndOfMessage())
        await conn.stream.send_all(out)
        status = 0
        resp_headers: dict[str, str] = {}
        chunks: list[bytes] = []
        size = 0
        while True:
            event = conn.h11.next_event()
            if event is h11.NEED_DATA:
                data = await conn.stream.receive_some(65536)
                if not data and conn.h11.their_state is h11.SEND_RESPONSE:
                    raise trio.BrokenResourceError("agent closed the connection")
                conn.h11.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
                resp_headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_BODY:
                    raise h11.LocalProtocolError("answer body too large")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return Response(status, resp_headers, b"".join(chunks))
            elif isinstance(event, h11.ConnectionClosed):
                raise trio.BrokenResourceError("agent closed the connection")

    async def get_json(
        self, path: str, *, query: dict[str, str] | None = None, timeout: float = 10.0
    ) -> tuple[Any, Response]:
        """GET and decode JSON; returns ``(body, response)``."""
        resp = await self.request("GET", path, query=query, timeout=timeout)
        return answer_json(resp), resp

    async def blocking_get(
        self,
        path: str,
        *,
        query: dict[str, str] | None = None,
        index: int = 0,
        content_hash: str = "",
        wait: float = 30.0,
    ) -> tuple[Any, Response]:
        """A Consul blocking query (https://developer.hashicorp.com/consul/api-docs/features/blocking).

        With ``index`` (X-Consul-Index) or ``content_hash`` (X-Consul-ContentHash)
        the agent holds the answer until it changes or ``wait`` passes; the
        request deadline allows for the agent's jitter (wait/16) plus slack.
        """
        q = dict(query or {})
        if index > 0:
            q["index"] = str(index)
            q["wait"] = f"{wait:g}s"
        elif content_hash:
            q["hash"] = content_hash
            q["wait"] = f"{wait:g}s"
        return await self.get_json(path, query=q, timeout=wait + wait / 16 + 10.0)
