"""``make run`` (python -m meshd.demo): the dev agent starts with the mTLS
proxy and its demo services in the mesh, prints what to try, the things it
suggests work (web reaches api through its upstream; a deny intention made
with the CLI cuts it off; the proxy's metrics answer), and Ctrl-C stops
everything it started."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return bytes(resp.read())


def api(path: str) -> Any:
    return json.loads(get(f"http://127.0.0.1:8500{path}"))


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


def meshd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshd", *args], capture_output=True, text=True, timeout=30
    )


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_demo_runs_the_mesh_and_stops_everything_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshd.demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: {"web", "api"} <= set(api("/v1/catalog/services")), 30, "services")
        through = wait_for(lambda: get("http://127.0.0.1:9191/"), 30, "api via the upstream")
        healthy = api("/v1/health/connect/api?passing")
        assert [h["Service"]["ID"] for h in healthy] == ["api-sidecar-proxy"]
        assert through == b"hello from api\n"
        assert b"api says: hello from api" in get("http://127.0.0.1:8080/")
        denied = meshd("intention", "create", "--deny", "--replace", "web", "api")
        assert denied.returncode == 0, denied.stderr
        wait_for(lambda: b"api says: hello" not in get("http://127.0.0.1:8080/"), 5, "web cut off")
        check = meshd("intention", "check", "web", "api")
        assert check.returncode == 2, check.stdout + check.stderr
        metrics = get("http://127.0.0.1:9102/metrics").decode()
        assert "meshd_proxy" in metrics
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    text = out.decode()
    assert "Try next" in text and "curl 127.0.0.1:9191/" in text
    assert "meshd intention create --deny --replace web api" in text
    assert "Traceback" not in text
    for port in (8500, 9191, 9102, 8080, 9090):
        assert not port_open(port), f"port {port} still open after Ctrl-C"
