"""gRPC health checks against a real grpc.health.v1 server (h2c, on loopback)."""

from __future__ import annotations

import pytest
import trio

from meshd.checks.base import CRITICAL, PASSING, CheckOptions
from meshd.checks.grpc import GRPCChecker, decode_response, encode_request
from meshd.checks.h2ping import H2PingChecker

from .servers import GRPCServer, closed_port, start_grpc


def test_request_and_response_encoding() -> None:
    assert encode_request("") == b"\x00\x00\x00\x00\x00"
    assert encode_request("web") == b"\x00\x00\x00\x00\x05\x0a\x03web"
    assert decode_response(b"\x00\x00\x00\x00\x02\x08\x01") == 1
    # unknown fields before the status are skipped
    assert decode_response(b"\x00\x00\x00\x00\x07\x12\x03abc\x08\x02") == 2
    assert decode_response(b"\x00\x00\x00\x00\x00") == 0
    with pytest.raises(ValueError):
        decode_response(b"\x01\x00\x00\x00\x00")


@pytest.fixture
async def server(nursery: trio.Nursery) -> GRPCServer:
    return await start_grpc(nursery)


def grpc(target: str) -> GRPCChecker:
    return GRPCChecker({"GRPC": target}, CheckOptions())


@pytest.mark.e2e
async def test_serving_is_passing(server: GRPCServer) -> None:
    target = f"127.0.0.1:{server.port}"
    result = await grpc(target).run()
    assert (result.status, result.output) == (PASSING, f"gRPC check {target}: success")
    assert server.calls == [("/grpc.health.v1.Health/Check", "")]


@pytest.mark.e2e
async def test_named_service_not_serving_is_critical(server: GRPCServer) -> None:
    server.statuses["web"] = 2
    result = await grpc(f"127.0.0.1:{server.port}/web").run()
    assert result.status == CRITICAL
    assert result.output == f"gRPC 127.0.0.1:{server.port} serving status: NOT_SERVING"
    assert server.calls[-1] == ("/grpc.health.v1.Health/Check", "web")


@pytest.mark.e2e
async def test_unknown_service_is_critical_with_the_rpc_error(server: GRPCServer) -> None:
    result = await grpc(f"127.0.0.1:{server.port}/nope").run()
    assert result.status == CRITICAL
    assert result.output == "rpc error: code = NotFound desc = unknown service"


@pytest.mark.e2e
async def test_connection_refused_is_critical() -> None:
    port = await closed_port()
    result = await grpc(f"127.0.0.1:{port}").run()
    assert result.status == CRITICAL
    assert result.output.startswith("rpc error: code = Unavailable desc = connection error")
    assert "connect: connection refused" in result.output


@pytest.mark.e2e
async def test_a_plain_http1_server_is_critical(nursery: trio.Nursery) -> None:
    from .servers import start_http

    http = await start_http(nursery)
    with trio.fail_after(5):
        result = await grpc(f"127.0.0.1:{http.port}").run()
    assert result.status == CRITICAL and result.output.startswith("rpc error: code = "), (
        result.output
    )


@pytest.mark.e2e
async def test_h2ping_in_cleartext(server: GRPCServer) -> None:
    checker = H2PingChecker(
        {"H2PING": f"127.0.0.1:{server.port}", "H2PingUseTLS": False}, CheckOptions()
    )
    result = await checker.run()
    assert (result.status, result.output) == (PASSING, "HTTP2 ping was successful")


@pytest.mark.e2e
async def test_h2ping_refused_is_critical() -> None:
    port = await closed_port()
    result = await H2PingChecker({"H2PING": f"127.0.0.1:{port}"}, CheckOptions()).run()
    assert result.status == CRITICAL
    assert result.output.startswith(f"Failed to dial to 127.0.0.1:{port}: dial tcp")
