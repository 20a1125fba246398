"""Fan-out of the process's log records to ``/v1/agent/monitor`` clients.

One ``LogFanout`` handler sits on the root logger while at least one client
is subscribed. Each subscriber has its own level and a bounded buffer:
``emit`` formats the record once per format, appends it to the buffers of
the subscribers that want it and wakes their readers, never waiting for a
reader (a full buffer drops the line and counts it; the reader is told how
many it missed). Records may be emitted from worker threads, so buffers are
guarded by a lock and wake-ups from other threads go through the trio token.

As in Consul, a subscriber may ask for a more verbose level than the agent
logs at: while it is subscribed the root logger lets those records through
to the fan-out, and a floor filter on the existing handlers keeps the
agent's own output at its configured level.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import trio

from ..logs import record_fields

__all__ = ["DEFAULT_BUFFER", "LEVELS", "LogFanout", "Subscriber", "fanout", "parse_level"]

DEFAULT_BUFFER = 512  # lines a slow monitor client may fall behind by

# Consul's level names (hclog's), case-insensitive; TRACE is DEBUG here.
LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "err": logging.ERROR,
    "error": logging.ERROR,
}
_HCLOG_NAMES = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARN",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "ERROR",
}


def parse_level(text: str) -> int | None:
    """The logging level for a Consul level name (None when unknown)."""
    return LEVELS.get(text.strip().lower())


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.fromtimestamp(record.created, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_text(record: logging.LogRecord) -> str:
    """``2026-12-04T20:40:00.123Z [INFO]  meshd.agent: message`` (hclog's layout)."""
    level = _HCLOG_NAMES.get(record.levelno, record.levelname)
    return f"{_timestamp(record)} [{level}]  {record.name}: {record.getMessage()}"


def format_json(record: logging.LogRecord) -> str:
    """hclog's JSON layout: ``@timestamp``, ``@level``, ``@module``, ``@message``,
    and, as hclog does with its key/value pairs, the event's fields as keys
    (``event``, ``reason``... parsed by ``meshd.logs.record_fields``)."""
    level = _HCLOG_NAMES.get(record.levelno, record.levelname).lower()
    fields = {k: v for k, v in record_fields(record).items() if k != "msg"}
    return json.dumps(
        {
            "@level": level,
            "@message": record.getMessage(),
            "@module": record.name,
            "@timestamp": _timestamp(record),
            **fields,
        },
        default=str,
    )


# Loggers whose explicit levels a verbose monitor may lower for a while
# (the root and meshd's own packages; third-party levels are left alone).
OWN_LOGGERS = ("meshd", "raft", "registry", "connect")


def _logger(name: str) -> logging.Logger:
    return logging.root if name == "root" else logging.getLogger(name)


class _Floor(logging.Filter):
    """Keeps a handler at the levels the loggers had before a monitor lowered
    them: a record passes if its logger would have let it through then."""

    def __init__(self, saved: dict[str, int]) -> None:
        super().__init__()
        self.saved = saved

    def filter(self, record: logging.LogRecord) -> bool:
        logger: logging.Logger | None = _logger(record.name)
        while logger is not None:
            level = self.saved.get(logger.name, logger.level)
            if level:
                return record.levelno >= level
            logger = logger.parent
        return True


class Subscriber:
    """One monitor client: its level, format and bounded buffer of lines."""

    def __init__(self, level: int, as_json: bool, capacity: int) -> None:
        self.level = level
        self.as_json = as_json
        self.capacity = capacity
        self.dropped = 0  # lines lost since the reader last took its batch
        self.dropped_total = 0
        self._lines: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._wakeup = trio.Event()
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()

    def offer(self, line: str) -> None:
        """Buffer ``line`` (or count it dropped) and wake the reader; never blocks."""
        with self._lock:
            if len(self._lines) >= self.capacity:
                self.dropped += 1
                self.dropped_total += 1
                return
            self._lines.append(line)
        if threading.get_ident() == self._thread:
            self._wakeup.set()
        else:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._wakeup.set)

    def _take(self) -> tuple[list[str], int]:
        with self._lock:
            lines = list(self._lines)
            self._lines.clear()
            dropped, self.dropped = self.dropped, 0
        return lines, dropped

    async def batches(self) -> AsyncIterator[bytes]:
        """Yield the buffered lines as they arrive, newline-terminated; forever."""
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            lines, dropped = self._take()
            if dropped:
                # Consul's text for the same situation.
                lines.append(f"[WARN] Monitor dropped {dropped} logs during monitor request")
            if lines:
                yield ("\n".join(lines) + "\n").encode()


class LogFanout(logging.Handler):
    """The root-logger handler that copies records to every subscriber."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._subscribers: list[Subscriber] = []
        self._saved: dict[str, int] = {}  # logger name -> level before lowering
        self._floors: list[tuple[logging.Handler, _Floor]] = []

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, level: int, as_json: bool, capacity: int = DEFAULT_BUFFER) -> Subscriber:
        """Add a subscriber (from the trio thread); attaches the handler if first."""
        sub = Subscriber(level, as_json, capacity)
        self._subscribers.append(sub)
        self._adjust()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Remove ``sub``; detaches the handler and restores levels if last."""
        if sub in self._subscribers:
            self._subscribers.remove(sub)
        self._adjust()

    def _lowerable(self) -> list[logging.Logger]:
        manager = logging.root.manager
        own = [
            logger
            for name, logger in list(manager.loggerDict.items())
            if isinstance(logger, logging.Logger)
            and any(name == p or name.startswith(p + ".") for p in OWN_LOGGERS)
        ]
        return [logging.root, *own]

    def _adjust(self) -> None:
        root = logging.getLogger()
        for name, level in self._saved.items():  # undo the previous adjustment
            _logger(name).setLevel(level)
        for handler, floor in self._floors:
            handler.removeFilter(floor)
        self._saved, self._floors = {}, []
        root.removeHandler(self)
        if not self._subscribers:
            return
        wanted = min(s.level for s in self._subscribers)
        saved = {logger.name: logger.level for logger in self._lowerable() if logger.level > wanted}
        if saved:
            floor = _Floor(saved)
            for handler in root.handlers:
                handler.addFilter(floor)
                self._floors.append((handler, floor))
            for name in saved:
                _logger(name).setLevel(wanted)
            self._saved = saved
        root.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text: str | None = None
            as_json: str | None = None
            for sub in list(self._subscribers):
                if record.levelno < sub.level:
                    continue
                if sub.as_json:
                    as_json = as_json or format_json(record)
                    sub.offer(as_json)
                else:
                    text = text or format_text(record)
                    sub.offer(text)
        except Exception:  # a log line must never break the code that logs it
            self.handleError(record)


fanout = LogFanout()
