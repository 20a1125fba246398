"""``meshd agent``: run the agent (``--dev`` for a ready-to-use local server).

SIGTERM and SIGINT leave gracefully (a server hands off leadership first);
SIGHUP reloads the configuration files. Run by systemd (``Type=notify``,
systemd/meshd.service) the agent reports READY/RELOADING/STOPPING, STATUS
and WATCHDOG through ``$NOTIFY_SOCKET`` (meshd/agent/sd_notify.py).
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import trio

from raft.errors import StorageError

from ..agent.sd_notify import Notifier, ServiceState
from ..config import load_config
from ..errors import ConfigError, MeshdError, StartupError
from ..logs import setup_logging

log = logging.getLogger("meshd.agent")


def _setup_logging(level: str, as_json: bool) -> StartupLog:
    setup_logging(level, as_json)  # meshd/logs.py: JSON lines carry real fields
    return StartupLog(verbose=level.upper() in ("DEBUG", "TRACE"))


class StartupLog:
    """Holds the log lines of a starting agent back until it is up, so that
    a start that fails says one line (the error) instead of the progress that
    led to it; at debug level they are written out either way."""

    def __init__(self, *, verbose: bool) -> None:
        root = logging.getLogger()
        self._targets = list(root.handlers)
        self._verbose = verbose
        target = self._targets[0] if self._targets else None
        self._buffer = logging.handlers.MemoryHandler(
            1 << 20, flushLevel=logging.CRITICAL + 1, target=target, flushOnClose=False
        )
        for handler in self._targets:
            root.removeHandler(handler)
        root.addHandler(self._buffer)

    def started(self) -> None:
        """Write the held lines out and log directly from now on."""
        self._buffer.flush()
        self._release()

    def failed(self) -> None:
        """Drop the held lines (keep them at debug level)."""
        if self._verbose:
            self._buffer.flush()
        self._release()

    def _release(self) -> None:
        root = logging.getLogger()
        if self._buffer in root.handlers:
            root.removeHandler(self._buffer)
            for handler in self._targets:
                root.addHandler(handler)
        self._buffer.buffer.clear()


def _failure(exc: BaseException) -> MeshdError | None:
    """The ``StartupError``/``ConfigError`` that stopped the start, even
    inside the exception groups trio's nurseries wrap it in."""
    if isinstance(exc, StartupError | ConfigError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _failure(inner)
            if found is not None:
                return found
    return None


# READY=1 goes out at the latest this long after start, leader or not:
# below systemd's default TimeoutStartSec (90 s), so a server waiting for its
# peers (bootstrap_expect) is not killed and restarted in a loop meanwhile.
READY_BOUND = 60.0
# How often a client asks the servers for the leader once it is ready.
CLIENT_LEADER_POLL = 30.0


async def _current_leader(agent: Any) -> str:
    """The leader's RPC address as ``agent`` sees it; "" when there is none or
    no server answers within 5 s."""
    if agent.server is not None:
        # "" until the leader has established leadership (meshd.agent.readiness).
        return str(await agent.status_leader())
    with trio.move_on_after(5):
        try:
            return str(await agent.status_leader())
        except MeshdError:
            pass
    return ""


async def _leader_change(agent: Any, timeout: float) -> None:
    """Return when a server's Raft leader may have changed, or after ``timeout``."""
    if agent.server is not None:
        if agent.server.leader_address() and not agent.leadership_ready():
            await agent.wait_leadership_ready(timeout)  # the leader is establishing itself
        else:
            await agent.server.node.wait_state_change(timeout)
    else:
        await trio.sleep(timeout)


def _serving(leader: str) -> str:
    return f"serving; leader {leader}" if leader else "serving; no leader"


async def _report_readiness(agent: Any, notifier: Notifier, *, bound: float = READY_BOUND) -> None:
    """Send READY=1 once a server sees a leader or a client gets one from the
    servers (at most ``bound`` seconds after being called, leader or not),
    with STATUS lines while waiting; then keep STATUS on the current leader
    until cancelled."""
    leader, delay = "", 0.25
    with trio.move_on_after(bound):
        while not (leader := await _current_leader(agent)):
            joined = agent.server is not None or agent.known_servers()
            notifier.status("waiting for a leader" if joined else "joining: no server reached yet")
            await _leader_change(agent, delay)
            delay = min(delay * 2, 2.0)
    if not leader:
        log.warning("event=ready_without_leader waited_s=%g", bound)
    notifier.ready(_serving(leader))
    while True:
        await _leader_change(agent, CLIENT_LEADER_POLL)
        leader = await _current_leader(agent)
        if notifier.state is ServiceState.READY:
            notifier.status(_serving(leader))


async def _handle_signals(
    agent: Any,
    notifier: Notifier,
    started: trio.Event,
    stop: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """SIGHUP reloads, SIGTERM/SIGINT leave (then cancel ``stop``). A signal
    that arrives while the agent starts is not lost: SIGHUP is ignored then
    (the configuration was just read), SIGTERM stops at once."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
        task_status.started()
        async for sig in sigs:
            if sig != signal.SIGHUP:
                break
            if not started.is_set():
                log.info("event=reload_ignored reason=starting")
                continue
            await _reload(agent, notifier)
    log.info("event=leave signal=%s", sig)
    notifier.stopping("leaving")
    if started.is_set():
        with trio.move_on_after(10):
            await agent.leave()
    stop.cancel()


async def _reload(agent: Any, notifier: Notifier) -> None:
    log.info("event=reload_requested")
    serving = notifier.last_status
    notifier.reloading()
    try:
        await agent.reload()
    except ConfigError as exc:
        log.error("event=reload_failed reason=%s", exc)
        notifier.reloaded(f"{serving}; reload failed: {exc}")
        return
    notifier.reloaded(serving)


async def _run(
    config: Any,
    *,
    ready_line: bool,
    loader: Any = None,
    notifier: Notifier | None = None,
    on_started: Callable[[], None] = lambda: None,
) -> None:
    """Run the agent until it leaves (SIGTERM/SIGINT or /v1/agent/leave), telling systemd through
    ``notifier`` (default: from ``$NOTIFY_SOCKET``, removed from the environment)."""
    from ..agent.agent import Agent

    if notifier is None:
        notifier = Notifier.from_environ(os.environ)
    agent = Agent(config)
    if loader is not None:
        agent.config_loader = loader
    started = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(notifier.run_watchdog)
            await nursery.start(_handle_signals, agent, notifier, started, nursery.cancel_scope)
            notifier.status("starting")
            await nursery.start(agent.run)
            on_started()
            started.set()
            if ready_line:
                http = ", ".join(f"{h}:{p}" for h, p in agent.http_addresses)
                click.echo(f"==> meshd agent running: node={agent.node_name} http={http}", err=True)
            nursery.start_soon(_report_readiness, agent, notifier)
            # SIGTERM's leave ends here too; /v1/agent/leave only ends here.
            await agent.shutdown.wait()
            notifier.stopping("left")
            nursery.cancel_scope.cancel()
    finally:
        notifier.close()


def _storage_failure(exc: BaseException) -> StorageError | None:
    """The ``StorageError`` that stopped the agent, even inside exception groups."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _storage_failure(inner)
            if found is not None:
                return found
    return None


def _out_of_space(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return True
        if "disk is full" in str(seen) or "No space left" in str(seen):
            return True
        seen = seen.__cause__
    return False


def storage_refusal(exc: StorageError, data_dir: str | None) -> str:
    """One line for a server whose Raft storage cannot be used: what and
    where, and the command that recovers."""
    reason = " ".join(str(exc).split())
    raft_dir = Path(data_dir or ".") / "raft"
    if _out_of_space(exc):
        return (
            f"raft storage in {raft_dir} is out of space: {reason}; free space on its file "
            "system (a server needs about 4x its state: two snapshots, the log and its WAL) "
            "and start meshd again"
        )
    if "format version" in reason:
        return f"raft storage in {raft_dir} cannot be read: {reason}"
    aside = f"{raft_dir}.bad-{time.strftime('%Y%m%d%H%M%S')}"
    return (
        f"raft storage in {raft_dir} is unusable: {reason}; to recover, move it aside and "
        f"start meshd again (`mv {raft_dir} {aside}`): this server rejoins its cluster and "
        "the leader sends it a snapshot (a single-server cluster: then restore a backup "
        "with `meshd snapshot restore`)"
    )


@click.command()
@click.option("--dev", is_flag=True, help="Single-node server in memory, everything on loopback.")
@click.option("--server", is_flag=True, help="Also act as a server (Raft member).")
@click.option("--bootstrap", is_flag=True, help="Bootstrap a single-server cluster.")
@click.option("--bootstrap-expect", type=int, help="Servers to wait for before bootstrapping.")
@click.option("--config-file", multiple=True, help="An HCL, JSON or TOML configuration file.")
@click.option("--config-dir", multiple=True, help="A directory of .hcl/.json/.toml files.")
@click.option("--node", help="Node name (default: hostname).")
@click.option("--node-id", help="Node UUID (default: generated and kept in data_dir).")
@click.option("--data-dir", help="Where state is kept.")
@click.option("--datacenter", help="Datacenter name (default dc1).")
@click.option("--domain", help="DNS domain (default consul).")
@click.option("--bind", help="Address for server RPC (port 8300).")
@click.option("--advertise", help="Address other agents use to reach this one.")
@click.option("--client", help="Address(es) for the HTTP API and DNS.")
@click.option("--retry-join", multiple=True, help="A server address to join (repeatable).")
@click.option("--join", multiple=True, help="A server address to join at start.")
@click.option("--http-port", type=int)
@click.option("--dns-port", type=int)
@click.option("--server-port", type=int)
@click.option("--log-level", help="trace, debug, info, warn, err.")
@click.option("--log-json", is_flag=True)
@click.option("--ui", is_flag=True)
@click.option("--enable-script-checks", is_flag=True)
def agent(dev: bool, **flags: Any) -> None:
    """Run a meshd agent."""
    flag_values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in flags.items()}
    files = flag_values.pop("config_file") or []
    dirs = flag_values.pop("config_dir") or []
    try:
        config, warnings = load_config(files, dirs, flag_values, dev=dev)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    startup_log = _setup_logging(config.log_level, config.log_json)
    for w in warnings:
        logging.getLogger("meshd.config").warning("%s", w)

    def loader() -> Any:
        return load_config(files, dirs, flag_values, dev=dev)[0]

    try:
        trio.run(
            lambda: _run(config, ready_line=True, loader=loader, on_started=startup_log.started)
        )
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        startup_log.failed()
        storage = _storage_failure(exc)
        if storage is not None:
            # The traceback for a bug report, below the one line an operator needs.
            log.debug("event=agent_stopped_by_storage", exc_info=storage)
            raise click.ClickException(storage_refusal(storage, config.data_dir)) from None
        failure = _failure(exc)
        if failure is None:
            raise
        raise click.ClickException(str(failure)) from None
