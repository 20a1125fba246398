"""A ``meshd agent --dev`` process on free loopback ports, and a small JSON
client for its HTTP API: what the single-agent benchmarks start."""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.loadgen.procs import stop_process
from bench.proxy_backend import free_port

ROOT = Path(__file__).resolve().parents[2]  # so that `-m meshd` imports this tree
READY_TIMEOUT = 60.0


class DevAgent:
    """Started on construction (config: node name, free ports, ``extra``);
    ``stop`` kills it. Its log is ``root/agent.log``."""

    def __init__(self, root: Path, node_name: str, extra: dict[str, Any] | None = None) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.name = node_name
        self.http_port = free_port()
        config: dict[str, Any] = {
            "node_name": node_name,
            "ports": {"http": self.http_port, "dns": free_port(), "server": free_port()},
            **(extra or {}),
        }
        path = root / "agent.json"
        path.write_text(json.dumps(config))
        self.log_path = root / "agent.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshd", "agent", "--dev", "--config-file", str(path)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        stop_process(self.proc)
        self.log.close()

    def request(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        """``method path`` with a JSON body and ``X-Consul-Token``; (status, JSON or text)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        headers = {"X-Consul-Token": token} if token else {}
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            return resp.status, json.loads(raw) if raw else None
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        """Like ``request``; raises ``RuntimeError`` on any status but 200."""
        status, answer = self.request(method, path, body, token)
        if status != 200:
            raise RuntimeError(f"{self.name}: {method} {path} -> {status}: {str(answer)[:300]}")
        return answer

    def wait_for(self, what: str, ok: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
        """Poll ``ok`` every 50 ms; raises ``RuntimeError`` with the log's tail
        if the agent exits, ``TimeoutError`` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.flush()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"agent {self.name} exited ({self.proc.returncode}):\n{tail}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if ok():
                    return
            time.sleep(0.05)
        raise TimeoutError(f"agent {self.name}: no {what} within {timeout:g}s")

    def wait_leader(self, timeout: float = READY_TIMEOUT) -> None:
        """Until the agent answers with a leader elected."""
        self.wait_for("leader", lambda: bool(self.request("GET", "/v1/status/leader")[1]), timeout)
