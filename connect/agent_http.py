"""What the two clients of the agent's HTTP API share: the answer type, the
query string, the request headers and the one-line text of an error body.

The clients themselves differ on purpose: the proxy's (connect/proxy/
agent_client.py) is h11 over trio with a keep-alive pool; the CLI's
(meshd/cli/client.py) is blocking ``http.client``, one connection per request,
with Consul's address forms and TLS. Each maps ``InvalidJSONError`` and
transport failures into its own errors at its edge.

Standard library only: the CLI imports it without loading trio or h11.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

__all__ = [
    "MAX_ERROR_TEXT",
    "InvalidJSONError",
    "Param",
    "Response",
    "error_text",
    "query_string",
    "request_headers",
]

MAX_ERROR_TEXT = 500  # characters of a response body quoted in an error line

# A query parameter: None/False are left out, True is a bare flag (?recurse),
# a list repeats the key (?node-meta=a:1&node-meta=b:2).
Param = str | int | bool | None | list[str] | tuple[str, ...]


class InvalidJSONError(ValueError):
    """An answer's body is not JSON (the text says why, as ``json`` words it)."""


@dataclass(frozen=True, slots=True)
class Response:
    """A complete HTTP answer: status, lower-cased header names and the body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON (an empty body is None). Raises ``InvalidJSONError``."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise InvalidJSONError(str(exc)) from None

    @property
    def index(self) -> int:
        """``X-Consul-Index`` (0 when absent or malformed)."""
        try:
            return int(self.headers.get("x-consul-index", "0"))
        except ValueError:
            return 0

    @property
    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode()


def query_string(params: Mapping[str, Param]) -> str:
    """``?a=1&b=2`` for ``params`` (see ``Param``), bare flags first; ``""`` for none."""
    pairs: list[tuple[str, str]] = []
    flags: list[str] = []
    for key, value in params.items():
        if value is None or value is False:
            continue
        if value is True:
            flags.append(quote(key))
        elif isinstance(value, list | tuple):
            pairs.extend((key, str(v)) for v in value)
        else:
            pairs.append((key, str(value)))
    parts = [*flags]
    if pairs:
        parts.append(urlencode(pairs))
    return "?" + "&".join(parts) if parts else ""


def request_headers(user_agent: str, token: str) -> dict[str, str]:
    """``User-Agent`` and, when there is a token, ``X-Consul-Token``."""
    headers = {"User-Agent": user_agent}
    if token:
        headers["X-Consul-Token"] = token
    return headers


def error_text(body: bytes) -> str:
    """An error answer's body as one line of at most ``MAX_ERROR_TEXT`` characters."""
    text = " ".join(body.decode("utf-8", "replace").split())
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."
