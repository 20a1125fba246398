"""``meshd watch -type TYPE [HANDLER]`` (like ``consul watch``): follow a view
of the catalog, KV store or events with blocking queries.

Without HANDLER the first result is printed as JSON and the command exits,
as Consul's does. With HANDLER (a shell command; ``-shell=false`` runs it
directly) the handler runs once at start and again each time the result
changes, with the JSON on its stdin and ``CONSUL_INDEX`` in its environment;
a handler that fails stops the watch (``Error executing handler: ...``,
exit 1). Types: key, keyprefix, services, nodes, service, checks, event.
https://developer.hashicorp.com/consul/docs/dynamic-app-config/watches
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Callable
from typing import Any

import click

from .client import AgentClient, Param, quote_path
from .errors import AgentUnreachable, CLIError, UnexpectedResponse
from .options import agent_options, flag, option

TYPES = ("key", "keyprefix", "services", "nodes", "service", "checks", "event")
WAIT = 300.0  # seconds a blocking query may wait (Consul's maximum is 10m)
RETRY_MAX = 30.0

Query = tuple[str, dict[str, Param], Callable[[int, Any], Any]]


def _kv_key(status: int, body: Any) -> Any:
    return body[0] if status == 200 and body else None


def _list(status: int, body: Any) -> Any:
    return body if status == 200 and body else []


def _as_is(status: int, body: Any) -> Any:
    return body


def _query(
    kind: str,
    key: str,
    prefix: str,
    service: str,
    tags: tuple[str, ...],
    passing: bool,
    state: str,
    name: str,
) -> Query:
    """The endpoint, parameters and result shaping of one watch type.

    Raises ``CLIError`` for a missing or conflicting option, in Consul's words."""
    if kind == "key":
        if not key:
            raise CLIError("Error: Required parameter 'key' missing")
        return f"/v1/kv/{quote_path(key.lstrip('/'))}", {}, _kv_key
    if kind == "keyprefix":
        if not prefix:
            raise CLIError("Error: Required parameter 'prefix' missing")
        return f"/v1/kv/{quote_path(prefix.lstrip('/'))}", {"recurse": True}, _list
    if kind == "services":
        return "/v1/catalog/services", {}, _as_is
    if kind == "nodes":
        return "/v1/catalog/nodes", {}, _as_is
    if kind == "service":
        if not service:
            raise CLIError("Error: Required parameter 'service' missing")
        params: dict[str, Param] = {"tag": list(tags) or None, "passing": passing or None}
        return f"/v1/health/service/{quote_path(service)}", params, _as_is
    if kind == "checks":
        if service and state:
            raise CLIError("Error: Cannot specify service and state")
        if service:
            return f"/v1/health/checks/{quote_path(service)}", {}, _as_is
        return f"/v1/health/state/{quote_path(state or 'any')}", {}, _as_is
    return "/v1/event/list", {"name": name or None}, _as_is


def _fetch(client: AgentClient, query: Query, index: int) -> tuple[int, Any]:
    path, params, shape = query
    if index:
        params = {**params, "index": index, "wait": f"{int(WAIT)}s"}
    resp = client.request("GET", path, params=params, allow=(404,))
    body = resp.json() if resp.status == 200 and resp.body.strip() else None
    return resp.index, shape(resp.status, body)


def _run_handler(handler: str, shell: bool, data: Any, index: int) -> None:
    payload = (json.dumps(data, indent=4) + "\n").encode()
    args: str | list[str] = handler if shell else shlex.split(handler)
    env = {**os.environ, "CONSUL_INDEX": str(index), "MESHD_INDEX": str(index)}
    try:
        # Output goes straight to ours (click's runner captures it in tests).
        done = subprocess.run(args, input=payload, shell=shell, env=env, capture_output=True)
    except OSError as exc:
        raise CLIError(f"Error executing handler: {exc.strerror or exc}") from None
    click.echo(done.stdout, nl=False)
    click.echo(done.stderr, nl=False, err=True)
    if done.returncode != 0:
        raise CLIError(f"Error executing handler: exit status {done.returncode}")


def _follow(client: AgentClient, query: Query, handler: str, shell: bool) -> None:
    """Run ``handler`` on the first result and on every change; returns never
    (raises ``CLIError`` when the handler fails)."""
    index, data = _fetch(client, query, 0)
    _run_handler(handler, shell, data, index)
    delay = 1.0
    while True:
        try:
            new_index, new_data = _fetch(client, query, index)
        except (AgentUnreachable, UnexpectedResponse) as exc:
            click.echo(f"Error querying agent, retrying in {delay:g}s: {exc.message}", err=True)
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            continue
        delay = 1.0
        if new_index < index:  # the index went backwards (restore, new leader): start over
            index = 0
            continue
        if new_data != data:
            _run_handler(handler, shell, new_data, new_index)
        if new_index == 0:  # no index to block on: do not spin
            time.sleep(1.0)
        index, data = new_index, new_data


@click.command()
@click.argument("handler", nargs=-1)
@option("type", "kind", type=click.Choice(TYPES), required=True, help="What to watch.")
@option("key", "key", default="", help="With -type key: the key.")
@option("prefix", "prefix", default="", help="With -type keyprefix: the prefix.")
@option("service", "service", default="", help="With -type service or checks: the service.")
@option("tag", "tags", multiple=True, help="With -type service: only instances with this tag.")
@flag("passingonly", "With -type service: only instances whose checks pass.")
@option("state", "state", default="", help="With -type checks: only checks in this state.")
@option("name", "name", default="", help="With -type event: only events with this name.")
@option(
    "shell", "shell", type=bool, default=True, show_default=True, help="Run HANDLER with sh -c."
)
@agent_options()
def watch(
    client: AgentClient,
    handler: tuple[str, ...],
    kind: str,
    key: str,
    prefix: str,
    service: str,
    tags: tuple[str, ...],
    passingonly: bool,
    state: str,
    name: str,
    shell: bool,
) -> None:
    """Watch a view and run HANDLER on every change (or print it once as JSON)."""
    query = _query(kind, key, prefix, service, tags, passingonly, state, name)
    client.timeout = max(client.timeout, WAIT + 30)
    if not handler:
        try:
            _index, data = _fetch(client, query, 0)
        except UnexpectedResponse as exc:
            raise CLIError(f"Error querying Consul agent: {exc.message}") from None
        click.echo(json.dumps(data, indent=4))
        return
    _follow(client, query, " ".join(handler), shell)
