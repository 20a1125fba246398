"""systemd readiness for the proxy: ``sd_notify`` over ``$NOTIFY_SOCKET``.

``meshd-proxy.service`` is ``Type=notify``: the proxy sends ``READY=1`` once
the listeners of the first service list are bound (``run_proxy``), and
``STOPPING=1`` when told to stop. connect may not import meshd, so this is
the protocol's small core on its own (sd_notify(3)): one datagram of
newline-separated ``KEY=VALUE`` assignments to the socket named by
``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace). Without
the variable nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("meshd.proxy")


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``state`` (``"READY=1\\nSTATUS=..."``); returns whether it was sent.

    A missing ``$NOTIFY_SOCKET`` is no error (not run by systemd); an
    unusable one is logged once per call and otherwise ignored.
    """
    path = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    elif not path.startswith("/"):
        log.warning("event=notify_socket_unsupported value=%s", path)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(path)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("event=notify_failed reason=%s", exc)
        return False
    return True
