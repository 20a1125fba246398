"""One-line ``key=value`` log events (logfmt); values with spaces or quotes are quoted."""

from __future__ import annotations

import logging

log = logging.getLogger("meshd.proxy")


def _value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def logfmt(event: str, **fields: object) -> str:
    """``event=<event> k=v ...`` in the given order."""
    parts = [f"event={_value(event)}"]
    parts += [f"{k}={_value(v)}" for k, v in fields.items()]
    return " ".join(parts)


def emit(level: int, event: str, **fields: object) -> None:
    """Log one event on the ``meshd.proxy`` logger (never pass secrets)."""
    if log.isEnabledFor(level):
        # The dict travels on the record too: --log-json writes real fields.
        extra = {"fields": {"event": event, **fields}}
        log.log(level, "%s", logfmt(event, **fields), extra=extra)
