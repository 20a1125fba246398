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
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import trio

from .agent_client import AgentClient
from .config import Limits
from .errors import AgentUnavailableError
from .flags import DEFAULTS, FLAGS, Flag, ProxyFlags
from .metrics import ProxyMetrics, serve_metrics
from .notify import notify
from .proxy import Proxy, ProxyOptions, wait_for_agent
from .supervisor import EXIT_FATAL, FatalWorkerExit, Supervisor

log = logging.getLogger("meshd.proxy")

# READY=1 goes out at the latest this long after the agent answered: below
# systemd's default TimeoutStartSec (90 s).
READY_BOUND = 60.0
# Young-generation threshold of the cyclic collector once started: with the
# default 700, a collection ran every few requests, and with many requests in
# flight (wrk c64) their objects survived into the older generations, whose
# passes then cost ~7% of the L7 proxy's CPU (perf). (The agent starts at the same
# young threshold and freezes survivors: meshd/agent/gc_policy.py.)
GC_THRESHOLDS = (10_000, 10, 10)


def _argparse_type(flag: Flag) -> Callable[[str], object]:
    def parse(text: str) -> object:
        try:
            return flag.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``FLAGS``, with ``DEFAULTS``."""
    p = argparse.ArgumentParser(prog="meshd proxy", description="The meshd mTLS proxy.")
    for flag in FLAGS:
        if flag.kind == "bool":
            p.add_argument(flag.name, action="store_true", default=flag.default, help=flag.help)
        elif flag.kind == "list":
            default = list(getattr(DEFAULTS, flag.field))
            p.add_argument(flag.name, action="append", default=default, help=flag.help)
        else:
            p.add_argument(
                flag.name, type=_argparse_type(flag), default=flag.default, help=flag.help
            )
    return p


def parse_flags(argv: Sequence[str] | None = None) -> ProxyFlags:
    """The command line as ``ProxyFlags``; exits with status 2 on a bad flag."""
    ns = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {
        f.field: tuple(ns[f.field]) if f.kind == "list" else ns[f.field] for f in FLAGS
    }
    return ProxyFlags(**values)


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
        gc.set_threshold(*GC_THRESHOLDS)
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
