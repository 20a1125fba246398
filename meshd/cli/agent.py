"""``meshd agent``: run the agent (``--dev`` for a ready-to-use local server).

SIGTERM and SIGINT leave gracefully (a server hands off leadership first);
SIGHUP reloads the configuration files.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any

import click
import trio

from ..config import load_config
from ..errors import ConfigError


def _setup_logging(level: str, as_json: bool) -> None:
    py_level = {"TRACE": "DEBUG", "WARN": "WARNING", "ERR": "ERROR"}.get(level, level)
    fmt = (
        '{"time":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}'
        if as_json
        else "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
    )
    logging.basicConfig(level=py_level, format=fmt, stream=sys.stderr, force=True)


async def _run(config: Any, *, ready_line: bool, loader: Any = None) -> None:
    from ..agent.agent import Agent

    agent = Agent(config)
    if loader is not None:
        agent.config_loader = loader
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        if ready_line:
            http = ", ".join(f"{h}:{p}" for h, p in agent.http_addresses)
            click.echo(f"==> meshd agent running: node={agent.node_name} http={http}", err=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
            async for sig in sigs:
                if sig == signal.SIGHUP:
                    log = logging.getLogger("meshd.agent")
                    log.info("event=reload_requested")
                    try:
                        await agent.reload()
                    except ConfigError as exc:
                        log.error("event=reload_failed reason=%s", exc)
                    continue
                logging.getLogger("meshd.agent").info("event=leave signal=%s", sig)
                with trio.move_on_after(10):
                    await agent.leave()
                nursery.cancel_scope.cancel()
                return


@click.command()
@click.option("--dev", is_flag=True, help="Single-node server in memory, everything on loopback.")
@click.option("--server", is_flag=True, help="Also act as a server (Raft member).")
@click.option("--bootstrap", is_flag=True, help="Bootstrap a single-server cluster.")
@click.option("--bootstrap-expect", type=int, help="Servers to wait for before bootstrapping.")
@click.option("--config-file", multiple=True, help="A JSON or TOML configuration file.")
@click.option("--config-dir", multiple=True, help="A directory of .json/.toml files.")
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
    _setup_logging(config.log_level, config.log_json)
    for w in warnings:
        logging.getLogger("meshd.config").warning("%s", w)
    try:

        def loader() -> Any:
            return load_config(files, dirs, flag_values, dev=dev)[0]

        trio.run(lambda: _run(config, ready_line=True, loader=loader))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
