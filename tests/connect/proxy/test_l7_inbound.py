"""The L7 inbound driver without an agent: requests judged by the current
intentions on one keep-alive connection, Envoy's 403, the log line and the
counter, the normalised path forwarded to a local app, and the rules built
from config entries and /v1/connect/intentions answers."""

from __future__ import annotations

import dataclasses
import functools
import logging
import socket
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from connect.intentions import Intention
from connect.l7.request import Request
from connect.proxy.identity import PeerID
from connect.proxy.l7_inbound import (
    L7Inbound,
    _Parsed,
    source_from_intention,
    sources_from_entries,
)
from connect.proxy.metrics import ProxyMetrics

WEB = PeerID("td.consul", "dc1", "web")
ENTRY = {
    "Kind": "service-intentions",
    "Name": "api",
    "ModifyIndex": 12,
    "Sources": [
        {
            "Name": "web",
            "Permissions": [
                {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
                {"Action": "allow", "HTTP": {"PathPrefix": "/api/"}},
            ],
        }
    ],
}


async def _app(stream: trio.SocketStream) -> None:
    """A keep-alive HTTP/1.1 app answering ``app <method> <target>``."""
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = await stream.receive_some(65536)
            if not data:
                return
            buf += data
        head, _, buf = buf.partition(b"\r\n\r\n")
        method, target = head.split(b" ")[:2]
        body = b"app " + method + b" " + target
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
        )


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], str]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(lines[0].split()[1]), headers, rest.decode()


@pytest.fixture
async def served(nursery: trio.Nursery) -> Any:
    listeners = await nursery.start(functools.partial(trio.serve_tcp, _app, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    metrics = ProxyMetrics()
    svc = L7Inbound("api", metrics)
    svc.set_chain({"Protocol": "http"})
    svc.set_entry_sources(sources_from_entries([ENTRY], "api"))
    spec = SimpleNamespace(
        local_address="127.0.0.1",
        local_port=port,
        limits=SimpleNamespace(connect_timeout=5.0, idle_timeout=60.0),
    )
    listener: Any = SimpleNamespace(spec=spec)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(10)
    svc._listener = listener
    sock: Any = ours  # a plain socket: the driver uses only recv, send and fileno
    nursery.start_soon(svc._requests, sock, WEB, b"")
    yield svc, metrics, theirs
    theirs.close()
    ours.close()


async def _ask(sock: socket.socket, method: str, target: str) -> tuple[int, dict[str, str], str]:
    sock.sendall(f"{method} {target} HTTP/1.1\r\nhost: api\r\n\r\n".encode())
    return await trio.to_thread.run_sync(_read_response, sock)


async def test_requests_on_one_connection_are_judged_one_by_one(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    svc, metrics, sock = served
    caplog.set_level(logging.INFO, logger="meshd.proxy")
    assert await _ask(sock, "GET", "/api/users?x=1") == (
        200,
        {"content-length": "22"},
        "app GET /api/users?x=1",
    )
    status, headers, body = await _ask(sock, "DELETE", "/api/%2e%2e/admin")
    assert (status, headers["content-type"], body) == (403, "text/plain", "RBAC: access denied")
    (line,) = [r.getMessage() for r in caplog.records if "rbac_denied" in r.getMessage()]
    assert line == (
        'event=rbac_denied source=web destination=api intention="web => api" permission=0 '
        "method=DELETE path=/api/%2e%2e/admin "
        'reason="Matched L7 intention web => api permission 0 (Action: deny)"'
    )
    labels = {"source": "web", "destination": "api", "intention": "web => api"}
    assert metrics.registry.get_sample_value("meshd_proxy_rbac_denials_total", labels) == 1.0
    # The app gets the path that was judged: dot segments resolved.
    assert (await _ask(sock, "GET", "/api/v1/../v2"))[2] == "app GET /api/v2"
    # A new rule applies to the next request on the same connection.
    allow_all = {**ENTRY, "Sources": [{"Name": "web", "Action": "allow"}]}
    svc.set_entry_sources(sources_from_entries([allow_all], "api"))
    assert (await _ask(sock, "DELETE", "/admin"))[:1] == (200,)


async def test_a_malformed_escape_gets_400_before_any_rule(served: Any) -> None:
    _, _, sock = served
    assert (await _ask(sock, "GET", "/api/%zz"))[0] == 400


def test_rules_merge_entries_and_intentions_in_precedence_order() -> None:
    svc = L7Inbound("api", ProxyMetrics())
    star = {"Kind": "service-intentions", "Name": "*", "Sources": [{"Name": "*", "Action": "deny"}]}
    other = {**ENTRY, "Name": "billing"}
    svc.set_entry_sources(sources_from_entries([star, other, ENTRY], "api"))
    svc.set_table(
        [Intention(id="i-1", source_name="*", destination_name="api", precedence=8, action="allow")]
    )
    assert [(s.name, s.precedence) for s in svc.rules] == [("web", 9), ("*", 8), ("*", 5)]
    web = svc.connection_decision(WEB)
    assert web is not None and (web.allowed, web.intention_id) == (True, "web => api")
    # "*" of the intentions API: the L4 gate decides, as for a tcp service.
    assert svc.connection_decision(PeerID("td.consul", "dc1", "ops")) is None
    svc.set_table([])
    ops = svc.connection_decision(PeerID("td.consul", "dc1", "ops"))
    assert ops is not None and (ops.allowed, ops.intention_id) == (False, "* => *")


def test_an_intention_whose_permissions_do_not_decode_denies_every_request() -> None:
    bad = Intention(
        id="i-2",
        source_name="web",
        destination_name="api",
        precedence=9,
        permissions=({"Action": "maybe", "HTTP": {"PathPrefix": "/"}},),
    )
    src = source_from_intention(bad)
    assert src.extra == {"LegacyID": "i-2"}
    assert [p.action for p in src.permissions] == ["deny"]


async def _upgrade(svc: L7Inbound, target: str) -> tuple[int, dict[str, str], str]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(10)
    first = f"GET {target} HTTP/1.1\r\nhost: api\r\nupgrade: websocket\r\n\r\n".encode()
    sock: Any = ours
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(svc._upgrade, sock, WEB, first)
            answer = await trio.to_thread.run_sync(_read_response, theirs)
            theirs.close()  # ends the splice
        return answer
    finally:
        ours.close()


async def test_an_upgrade_request_is_judged_then_spliced(served: Any) -> None:
    svc, _, _ = served
    assert await _upgrade(svc, "/api/%2e%2e/admin") == (
        403,
        {"content-type": "text/plain", "connection": "close", "content-length": "19"},
        "RBAC: access denied",
    )
    # Allowed: the request's own bytes reach the app (an L4 splice).
    assert (await _upgrade(svc, "/api/ws"))[::2] == (200, "app GET /api/ws")


def test_an_entry_the_proxy_cannot_read_denies_every_request() -> None:
    svc = L7Inbound("api", ProxyMetrics())
    future = {**ENTRY, "Sources": [{"Name": "web", "Action": "allow", "NewField": 1}]}
    svc.set_entry_sources(sources_from_entries([future], "api"))
    d = svc.decide(Request.build("GET", "/api/x", source_service="web"))
    assert (d.allowed, d.intention) == (False, "unreadable service-intentions api")


def test_an_intention_seen_as_entry_source_and_by_match_is_one_rule() -> None:
    """With one store, /match also lists the entry's sources: no duplicate rule."""
    svc = L7Inbound("api", ProxyMetrics())
    svc.set_entry_sources(sources_from_entries([ENTRY], "api"))
    svc.set_table(
        [
            Intention(
                id="", source_name="web", destination_name="api", precedence=9, action="allow"
            ),
            Intention(
                id="i-2", source_name="*", destination_name="api", precedence=8, action="deny"
            ),
        ]
    )
    assert [(s.name, s.precedence) for s in svc.rules] == [("web", 9), ("*", 8)]


def test_a_decision_kept_per_source_follows_every_rule_and_default_change() -> None:
    """The decision of a source no L7 rule names is kept (cached) per source;
    a new default, a new table or new entries apply to the very next request,
    and an L7 rule still judges each request."""
    svc = L7Inbound("api", ProxyMetrics())

    def judged(path: str, source: str = "web") -> tuple[bool, str]:
        d = svc._judge(_Parsed.of(Request.build("GET", path, source_service=source)))
        return d.allowed, d.reason

    assert judged("/a")[0] is False  # default deny until known
    svc.default_allow = True
    assert judged("/a")[0] is True
    deny = Intention(id="i-1", source_name="web", destination_name="api", precedence=9)
    svc.set_table([dataclasses.replace(deny, action="deny")])
    assert judged("/a") == (False, "Matched L4 intention i-1 (Action: deny)")
    assert judged("/a", "ops")[0] is True  # another source: the default
    svc.set_entry_sources(sources_from_entries([ENTRY], "api"))  # L7, precedence 9 first
    assert [judged(p)[0] for p in ("/api/x", "/admin", "/api/y")] == [True, False, True]
    svc.set_entry_sources([])
    svc.default_allow = False
    assert (judged("/api/x")[0], judged("/a", "ops")[0]) == (False, False)
