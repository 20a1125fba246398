"""Pieces of the L7 outbound driver that need no agent: the Upgrade/CONNECT
sniff (nothing consumed), hop-by-hop header stripping, the resources it
follows, and an upstream's table rebuilt from its chain and endpoints."""

from __future__ import annotations

import random
import socket
import types
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from connect.l7.chain import compile_chain
from connect.l7.chain_validate import EntrySet
from connect.l7.entries import parse_entry
from connect.l7.request import Headers, RawHeaders
from connect.proxy.balancer import Endpoint
from connect.proxy.http1 import ParsedRequest, ProtocolError, end_to_end_raw, request_bytes
from connect.proxy.http_pool import (
    UpstreamResponse,
    end_to_end,
)
from connect.proxy.l7_metrics import Reporter
from connect.proxy.l7_outbound import (
    WARM_WAIT,
    L7OutboundHandler,
    L7Upstream,
    chain_resource,
    follow_chain,
    target_health_resource,
    wants_l4,
)
from connect.proxy.metrics import ProxyMetrics
from connect.proxy.watchers import Resource, Watched


async def _sniff(first: bytes, later: bytes = b"") -> tuple[bool, bytes]:
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        b.sendall(first)

        async def more() -> None:
            await trio.sleep(0.05)
            if later:
                b.sendall(later)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(more)
            with trio.fail_after(5):
                verdict = await wants_l4(a)
        return verdict, a.recv(65536)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize(
    ("first", "later", "expected"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"", False),
        (b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n", b"\r\n", True),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", b"", True),
        (b"POST / HTTP/1.1\r\nX-Upgrade: no\r\n\r\n", b"", False),
    ],
)
async def test_first_request_upgrade_or_connect_goes_l4_and_nothing_is_consumed(
    first: bytes, later: bytes, expected: bool
) -> None:
    verdict, still_there = await _sniff(first, later)
    assert verdict is expected
    assert still_there == first + later


def test_hop_by_hop_and_connection_named_headers_are_dropped() -> None:
    headers = [
        ("Host", "api"),
        ("Connection", "keep-alive, x-private"),
        ("X-Private", "1"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "3"),
        ("x-version", "v2"),
    ]
    assert end_to_end(headers) == [("Host", "api"), ("x-version", "v2")]


def test_target_health_follows_the_subset_filter_agent_side() -> None:
    res = target_health_resource("api", 'Service.Meta.version == "v2"')
    assert res.path == "/v1/health/connect/api"
    assert dict(res.query) == {"passing": "1", "filter": 'Service.Meta.version == "v2"'}
    assert dict(target_health_resource("api", "").query) == {"passing": "1"}


async def test_upstream_is_l7_only_for_an_http_chain_and_rebuilds_with_endpoints() -> None:
    up = L7Upstream("web", "api")
    assert not up.is_http and up.decider is None
    tcp = compile_chain("api", EntrySet(), "dc1", "consul").to_json()
    up.set_chain(tcp)
    assert up.known.is_set() and not up.is_http and up.decider is None
    lookup = EntrySet.of(
        [parse_entry({"Kind": "service-defaults", "Name": "api", "Protocol": "http"})]
    )
    up.set_chain(compile_chain("api", lookup, "dc1", "consul").to_json())
    assert up.is_http and up.decider is not None
    assert up.targets() == {"api.default.default.dc1": ("api", "")}
    up.set_endpoints("api.default.default.dc1", [Endpoint("127.0.0.1", 31000)])
    assert up.decider is not None
    assert up.decider.table.targets["api.default.default.dc1"].endpoints == ("127.0.0.1:31000",)


class FakeHub:
    """``WatchHub`` without an agent: the test publishes each resource's value."""

    def __init__(self) -> None:
        self.cells: dict[Resource, Watched[Any]] = {}

    def acquire(self, res: Resource, parse: Any) -> Watched[Any]:
        return self.cells.setdefault(res, Watched())

    def release(self, res: Resource) -> None:
        pass

    def health(self, subset: str) -> Watched[Any]:
        return self.cells[target_health_resource("api", f'Service.Meta.version == "{subset}"')]


def _chain(*entries: dict[str, Any]) -> dict[str, Any]:
    base = [
        {"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
        {
            "Kind": "service-resolver",
            "Name": "api",
            "DefaultSubset": "v1",
            "Subsets": {
                v: {"Filter": f'Service.Meta.version == "{v}"'} for v in ("v1", "v2", "v3")
            },
        },
    ]
    lookup = EntrySet.of([parse_entry(e) for e in [*base, *entries]])
    return compile_chain("api", lookup, "dc1", "consul").to_json()


def _split(to: str) -> dict[str, Any]:
    splits = [{"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": to}]
    return {"Kind": "service-splitter", "Name": "api", "Splits": splits}


async def test_a_new_target_is_warmed_before_the_chain_that_splits_to_it_applies(
    autojump_clock: MockClock,
) -> None:
    hub, up = FakeHub(), L7Upstream("web", "api")
    chains: Watched[Any] = hub.acquire(chain_resource("api"), None)
    v1, v2 = "v1.api.default.default.dc1", "v2.api.default.default.dc1"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow_chain, hub, up)  # type: ignore[arg-type]
        chains.set(_chain())
        await trio.sleep(0.1)
        hub.health("v1").set([Endpoint("127.0.0.1", 31001)])
        await trio.sleep(0.1)
        assert set(up.targets()) == {v1} and up.endpoints[v1]
        # The splitter to v2 waits for v2's endpoints: the old chain keeps serving.
        chains.set(_chain(_split("v2")))
        await trio.sleep(1.0)
        assert set(up.targets()) == {v1}
        hub.health("v2").set([Endpoint("127.0.0.1", 31002)])
        await trio.sleep(0.1)
        assert set(up.targets()) == {v1, v2}
        assert up.decider is not None
        assert up.decider.table.targets[v2].endpoints == ("127.0.0.1:31002",)
        # A target whose endpoints never come is applied after WARM_WAIT anyway.
        start = trio.current_time()
        chains.set(_chain(_split("v3")))
        while "v3.api.default.default.dc1" not in up.targets():
            await trio.sleep(0.1)
        assert WARM_WAIT <= trio.current_time() - start <= WARM_WAIT + 0.2
        assert v2 not in up.endpoints  # the dropped target's watch ended
        nursery.cancel_scope.cancel()


async def test_split_response_headers_apply_to_their_leg_only_and_leave_the_answer_intact() -> None:
    splitter = {
        "Kind": "service-splitter",
        "Name": "api",
        "Splits": [
            {
                "Weight": 50,
                "ServiceSubset": "v1",
                "ResponseHeaders": {"Set": {"x-leg": "v1"}, "Remove": ["server"]},
            },
            {"Weight": 50, "ServiceSubset": "v2"},
        ],
    }
    up = L7Upstream("web", "api", random.Random(7))
    up.set_chain(_chain(splitter))
    for i, subset in enumerate(("v1", "v2")):
        up.set_endpoints(f"{subset}.api.default.default.dc1", [Endpoint("127.0.0.1", 31001 + i)])
    assert up.decider is not None and up.decider._split is not None  # the shortcut serves it
    answer = [("server", "nginx"), ("content-length", "2")]
    seen: list[str] = []

    async def pool_request(endpoint: str, *args: Any, **kw: Any) -> UpstreamResponse:
        seen.append(endpoint)
        return UpstreamResponse(200, answer, b"ok")

    metrics = ProxyMetrics()
    l4: Any = types.SimpleNamespace(metrics=metrics)
    handler = L7OutboundHandler(None, up, l4, Reporter(metrics.standard, "source", "web"))  # type: ignore[arg-type]
    handler.pool.request = pool_request  # type: ignore[method-assign]
    legs: dict[str, list[list[tuple[str, str]]]] = {}
    for _ in range(40):
        resp = await handler.handle(ParsedRequest(b"GET", b"/", [(b"host", b"api")]), b"")
        legs.setdefault(seen[-1], []).append(resp.headers)
    assert set(legs) == {"127.0.0.1:31001", "127.0.0.1:31002"}
    assert all(h == [("content-length", "2"), ("x-leg", "v1")] for h in legs["127.0.0.1:31001"])
    assert all(h == answer for h in legs["127.0.0.1:31002"])
    assert answer == [("server", "nginx"), ("content-length", "2")]  # never modified in place


def test_raw_headers_decode_on_first_read_and_a_change_never_leaves_raw_stale() -> None:
    raw = [(b"Host", b"api"), (b"X-Name", b"caf\xe9")]
    headers = Headers.from_raw(raw)
    assert isinstance(headers, RawHeaders) and not headers.decoded
    assert headers.get("x-name") == "café" and headers.decoded  # Latin-1, read as text
    changed = Headers.from_raw(raw)
    changed.add("x-added", "1")
    assert changed.decoded and changed.items()[-1] == ("x-added", "1")
    assert raw == [(b"Host", b"api"), (b"X-Name", b"caf\xe9")]  # the parser's list untouched


@pytest.mark.parametrize(
    "raw",
    [
        [(b"Host", b"api"), (b"User-Agent", b"wrk"), (b"x-v", b"caf\xe9")],
        [
            (b"Host", b"api"),
            (b"Connection", b"keep-alive, X-Private"),
            (b"x-private", b"1"),
            (b"TE", b"trailers"),
            (b"x-v", b"2"),
        ],
        [(b"Connection", b"close"), (b"Upgrade", b"h2c"), (b"Keep-Alive", b"timeout=5")],
        [],
    ],
)
def test_headers_sent_as_bytes_are_the_bytes_the_text_path_sends(
    raw: list[tuple[bytes, bytes]],
) -> None:
    text = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]
    kept = end_to_end_raw(raw)
    assert [(k.decode("latin-1"), v.decode("latin-1")) for k, v in kept] == end_to_end(text)
    sent = request_bytes("GET", "/a?b=1", [*kept, (b"content-length", b"2")], b"ok")
    assert sent == request_bytes(
        "GET", "/a?b=1", [*end_to_end(text), ("content-length", "2")], b"ok"
    )
    with pytest.raises(ProtocolError):
        request_bytes("GET", "/", [(b"x-bad", b"a\r\nx-smuggled: 1")], b"")


async def test_a_request_nothing_read_goes_upstream_as_it_came_and_a_modified_one_as_text() -> None:
    splitter = {
        "Kind": "service-splitter",
        "Name": "api",
        "Splits": [
            {"Weight": 50, "ServiceSubset": "v1", "RequestHeaders": {"Set": {"x-leg": "v1"}}},
            {"Weight": 50, "ServiceSubset": "v2"},
        ],
    }
    up = L7Upstream("web", "api", random.Random(3))
    up.set_chain(_chain(splitter))
    for i, subset in enumerate(("v1", "v2")):
        up.set_endpoints(f"{subset}.api.default.default.dc1", [Endpoint("127.0.0.1", 31001 + i)])
    sent: dict[str, list[bytes]] = {}

    async def pool_request(
        endpoint: str, method: str, target: str, headers: Any, body: bytes, *a: Any
    ) -> UpstreamResponse:
        sent.setdefault(endpoint, []).append(request_bytes(method, target, headers, body))
        return UpstreamResponse(200, [], b"ok")

    metrics = ProxyMetrics()
    l4: Any = types.SimpleNamespace(metrics=metrics)
    handler = L7OutboundHandler(None, up, l4, Reporter(metrics.standard, "source", "web"))  # type: ignore[arg-type]
    handler.pool.request = pool_request  # type: ignore[method-assign]
    raw = [(b"Host", b"api"), (b"Connection", b"keep-alive"), (b"X-Name", b"caf\xe9")]
    for _ in range(30):
        await handler.handle(ParsedRequest(b"POST", b"/p?q=1", list(raw)), b"ok")
    plain = b"POST /p?q=1 HTTP/1.1\r\nHost: api\r\nX-Name: caf\xe9\r\ncontent-length: 2\r\n\r\nok"
    assert set(sent["127.0.0.1:31002"]) == {plain}  # v2: the parsed bytes, framed anew
    set_leg = plain.replace(b"X-Name: caf\xe9\r\n", b"X-Name: caf\xe9\r\nx-leg: v1\r\n")
    assert set(sent["127.0.0.1:31001"]) == {set_leg}  # v1: Set applied, as text
