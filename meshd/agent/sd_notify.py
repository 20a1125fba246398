"""systemd's notify protocol (sd_notify(3)), spoken directly: no dependency.

A service of ``Type=notify`` tells the service manager how it is doing by
sending datagrams of ``KEY=VALUE`` lines to the AF_UNIX socket named in
``$NOTIFY_SOCKET`` (a path, or an abstract address written ``@name``):

- ``READY=1`` once it serves; ``STATUS=text`` for ``systemctl status``;
- ``RELOADING=1`` plus ``MONOTONIC_USEC=`` (CLOCK_MONOTONIC, which systemd
  253 and later require) when a reload starts, ``READY=1`` when it is done;
- ``STOPPING=1`` when it begins to shut down;
- ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` microseconds when the
  unit sets ``WatchdogSec=`` (systemd recommends every half interval).

``Notifier`` keeps the service's state (starting, ready, reloading,
stopping) so that a late ``READY=1`` never follows ``STOPPING=1`` and a reload
during start-up does not announce readiness early. Without ``$NOTIFY_SOCKET``
(not run by systemd) every call is a no-op. A datagram that cannot be sent is
logged and dropped: a notification never stops the agent.
"""

from __future__ import annotations

import enum
import logging
import math
import os
import re
import socket
import time
from collections.abc import Callable, Mapping, MutableMapping

import trio

__all__ = [
    "DatagramSender",
    "Notifier",
    "ServiceState",
    "encode",
    "socket_address",
    "watchdog_usec",
]

log = logging.getLogger("meshd.sd_notify")

_KEY = re.compile(r"[A-Z][A-Z0-9_]*")
# A datagram to the notify socket blocks at most this long (a full queue).
SEND_TIMEOUT = 1.0


def encode(fields: Mapping[str, str | int]) -> bytes:
    """One notify datagram: ``KEY=VALUE`` lines in the order given.

    Line breaks in a value become spaces (a message is one line per field).
    Raises ``ValueError`` for a key that is not upper-case ``[A-Z0-9_]``."""
    lines = []
    for key, value in fields.items():
        if not _KEY.fullmatch(key):
            raise ValueError(f"invalid notify key {key!r}")
        text = " ".join(str(value).splitlines())
        lines.append(f"{key}={text}\n")
    return "".join(lines).encode()


def socket_address(value: str) -> str | None:
    """The ``socket.sendto`` address for a ``$NOTIFY_SOCKET`` value.

    ``@name`` is Linux's abstract namespace (a leading NUL byte), ``/path`` a
    socket file. Anything else (empty, relative, ``vsock:``) gives None."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_usec(environ: Mapping[str, str], pid: int) -> int | None:
    """``$WATCHDOG_USEC`` when the watchdog is meant for process ``pid``
    (``$WATCHDOG_PID`` unset or equal to it), else None (also when invalid)."""
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class DatagramSender:
    """Sends datagrams to one AF_UNIX address; errors are logged, not raised."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.settimeout(SEND_TIMEOUT)
        self._warned = False

    def __call__(self, data: bytes) -> None:
        try:
            self._sock.sendto(data, self.address)
        except OSError as exc:
            # First failure at WARNING, the rest at DEBUG: one line, not a flood.
            level = logging.DEBUG if self._warned else logging.WARNING
            self._warned = True
            log.log(level, "event=notify_failed reason=%s", exc)

    def close(self) -> None:
        self._sock.close()


class ServiceState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    RELOADING = "reloading"
    STOPPING = "stopping"


class Notifier:
    """What the service manager is told, and the state it has been told.

    ``send`` takes one encoded datagram (None: nothing is sent, every call is
    a no-op). ``monotonic_usec`` is the clock for ``MONOTONIC_USEC=``."""

    def __init__(
        self,
        send: Callable[[bytes], None] | None,
        *,
        watchdog_usec: int | None = None,
        monotonic_usec: Callable[[], int] = _monotonic_usec,
    ) -> None:
        self._send = send
        self.watchdog_usec = watchdog_usec if send is not None else None
        self._monotonic_usec = monotonic_usec
        self.state = ServiceState.STARTING
        self.last_status = ""

    @classmethod
    def from_environ(
        cls, environ: MutableMapping[str, str], *, unset: bool = True, pid: int | None = None
    ) -> Notifier:
        """A notifier for ``$NOTIFY_SOCKET`` (a no-op one without it).

        With ``unset`` the variables are removed from ``environ`` (pass
        ``os.environ``) so that child processes (script checks, a ``--dev``
        proxy) do not notify in the agent's name, as sd_notify(3)'s
        ``unset_environment`` does."""
        address = socket_address(environ.get("NOTIFY_SOCKET", ""))
        if environ.get("NOTIFY_SOCKET") and address is None:
            log.warning("event=notify_socket_unsupported value=%s", environ["NOTIFY_SOCKET"])
        usec = watchdog_usec(environ, os.getpid() if pid is None else pid)
        if unset:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                environ.pop(name, None)
        if address is None:
            return cls(None)
        return cls(DatagramSender(address), watchdog_usec=usec)

    @property
    def enabled(self) -> bool:
        return self._send is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between two ``WATCHDOG=1``: half of ``WatchdogSec``."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    def notify(self, fields: Mapping[str, str | int]) -> None:
        """Send ``fields`` as one datagram (nothing without a socket)."""
        if self._send is None:
            return
        if "STATUS" in fields:
            self.last_status = str(fields["STATUS"])
        self._send(encode(fields))

    def status(self, text: str) -> None:
        """``STATUS=text``, unless it is the status already shown."""
        if text != self.last_status:
            self.notify({"STATUS": text})

    def ready(self, status: str) -> None:
        """``READY=1``: start-up is over. Ignored once stopping or already ready."""
        if self.state in (ServiceState.STARTING, ServiceState.RELOADING):
            self.state = ServiceState.READY
            self.notify({"READY": 1, "STATUS": status})

    def reloading(self, status: str = "reloading") -> None:
        """``RELOADING=1`` with ``MONOTONIC_USEC=``. Before ``ready`` (or while
        stopping) systemd has no running service to reload: only STATUS."""
        if self.state is ServiceState.READY:
            self.state = ServiceState.RELOADING
            self.notify(
                {"RELOADING": 1, "MONOTONIC_USEC": self._monotonic_usec(), "STATUS": status}
            )
        elif self.state is ServiceState.STARTING:
            self.status(status)

    def reloaded(self, status: str) -> None:
        """The reload is over (done or failed): ``READY=1`` again after
        ``reloading``; during start-up only STATUS."""
        if self.state is ServiceState.RELOADING:
            self.ready(status)
        elif self.state is ServiceState.STARTING:
            self.status(status)

    def stopping(self, status: str = "stopping") -> None:
        """``STOPPING=1``; afterwards only STATUS and WATCHDOG are sent."""
        if self.state is not ServiceState.STOPPING:
            self.state = ServiceState.STOPPING
            self.notify({"STOPPING": 1, "STATUS": status})

    def watchdog(self) -> None:
        """``WATCHDOG=1``: the service is alive."""
        self.notify({"WATCHDOG": 1})

    async def run_watchdog(self, *, clock: Callable[[], float] = trio.current_time) -> None:
        """Send ``WATCHDOG=1`` every half ``WatchdogSec`` until cancelled
        (returns at once when no watchdog is set).

        The pings come from a task of the agent's own trio loop, so they stop
        when that loop stops turning (a blocking call, a busy loop, a
        deadlock) and systemd restarts the agent. A wake-up later than the
        interval is logged: the loop was stalled for that long."""
        interval = self.watchdog_interval
        if interval is None:
            return
        due = clock()
        while True:
            lag = clock() - due
            if lag > interval:
                log.warning("event=watchdog_late lag_ms=%d", math.floor(lag * 1000))
            self.watchdog()
            due = clock() + interval
            await trio.sleep_until(due)

    def close(self) -> None:
        if isinstance(self._send, DatagramSender):
            self._send.close()
