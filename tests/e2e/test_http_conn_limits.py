"""The HTTP API's connection caps on a real agent process (issue 13 item 10).

Over ``limits.http_max_conns`` a connection gets 503, over
``limits.http_max_conns_per_client`` 429; the agent keeps serving once the
flood is gone, refusals are logged a bounded number of times, and running
out of file descriptors is logged with backoff instead of trio's
``accept returned EMFILE`` ten times a second.
"""

from __future__ import annotations

import json
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.meshd.harness import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class Agent:
    def __init__(self, tmp_path: Path, limits: dict[str, int], nofile: int | None = None) -> None:
        self.port = free_port()
        config = {
            "node_name": "limits-node",
            "ports": {"http": self.port, "dns": free_port(), "server": free_port()},
            "limits": limits,
        }
        cfg = tmp_path / "agent.json"
        cfg.write_text(json.dumps(config))
        self.log_path = tmp_path / "agent.log"

        def lower_nofile() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "meshd", "agent", "--dev", "--config-file", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=lower_nofile,  # only setrlimit, before exec
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get_status(self, path: str = "/v1/status/leader", source: str = "127.0.0.1") -> int:
        """Status of one GET, or 0 when the connection failed or was closed unanswered."""
        try:
            with socket.create_connection(
                ("127.0.0.1", self.port), timeout=5, source_address=(source, 0)
            ) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                head = s.recv(64)
        except OSError:
            return 0
        parts = head.split(b" ")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def start(limits: dict[str, int], nofile: int | None = None) -> Agent:
        agent = Agent(tmp_path, limits, nofile)
        agents.append(agent)
        _until(lambda: agent.get_status() == 200, 60, "the agent's API")
        return agent

    yield start
    for agent in agents:
        agent.stop()


def _open(port: int, source: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return s


def _refusal(s: socket.socket, wait: float = 0.5) -> int | None:
    """The status a refused connection was sent at once, or None if it is held open."""
    s.settimeout(wait)
    try:
        head = s.recv(64)
    except TimeoutError:
        return None
    except OSError:
        return -1
    if not head:
        return -1  # closed without an answer (refusals beyond those answered)
    return int(head.split(b" ")[1])


def _states(socks: list[socket.socket], wait: float = 3.0) -> list[int | None]:
    """``_refusal`` of every socket, waiting ``wait`` once for all of them."""
    readable: set[socket.socket] = set()
    deadline = time.monotonic() + wait
    while len(readable) < len(socks) and (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([s for s in socks if s not in readable], [], [], left)
        readable.update(ready)
    return [_refusal(s, 2.0) if s in readable else None for s in socks]


def test_over_the_caps_connections_are_refused_and_the_agent_keeps_serving(
    agent_factory: Callable[..., Agent],
) -> None:
    agent = agent_factory({"http_max_conns": 30, "http_max_conns_per_client": 10})
    held: list[socket.socket] = []
    try:
        # One client: 10 held, the rest 429.
        one = [_open(agent.port, "127.0.0.2") for _ in range(15)]
        states = _states(one)
        assert states.count(None) == 10 and states.count(429) == 5, states
        held += [s for s, st in zip(one, states, strict=True) if st is None]
        # Many clients: the total stops at 30, the rest 503.
        many = [_open(agent.port, f"127.0.1.{i}") for i in range(1, 41)]
        states = _states(many)
        assert states.count(None) == 20 and states.count(503) == 20, states
        held += [s for s, st in zip(many, states, strict=True) if st is None]
        # A flood of refusals is answered or closed, never queued up.
        flood = [_open(agent.port, f"127.0.2.{i % 250 + 1}") for i in range(300)]
        assert all(_refusal(s, 2.0) in (503, -1) for s in flood)
        for s in flood:
            s.close()
        # Still full: a new client is refused (once the flood's refusals are done).
        _until(lambda: agent.get_status(source="127.0.3.1") == 503, 20, "a 503 while full")
    finally:
        for s in held:
            s.close()
    _until(lambda: agent.get_status(source="127.0.3.1") == 200, 20, "service after the flood")
    assert agent.proc.poll() is None
    log = agent.log()
    refusals = [line for line in log.splitlines() if "event=http_connection_rejected" in line]
    # One line per status per 10 s, each saying how many it stands for.
    assert 2 <= len(refusals) <= 6, refusals
    assert any("status=503" in line for line in refusals)
    assert any("status=429" in line for line in refusals)
    assert "Traceback" not in log


def test_out_of_file_descriptors_is_logged_with_backoff_not_a_flood(
    agent_factory: Callable[..., Agent],
) -> None:
    # No HTTP cap at all (explicit 0) and 256 descriptors: accept hits EMFILE.
    agent = agent_factory({"http_max_conns": 0, "http_max_conns_per_client": 0}, nofile=256)
    held: list[socket.socket] = []
    try:
        for i in range(400):
            try:
                held.append(_open(agent.port, f"127.0.4.{i % 250 + 1}"))
            except OSError:
                break
        _until(lambda: "event=http_accept_failed" in agent.log(), 20, "the EMFILE log line")
        time.sleep(5)  # trio logged 50 tracebacks in this time
        lines = [x for x in agent.log().splitlines() if "http_accept_failed" in x]
        assert 1 <= len(lines) <= 2, lines
        assert "errno=EMFILE" in lines[0]
        assert "accept returned" not in agent.log()
    finally:
        for s in held:
            s.close()
    _until(lambda: agent.get_status() == 200, 20, "service once descriptors are free")
    assert agent.proc.poll() is None
