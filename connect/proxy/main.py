"""The proxy process: ``python -m connect.proxy.main`` (what ``meshd proxy`` execs).

``meshd proxy`` validates its options with click and then replaces itself
(``os.execv``) with this lean entry point, so the long-running process
never imports the rest of the CLI (the agent, its config loader,
``cryptography``): the RSS of a proxy process stays near 30 MB. The token
arrives in the environment (``MESHD_HTTP_TOKEN``/``CONSUL_HTTP_TOKEN``),
never on the command line. Errors are one line on stderr: exit 1 for an
unreachable agent or an unusable address, ``EXIT_FATAL`` from a worker
tells the supervisor not to restart it.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial

import trio

from .agent_client import AgentClient
from .config import Limits
from .errors import AgentUnavailableError
from .flags import DEFAULTS, ProxyFlags, parse_host_port
from .metrics import ProxyMetrics, serve_metrics
from .notify import notify
from .proxy import Proxy, ProxyOptions, wait_for_agent
from .supervisor import EXIT_FATAL, FatalWorkerExit, Supervisor

log = logging.getLogger("meshd.proxy")

# READY=1 goes out at the latest this long after the agent answered: below
# systemd's default TimeoutStartSec (90 s).
READY_BOUND = 60.0


def _addr(text: str) -> tuple[str, int]:
    try:
        return parse_host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``ProxyFlags``, with its defaults."""
    d = DEFAULTS
    p = argparse.ArgumentParser(prog="meshd proxy", description="The meshd mTLS proxy.")
    p.add_argument("--http-addr", type=_addr, default=d.http_addr)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--metrics-addr", type=_addr, default=d.metrics_addr)
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout)
    p.add_argument("--max-connections", type=int, default=d.max_connections)
    p.add_argument("--agent-wait", type=float, default=d.agent_wait)
    p.add_argument("--log-level", default=d.log_level)
    p.add_argument("--log-json", action="store_true", default=d.log_json)
    p.add_argument("--worker-id", type=int, default=d.worker_id)
    p.add_argument("--sidecar-for", action="append", default=list(d.sidecar_for))
    return p


def parse_flags(argv: Sequence[str] | None = None) -> ProxyFlags:
    """The command line as ``ProxyFlags``; exits with status 2 on a bad flag."""
    ns = build_parser().parse_args(argv)
    return ProxyFlags(
        http_addr=ns.http_addr,
        workers=ns.workers,
        metrics_addr=ns.metrics_addr,
        idle_timeout=ns.idle_timeout,
        max_connections=ns.max_connections,
        agent_wait=ns.agent_wait,
        log_level=ns.log_level,
        log_json=ns.log_json,
        sidecar_for=tuple(ns.sidecar_for),
        worker_id=ns.worker_id,
    )


class _JSONFormatter(logging.Formatter):
    def __init__(self, worker: int | None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object: ``ts``, ``level``, ``logger`` (and ``worker``), then
        the event's own fields (``emit``), or ``msg`` for a plain line."""
        entry: dict[str, object] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
        }
        if self.worker is not None:
            entry["worker"] = self.worker
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(str(key), value)
        else:
            entry["msg"] = record.getMessage()
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str, as_json: bool, worker: int | None) -> None:
    """Logs on stderr, one line per event (JSON with ``as_json``)."""
    name = level.upper()
    name = {"TRACE": "DEBUG", "WARN": "WARNING", "ERR": "ERROR"}.get(name, name)
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JSONFormatter(worker))
    else:
        who = "" if worker is None else f" worker={worker}"
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s [%(levelname)s] %(name)s:{who} %(message)s")
        )
    logging.basicConfig(level=getattr(logging, name, logging.INFO), handlers=[handler], force=True)


def agent_token() -> str:
    for var in ("MESHD_HTTP_TOKEN", "CONSUL_HTTP_TOKEN"):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    return ""


async def run_proxy(args: ProxyFlags, token: str) -> None:
    """One proxy process until SIGTERM/SIGINT. Raises ``AgentUnavailableError``."""
    host, port = args.http_addr
    client = AgentClient(host, port, token=token)
    await wait_for_agent(client, timeout=args.agent_wait)
    metrics = ProxyMetrics()
    limits = Limits(idle_timeout=args.idle_timeout, max_connections=args.max_connections)
    options = ProxyOptions(
        reuse_port=args.worker_id is not None,
        limits=limits,
        sidecar_for=frozenset(args.sidecar_for),
    )
    proxy = Proxy(client, options, metrics)
    async with trio.open_nursery() as nursery:
        if args.metrics_addr is not None and args.worker_id is None:
            await nursery.start(serve_metrics, *args.metrics_addr, metrics.render)
        await nursery.start(proxy.serve)
        # Startup objects live forever: keep them out of the collector's way.
        gc.collect()
        gc.freeze()
        log.info("event=started agent=%s:%s pid=%s", host, port, os.getpid())
        nursery.start_soon(partial(report_ready, proxy, worker=args.worker_id))
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for sig in signals:
                log.info("event=stopping signal=%s", signal.Signals(sig).name)
                notify("STOPPING=1")
                nursery.cancel_scope.cancel()


async def report_ready(
    proxy: Proxy, *, worker: int | None = None, bound: float = READY_BOUND
) -> None:
    """``READY=1`` to systemd once the first service list is applied and its
    listeners are bound (at most ``bound`` seconds after the start, so one
    listener that cannot bind does not hold the unit in "activating"). A
    worker adds ``WORKER=<id>`` for its supervisor, which tells systemd."""
    with trio.move_on_after(bound):
        await proxy.wait_applied(1)
        for entry in list(proxy.running.values()):
            await entry.ready.wait()
    count = sum(1 for entry in proxy.running.values() if entry.ready.is_set())
    state = f"READY=1\nSTATUS=serving; {count} listeners"
    notify(state if worker is None else f"{state}\nWORKER={worker}")


def worker_command(args: ProxyFlags) -> list[str]:
    """The command line of a worker, less its ``--worker-id`` (the supervisor
    adds it; the token stays in the environment). Workers serve no metrics:
    the supervisor serves their sum."""
    return replace(args, workers=1, metrics_addr=None, worker_id=None).command()


async def supervise(args: ProxyFlags, token: str) -> None:
    """Check the agent once, then run ``args.workers`` workers until stopped."""
    host, port = args.http_addr
    await wait_for_agent(AgentClient(host, port, token=token), timeout=args.agent_wait)
    supervisor = Supervisor(worker_command(args), args.workers, metrics_addr=args.metrics_addr)
    await supervisor.run()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the proxy (or the supervisor); returns the exit status."""
    args = parse_flags(argv)
    setup_logging(args.log_level, args.log_json, args.worker_id)
    token = agent_token()
    try:
        if args.workers > 1 and args.worker_id is None:
            trio.run(supervise, args, token)
        else:
            trio.run(run_proxy, args, token)
    except BaseException as exc:
        leaf = _leaf(exc)
        if isinstance(leaf, KeyboardInterrupt):
            return 0
        if not isinstance(leaf, AgentUnavailableError | FatalWorkerExit | OSError):
            raise
        print(f"Error: {leaf}", file=sys.stderr)
        fatal = args.worker_id is not None and not isinstance(leaf, FatalWorkerExit)
        return EXIT_FATAL if fatal else 1
    return 0


def _leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())
