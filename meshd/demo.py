"""``make run``: a dev agent with two demo services, ready to explore.

Starts ``meshd agent --dev`` in this process (a single-node server, API on
127.0.0.1:8500, DNS on 127.0.0.1:8600), two small HTTP services ``web``
(127.0.0.1:8080) and ``api`` (127.0.0.1:9090), registers them with HTTP
health checks through the agent API, and prints what to try. Ctrl-C stops
everything. (The mTLS proxy between them arrives with the connect/ issue.)
"""

from __future__ import annotations

import json
import signal
import sys
import urllib.request
from typing import Any

import trio

from .agent.agent import Agent
from .config import load_config

DEMO_SERVICES = [
    {"Name": "web", "ID": "web", "Port": 8080, "Tags": ["demo", "frontend"]},
    {"Name": "api", "ID": "api", "Port": 9090, "Tags": ["demo", "v1"]},
]


async def _http_service(
    name: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        try:
            await stream.receive_some(65536)
            body = f"hello from {name}\n".encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            await stream.send_all(head.encode() + body)
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    task_status.started()
    await trio.serve_listeners(handle, listeners)


def _register(agent: Agent, svc: dict[str, Any]) -> None:
    host, port = agent.http_addresses[0]
    body = dict(svc)
    body["Check"] = {
        "Name": f"{svc['Name']} answers HTTP",
        "HTTP": f"http://127.0.0.1:{svc['Port']}/",
        "Interval": "5s",
        "Status": "passing",
    }
    req = urllib.request.Request(
        f"http://{host}:{port}/v1/agent/service/register",
        data=json.dumps(body).encode(),
        method="PUT",
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


async def _run() -> None:
    config, _ = load_config([], [], {"node": "meshd-dev"}, dev=True)
    agent = Agent(config)
    async with trio.open_nursery() as nursery:
        for svc in DEMO_SERVICES:
            await nursery.start(_http_service, svc["Name"], svc["Port"])
        await nursery.start(agent.run)
        for svc in DEMO_SERVICES:
            await trio.to_thread.run_sync(_register, agent, svc)
        host, port = agent.http_addresses[0]
        print(f"meshd dev agent running: HTTP API http://{host}:{port}, DNS {host}:8600")
        print("demo services: web (127.0.0.1:8080), api (127.0.0.1:9090)\n")
        print("Try next (in another terminal):")
        print(f"  curl http://{host}:{port}/v1/catalog/services")
        print(f"  curl 'http://{host}:{port}/v1/health/service/api?passing'")
        print("  dig @127.0.0.1 -p 8600 api.service.consul SRV")
        print("  .venv/bin/meshd members")
        print("  .venv/bin/meshd kv put greeting hello && .venv/bin/meshd kv get greeting")
        print("  .venv/bin/meshd operator raft list-peers")
        print("Ctrl-C stops everything.", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        print("\nstopping", file=sys.stderr, flush=True)
        nursery.cancel_scope.cancel()


def main() -> None:
    trio.run(_run)


if __name__ == "__main__":
    main()
