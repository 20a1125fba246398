"""``make run`` (python -m meshd.demo): the dev agent starts with the mTLS
proxy and its demo services in the mesh, prints what to try, the things it
suggests work (web reaches api through its upstream; a deny intention made
with the CLI cuts it off; the proxy's metrics answer), and Ctrl-C stops
everything it started.

The demo runs on free ports given on its command line, never on the
defaults a user's own ``make run`` holds, and every CLI call names its
agent: a test must never reach (or leave an intention in) a user's demo."""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

import pytest

from meshd.demo import DemoPorts
from tests.meshd.harness import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return bytes(resp.read())


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout}s (last: {last!r})")


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def free_demo_ports() -> DemoPorts:
    """A free port for each of the demo's, all distinct (two free_port()
    calls can return the same port once the first socket is closed)."""
    names = [f.name for f in dataclasses.fields(DemoPorts)]
    chosen: dict[str, int] = {}
    for name in names:
        port = free_port()
        while port in chosen.values():
            port = free_port()
        chosen[name] = port
    return DemoPorts(**chosen)


def demo_args(ports: DemoPorts) -> list[str]:
    args = []
    for f in dataclasses.fields(ports):
        args += [f"--{f.name.replace('_', '-')}-port", str(getattr(ports, f.name))]
    return args


def test_demo_runs_the_mesh_and_stops_everything_on_ctrl_c() -> None:
    ports = free_demo_ports()
    http = f"127.0.0.1:{ports.http}"

    def api(path: str) -> Any:
        return json.loads(get(f"http://{http}{path}"))

    def meshd(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "meshd", *args, "-http-addr", http]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30)

    proc = subprocess.Popen(
        [sys.executable, "-m", "meshd.demo", *demo_args(ports)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    upstream = f"http://127.0.0.1:{ports.upstream}/"
    web = f"http://127.0.0.1:{ports.web}/"
    try:
        wait_for(lambda: {"web", "api"} <= set(api("/v1/catalog/services")), 60, "services")
        through = wait_for(lambda: get(upstream), 60, "api via the upstream")
        healthy = api("/v1/health/connect/api?passing")
        assert [h["Service"]["ID"] for h in healthy] == ["api-sidecar-proxy"]
        assert healthy[0]["Service"]["Port"] == ports.api_sidecar
        assert through == b"hello from api\n"
        assert b"api says: hello from api" in get(web)
        # The demo is done starting once it says what to try.
        wait_for(lambda: b"Try next" in b"".join(lines), 60, "the demo's help")
        denied = meshd("intention", "create", "--deny", "--replace", "web", "api")
        assert denied.returncode == 0, denied.stderr
        wait_for(lambda: b"api says: hello" not in get(web), 10, "web cut off")
        check = meshd("intention", "check", "web", "api")
        assert check.returncode == 2, check.stdout + check.stderr
        metrics = get(f"http://127.0.0.1:{ports.metrics}/metrics").decode()
        assert "meshd_proxy" in metrics
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        reader.join(timeout=10)
    text = b"".join(lines).decode()
    assert "Try next" in text and f"curl 127.0.0.1:{ports.upstream}/" in text
    assert f"meshd intention create --deny --replace web api -http-addr {http}" in text
    assert "Traceback" not in text
    for port in dataclasses.astuple(ports):
        assert not port_open(port), f"port {port} still open after Ctrl-C"


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        (
            "http",
            "in use (is another meshd running?): stop it, or give the demo another port"
            " with --http-port",
        ),
        ("web", "in use (the demo's web): stop it, or give the demo another port with --web-port"),
    ],
)
def test_a_second_demo_says_the_port_is_in_use_in_one_line(taken: str, expected: str) -> None:
    ports = free_demo_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", getattr(ports, taken)))
        holder.listen()
        result = subprocess.run(
            [sys.executable, "-m", "meshd.demo", *demo_args(ports)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"port {getattr(ports, taken)} {expected}\n"
    # It started nothing: none of its other ports is listening.
    others = [p for name, p in dataclasses.asdict(ports).items() if name != taken]
    assert not any(port_open(p) for p in others)
