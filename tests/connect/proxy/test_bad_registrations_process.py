"""``meshd proxy`` as a real process facing registrations it cannot use or
that want another sidecar's listener (issue 13, items 3 and 6): it keeps
serving, logs one line per problem and never hands a bound listener over."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from .harness import Mesh, free_port, read_until
from .test_processes import ROOT, _serve_web_agent

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


async def _echo(port: int, payload: bytes) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        try:
            await stream.send_all(payload)
            with trio.move_on_after(5):
                return await read_until(stream, payload) == payload
            return False
        finally:
            await stream.aclose()
    except (OSError, trio.BrokenResourceError):
        return False


def _sidecar(pid: str, dest: str, upstreams: Any) -> dict[str, Any]:
    return {
        "ID": pid,
        "Service": pid,
        "Kind": "connect-proxy",
        "Address": "127.0.0.1",
        "Port": free_port(),
        "Proxy": {
            "DestinationServiceName": dest,
            "DestinationServiceID": dest,
            "LocalServicePort": 1,
            "Upstreams": upstreams,
        },
    }


async def test_the_proxy_skips_unusable_and_conflicting_sidecars_and_keeps_serving(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    mesh = Mesh()
    await mesh.start(nursery)
    up_port = free_port()
    mesh.up_port = up_port
    agent = await _serve_web_agent(nursery, mesh)
    log_path = tmp_path / "proxy.log"
    args = ["-m", "connect.proxy.main", "--http-addr", f"127.0.0.1:{agent.port}"]
    with open(log_path, "wb") as log:
        proc = await trio.lowlevel.open_process(
            [sys.executable, *args, "--log-level", "info"],
            cwd=ROOT,
            stdout=log,
            stderr=log,
            env={**os.environ},
        )
    try:
        with trio.fail_after(30):
            while not await _echo(up_port, b"first"):
                await trio.sleep(0.2)
        services = dict(agent.services)
        for i, bad in enumerate((-1, True, 1.5)):
            services[f"bad-{i}"] = _sidecar(f"bad-{i}", f"bad{i}", bad)
        # Sorts before web-sidecar-proxy and wants its upstream port.
        services["a-evil"] = _sidecar(
            "a-evil", "evil", [{"DestinationName": "evil", "LocalBindPort": up_port}]
        )
        agent.set_services(services)
        await trio.sleep(1.0)
        agent.set_services(dict(services))  # a second change: no second log line
        await trio.sleep(1.0)
        assert proc.returncode is None, log_path.read_text()[-2000:]
        # web's upstream still reaches api (the echo is api's in-test server).
        assert await _echo(up_port, b"still-api")
        text = log_path.read_text()
        assert "Traceback" not in text
        for i in range(3):
            lines = [ln for ln in text.splitlines() if "sidecar_invalid" in ln and f"bad-{i}" in ln]
            assert len(lines) == 1, text[-3000:]
            assert "Proxy.Upstreams" in lines[0]
        conflicts = [ln for ln in text.splitlines() if "listener_conflict" in ln]
        assert len(conflicts) == 1 and "skipping a-evil" in conflicts[0], text[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
