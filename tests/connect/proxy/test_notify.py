"""systemd readiness of the proxy: ``READY=1`` over ``$NOTIFY_SOCKET`` once
its listeners are bound (single process and ``--workers``), ``STOPPING=1``
on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from connect.proxy.notify import notify

from .harness import Mesh, free_port
from .test_processes import ROOT, _serve_web_agent


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    # A short path: AF_UNIX paths are limited to ~107 bytes.
    directory = tempfile.mkdtemp(prefix="pn-", dir="/tmp")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        yield path, sock
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)


def test_notify_sends_one_datagram(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    assert notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=x"


def test_notify_without_a_socket_sends_nothing(tmp_path: Path) -> None:
    assert notify("READY=1", {}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": "relative/path"}) is False
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "missing")}) is False


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"meshd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert notify("READY=1", {"NOTIFY_SOCKET": "@" + name}) is True
        assert sock.recv(64) == b"READY=1"


async def _recv_until(sock: socket.socket, word: bytes, timeout: float) -> bytes:
    tsock = trio.socket.from_stdlib_socket(sock)
    with trio.fail_after(timeout):
        while True:
            data = await tsock.recv(4096)
            if word in data.split(b"\n"):
                return data


async def _accepts(port: int) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
    except OSError:
        return False
    await stream.aclose()
    return True


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
async def test_ready_once_listeners_are_bound_and_stopping_on_sigterm(
    nursery: trio.Nursery, notify_socket: tuple[str, socket.socket], workers: int
) -> None:
    path, sock = notify_socket
    sock.setblocking(False)
    mesh = Mesh()
    await mesh.start(nursery)
    mesh.up_port = free_port()  # the process under test binds web's upstream
    agent = await _serve_web_agent(nursery, mesh)
    cmd = [sys.executable, "-m", "connect.proxy.main", "--http-addr", f"127.0.0.1:{agent.port}"]
    cmd += ["--workers", str(workers), "--metrics-addr", f"127.0.0.1:{free_port()}"]
    assert not await _accepts(mesh.up_port)
    proc = await trio.lowlevel.open_process(
        [*cmd, "--log-level", "warn"], cwd=ROOT, env={**os.environ, "NOTIFY_SOCKET": path}
    )
    try:
        ready = await _recv_until(sock, b"READY=1", 60)
        # At READY=1 the upstream listener accepts at once: no retry.
        assert await _accepts(mesh.up_port)
        assert b"STATUS=serving; " in ready
        proc.send_signal(signal.SIGTERM)
        await _recv_until(sock, b"STOPPING=1", 20)
        with trio.fail_after(20):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
