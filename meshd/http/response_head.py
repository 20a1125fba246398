"""The status line and headers of a response as the server writes them.

Handlers set their headers; the server owns the framing (``Content-Length``
or chunked), ``Date`` and ``Connection: close``. A header that would break
the framing (a name that is not a token, CR/LF/NUL in a value) or an
informational status makes the response invalid: the server answers 500.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from http import HTTPStatus

from meshd.http.message import Response

__all__ = ["InvalidResponse", "response_head"]

_REASONS = {int(s): s.phrase.encode() for s in HTTPStatus}
# Framing is the server's business; a handler's own values would corrupt it.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})
# RFC 9110 5.1 field names are tokens; values must not break the framing.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class InvalidResponse(Exception):
    """A handler's response cannot be written (bad header, informational status)."""


class _DateCache:
    """The ``Date`` header value, formatted once per second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._value = formatdate(now, usegmt=True).encode()
        return self._value


_date = _DateCache()


def response_head(
    response: Response, keep_alive: bool, *, chunked: bool = False
) -> tuple[bytes, bool]:
    """The encoded status line and headers of ``response`` with the framing
    headers set by the server, and whether the connection stays open (not if
    the request or the handler said ``Connection: close``).

    Raises ``InvalidResponse`` for a header or status that cannot be sent.
    """
    headers = response.headers
    if chunked or len(headers) != 1 or type(headers[0]) is not tuple:
        return _build_head(response, keep_alive, chunked, _date.get())
    # One header (Content-Type): every KV PUT's ``true`` and most errors. The
    # same few heads repeat within a second: built once per second each.
    date = _date.get()
    key = (date, response.status, len(response.body), keep_alive, headers[0])
    try:
        found = _HEADS.get(key)
    except TypeError:  # a value that is not a str (and unhashable): no cache
        return _build_head(response, keep_alive, chunked, date)
    if found is None:
        found = _build_head(response, keep_alive, chunked, date)  # the key's Date
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        _HEADS[key] = found
    return found


# Heads of one-header responses by (Date, status, body length, keep-alive,
# header); cleared when full (a new second's keys replace the last's).
_HEADS: dict[tuple[bytes, int, int, bool, tuple[str, str]], tuple[bytes, bool]] = {}
_HEADS_MAX = 256


def _build_head(
    response: Response, keep_alive: bool, chunked: bool, date: bytes
) -> tuple[bytes, bool]:
    status = response.status
    if status < 200 or status > 999:
        raise InvalidResponse(f"handlers cannot send status {status}")
    framing = (
        b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(response.body)
    )
    parts = []
    close_sent = False
    for name, value in response.headers:
        lower = _HEADER_NAMES.get(name) or _checked_name(name)
        if lower in _FRAMING_HEADERS:
            continue
        if "\r" in value or "\n" in value or "\x00" in value:
            raise InvalidResponse(f"invalid response header {name!r}")
        if lower == "connection" and "close" in value.lower():
            keep_alive = False
            close_sent = True
        parts.append(f"{name}: {value}\r\n")
    if not keep_alive and not close_sent:
        parts.append("Connection: close\r\n")
    parts.append("\r\n")
    head = b"HTTP/1.1 %d %s\r\n%s\r\nDate: %s\r\n" % (
        status,
        _REASONS.get(status, b""),
        framing,
        date,
    )
    return head + "".join(parts).encode(), keep_alive


# Response header names already checked against RFC 9110's token rule,
# with their lower-case form: handlers send the same few names every time.
_HEADER_NAMES: dict[str, str] = {}


def _checked_name(name: str) -> str:
    """``name`` lower-cased; raises ``InvalidResponse`` if it is not a token."""
    if not _TOKEN.fullmatch(name):
        raise InvalidResponse(f"invalid response header {name!r}")
    lower = name.lower()
    if len(_HEADER_NAMES) < 1024:
        _HEADER_NAMES[name] = lower
    return lower
