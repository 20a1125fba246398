"""The sd_notify protocol: message encoding, socket addresses, the service
state the notifier keeps, the watchdog, the READY wait of ``meshd agent``,
and real agent processes talking to a real NOTIFY_SOCKET."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from meshd.agent.readiness import cluster_initialized
from meshd.agent.sd_notify import (
    Notifier,
    ServiceState,
    encode,
    socket_address,
    watchdog_usec,
)
from meshd.cli.agent import READY_BOUND, _report_readiness
from meshd.config import load_config
from meshd.errors import NoLeaderError, NoServersError
from registry.commands import ACLTokenSet, CARootsSet
from registry.fsm import RegistryFSM
from registry.records import ACLToken, CARoot
from tests.meshd.harness import free_port

# ------------------------------------------------------------------ encoding


def test_encode_writes_one_line_per_field_in_order() -> None:
    data = encode({"READY": 1, "STATUS": "serving; leader 10.0.0.1:8300"})
    assert data == b"READY=1\nSTATUS=serving; leader 10.0.0.1:8300\n"


def test_encode_folds_line_breaks_so_a_value_stays_one_field() -> None:
    data = encode({"STATUS": "reload failed:\nbad key\r\nx"})
    assert data == b"STATUS=reload failed: bad key x\n"


@pytest.mark.parametrize("key", ["ready", "STATUS X", "=", "", "1READY"])
def test_encode_rejects_keys_systemd_would_not_accept(key: str) -> None:
    with pytest.raises(ValueError, match="invalid notify key"):
        encode({key: 1})


def test_abstract_socket_names_become_a_leading_nul_byte() -> None:
    assert socket_address("@/org/freedesktop/systemd1/notify/123") == (
        "\0/org/freedesktop/systemd1/notify/123"
    )


def test_socket_paths_are_kept_and_other_values_refused() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    for value in ("", "@", "relative/path", "vsock:2:1234"):
        assert socket_address(value) is None


def test_watchdog_usec_applies_only_to_the_named_process() -> None:
    assert watchdog_usec({"WATCHDOG_USEC": "200000"}, 42) == 200000
    assert watchdog_usec({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "42"}, 42) == 200000
    assert watchdog_usec({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_usec({"WATCHDOG_USEC": "soon"}, 42) is None
    assert watchdog_usec({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_usec({}, 42) is None


# ------------------------------------------------------------ the notifier


class Sink:
    """Records datagrams (decoded to field dicts) with the trio time they left."""

    def __init__(self, clock: Callable[[], float] = lambda: 0.0) -> None:
        self.sent: list[dict[str, str]] = []
        self.times: list[float] = []
        self.clock = clock

    def __call__(self, data: bytes) -> None:
        self.sent.append(parse(data))
        self.times.append(self.clock())


def parse(data: bytes) -> dict[str, str]:
    text = data.decode()
    assert text.endswith("\n"), text
    return dict(line.split("=", 1) for line in text.splitlines())


def test_notifier_walks_ready_reload_and_stop_with_monotonic_usec() -> None:
    sink = Sink()
    n = Notifier(sink, monotonic_usec=lambda: 123456789)
    n.status("starting")
    n.ready("serving; leader 10.0.0.1:8300")
    n.reloading()
    n.reloaded("serving; leader 10.0.0.1:8300")
    n.stopping("leaving")
    assert sink.sent == [
        {"STATUS": "starting"},
        {"READY": "1", "STATUS": "serving; leader 10.0.0.1:8300"},
        {"RELOADING": "1", "MONOTONIC_USEC": "123456789", "STATUS": "reloading"},
        {"READY": "1", "STATUS": "serving; leader 10.0.0.1:8300"},
        {"STOPPING": "1", "STATUS": "leaving"},
    ]
    assert n.state is ServiceState.STOPPING


def test_no_ready_or_reload_after_stopping() -> None:
    sink = Sink()
    n = Notifier(sink)
    n.stopping("leaving")
    n.ready("serving")
    n.reloading()
    n.stopping("again")
    assert sink.sent == [{"STOPPING": "1", "STATUS": "leaving"}]


def test_a_reload_during_start_up_does_not_announce_readiness() -> None:
    sink = Sink()
    n = Notifier(sink)
    n.status("waiting for a leader")
    n.reloading()
    n.reloaded("waiting for a leader")
    assert sink.sent == [
        {"STATUS": "waiting for a leader"},
        {"STATUS": "reloading"},
        {"STATUS": "waiting for a leader"},
    ]
    assert n.state is ServiceState.STARTING


def test_status_is_sent_only_when_it_changes() -> None:
    sink = Sink()
    n = Notifier(sink)
    for text in ("waiting for a leader", "waiting for a leader", "serving", "serving"):
        n.status(text)
    assert sink.sent == [{"STATUS": "waiting for a leader"}, {"STATUS": "serving"}]


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    return sock


async def test_without_notify_socket_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    with _receiver(str(tmp_path / "notify")) as rx:
        env = {"WATCHDOG_USEC": "200000", "PATH": "/bin"}
        n = Notifier.from_environ(env)
        assert not n.enabled and n.watchdog_interval is None
        n.status("starting")
        n.ready("serving")
        n.reloading()
        n.reloaded("serving")
        n.watchdog()
        n.stopping("leaving")
        with trio.fail_after(1):
            await n.run_watchdog()  # no watchdog: returns at once
        n.close()
        with pytest.raises(BlockingIOError):
            rx.recv(4096)
        assert env == {"PATH": "/bin"}
        assert n.last_status == ""


def test_datagrams_reach_an_abstract_socket_and_the_environment_is_cleared() -> None:
    name = f"meshd-sd-test-{os.getpid()}-{secrets.token_hex(4)}"
    with _receiver("\0" + name) as rx:
        env = {"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "5000000", "X": "1"}
        n = Notifier.from_environ(env, pid=1234)
        assert n.enabled and n.watchdog_interval == 2.5
        n.ready("serving; leader 10.0.0.1:8300")
        n.close()
        assert rx.recv(4096) == b"READY=1\nSTATUS=serving; leader 10.0.0.1:8300\n"
        assert env == {"X": "1"}


def test_datagrams_reach_a_socket_file(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with _receiver(path) as rx:
        n = Notifier.from_environ({"NOTIFY_SOCKET": path}, unset=False)
        n.stopping("leaving")
        n.close()
        assert rx.recv(4096) == b"STOPPING=1\nSTATUS=leaving\n"


def test_a_send_failure_is_logged_once_and_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.DEBUG, logger="meshd.sd_notify"):
        n.ready("serving")
        n.stopping("leaving")
    n.close()
    failures = [r for r in caplog.records if "event=notify_failed" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.WARNING, logging.DEBUG]


async def test_watchdog_pings_every_half_interval(autojump_clock: Any) -> None:
    sink = Sink(trio.current_time)
    n = Notifier(sink, watchdog_usec=200_000)
    with trio.move_on_after(1.05):
        await n.run_watchdog()
    assert all(m == {"WATCHDOG": "1"} for m in sink.sent)
    gaps = [round(b - a, 6) for a, b in zip(sink.times, sink.times[1:], strict=False)]
    assert len(sink.sent) == 11 and set(gaps) == {0.1}


# ------------------------------------------------- the agent's READY wait


class FakeNode:
    def __init__(self) -> None:
        self.changed = trio.Event()

    async def wait_state_change(self, timeout: float) -> None:
        with trio.move_on_after(timeout):
            await self.changed.wait()

    def change(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class FakeServer:
    def __init__(self) -> None:
        self.node = FakeNode()
        self.leader: str | None = None

    def leader_address(self) -> str | None:
        return self.leader


class FakeServerAgent:
    """A server whose leader has established leadership once ``established``."""

    def __init__(self) -> None:
        self.server = FakeServer()
        self.established = True

    def leadership_ready(self) -> bool:
        return self.server.leader is not None and self.established

    async def wait_leadership_ready(self, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            while not self.leadership_ready():
                await trio.sleep(0.005)
        return self.leadership_ready()

    async def status_leader(self) -> str:
        return (self.server.leader or "") if self.leadership_ready() else ""


class FakeClientAgent:
    """A client whose servers answer from ``joined_at`` and know a leader
    from ``leader_at`` (trio time)."""

    server = None

    def __init__(self, joined_at: float, leader_at: float) -> None:
        self.joined_at, self.leader_at = joined_at, leader_at

    def known_servers(self) -> list[str]:
        return ["10.0.0.1:8300"] if trio.current_time() >= self.joined_at else []

    async def status_leader(self) -> str:
        await trio.sleep(0.01)  # an RPC round trip
        if trio.current_time() < self.joined_at:
            raise NoServersError()
        if trio.current_time() < self.leader_at:
            raise NoLeaderError()
        return "10.0.0.1:8300"


async def test_a_server_is_ready_once_it_sees_a_leader(autojump_clock: Any) -> None:
    agent = FakeServerAgent()
    sink = Sink(trio.current_time)
    n = Notifier(sink)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_report_readiness, agent, n)
        await trio.sleep(3)
        assert sink.sent == [{"STATUS": "waiting for a leader"}]
        agent.server.leader = "10.0.0.1:8300"
        agent.server.node.change()
        await trio.sleep(0.001)
        assert sink.sent[-1] == {"READY": "1", "STATUS": "serving; leader 10.0.0.1:8300"}
        assert sink.times[-1] == pytest.approx(3.0)
        agent.server.leader = None  # the leader failed: STATUS says so
        agent.server.node.change()
        await trio.sleep(0.001)
        assert sink.sent[-1] == {"STATUS": "serving; no leader"}
        nursery.cancel_scope.cancel()


async def test_a_server_is_ready_only_once_its_leader_is_established(autojump_clock: Any) -> None:
    """A leader that has not yet created the ACL tokens and the CA is no
    leader to clients yet: READY=1 waits for the establishment."""
    agent = FakeServerAgent()
    agent.established = False
    sink = Sink(trio.current_time)
    n = Notifier(sink)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_report_readiness, agent, n)
        await trio.sleep(1)
        agent.server.leader = "10.0.0.1:8300"
        agent.server.node.change()
        await trio.sleep(2)
        assert n.state is ServiceState.STARTING
        assert all("READY" not in m for m in sink.sent)
        agent.established = True
        await trio.sleep(0.1)
        assert sink.sent[-1] == {"READY": "1", "STATUS": "serving; leader 10.0.0.1:8300"}
        assert sink.times[-1] == pytest.approx(3.0, abs=0.05)
        nursery.cancel_scope.cancel()


async def test_a_client_is_ready_once_the_servers_name_a_leader(autojump_clock: Any) -> None:
    sink = Sink(trio.current_time)
    n = Notifier(sink)
    with trio.move_on_after(20):
        await _report_readiness(FakeClientAgent(joined_at=2, leader_at=5), n)
    assert sink.sent == [
        {"STATUS": "joining: no server reached yet"},
        {"STATUS": "waiting for a leader"},
        {"READY": "1", "STATUS": "serving; leader 10.0.0.1:8300"},
    ]
    assert 5 <= sink.times[-1] < 7.5  # polled at most every 2 s


async def test_ready_goes_out_after_the_bound_even_without_a_leader(autojump_clock: Any) -> None:
    sink = Sink(trio.current_time)
    n = Notifier(sink)
    with trio.move_on_after(READY_BOUND + 5):
        await _report_readiness(FakeClientAgent(joined_at=0, leader_at=1e9), n)
    assert sink.sent[-1] == {"READY": "1", "STATUS": "serving; no leader"}
    assert sink.times[-1] == pytest.approx(READY_BOUND, abs=0.1)
    assert n.state is ServiceState.READY


# ------------------------------------------------ real agent processes


class Listener:
    """A NOTIFY_SOCKET: a datagram socket bound to a short temporary path
    (or an abstract name), collecting what the agent sends."""

    def __init__(self, *, abstract: bool = False) -> None:
        if abstract:
            self.bound = f"\0meshd-sd-e2e-{os.getpid()}-{secrets.token_hex(4)}"
            self.env_value = "@" + self.bound[1:]
        else:
            self._dir = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
            self.bound = self.env_value = os.path.join(self._dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.bound)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def wait_for(self, pred: Callable[[dict[str, str]], bool], timeout: float) -> dict[str, str]:
        """Collect until a message satisfies ``pred``; return it."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                break
            msg = parse(data)
            self.messages.append((time.monotonic(), msg))
            if pred(msg):
                return msg
        raise AssertionError(f"no matching notification in {timeout}s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()
        if not self.bound.startswith("\0"):
            os.unlink(self.bound)
            os.rmdir(os.path.dirname(self.bound))


def _keys(listener: Listener) -> list[str]:
    """The lifecycle keys in arrival order (STATUS-only and WATCHDOG left out)."""
    order: list[str] = []
    for _, msg in listener.messages:
        order += [k for k in ("READY", "RELOADING", "STOPPING") if k in msg]
    return order


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(config: dict[str, Any], env: dict[str, str], *flags: str) -> subprocess.Popen[bytes]:
        cfg = tmp_path / f"agent{len(procs)}.json"
        cfg.write_text(json.dumps(config))
        with open(tmp_path / f"agent{len(procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "meshd", "agent", *flags, "--config-file", str(cfg)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **env},
            )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _dev_config() -> dict[str, Any]:
    return {
        "node_name": "sd-node",
        "ports": {"http": free_port(), "dns": free_port(), "server": free_port()},
    }


@pytest.mark.e2e
@pytest.mark.slow
def test_agent_notifies_ready_reloading_ready_stopping_in_order(
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    listener = Listener()
    try:
        config = _dev_config()
        proc = spawn(config, {"NOTIFY_SOCKET": listener.env_value}, "--dev")
        ready = listener.wait_for(lambda m: "READY" in m, 30)
        assert ready["STATUS"] == f"serving; leader 127.0.0.1:{config['ports']['server']}"
        assert listener.messages[0][1] == {"STATUS": "starting"}

        proc.send_signal(signal.SIGHUP)
        before = time.monotonic_ns() // 1000
        reloading = listener.wait_for(lambda m: "RELOADING" in m, 10)
        after = time.monotonic_ns() // 1000
        # CLOCK_MONOTONIC, as systemd >= 253 compares it with its own clock.
        assert before <= int(reloading["MONOTONIC_USEC"]) <= after
        assert reloading["STATUS"] == "reloading"
        again = listener.wait_for(lambda m: "READY" in m, 10)
        assert again["STATUS"] == ready["STATUS"]

        proc.send_signal(signal.SIGTERM)
        stopping = listener.wait_for(lambda m: "STOPPING" in m, 10)
        assert stopping["STATUS"] == "leaving"
        assert proc.wait(20) == 0
        assert _keys(listener) == ["READY", "RELOADING", "READY", "STOPPING"]
    finally:
        listener.close()


@pytest.mark.e2e
@pytest.mark.slow
def test_agent_pings_the_watchdog_at_half_the_interval(
    spawn: Callable[..., subprocess.Popen[bytes]],
) -> None:
    listener = Listener(abstract=True)
    try:
        # A 1 s watchdog: pings every 0.5 s. The exact half-interval spacing is
        # test_watchdog_pings_every_half_interval's (fake time); here a real
        # process on a loaded machine (xdist workers beside it) only has to
        # ping before systemd's deadline, where 200 ms left 100 ms of slack.
        env = {"NOTIFY_SOCKET": listener.env_value, "WATCHDOG_USEC": "1000000"}
        proc = spawn(_dev_config(), env, "--dev")
        listener.wait_for(lambda m: "READY" in m, 30)
        start = time.monotonic()
        with pytest.raises(AssertionError):
            listener.wait_for(lambda m: False, 2.5)
        pings = [t for t, m in listener.messages if t >= start and m == {"WATCHDOG": "1"}]
        gaps = [b - a for a, b in zip([start, *pings], pings, strict=False)]
        # About every 0.5 s; never as late as the 1 s after which systemd kills.
        assert len(pings) >= 4, pings
        assert max(gaps) < 1.0, gaps
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        listener.close()


@pytest.mark.e2e
@pytest.mark.slow
def test_sigterm_while_waiting_for_servers_still_stops_and_leaves(
    spawn: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    listener = Listener()
    try:
        config = {
            "node_name": "sd-client",
            "data_dir": str(tmp_path / "data"),
            "bind_addr": "127.0.0.1",
            "client_addr": "127.0.0.1",
            "ports": {"http": free_port(), "dns": -1, "server": free_port()},
            "retry_join": [f"127.0.0.1:{free_port()}"],  # nobody listens there
        }
        proc = spawn(config, {"NOTIFY_SOCKET": listener.env_value})
        listener.wait_for(lambda m: m.get("STATUS", "").startswith("joining"), 30)
        proc.send_signal(signal.SIGTERM)
        stopping = listener.wait_for(lambda m: "STOPPING" in m, 10)
        assert stopping["STATUS"] == "leaving"
        assert proc.wait(20) == 0
        assert _keys(listener) == ["STOPPING"]  # never READY
    finally:
        listener.close()


# ------------------------------------------- what "established" means in the state


def test_established_needs_the_anonymous_and_management_tokens_and_an_active_root(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "acl.json"
    cfg.write_text(json.dumps({"acl": {"enabled": True, "tokens": {"initial_management": "m"}}}))
    config, _ = load_config([str(cfg)], [], {}, dev=True)
    fsm = RegistryFSM()
    steps = [
        ACLTokenSet(tokens=(ACLToken("00000000-0000-4000-8000-000000000001", "anonymous"),)),
        ACLTokenSet(tokens=(ACLToken("00000000-0000-4000-8000-000000000002", "m"),)),
        CARootsSet(roots=(CARoot("r1", root_cert="pem", active=True),)),
    ]
    for index, cmd in enumerate(steps, start=1):
        assert not cluster_initialized(fsm.store, config)
        assert fsm.apply_command(index, cmd).ok
    assert cluster_initialized(fsm.store, config)
    plain, _ = load_config([], [], {}, dev=True)
    assert cluster_initialized(fsm.store, plain)  # no ACLs: the active root suffices
    assert not cluster_initialized(RegistryFSM().store, plain)
