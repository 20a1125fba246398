"""The request view the L7 cores see: no I/O, no parsing of bodies.

``Headers`` is a case-insensitive multi-map keeping insertion order and the
original spelling of names. ``Request`` holds the method, the raw path (as
received, before normalisation), the raw query string, the headers and what
the proxy knows about the caller (source service, source IP) for intentions
and hash-based load balancing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import parse_qsl


class Headers:
    """Case-insensitive multi-map of header fields, order preserved."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(k, v) for k, v in items]

    @classmethod
    def view(cls, items: list[tuple[str, str]]) -> Headers:
        """Headers over ``items`` without a copy: for reading (an ``add``
        would append to ``items``)."""
        h = cls.__new__(cls)
        h._items = items
        return h

    @classmethod
    def from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Headers of ``raw`` (bytes as parsed, decoded Latin-1 when first
        read: ``RawHeaders``)."""
        return RawHeaders(raw)

    def get(self, name: str) -> str | None:
        """All values of ``name`` joined with "," (as Envoy matches them), or None."""
        values = self.get_all(name)
        if not values:
            return None
        return values[0] if len(values) == 1 else ",".join(values)

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for k, v in self._items if k.lower() == key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(k.lower() == key for k, _ in self._items)

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def set(self, name: str, value: str) -> None:
        self.remove(name)
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        key = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != key]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        return Headers(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k.lower(), v) for k, v in self._items] == [(k.lower(), v) for k, v in other._items]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class RawHeaders(Headers):
    """``Headers`` over the bytes a parser gave, decoded (Latin-1) on first use.

    A proxy forwarding a request no matcher or modifier looked at never
    needs its headers as text: while ``decoded`` is False, ``raw`` is exactly
    what the view holds and can be sent on as it came (l7_outbound.py).
    Any read or change decodes first, so ``raw`` is never used stale.
    ``raw`` must not change afterwards (it is the caller's list, not a copy).
    """

    __slots__ = ("_text", "raw")

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self.raw = raw if isinstance(raw, list) else list(raw)
        self._text: list[tuple[str, str]] | None = None

    @property
    def _items(self) -> list[tuple[str, str]]:
        text = self._text
        if text is None:
            text = self._text = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw]
        return text

    @_items.setter
    def _items(self, items: list[tuple[str, str]]) -> None:
        self._text = items

    @property
    def decoded(self) -> bool:
        """Whether the headers were read (or changed) as text."""
        return self._text is not None


@dataclass(frozen=True)
class Request:
    """One HTTP request as the decision cores see it."""

    method: str
    path: str  # raw path as received, without the query string
    query: str = ""  # raw query string, without the "?"
    headers: Headers = field(default_factory=Headers)
    source_service: str = ""
    source_ip: str = ""

    @classmethod
    def build(
        cls,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]] = (),
        *,
        source_service: str = "",
        source_ip: str = "",
    ) -> Request:
        """A request from a request-target such as ``/a/b?x=1``."""
        path, _, query = target.partition("?")
        return cls(
            method=method.upper(),
            path=path,
            query=query,
            headers=Headers(headers),
            source_service=source_service,
            source_ip=source_ip,
        )

    @classmethod
    def from_raw(
        cls,
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        source_service: str = "",
    ) -> Request:
        """``build`` for a request as parsed (bytes), with one copy of the headers."""
        path, _, query = target.decode("latin-1").partition("?")
        # The fields set as the frozen __init__ would (it pays an
        # object.__setattr__ per field; the proxy builds one per request).
        request = cls.__new__(cls)
        request.__dict__.update(
            method=method.decode("ascii").upper(),
            path=path,
            query=query,
            headers=RawHeaders(headers),
            source_service=source_service,
            source_ip="",
        )
        return request

    def query_params(self) -> dict[str, list[str]]:
        """Percent-decoded query parameters, each name with its values in order.

        Parsed once per request (matchers and hash policies share it); do not
        mutate the returned dict.
        """
        return self._query_params

    @cached_property
    def _query_params(self) -> dict[str, list[str]]:
        params: dict[str, list[str]] = {}
        for name, value in parse_qsl(self.query, keep_blank_values=True):
            params.setdefault(name, []).append(value)
        return params

    def cookie(self, name: str) -> str | None:
        """The value of cookie ``name`` from the Cookie header(s), or None."""
        for line in self.headers.get_all("cookie"):
            for part in line.split(";"):
                key, sep, value = part.strip().partition("=")
                if sep and key == name:
                    return value.strip().strip('"')
        return None
