"""The proxy's ejection reporter against a recording fake client: it pushes
on an ejection, again when the ejection runs out, at the refresh interval,
and never more often than its rate limit allows."""

from __future__ import annotations

from typing import Any

import trio

from connect.l7.chain import compile_chain
from connect.l7.chain_validate import EntrySet
from connect.l7.entries import parse_entry
from connect.l7.outlier import OutlierConfig
from connect.l7.table import UpstreamLimits
from connect.proxy.balancer import Endpoint
from connect.proxy.ejections import EjectionReporter
from connect.proxy.errors import AgentResponseError
from connect.proxy.l7_outbound import L7Upstream

TARGET = "api.default.default.dc1"
WALL0 = 1_800_000_000.0


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str, Any]] = []

    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> None:
        assert method == "PUT"
        self.calls.append((trio.current_time(), path, body))


def http_upstream() -> L7Upstream:
    up = L7Upstream("web", "api")
    entries = EntrySet.of(
        [parse_entry({"Kind": "service-defaults", "Name": "api", "Protocol": "http"})]
    )
    up.set_chain(compile_chain("api", entries, "dc1", "consul").to_json())
    up.set_limits(UpstreamLimits(outlier=OutlierConfig(max_failures=1, base_ejection_time_s=30)))
    eps = [Endpoint("127.0.0.1", 31000, "n1", "api-1-proxy"), Endpoint("127.0.0.1", 31001)]
    up.set_endpoints(TARGET, eps)
    return up


def ejections(call: tuple[float, str, Any]) -> list[dict[str, Any]]:
    [upstream] = call[2]["Upstreams"]
    assert upstream["DestinationName"] == "api"
    return list(upstream["Ejections"])


async def test_pushes_on_ejection_on_expiry_and_on_refresh(autojump_clock: Any) -> None:
    client = Recorder()
    start = trio.current_time()
    reporter = EjectionReporter(
        client,  # type: ignore[arg-type]
        refresh=50.0,
        wall=lambda: WALL0 + trio.current_time() - start,
    )
    up = http_upstream()
    reporter.add("web-sidecar-proxy", "web", up)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reporter.run)
        await trio.sleep(1)
        assert len(client.calls) == 1 and ejections(client.calls[0]) == []
        assert client.calls[0][1] == "/v1/agent/connect/proxy-ejections/web-sidecar-proxy"
        await trio.sleep(4)
        t_eject = trio.current_time()
        # Two ejection-worthy answers in one burst: one push (rate limit).
        assert up.outlier(TARGET).report("127.0.0.1:31000", 500, t_eject) is not None
        assert up.on_ejection is not None
        up.on_ejection()
        up.on_ejection()
        await trio.sleep(0.1)
        assert len(client.calls) == 2
        [ej] = ejections(client.calls[1])
        assert ej["Address"] == "127.0.0.1:31000" and ej["ServiceID"] == "api-1-proxy"
        assert ej["Target"] == TARGET and ej["Reason"] == "consecutive_5xx"
        assert ej["LastStatus"] == 500 and ej["TimesEjected"] == 1
        assert ej["Until"].startswith("2027-01-15T08:00:35")  # WALL0 + 5 s + 30 s
        await trio.sleep(1)
        assert len(client.calls) == 2
        # The ejection runs out 30 s later: a push says so at once.
        await trio.sleep(t_eject + 30.2 - trio.current_time())
        assert len(client.calls) == 3 and ejections(client.calls[2]) == []
        assert abs(client.calls[2][0] - (t_eject + 30)) < 0.01
        # Nothing changes: the next push is the refresh, 50 s later.
        await trio.sleep(49)
        assert len(client.calls) == 3
        await trio.sleep(1.5)
        assert len(client.calls) == 4
        reporter.remove("web-sidecar-proxy", up)
        await trio.sleep(60)
        assert len(client.calls) == 4
        nursery.cancel_scope.cancel()


class Refusing(Recorder):
    async def request(self, method: str, path: str, *, body: Any = None, **_: Any) -> None:
        self.calls.append((trio.current_time(), path, body))
        raise AgentResponseError(404, "Not Found")


async def test_a_refused_push_is_retried_at_the_refresh_not_in_a_loop(
    autojump_clock: Any,
) -> None:
    client = Refusing()
    reporter = EjectionReporter(client, refresh=20.0)  # type: ignore[arg-type]
    reporter.add("web-sidecar-proxy", "web", http_upstream())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(reporter.run)
        await trio.sleep(30)
        assert [round(t) for t, _, _ in client.calls] == [0, 20]
        nursery.cancel_scope.cancel()
