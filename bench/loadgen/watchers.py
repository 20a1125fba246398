"""Drive ``watchers.c``: thousands of HTTP watchers from one epoll process.

The C source sits next to this file and is compiled with the system ``gcc``
into a temporary directory on first use (no binary is committed). See the
comment at the top of ``watchers.c`` for its stdin/stdout protocol.
"""

from __future__ import annotations

import hashlib
import os
import select
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .install import ensure_commands
from .procs import stop_process

SOURCE = Path(__file__).with_name("watchers.c")


class LoadgenError(RuntimeError):
    """The load generator failed or did not answer in time."""


def build() -> Path:
    """Compile ``watchers.c`` (once per source version) and return the binary.

    Raises ``LoadgenError`` if gcc fails; installs gcc with apt-get if missing.
    """
    ensure_commands({"gcc": "gcc"})
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / f"meshd-bench-watchers-{digest}"
    if out.exists():
        return out
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    proc = subprocess.run(
        ["gcc", "-O2", "-Wall", "-o", str(tmp), str(SOURCE)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise LoadgenError(f"gcc failed:\n{proc.stderr}")
    tmp.replace(out)
    return out


class _LineProcess:
    """A child speaking one-line answers on stdout; reads with a deadline."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._buf = b""

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def expect(self, word: str, timeout: float) -> list[str]:
        """The next line starting with ``word``, split; raises ``LoadgenError``."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                parts = line.decode().split()
                if parts and parts[0] == word:
                    return parts
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoadgenError(f"no {word} from the load generator within {timeout}s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    raise LoadgenError(f"load generator exited while waiting for {word}: {err}")
                self._buf += chunk

    def close(self) -> None:
        stop_process(self.proc)


class WatcherClient(_LineProcess):
    """N watchers spread round-robin over ``targets`` (``host:port``).

    ``mode`` is ``http`` (a long-poll GET answered with Content-Length) or
    ``etcd`` (one ``POST /v3/watch`` stream per connection).
    """

    def __init__(self, binary: Path, mode: str, n: int, targets: Sequence[str]) -> None:
        super().__init__([str(binary), "client", mode, str(n), ",".join(targets)])
        self.n = n
        self.last_errors = ""

    def connected(self, timeout: float = 60) -> tuple[int, int]:
        """(connected, failed) once every connection attempt finished."""
        _, ok, failed = self.expect("CONNECTED", timeout)
        return int(ok), int(failed)

    def arm(self, request: bytes, timeout: float = 60) -> tuple[int, int]:
        """Send ``request`` on every connection: (waiting, failed) once all
        are written (http) or all watches are created (etcd)."""
        self.send(b"ARM %d\n" % len(request) + request)
        _, waiting, failed = self.expect("ARMED", timeout)
        return int(waiting), int(failed)

    def collect(self, timeout: float) -> tuple[list[float], int, int]:
        """(completion times as ``time.monotonic()`` seconds, pending, errors)
        once every armed watcher answered or ``timeout`` passed. Why the
        failed connections failed is kept in ``last_errors``."""
        self.send(b"WAIT %d\n" % int(timeout * 1000))
        _, _done, pending, errors = self.expect("RESULT", timeout + 30)
        times = self.expect("TIMES", 30)[1:]
        self.last_errors = " ".join(self.expect("ERRORS", 30)[1:])
        return [int(t) / 1e9 for t in times], int(pending), int(errors)


class TrivialTarget(_LineProcess):
    """``watchers serve``: holds requests and answers them all on ``fire()``."""

    def __init__(self, binary: Path, address: str, n: int) -> None:
        super().__init__([str(binary), "serve", address, str(n)])
        self.expect("LISTENING", 10)

    def held(self, timeout: float = 60) -> int:
        return int(self.expect("HELD", timeout)[1])

    def fire(self) -> None:
        self.send(b"FIRE\n")
        self.expect("FIRED", 30)
