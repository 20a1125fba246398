"""A real ``meshd agent --dev --log-json --log-level debug``: every stderr line
is a JSON object with real fields, and each API request adds one
``http_request`` line without the token."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.meshd.harness import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET = "5ec7e700-aaaa-bbbb-cccc-00000000d00d"


def _lines(path: Path) -> list[dict[str, Any]]:
    # Every line is a JSON object, but the "==> meshd agent running" banner.
    text = path.read_text()
    return [json.loads(ln) for ln in text.splitlines() if ln.strip() and not ln.startswith("==> ")]


def test_json_lines_carry_fields_and_debug_logs_each_request(tmp_path: Path) -> None:
    http = free_port()
    log = tmp_path / "agent.log"
    cmd = [sys.executable, "-m", "meshd", "agent", "--dev", "--log-json", "--log-level", "debug"]
    cmd += ["--http-port", str(http), "--dns-port", str(free_port())]
    cmd += ["--server-port", str(free_port()), "--node", "logs"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out)
    try:
        url = f"http://127.0.0.1:{http}/v1/kv/some/key?token={SECRET}"
        deadline = time.monotonic() + 60
        while True:
            try:
                req = urllib.request.Request(url, headers={"X-Consul-Token": SECRET})
                urllib.request.urlopen(req, timeout=5)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        deadline = time.monotonic() + 20
        while not any(e.get("path") == "/v1/kv/some/key" for e in _lines(log)):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(30)
    entries = _lines(log)  # every line parses as JSON
    assert all({"ts", "level", "logger"} <= set(e) for e in entries)
    assert SECRET not in log.read_text()
    (request,) = [e for e in entries if e.get("path") == "/v1/kv/some/key"][-1:]
    assert request["event"] == "http_request" and request["method"] == "GET"
    assert request["status"] == 404 and request["level"] == "DEBUG"
    assert request["remote"].startswith("127.0.0.1:")
    events = {e.get("event") for e in entries}
    assert "ca_initialized" in events  # an ordinary template line, as fields
    init = next(e for e in entries if e.get("event") == "ca_initialized")
    assert init["trust_domain"].endswith(".consul") and "msg" not in init
