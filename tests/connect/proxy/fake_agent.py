"""A tiny agent HTTP API for the proxy tests (trio + h11), with real blocking queries.

Serves the endpoints the proxy consumes from plain dicts the test mutates
through methods that bump Consul-style indexes and wake blocked queries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import trio

from connect.intentions import decide
from connect.proxy.authz import intention_from_json


class FakeAgent:
    def __init__(self) -> None:
        self.index = 10
        self.services: dict[str, Any] = {}
        self.roots: dict[str, Any] = {"ActiveRootID": "", "TrustDomain": "", "Roots": []}
        self.roots_index = 1
        self.leaves: dict[str, tuple[dict[str, Any], int]] = {}
        self.health: dict[str, tuple[list[Any], int]] = {}
        self.intentions: list[dict[str, Any]] = []
        self.intentions_index = 1
        self.default_allow = True
        self.token_seen: list[str] = []
        self.authorize_calls = 0
        self.requests = 0
        self._changed = trio.Event()
        self.port = 0

    # -- mutation ----------------------------------------------------------------------------

    def _bump(self) -> int:
        self.index += 1
        self._changed.set()
        self._changed = trio.Event()
        return self.index

    def set_services(self, services: dict[str, Any]) -> None:
        self.services = services
        self._bump()

    def set_roots(self, trust_domain: str, roots: list[dict[str, Any]]) -> None:
        active = next((r["ID"] for r in roots if r.get("Active")), "")
        self.roots = {"ActiveRootID": active, "TrustDomain": trust_domain, "Roots": roots}
        self.roots_index = self._bump()

    def set_leaf(self, service: str, leaf: dict[str, Any]) -> None:
        idx = self.index + 1
        self.leaves[service] = ({**leaf, "ModifyIndex": idx}, idx)
        self._bump()

    def set_health(self, service: str, entries: list[Any]) -> None:
        idx = self.index + 1
        self.health[service] = (entries, idx)
        self._bump()

    def set_intentions(self, intentions: list[dict[str, Any]]) -> None:
        self.intentions = intentions
        self.intentions_index = self.index + 1
        self._bump()

    # -- HTTP ------------------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(conn, stream)
                if request is None:
                    return
                status, headers, payload = await self._route(request, body)
                data = conn.send(
                    h11.Response(
                        status_code=status,
                        headers=[*headers, ("Content-Length", str(len(payload)))],
                    )
                )
                data += conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage())
                await stream.send_all(data)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()

    async def _read_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[h11.Request | None, bytes]:
        request = None
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return None, b""
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return request, b"".join(chunks)
            else:
                return None, b""

    async def _block(self, version: Callable[[], Any], seen: Any, wait: float) -> None:
        with trio.move_on_after(wait):
            while version() == seen:
                await self._changed.wait()

    async def _route(
        self, req: h11.Request, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        self.requests += 1
        for name, value in req.headers:
            if name == b"x-consul-token":
                self.token_seen.append(value.decode())
        url = urlsplit(req.target.decode())
        q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        wait = float(q.get("wait", "0s").rstrip("s") or 0)
        path = url.path
        idx = int(q.get("index", "0") or 0)
        if req.method == b"POST" and path == "/v1/agent/connect/authorize":
            return self._authorize(json.loads(body))
        if path == "/v1/agent/services":
            seen = q.get("hash", "")
            if seen:
                await self._block(self._services_hash, seen, wait)
            return 200, [("X-Consul-ContentHash", self._services_hash())], _dump(self.services)
        if path == "/v1/agent/connect/ca/roots":
            await self._block(lambda: self.roots_index, idx, wait if idx else 0)
            return self._indexed(self.roots, self.roots_index)
        if path.startswith("/v1/agent/connect/ca/leaf/"):
            svc = unquote(path.rsplit("/", 1)[1])
            await self._block(lambda: self.leaves.get(svc, (None, 0))[1], idx, wait if idx else 0)
            if svc not in self.leaves:
                return 404, [], b"no leaf"
            leaf, leaf_idx = self.leaves[svc]
            return self._indexed(leaf, leaf_idx)
        if path.startswith("/v1/health/connect/"):
            svc = unquote(path.rsplit("/", 1)[1])
            await self._block(lambda: self.health.get(svc, ([], 1))[1], idx, wait if idx else 0)
            entries, h_idx = self.health.get(svc, ([], 1))
            return self._indexed(entries, h_idx)
        if path == "/v1/connect/intentions/match":
            await self._block(lambda: self.intentions_index, idx, wait if idx else 0)
            name = q.get("name", "")
            found = [i for i in self.intentions if i["DestinationName"] in (name, "*")]
            return self._indexed({name: found}, self.intentions_index)
        if path.startswith("/v1/discovery-chain/") or path == "/v1/config/service-intentions":
            # Every service is tcp and there are no config entries: answered
            # (so no listener waits for a first chain), blocking until ``wait``.
            await self._block(lambda: 1, idx, wait if idx else 0)
            tcp = {"Chain": {"ServiceName": unquote(path.rsplit("/", 1)[1]), "Protocol": "tcp"}}
            return self._indexed(tcp if path.startswith("/v1/disc") else [], 1)
        return 404, [], b"not found"

    def _services_hash(self) -> str:
        return hashlib.sha256(_dump(self.services)).hexdigest()[:16]

    def _indexed(self, value: Any, index: int) -> tuple[int, list[tuple[str, str]], bytes]:
        return 200, [("X-Consul-Index", str(index))], _dump(value)

    def _authorize(self, body: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
        self.authorize_calls += 1
        source = str(body["ClientCertURI"]).rsplit("/", 1)[1]
        ixns = [intention_from_json(i) for i in self.intentions]
        d = decide(ixns, source, body["Target"], default_allow=self.default_allow)
        return 200, [], _dump({"Authorized": d.allowed, "Reason": d.reason})


def _dump(value: Any) -> bytes:
    return json.dumps(value).encode()
