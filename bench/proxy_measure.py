"""What the proxy benchmark measures besides wrk's figures: a bulk download's
MB/s, the CPU and RSS of a proxy's processes (and their children, for
multi-process proxies), and the two ceilings a proxy pair cannot beat on
this machine: a loopback TCP copy and AES-128-GCM on one core."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from bench.loadgen.procs import cpu_ticks

CHUNK = 4 << 20  # per recv/send call: smaller calls cap loopback below its ceiling


def download(port: int, path: str, expected: int, timeout: float = 120.0) -> float:
    """GET ``path`` from 127.0.0.1:``port`` (HTTP/1.1, one connection) and
    read the ``expected``-byte body; returns seconds from connect to last
    byte. Raises ``RuntimeError`` on a non-200 answer or a short body."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            n = sock.recv_into(view)
            if not n:
                raise RuntimeError(f"connection closed in the headers: {head[:200]!r}")
            head += bytes(view[:n])
        header, _, rest = head.partition(b"\r\n\r\n")
        if not header.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
            raise RuntimeError(f"bulk download answered {header[:100]!r}")
        got = len(rest)
        while got < expected:
            n = sock.recv_into(view)
            if not n:
                break
            got += n
    elapsed = time.perf_counter() - t0
    if got < expected:
        raise RuntimeError(f"bulk download got {got} of {expected} bytes")
    return elapsed


def process_tree(pids: Iterable[int]) -> list[int]:
    """``pids`` and all their live descendants (from /proc's parent links)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in out or not Path(f"/proc/{pid}").exists():
            continue
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` and their descendants."""
    hz = os.sysconf("SC_CLK_TCK")
    return sum(cpu_ticks(p) for p in process_tree(pids)) / hz


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (10^6 bytes); 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 / 1e6 if match else 0.0


def tree_rss_mb(pids: Sequence[int]) -> list[float]:
    """RSS in MB of each process in ``pids`` and their descendants."""
    return [rss_mb(p) for p in process_tree(pids)]


def loopback_ceiling(total: int, seconds_cap: float = 3.0) -> float:
    """MB/s of one TCP connection on loopback moving ``total`` bytes (or
    until ``seconds_cap``) from a forked sender to this process, 4 MiB per
    call: no proxy relays faster than this copy."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        child = os.fork()
        if child == 0:  # the sender: writes until the reader hangs up
            code = 0
            try:
                payload = memoryview(bytes(CHUNK))
                with socket.create_connection(("127.0.0.1", port)) as out:
                    while True:
                        out.sendall(payload)
            except OSError:
                pass
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        try:
            conn, _ = listener.accept()
            with conn:
                view = memoryview(bytearray(CHUNK))
                got = 0
                t0 = time.perf_counter()
                while got < total and time.perf_counter() - t0 < seconds_cap:
                    got += conn.recv_into(view)
                elapsed = time.perf_counter() - t0
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
    return got / elapsed / 1e6


def aes_gcm_ceiling(seconds: int = 1) -> float | None:
    """MB/s of AES-128-GCM on one core over 16 KiB records (``openssl
    speed``), or None when openssl is missing or prints no figure."""
    if shutil.which("openssl") is None:
        return None
    argv = ["openssl", "speed", "-elapsed", "-seconds", str(seconds), "-bytes", "16384"]
    proc = subprocess.run(
        [*argv, "-evp", "aes-128-gcm"], capture_output=True, text=True, timeout=60, check=False
    )
    # The result line: "AES-128-GCM   4512345.67k" (thousands of bytes per second).
    match = re.search(r"^aes-128-gcm\s+([\d.]+)k\s*$", proc.stdout, re.MULTILINE | re.IGNORECASE)
    return float(match.group(1)) * 1000 / 1e6 if match else None
