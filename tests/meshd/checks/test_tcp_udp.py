"""TCP and UDP checks against real loopback sockets."""

from __future__ import annotations

import socket

import pytest
import trio

from meshd.checks.base import CRITICAL, PASSING, CheckOptions
from meshd.checks.tcp import TCPChecker
from meshd.checks.udp import UDPChecker

from .servers import closed_port

pytestmark = pytest.mark.e2e


async def test_tcp_open_port_is_passing() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    try:
        result = await TCPChecker({"TCP": f"127.0.0.1:{port}"}, CheckOptions()).run()
    finally:
        await listeners[0].aclose()
    assert result.status == PASSING
    assert result.output == f"TCP connect 127.0.0.1:{port}: Success"


async def test_tcp_closed_port_is_critical() -> None:
    port = await closed_port()
    result = await TCPChecker({"TCP": f"127.0.0.1:{port}"}, CheckOptions()).run()
    assert result.status == CRITICAL
    assert result.output == f"dial tcp 127.0.0.1:{port}: connect: connection refused"


async def test_tcp_port_open_then_closed_changes_result() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    check = TCPChecker({"TCP": f"127.0.0.1:{port}"}, CheckOptions())
    assert (await check.run()).status == PASSING
    await listeners[0].aclose()
    assert (await check.run()).status == CRITICAL


def test_tcp_address_without_port_is_refused() -> None:
    with pytest.raises(ValueError, match="missing port"):
        TCPChecker({"TCP": "localhost"}, CheckOptions())


async def test_tcp_ipv6_literal() -> None:
    # The machines this runs on (developers' and CI's) have ::1; a missing one
    # is an environment problem to fix, not a reason to skip silently.
    assert socket.has_ipv6, "this Python has no IPv6 support"
    listeners = await trio.open_tcp_listeners(0, host="::1")
    port = listeners[0].socket.getsockname()[1]
    try:
        result = await TCPChecker({"TCP": f"[::1]:{port}"}, CheckOptions()).run()
    finally:
        await listeners[0].aclose()
    assert result.output == f"TCP connect [::1]:{port}: Success"


async def test_udp_silent_listener_is_passing_at_the_timeout() -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    check = UDPChecker({"UDP": f"127.0.0.1:{port}"}, CheckOptions())
    with sock:
        with trio.move_on_after(0.3):
            await check.run()
            pytest.fail("a silent UDP port answered")
        assert await sock.recv(64) == b"ping"  # the datagram arrived
    result = check.timed_out(0.3)
    assert result.status == PASSING
    assert result.output == f"UDP connect 127.0.0.1:{port}: Success"


async def test_udp_answering_listener_is_passing_at_once() -> None:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]

    async def echo() -> None:
        data, addr = await sock.recvfrom(64)
        await sock.sendto(data, addr)

    check = UDPChecker({"UDP": f"127.0.0.1:{port}"}, CheckOptions())
    with sock:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo)
            with trio.fail_after(2):
                result = await check.run()
    assert result.status == PASSING


async def test_udp_without_listener_is_critical_from_port_unreachable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    check = UDPChecker({"UDP": f"127.0.0.1:{port}"}, CheckOptions())
    with trio.fail_after(2):
        result = await check.run()
    assert result.status == CRITICAL
    assert result.output.startswith("read udp 127.0.0.1:")
    assert result.output.endswith(f"->127.0.0.1:{port}: connection refused")
