"""``meshd proxy`` as real processes: one-line start errors, --workers N supervision."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import trio

from .fake_agent import FakeAgent
from .harness import Mesh, free_port, health_entry, read_to_eof, read_until

pytestmark = pytest.mark.e2e

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def test_unreachable_agent_is_a_one_line_error() -> None:
    port = free_port()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshd",
            "proxy",
            "--http-addr",
            f"127.0.0.1:{port}",
            "--agent-wait",
            "0.5",
            "--log-level",
            "err",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot reach the agent at 127.0.0.1:")
    assert "Traceback" not in proc.stderr


async def _serve_web_agent(nursery: trio.Nursery, mesh: Mesh) -> FakeAgent:
    """An agent with only web's sidecar; api's instance is ``mesh``'s in-test proxy."""
    from .pki import leaf_json

    agent = FakeAgent()
    await nursery.start(agent.serve)
    agent.set_roots(mesh.ca.trust_domain, [mesh.ca.root_json()])
    agent.set_leaf("web", leaf_json(mesh.leaves["web"], 50))
    agent.set_health("api", [health_entry(mesh.api_in)])
    services = mesh.services()
    services["web-sidecar-proxy"]["Port"] = free_port()
    services["web-sidecar-proxy"]["Proxy"]["Upstreams"][0]["LocalBindPort"] = mesh.up_port
    del services["api-sidecar-proxy"]
    agent.set_services(services)
    return agent


@pytest.mark.slow
async def test_workers_share_listeners_and_stop_cleanly(nursery: trio.Nursery) -> None:
    mesh = Mesh()
    await mesh.start(nursery)
    # Move the in-test proxy's upstream listener out of the way: the workers bind it.
    up_port = free_port()
    mesh.up_port = up_port
    agent = await _serve_web_agent(nursery, mesh)
    metrics_port = free_port()
    proc = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "connect.proxy.main",
            "--http-addr",
            f"127.0.0.1:{agent.port}",
            "--workers",
            "2",
            "--metrics-addr",
            f"127.0.0.1:{metrics_port}",
            "--log-level",
            "warn",
        ],
        cwd=ROOT,
    )
    try:
        with trio.fail_after(20):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", up_port)
                    await stream.send_all(b"probe")
                    if await read_until(stream, b"probe") == b"probe":
                        break
                except (OSError, trio.BrokenResourceError):
                    pass
                await trio.sleep(0.2)
        for i in range(8):
            stream = await trio.open_tcp_stream("127.0.0.1", up_port)
            await stream.send_all(b"m%d" % i)
            assert await read_until(stream, b"m%d" % i) == b"m%d" % i
            await stream.aclose()
        stream = await trio.open_tcp_stream("127.0.0.1", metrics_port)
        await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        text = (await read_to_eof(stream)).decode()
        line = next(
            ln
            for ln in text.splitlines()
            if ln.startswith("meshd_proxy_connections_total{") and 'direction="outbound"' in ln
        )
        assert float(line.rsplit(" ", 1)[1]) >= 9.0  # summed over both workers
        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            code = await proc.wait()
        assert code == 0
        with pytest.raises(OSError):
            await trio.open_tcp_stream("127.0.0.1", up_port)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
