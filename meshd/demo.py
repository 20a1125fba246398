"""``make run``: a dev agent, the mTLS proxy and two demo services in the mesh.

Starts ``meshd agent --dev`` in this process (a single-node server, API on
127.0.0.1:8500, DNS on 127.0.0.1:8600), small HTTP services ``web``
(127.0.0.1:8080) and ``api`` in two versions (v1 on 127.0.0.1:9090, v2 on
127.0.0.1:9091, told apart by ``Meta.version``), registers them with HTTP
health checks and Connect sidecars (web has the upstream ``api`` on
127.0.0.1:9191), allows web to talk to api with an intention, makes api an
``http`` service (service-defaults) whose resolver sends everything to v1,
starts ``meshd proxy`` for the agent's sidecars (metrics on
127.0.0.1:9102) and prints what to try: the intention, and L7 traffic
management with config entries it writes into its data directory
(``/tmp/meshd-demo`` by default): a header-selected hidden release, a 90/10
canary and fault injection. ``web`` answers with what it got from ``api``
through its upstream, so denying the intention shows at once. Ctrl-C stops
everything this started.

Every port can be moved (``python -m meshd.demo --http-port 18500 ...``,
see ``--help``), which the tests do so that they never meet a demo a user
is running. A port already taken stops the demo before it starts anything,
with one line (``port 8500 in use (is another meshd running?)``).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import signal
import socket
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .errors import StartupError
from .logs import setup_logging

HOST = "127.0.0.1"


@dataclass(frozen=True)
class DemoPorts:
    """Every port the demo listens on (Consul's defaults and the README's)."""

    http: int = 8500
    dns: int = 8600
    server: int = 8300
    web: int = 8080
    api: int = 9090
    api_v2: int = 9091
    upstream: int = 9191
    metrics: int = 9102
    web_sidecar: int = 21000
    api_sidecar: int = 21001
    api_v2_sidecar: int = 21002

    def what(self, name: str) -> str:
        """How a port is named in the one-line error."""
        return {
            "http": "(is another meshd running?)",
            "dns": "(DNS; is another meshd running?)",
            "server": "(server RPC; is another meshd running?)",
        }.get(name, f"(the demo's {name.replace('_', ' ')})")


def demo_services(ports: DemoPorts) -> list[dict[str, Any]]:
    """web (with the upstream api) and api v1 and v2, each with a Connect sidecar."""
    upstream = {"DestinationName": "api", "LocalBindAddress": HOST, "LocalBindPort": ports.upstream}
    return [
        {
            "Name": "web",
            "ID": "web",
            "Port": ports.web,
            "Tags": ["demo", "frontend"],
            "Connect": {
                "SidecarService": {"Port": ports.web_sidecar, "Proxy": {"Upstreams": [upstream]}}
            },
        },
        {
            "Name": "api",
            "ID": "api",
            "Port": ports.api,
            "Tags": ["demo", "v1"],
            "Meta": {"version": "v1"},
            "Connect": {"SidecarService": {"Port": ports.api_sidecar}},
        },
        {
            "Name": "api",
            "ID": "api-v2",
            "Port": ports.api_v2,
            "Tags": ["demo", "v2"],
            "Meta": {"version": "v2"},
            "Connect": {"SidecarService": {"Port": ports.api_v2_sidecar}},
        },
    ]


def _greeting(svc: dict[str, Any]) -> str:
    """How a demo service introduces itself (``api v1``, ``api v2``, ``web``)."""
    version = (svc.get("Meta") or {}).get("version")
    return f"{svc['Name']} {version}" if version else str(svc["Name"])


# api speaks HTTP, so web's proxy routes its requests at L7; its resolver
# knows v1 and v2 by Meta.version and sends everything to v1 until a router
# or splitter says otherwise.
API_ENTRIES: list[dict[str, Any]] = [
    {"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
    {
        "Kind": "service-resolver",
        "Name": "api",
        "DefaultSubset": "v1",
        "Subsets": {
            "v1": {"Filter": 'Service.Meta.version == "v1"'},
            "v2": {"Filter": 'Service.Meta.version == "v2"'},
        },
    },
]

# The files the printed commands write with `meshd config write`.
DEMO_FILES: dict[str, dict[str, Any]] = {
    "hidden-release.json": {
        "Kind": "service-router",
        "Name": "api",
        "Routes": [
            {
                "Match": {"HTTP": {"Header": [{"Name": "x-version", "Exact": "v2"}]}},
                "Destination": {"ServiceSubset": "v2"},
            }
        ],
    },
    "canary.json": {
        "Kind": "service-splitter",
        "Name": "api",
        "Splits": [
            {"Weight": 90, "ServiceSubset": "v1"},
            {"Weight": 10, "ServiceSubset": "v2"},
        ],
    },
    "fault.json": {
        "Kind": "service-defaults",
        "Name": "api",
        "Protocol": "http",
        "EnvoyExtensions": [
            {
                "Name": "builtin/fault-injection",
                "Arguments": {"Config": {"Abort": {"HttpStatus": 503, "Percentage": 50}}},
            }
        ],
    },
    "api-defaults.json": API_ENTRIES[0],
}


def write_demo_files(data_dir: Path) -> None:
    """The config entries of the printed L7 commands, as JSON files."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, entry in DEMO_FILES.items():
        tmp = data_dir / f".{name}.tmp"
        tmp.write_text(json.dumps(entry, indent=2) + "\n")
        tmp.replace(data_dir / name)


def _taken(ports: DemoPorts) -> str | None:
    """The first demo port something else holds, as the one-line error."""
    for f in dataclasses.fields(ports):
        port = getattr(ports, f.name)
        kinds = (
            (socket.SOCK_STREAM, socket.SOCK_DGRAM) if f.name == "dns" else (socket.SOCK_STREAM,)
        )
        for kind in kinds:
            with socket.socket(socket.AF_INET, kind) as sock:
                try:
                    sock.bind((HOST, port))
                except OSError as exc:
                    if exc.errno != errno.EADDRINUSE:
                        raise
                    flag = f"--{f.name.replace('_', '-')}-port"
                    return (
                        f"port {port} in use {ports.what(f.name)}: stop it, or give the demo "
                        f"another port with {flag}"
                    )
    return None


# What an application copies from its inbound request to its outbound calls so
# that the mesh's traces join up (W3C, B3, the request id, the forcing header).
TRACE_HEADERS = (
    b"traceparent",
    b"tracestate",
    b"b3",
    b"x-b3-traceid",
    b"x-b3-spanid",
    b"x-b3-parentspanid",
    b"x-b3-sampled",
    b"x-b3-flags",
    b"x-request-id",
    b"x-meshd-force-trace",
)


def trace_headers(request: bytes) -> bytes:
    """The trace header lines of a raw request head, ready to send on."""
    head = request.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    keep = [line for line in head if line.partition(b":")[0].strip().lower() in TRACE_HEADERS]
    return b"".join(line.strip() + b"\r\n" for line in keep)


async def _ask_api(ports: DemoPorts, forward: bytes = b"") -> str:
    """What api answers through web's upstream (the mesh), or why not;
    ``forward`` are the inbound request's trace headers."""
    try:
        with trio.fail_after(2):
            stream = await trio.open_tcp_stream(HOST, ports.upstream)
            async with stream:
                await stream.send_all(
                    b"GET / HTTP/1.1\r\nHost: api\r\n" + forward + b"Connection: close\r\n\r\n"
                )
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
    name: str, port: int, ports: DemoPorts, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Answers ``hello from <name>`` (web adds what api said through the mesh)."""

    async def handle(stream: trio.SocketStream) -> None:
        try:
            request = await stream.receive_some(65536)
            text = f"hello from {name}\n"
            if name == "web" and not request.startswith(b"GET /health"):
                text += f"api says: {await _ask_api(ports, trace_headers(request))}\n"
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


def _call(agent: Any, method: str, path: str, body: Any) -> None:
    host, port = agent.http_addresses[0]
    req = urllib.request.Request(
        f"http://{host}:{port}{path}", data=json.dumps(body).encode(), method=method
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        resp.read()


def _register(agent: Any, svc: dict[str, Any]) -> None:
    body = dict(svc)
    body["Check"] = {
        "Name": f"{svc['Name']} answers HTTP",
        "HTTP": f"http://127.0.0.1:{svc['Port']}/health",
        "Interval": "5s",
        "Status": "passing",
    }
    _call(agent, "PUT", "/v1/agent/service/register", body)


async def _run_proxy(
    http: str, metrics: str, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    cmd = [sys.executable, "-m", "meshd", "proxy", "--http-addr", http]
    proc = await trio.lowlevel.open_process([*cmd, "--metrics-addr", metrics])
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


def _api_sidecars_healthy(agent: Any) -> int:
    host, port = agent.http_addresses[0]
    url = f"http://{host}:{port}/v1/health/connect/api?passing"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return len(json.loads(resp.read()))


async def _wait_for_mesh(agent: Any, ports: DemoPorts) -> None:
    """Until both api sidecars (v1, v2) pass their checks (the proxy routes
    only to healthy instances) and a request through web's upstream gets
    through."""
    with trio.move_on_after(30):
        while await trio.to_thread.run_sync(_api_sidecars_healthy, agent) < 2:
            await trio.sleep(0.25)
        while (await _ask_api(ports)).startswith("api "):
            await trio.sleep(0.25)


def l7_commands(cli: str, addr: str, up: str, data_dir: Path) -> list[str]:
    """The L7 lines of the demo's help: each runs verbatim in a shell."""
    write = f"{cli} config write"
    return [
        f"{write} {data_dir / 'hidden-release.json'}{addr}   # x-version: v2 selects v2",
        f"curl -s -H 'x-version: v2' {up}/   # hello from api v2",
        f"curl -s {up}/                   # hello from api v1 (no header)",
        f"{cli} explain web api -H 'x-version: v2' /{addr}   # which route, target, instances",
        f"{write} {data_dir / 'canary.json'}{addr}   # canary: 90% v1, 10% v2",
        f"for i in $(seq 100); do curl -s {up}/; done | sort | uniq -c   # ~90 v1, ~10 v2",
        f"{write} {data_dir / 'fault.json'}{addr}   # fault: api aborts half with 503",
        f"for i in $(seq 20); do curl -s -o /dev/null -w '%{{http_code}} ' {up}/; done; echo",
        f"{write} {data_dir / 'api-defaults.json'}{addr}   # fault off",
        f"{cli} config delete -kind service-splitter -name api{addr}   # canary off",
        f"{cli} config delete -kind service-router -name api{addr}     # hidden release off",
    ]


def _print_help(host: str, port: int, ports: DemoPorts, data_dir: Path) -> None:
    api = f"http://{host}:{port}"
    cli = ".venv/bin/meshd"
    addr = "" if port == 8500 else f" -http-addr {host}:{port}"
    up = f"{HOST}:{ports.upstream}"
    metrics = f"{HOST}:{ports.metrics}"
    print(f"meshd dev agent running: HTTP API {api}, DNS {host}:{ports.dns}")
    print(f"web UI: {api}/ui/")
    print(
        f"demo services: web ({HOST}:{ports.web}), api v1 ({HOST}:{ports.api}) and "
        f"api v2 ({HOST}:{ports.api_v2}), each with a sidecar;"
    )
    print(f"web reaches api through its upstream {up} (mTLS via meshd proxy)\n")
    print("Try next (in another terminal):")
    print(f"  curl {up}/            # api through the mesh")
    print(f"  curl {HOST}:{ports.web}/                  # web, showing what api said")
    print(f"  {cli} intention create --deny --replace web api{addr}   # and curl again")
    print(f"  {cli} intention create --allow --replace web api{addr}")
    print(f"  {cli} intention list{addr} && {cli} ca roots{addr}")
    print(f"  curl http://{metrics}/metrics     # the proxy's metrics")
    print(f"  curl {api}/v1/agent/connect/ca/leaf/web")
    print(f"  curl '{api}/v1/health/connect/api?passing'")
    print(f"  dig @{host} -p {ports.dns} api.service.consul SRV")
    print(f"  {cli} members{addr} && {cli} operator raft list-peers{addr}")
    print("\nL7 (api is http; everything goes to v1 until a config entry says otherwise;")
    print(f"the entries are in {data_dir}, changes apply within a second):")
    for line in l7_commands(cli, addr, up, data_dir):
        print(f"  {line}")
    print("Ctrl-C stops everything.", flush=True)


def _show_agent_log() -> None:
    """The agent's own log lines on stderr, with time and level (INFO and up,
    ``MESHD_LOG_LEVEL`` to change), as ``meshd agent`` prints them."""
    setup_logging(os.environ.get("MESHD_LOG_LEVEL", "INFO"), as_json=False)


async def _serve(ports: DemoPorts, data_dir: Path) -> None:
    """Start the agent, the services, the intention and the proxy; serve until cancelled."""
    from .agent.agent import Agent
    from .config import load_config

    _show_agent_log()
    flags = {
        "node": "meshd-dev",
        "http_port": ports.http,
        "dns_port": ports.dns,
        "server_port": ports.server,
    }
    config, _ = load_config([], [], flags, dev=True)
    agent = Agent(config)
    services = demo_services(ports)
    async with trio.open_nursery() as nursery:
        for svc in services:
            await nursery.start(_http_service, _greeting(svc), svc["Port"], ports)
        await nursery.start(agent.run)
        for svc in services:
            await trio.to_thread.run_sync(_register, agent, svc)
        intention = {"Action": "allow", "Description": "make run demo"}
        path = "/v1/connect/intentions/exact?source=web&destination=api"
        await trio.to_thread.run_sync(_call, agent, "PUT", path, intention)
        for entry in API_ENTRIES:
            await trio.to_thread.run_sync(_call, agent, "PUT", "/v1/config", entry)
        host, port = agent.http_addresses[0]
        await nursery.start(_run_proxy, f"{host}:{port}", f"{HOST}:{ports.metrics}")
        await _wait_for_mesh(agent, ports)
        _print_help(host, port, ports, data_dir)


async def _run(ports: DemoPorts, data_dir: Path) -> None:
    """The demo until Ctrl-C or SIGTERM, which stop it cleanly even while it
    is still starting (the signals are caught before anything starts)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve, ports, data_dir)
            async for _ in signals:
                break
            print("\nstopping", file=sys.stderr, flush=True)
            nursery.cancel_scope.cancel()


def _startup_error(exc: BaseException) -> StartupError | None:
    if isinstance(exc, StartupError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            if (found := _startup_error(inner)) is not None:
                return found
    return None


DEFAULT_DATA_DIR = Path(tempfile.gettempdir()) / "meshd-demo"


def parse_args(argv: list[str] | None = None) -> tuple[DemoPorts, Path]:
    """The demo's ports (``--http-port`` ...) and ``--data-dir`` from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m meshd.demo", description=__doc__.split("\n")[0]
    )
    for f in dataclasses.fields(DemoPorts):
        flag = f"--{f.name.replace('_', '-')}-port"
        parser.add_argument(flag, type=int, default=f.default, dest=f.name, metavar="PORT")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help=f"where the demo writes its config entry files (default {DEFAULT_DATA_DIR})",
    )
    args = vars(parser.parse_args(argv))
    data_dir = args.pop("data_dir")
    return DemoPorts(**args), data_dir.absolute()


def parse_ports(argv: list[str] | None = None) -> DemoPorts:
    """The demo's ports from the command line (``--http-port`` ...)."""
    return parse_args(argv)[0]


def main(argv: list[str] | None = None) -> None:
    """Run the demo until Ctrl-C; a port in use or a data directory it cannot
    write is one line and exit status 1, before anything starts."""
    ports, data_dir = parse_args(argv)
    taken = _taken(ports)
    if taken is not None:
        print(taken, file=sys.stderr)
        sys.exit(1)
    try:
        write_demo_files(data_dir)
    except OSError as exc:
        print(
            f"cannot write the demo's config entries into {data_dir}: "
            f"{exc.strerror or exc}; give it another with --data-dir",
            file=sys.stderr,
        )
        sys.exit(1)
    try:
        trio.run(_run, ports, data_dir)
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        failure = _startup_error(exc)
        if failure is None:
            raise
        print(f"Error: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
