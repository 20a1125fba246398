"""Traffic mirroring in the L7 outbound driver, without sockets: the copies'
bound and timeout (MirrorSender), and a request whose mirror hangs or fails
answered from the primary at once, with the copy's Host ``-shadow``."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, cast

import h11
import trio

from connect.l7.chain import compile_chain
from connect.l7.chain_validate import EntrySet
from connect.l7.entries import parse_entry
from connect.proxy.balancer import Endpoint
from connect.proxy.http_pool import UpstreamReset, UpstreamResponse
from connect.proxy.l7_mirror import MirrorSender
from connect.proxy.l7_outbound import L7OutboundHandler, L7Upstream
from connect.proxy.metrics import ProxyMetrics


async def test_copies_beyond_the_bound_are_dropped_and_hung_ones_time_out(
    autojump_clock: trio.abc.Clock,
) -> None:
    sender = MirrorSender("api", max_in_flight=2, timeout=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        start = trio.current_time()
        accepted = [sender.submit(trio.sleep_forever) for _ in range(3)]
        assert trio.current_time() == start  # submit never waits
        assert accepted == [True, True, False]
        assert (sender.in_flight, sender.counts.dropped) == (2, 1)
        await trio.sleep(5.1)
        assert sender.in_flight == 0 and sender.counts.failed == 2

        async def boom() -> None:
            raise UpstreamReset("reset", before_response=True)

        async def fine() -> None:
            await trio.sleep(0.01)

        assert sender.submit(boom) and sender.submit(fine)
        await trio.sleep(1)
        assert (sender.counts.sent, sender.counts.failed, sender.counts.dropped) == (1, 3, 1)
        nursery.cancel_scope.cancel()
    assert not sender.submit(fine)  # not running: dropped, not queued
    assert sender.counts.dropped == 2


API = "api.default.default.dc1"
SHADOW = "shadow.default.default.dc1"
PRIMARY = "127.0.0.1:31000"
MIRROR = "127.0.0.1:31001"


def _upstream() -> L7Upstream:
    entries = [
        {"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
        {"Kind": "service-defaults", "Name": "shadow", "Protocol": "http"},
        {
            "Kind": "service-router",
            "Name": "api",
            "Routes": [
                {
                    "Match": {"HTTP": {"PathPrefix": "/m"}},
                    "Destination": {"RequestTimeout": "2s", "Mirror": {"Service": "shadow"}},
                }
            ],
        },
    ]
    lookup = EntrySet.of([parse_entry(e) for e in entries])
    up = L7Upstream("web", "api")
    up.set_chain(compile_chain("api", lookup, "dc1", "consul").to_json())
    up.set_endpoints(API, [Endpoint("127.0.0.1", 31000)])
    up.set_endpoints(SHADOW, [Endpoint("127.0.0.1", 31001)])
    return up


class _Pool:
    """Answers the primary at once; the mirror hangs or resets."""

    def __init__(self, mirror: str) -> None:
        self.mirror = mirror
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    async def request(
        self,
        endpoint: str,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        deadline: float = math.inf,
    ) -> UpstreamResponse:
        self.calls.append((endpoint, target, dict(headers)))
        if endpoint == MIRROR:
            if self.mirror == "hang":
                await trio.sleep_forever()
            raise UpstreamReset("reset", before_response=True)
        return UpstreamResponse(200, [("content-length", "3")], b"v1\n")


def _request(path: str) -> h11.Request:
    return h11.Request(method="GET", target=path, headers=[("Host", "api"), ("x-k", "1")])


async def test_a_hanging_or_failing_mirror_changes_nothing_for_the_caller(
    autojump_clock: trio.abc.Clock,
) -> None:
    up = _upstream()
    assert up.service_of == {PRIMARY: "api", MIRROR: "shadow"}  # the identity each must show
    metrics = ProxyMetrics()
    handler = L7OutboundHandler(cast(Any, None), up, cast(Any, SimpleNamespace(metrics=metrics)))
    async with trio.open_nursery() as nursery:
        await nursery.start(up.mirrors.run)
        for behaviour in ("hang", "reset"):
            pool = _Pool(behaviour)
            handler.pool = cast(Any, pool)
            start = trio.current_time()
            resp = await handler.handle(_request("/m/1"), b"")
            assert (resp.status, resp.body) == (200, b"v1\n")
            assert trio.current_time() == start
            await trio.sleep(0.1)
            by_endpoint = {ep: (target, hdrs) for ep, target, hdrs in pool.calls}
            assert by_endpoint[PRIMARY] == ("/m/1", {"host": "api", "x-k": "1"})
            assert by_endpoint[MIRROR] == ("/m/1", {"host": "api-shadow", "x-k": "1"})
        # Not mirrored: a path the mirror route does not match.
        pool = _Pool("reset")
        handler.pool = cast(Any, pool)
        assert (await handler.handle(_request("/other"), b"")).status == 200
        await trio.sleep(0.1)
        assert [ep for ep, _, _ in pool.calls] == [PRIMARY]
        assert up.mirrors.counts.failed == 1 and up.mirrors.in_flight == 1  # the hung copy
        await trio.sleep(2)  # the route's 2 s timeout (started at 0) ends the hung copy
        assert up.mirrors.in_flight == 0 and up.mirrors.counts.failed == 2
        nursery.cancel_scope.cancel()
    labels = {"source": "web", "destination": "api", "result": "failed"}
    assert metrics.registry.get_sample_value("meshd_proxy_mirror_requests_total", labels) == 2
