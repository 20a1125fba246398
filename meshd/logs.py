"""The agent's log lines: ``key=value`` text, or JSON objects with real fields.

Log calls in meshd are written as logfmt templates
(``log.info("event=sync_done writes=%d full=%s", writes, full)``) or, for new
code, through :func:`log_event`, which carries the fields as a dict on the
record. The text format prints the rendered message unchanged; the JSON
format (``--log-json``) turns either form into one object per line::

    {"ts": "2026-12-04T20:58:01.123Z", "level": "INFO", "logger": "meshd.agent.sync",
     "event": "sync_done", "writes": 3, "full": "True"}

A template is split on spaces and each ``key=...`` token is rendered with its
own arguments, so a value containing spaces (an error text) stays one field.
Words that are not ``key=value`` go to ``msg``. Never log secrets: the
formatter cannot tell a token from any other value.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["StructuredFormatter", "log_event", "logfmt", "record_fields", "setup_logging"]

TEXT_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
# One printf conversion (``%%`` included, counted as taking no argument).
_CONVERSION = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?[a-zA-Z%]")
_KEY = re.compile(r"^([A-Za-z_][\w.\-]*)=(.*)$", re.S)
_HEADER = ("ts", "level", "logger")


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\\\n\t'):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def logfmt(event: str, fields: Mapping[str, object]) -> str:
    """``event=<event> k=v ...`` in the given order, quoting values with spaces."""
    parts = [f"event={_logfmt_value(event)}"]
    parts += [f"{k}={_logfmt_value(v)}" for k, v in fields.items()]
    return " ".join(parts)


def log_event(logger: logging.Logger, level: int, event: str, **fields: object) -> None:
    """Log one event with its fields as a dict (``record.fields``) and as logfmt text."""
    if logger.isEnabledFor(level):
        logger.log(level, "%s", logfmt(event, fields), extra={"fields": {"event": event, **fields}})


def _native(value: object) -> object:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _template_fields(template: str, args: tuple[Any, ...]) -> dict[str, object] | None:
    """Fields of a logfmt template with printf arguments; None if it does not parse."""
    fields: dict[str, object] = {}
    words: list[str] = []
    used = 0
    for token in template.split(" "):
        if not token:
            continue
        conversions = [m.group() for m in _CONVERSION.finditer(token)]
        wanted = sum(1 for c in conversions if c != "%%") + sum(c.count("*") for c in conversions)
        mine = args[used : used + wanted]
        used += wanted
        try:
            text = token % mine if conversions else token
        except (TypeError, ValueError):
            return None
        match = _KEY.match(token)
        if match is None:
            words.append(text)
            continue
        key = match.group(1)
        whole = len(mine) == 1 and match.group(2) in ("%s", "%d", "%r", "%i")
        fields[key] = _native(mine[0]) if whole and match.group(2) != "%r" else text[len(key) + 1 :]
    if used != len(args):
        return None
    if words:
        fields["msg"] = " ".join(words)
    return fields


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The structured fields of ``record`` (``event``, keys, ``msg`` for free text)."""
    given = getattr(record, "fields", None)
    if isinstance(given, dict):
        return {str(k): _native(v) for k, v in given.items()}
    if isinstance(record.msg, str) and isinstance(record.args, tuple):
        parsed = _template_fields(record.msg, record.args)
        if parsed is not None:
            return parsed
    return {"msg": record.getMessage()}


class StructuredFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines, or one JSON object per record with ``as_json``."""

    def __init__(self, as_json: bool = False) -> None:
        super().__init__(TEXT_FORMAT)
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        if not self.as_json:
            return super().format(record)
        entry: dict[str, object] = {
            "ts": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
        }
        for key, value in record_fields(record).items():
            entry[f"field_{key}" if key in _HEADER else key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _iso_time(created: float) -> str:
    millis = int((created % 1) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def setup_logging(level: str, as_json: bool) -> None:
    """Root logging on stderr at Consul's ``level`` name (TRACE, DEBUG, INFO, WARN, ERR)."""
    name = level.upper()
    py_level = {"TRACE": "DEBUG", "WARN": "WARNING", "ERR": "ERROR"}.get(name, name)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter(as_json))
    logging.basicConfig(level=py_level, handlers=[handler], force=True)
