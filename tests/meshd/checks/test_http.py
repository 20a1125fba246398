"""HTTP checks against a real local HTTP(S) server."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from meshd.checks.base import CRITICAL, OUTPUT_MAX_SIZE, PASSING, WARNING, CheckOptions
from meshd.checks.http import ACCEPT, USER_AGENT, HTTPChecker

from .servers import HTTPServer, closed_port, start_http

pytestmark = pytest.mark.e2e


def checker(url: str, **spec: Any) -> HTTPChecker:
    return HTTPChecker({"HTTP": url, **spec}, CheckOptions())


@pytest.fixture
async def server(nursery: trio.Nursery) -> HTTPServer:
    return await start_http(nursery)


async def test_200_is_passing_with_consul_output(server: HTTPServer) -> None:
    result = await checker(server.url("/ok")).run()
    assert result.status == PASSING
    assert result.output == f"HTTP GET {server.url('/ok')}: 200 OK Output: all good"


async def test_429_is_warning(server: HTTPServer) -> None:
    result = await checker(server.url("/busy")).run()
    assert result.status == WARNING
    assert result.output.endswith(": 429 Too Many Requests Output: slow down")


async def test_500_is_critical(server: HTTPServer) -> None:
    result = await checker(server.url("/fail")).run()
    assert result.status == CRITICAL
    assert result.output.endswith(": 500 Internal Server Error Output: boom")


async def test_404_is_critical(server: HTTPServer) -> None:
    assert (await checker(server.url("/missing")).run()).status == CRITICAL


async def test_request_carries_method_headers_body_and_consul_defaults(
    server: HTTPServer,
) -> None:
    c = checker(
        server.url("/echo?x=1"),
        Method="post",
        Header={"X-Token": ["a", "b"], "Accept": ["application/json"]},
        Body='{"ping": 1}',
    )
    result = await c.run()
    assert result.status == PASSING, result.output
    req = server.requests[-1]
    assert req["method"] == "POST" and req["target"] == "/echo?x=1"
    assert req["body"] == '{"ping": 1}'
    headers = req["headers"]
    assert ["user-agent", USER_AGENT] in headers
    assert ["x-token", "a"] in headers and ["x-token", "b"] in headers
    assert ["accept", "application/json"] in headers  # a definition's header wins
    assert ["accept", ACCEPT] not in headers
    assert ["host", f"127.0.0.1:{server.port}"] in headers
    assert result.output.startswith(f"HTTP POST {server.url('/echo?x=1')}: 200 OK Output: ")


async def test_default_accept_header_and_host_override(server: HTTPServer) -> None:
    await checker(server.url("/echo"), Header={"Host": ["api.internal"]}).run()
    headers = server.requests[-1]["headers"]
    assert ["accept", ACCEPT] in headers
    assert ["host", "api.internal"] in headers


async def test_body_read_is_capped_at_output_max_size(server: HTTPServer) -> None:
    result = await checker(server.url("/big")).run()
    assert result.status == PASSING
    body = result.output.split(" Output: ", 1)[1]
    assert body == "x" * OUTPUT_MAX_SIZE
    spec = {"HTTP": server.url("/big")}
    small = HTTPChecker(spec, CheckOptions(output_max_size=10))
    assert (await small.run()).output.endswith("Output: " + "x" * 10)


async def test_redirects_are_followed(server: HTTPServer) -> None:
    result = await checker(server.url("/redirect")).run()
    assert result.status == PASSING
    assert result.output == f"HTTP GET {server.url('/redirect')}: 200 OK Output: all good"
    assert [r["target"] for r in server.requests] == ["/redirect", "/ok"]


async def test_connection_refused_is_critical_with_go_wording() -> None:
    port = await closed_port()
    url = f"http://127.0.0.1:{port}/health"
    result = await checker(url).run()
    assert result.status == CRITICAL
    assert result.output == (f'Get "{url}": dial tcp 127.0.0.1:{port}: connect: connection refused')


async def test_a_hanging_server_is_cut_off_by_the_timeout(server: HTTPServer) -> None:
    c = checker(server.url("/hang"))
    start = trio.current_time()
    with trio.move_on_after(0.3):
        await c.run()
        pytest.fail("a hanging request returned")
    assert trio.current_time() - start < 1.0
    timed_out = c.timed_out(0.3)
    assert timed_out.status == CRITICAL
    assert "Client.Timeout exceeded" in timed_out.output and "300ms" in timed_out.output


async def test_https_with_tls_skip_verify_and_server_name(nursery: trio.Nursery) -> None:
    server = await start_http(nursery, tls=True)
    c = checker(server.url("/ok"), TLSSkipVerify=True, TLSServerName="checks.test")
    result = await c.run()
    assert result.status == PASSING, result.output
    assert server.server_names == ["checks.test"]  # sent as SNI


async def test_https_with_an_untrusted_certificate_is_critical(nursery: trio.Nursery) -> None:
    server = await start_http(nursery, tls=True)
    result = await checker(server.url("/ok"), TLSServerName="checks.test").run()
    assert result.status == CRITICAL
    assert "tls: failed to verify certificate" in result.output
    assert server.requests == []


def test_a_bad_url_is_refused_when_building() -> None:
    with pytest.raises(ValueError, match="unsupported protocol scheme"):
        checker("ftp://example.com/")


async def test_json_echo_is_valid(server: HTTPServer) -> None:
    result = await checker(server.url("/echo")).run()
    json.loads(result.output.split(" Output: ", 1)[1])
