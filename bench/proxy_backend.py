"""The backend every path of the proxy benchmark ends at: Debian's nginx in a
temporary prefix, one process (``master_process off``), answering ``GET /``
with ``return 200`` and ``GET /bulk`` with a sparse file of the download
size (no disk blocks used; served with sendfile)."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.loadgen.install import ensure_commands
from bench.loadgen.procs import stop_process

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log stderr error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = / {{ return 200 "ok\\n"; }}
        location = /bulk {{ alias {root}/bulk.bin; }}
    }}
}}
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out on ``host`` (free for a moment)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(
    port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30
) -> None:
    """Until something accepts TCP connections on 127.0.0.1:``port``.
    Raises ``RuntimeError`` with the process's stderr if it exits first, or
    ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {err[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} not listening on 127.0.0.1:{port} within {timeout:g}s")


@dataclass
class Nginx:
    proc: subprocess.Popen[bytes]
    port: int
    bulk_bytes: int

    def stop(self) -> None:
        stop_process(self.proc)


def start_nginx(root: Path, bulk_bytes: int) -> Nginx:
    """nginx on a free loopback port with a ``bulk_bytes`` sparse file at
    /bulk. Installs Debian's nginx-light when nginx is missing; raises
    ``MissingTool`` if it cannot, ``RuntimeError`` if nginx does not start."""
    ensure_commands({"nginx": "nginx-light"})
    root.mkdir(parents=True, exist_ok=True)
    with (root / "bulk.bin").open("wb") as f:
        f.truncate(bulk_bytes)  # sparse: a hole, read as zeros
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port))
    proc = subprocess.Popen(
        ["nginx", "-p", str(root), "-c", str(conf), "-e", "stderr"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_listening(port, proc, "nginx")
    except BaseException:
        stop_process(proc)
        raise
    return Nginx(proc, port, bulk_bytes)
