"""The request log: one ``http_request`` line per API request at DEBUG level.

``--log-level debug`` shows method, path, status, duration and the remote
address of every request. The path never carries the query string, so a
``?token=`` value is never logged, and no header is logged (``X-Consul-Token``
and ``Authorization`` stay out).
"""

from __future__ import annotations

import logging

from ..logs import log_event

log = logging.getLogger("meshd.http.request")


def log_request(
    method: str,
    path: str,
    status: int,
    duration: float,
    remote: tuple[str, int] | None,
) -> None:
    """Log one answered request (nothing unless DEBUG is enabled)."""
    if not log.isEnabledFor(logging.DEBUG):
        return
    log_event(
        log,
        logging.DEBUG,
        "http_request",
        method=method,
        path=path.partition("?")[0],
        status=status,
        duration_ms=round(duration * 1000, 3),
        remote=f"{remote[0]}:{remote[1]}" if remote else "",
    )
