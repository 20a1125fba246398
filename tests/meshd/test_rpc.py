"""Multiplexed agent-to-server RPC over the real mTLS transport listener."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import trio

from meshd.agent_tls import create_ca, create_cert, write_pem
from meshd.rpc import RPC_KIND, RPCClient, RPCError, RPCServer, RPCTimeout, RPCUnavailable
from raft.tls import client_context, server_context
from raft.transport import PeerInfo, Transport

pytestmark = pytest.mark.e2e


def certs(tmp: Path, kind: str, name: str, ca: tuple[str, str]) -> tuple[str, str, str]:
    cert, key = create_cert(ca[0], ca[1], kind=kind)  # type: ignore[arg-type]
    write_pem(tmp / "ca.pem", ca[0])
    write_pem(tmp / f"{name}.pem", cert)
    write_pem(tmp / f"{name}-key.pem", key, private=True)
    return str(tmp / "ca.pem"), str(tmp / f"{name}.pem"), str(tmp / f"{name}-key.pem")


async def start_server(
    nursery: trio.Nursery, tmp: Path, ca: tuple[str, str]
) -> tuple[str, RPCServer]:
    files = certs(tmp, "server", "srv", ca)
    transport = Transport("srv", ("127.0.0.1", 0), server_context(*files), client_context(*files))
    rpc = RPCServer()
    transport.register_handler(RPC_KIND, rpc.handle)
    host, port = await nursery.start(transport.serve)
    return f"{host}:{port}", rpc


async def test_calls_are_multiplexed_and_errors_carry_code_and_details(tmp_path: Path) -> None:
    ca = create_ca()
    release = trio.Event()

    async def echo(args: Mapping[str, Any], peer: PeerInfo) -> Any:
        return {"echo": args["x"], "peer_names": list(peer.dns_names)}

    async def slow(args: Mapping[str, Any], peer: PeerInfo) -> Any:
        await release.wait()
        return "released"

    async def fail(args: Mapping[str, Any], peer: PeerInfo) -> Any:
        raise RPCError("NotLeader", "not the leader", {"leader": "10.0.0.1:8300"})

    async def crash(args: Mapping[str, Any], peer: PeerInfo) -> Any:
        raise ZeroDivisionError("boom")

    async with trio.open_nursery() as nursery:
        addr, rpc = await start_server(nursery, tmp_path, ca)
        for name, fn in [("Echo", echo), ("Slow", slow), ("Fail", fail), ("Crash", crash)]:
            rpc.register(name, fn)
        client_files = certs(tmp_path, "client", "cli", ca)
        client = RPCClient(
            nursery, client_context(*client_files), server_name="server.dc1.consul", local_id="c1"
        )
        slow_result: list[Any] = []

        async def call_slow() -> None:
            slow_result.append(await client.call(addr, "Slow", {}))

        nursery.start_soon(call_slow)
        await trio.sleep(0.05)
        # The slow call is pending on the same connection; others still answer.
        with trio.fail_after(2):
            got = await client.call(addr, "Echo", {"x": 42})
        assert got["echo"] == 42
        assert "client.dc1.consul" in got["peer_names"]
        with pytest.raises(RPCError) as info:
            await client.call(addr, "Fail", {})
        assert info.value.code == "NotLeader" and info.value.details["leader"] == "10.0.0.1:8300"
        with pytest.raises(RPCError) as info:
            await client.call(addr, "Crash", {})
        assert info.value.code == "Internal" and "boom" not in info.value.message
        with pytest.raises(RPCError) as info:
            await client.call(addr, "Nope", {})
        assert info.value.code == "UnknownMethod"
        # A call that outlives its timeout fails with the client's own error
        # (trio's TooSlowError stays inside the client); the connection stays usable.
        with pytest.raises(RPCTimeout) as timed_out:
            await client.call(addr, "Slow", {}, timeout=0.05)
        assert timed_out.value.code == "Timeout" and "Slow to " in timed_out.value.message
        assert (await client.call(addr, "Echo", {"x": 1}))["echo"] == 1
        release.set()
        with trio.fail_after(2):
            while not slow_result:
                await trio.sleep(0.01)
        assert slow_result == ["released"]
        nursery.cancel_scope.cancel()


async def test_unreachable_server_and_foreign_ca_are_unavailable(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        addr, _rpc = await start_server(nursery, tmp_path, create_ca())
        other = tmp_path / "other"
        other.mkdir()
        foreign = certs(other, "client", "cli", create_ca())
        client = RPCClient(
            nursery, client_context(*foreign), server_name="server.dc1.consul", local_id="c"
        )
        with pytest.raises(RPCUnavailable):
            await client.call(addr, "Echo", {}, timeout=3)
        with pytest.raises(RPCUnavailable):
            await client.call("127.0.0.1:1", "Echo", {}, timeout=3)
        nursery.cancel_scope.cancel()
