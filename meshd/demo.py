"""``make run``: a dev agent, the mTLS proxy and two demo services in the mesh.

Starts ``meshd agent --dev`` in this process (a single-node server, API on
127.0.0.1:8500, DNS on 127.0.0.1:8600), two small HTTP services ``web``
(127.0.0.1:8080) and ``api`` (127.0.0.1:9090), registers both with HTTP
health checks and Connect sidecars (web has the upstream ``api`` on
127.0.0.1:9191), allows web to talk to api with an intention, starts
``meshd proxy`` for the agent's sidecars (metrics on 127.0.0.1:9102) and
prints what to try. ``web`` answers with what it got from ``api`` through
its upstream, so denying the intention shows at once. Ctrl-C stops
everything this started.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import urllib.request
from typing import Any

import trio

from .agent.agent import Agent
from .config import load_config
from .logs import setup_logging

UPSTREAM = ("127.0.0.1", 9191)
METRICS_ADDR = "127.0.0.1:9102"
DEMO_SERVICES: list[dict[str, Any]] = [
    {
        "Name": "web",
        "ID": "web",
        "Port": 8080,
        "Tags": ["demo", "frontend"],
        "Connect": {
            "SidecarService": {
                "Proxy": {
                    "Upstreams": [
                        {
                            "DestinationName": "api",
                            "LocalBindAddress": UPSTREAM[0],
                            "LocalBindPort": UPSTREAM[1],
                        }
                    ]
                }
            }
        },
    },
    {
        "Name": "api",
        "ID": "api",
        "Port": 9090,
        "Tags": ["demo", "v1"],
        "Connect": {"SidecarService": {}},
    },
]


async def _ask_api() -> str:
    """What api answers through web's upstream (the mesh), or why not."""
    try:
        with trio.fail_after(2):
            stream = await trio.open_tcp_stream(*UPSTREAM)
            async with stream:
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := await stream.receive_some(65536):
                    data += chunk
    except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
        return f"api unreachable through the mesh ({type(exc).__name__})"
    _, _, body = data.partition(b"\r\n\r\n")
    if not body:
        return "api refused the connection (intention denies web -> api?)"
    return body.decode(errors="replace").strip()


async def _http_service(
    name: str, port: int, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    async def handle(stream: trio.SocketStream) -> None:
        try:
            request = await stream.receive_some(65536)
            text = f"hello from {name}\n"
            if name == "web" and not request.startswith(b"GET /health"):
                text += f"api says: {await _ask_api()}\n"
            body = text.encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            await stream.send_all(head.encode() + body)
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
    task_status.started()
    await trio.serve_listeners(handle, listeners)


def _call(agent: Agent, method: str, path: str, body: Any) -> None:
    host, port = agent.http_addresses[0]
    req = urllib.request.Request(
        f"http://{host}:{port}{path}", data=json.dumps(body).encode(), method=method
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


def _register(agent: Agent, svc: dict[str, Any]) -> None:
    body = dict(svc)
    body["Check"] = {
        "Name": f"{svc['Name']} answers HTTP",
        "HTTP": f"http://127.0.0.1:{svc['Port']}/health",
        "Interval": "5s",
        "Status": "passing",
    }
    _call(agent, "PUT", "/v1/agent/service/register", body)


async def _run_proxy(http: str, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    cmd = [sys.executable, "-m", "meshd", "proxy", "--http-addr", http]
    proc = await trio.lowlevel.open_process([*cmd, "--metrics-addr", METRICS_ADDR])
    task_status.started()
    try:
        await proc.wait()
        print(f"meshd proxy exited with {proc.returncode}", file=sys.stderr, flush=True)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(5) as scope:
                scope.shield = True
                await proc.wait()
            if proc.returncode is None:
                proc.kill()


def _api_sidecar_healthy(agent: Agent) -> bool:
    host, port = agent.http_addresses[0]
    url = f"http://{host}:{port}/v1/health/connect/api?passing"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return bool(json.loads(resp.read()))


async def _wait_for_mesh(agent: Agent) -> None:
    """Until api's sidecar passes its checks (the proxy routes only to
    healthy instances) and a request through web's upstream gets through."""
    with trio.move_on_after(30):
        while not await trio.to_thread.run_sync(_api_sidecar_healthy, agent):
            await trio.sleep(0.25)
        while (await _ask_api()).startswith("api "):
            await trio.sleep(0.25)


def _print_help(host: str, port: int) -> None:
    api = f"http://{host}:{port}"
    print(f"meshd dev agent running: HTTP API {api}, DNS {host}:8600")
    print("demo services: web (127.0.0.1:8080), api (127.0.0.1:9090), both with sidecars;")
    print(
        f"web reaches api through its upstream {UPSTREAM[0]}:{UPSTREAM[1]} (mTLS via meshd proxy)\n"
    )
    print("Try next (in another terminal):")
    print(f"  curl {UPSTREAM[0]}:{UPSTREAM[1]}/            # api through the mesh")
    print("  curl 127.0.0.1:8080/                  # web, showing what api said")
    print("  .venv/bin/meshd intention create --deny --replace web api   # and curl again")
    print("  .venv/bin/meshd intention create --allow --replace web api")
    print("  .venv/bin/meshd intention list && .venv/bin/meshd ca roots")
    print(f"  curl http://{METRICS_ADDR}/metrics     # the proxy's metrics")
    print(f"  curl {api}/v1/agent/connect/ca/leaf/web")
    print(f"  curl '{api}/v1/health/connect/api?passing'")
    print("  dig @127.0.0.1 -p 8600 api.service.consul SRV")
    print("  .venv/bin/meshd members && .venv/bin/meshd operator raft list-peers")
    print("Ctrl-C stops everything.", flush=True)


def _show_agent_log() -> None:
    """The agent's own log lines on stderr, with time and level (INFO and up,
    ``MESHD_LOG_LEVEL`` to change), as ``meshd agent`` prints them."""
    setup_logging(os.environ.get("MESHD_LOG_LEVEL", "INFO"), as_json=False)


async def _run() -> None:
    _show_agent_log()
    config, _ = load_config([], [], {"node": "meshd-dev"}, dev=True)
    agent = Agent(config)
    async with trio.open_nursery() as nursery:
        for svc in DEMO_SERVICES:
            await nursery.start(_http_service, svc["Name"], svc["Port"])
        await nursery.start(agent.run)
        for svc in DEMO_SERVICES:
            await trio.to_thread.run_sync(_register, agent, svc)
        intention = {"Action": "allow", "Description": "make run demo"}
        path = "/v1/connect/intentions/exact?source=web&destination=api"
        await trio.to_thread.run_sync(_call, agent, "PUT", path, intention)
        host, port = agent.http_addresses[0]
        await nursery.start(_run_proxy, f"{host}:{port}")
        await _wait_for_mesh(agent)
        _print_help(host, port)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        print("\nstopping", file=sys.stderr, flush=True)
        nursery.cancel_scope.cancel()


def main() -> None:
    trio.run(_run)


if __name__ == "__main__":
    main()
