"""``make run`` (python -m meshd.demo): the dev agent starts with its demo
services registered and healthy, prints what to try, and stops on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def get(path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:8500{path}", timeout=2) as resp:
        return json.loads(resp.read())


def test_demo_starts_registers_services_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshd.demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        services: Any = {}
        while time.monotonic() < deadline:
            try:
                services = get("/v1/catalog/services")
                if {"web", "api"} <= set(services):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert {"web", "api"} <= set(services), services
        healthy = get("/v1/health/service/api?passing")
        assert [h["Service"]["ID"] for h in healthy] == ["api"]
        with urllib.request.urlopen("http://127.0.0.1:9090/", timeout=2) as resp:
            assert resp.read() == b"hello from api\n"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    text = out.decode()
    assert "Try next" in text and "dig @127.0.0.1 -p 8600" in text
    assert "Traceback" not in text
