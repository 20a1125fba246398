"""The destination's intention verdict, told to the calling proxy.

An L4 deny is a closed connection, which the calling side cannot tell from a
service that closed at once: it used to count such a connection as
``allowed``. So when both proxies speak it (ALPN ``meshd-l4/1``, offered by
the client and accepted by the server; a peer without it gets plain TLS and
no verdict), the inbound proxy writes one record right after deciding:

* ``0x00``: allowed; the spliced bytes follow.
* ``0x01 <len:1> <intention id, UTF-8, at most 255 bytes>``: denied; the
  connection closes after it.

The calling side reads it before splicing, so its metrics and logs say
``denied`` and name the intention. Only new connections pay for it (one
small record), never each byte.
"""

from __future__ import annotations

import ssl

from .pump import send_all, wait_fd

ALPN = "meshd-l4/1"
_ALLOWED = b"\x00"
_DENIED = 0x01
_MAX_ID = 255


class VerdictError(Exception):
    """The peer closed or sent something that is not a verdict."""


def speaks_verdict(tls: ssl.SSLSocket) -> bool:
    """True when the handshake negotiated the verdict record."""
    return tls.selected_alpn_protocol() == ALPN


def encode(allowed: bool, intention: str = "") -> bytes:
    """The verdict record's payload."""
    if allowed:
        return _ALLOWED
    ident = intention.encode("utf-8")[:_MAX_ID]
    return bytes((_DENIED, len(ident))) + ident


async def send(tls: ssl.SSLSocket, allowed: bool, intention: str = "") -> None:
    """Write the verdict. Raises OSError/ssl.SSLError from the socket."""
    await send_all(tls, tls.fileno(), memoryview(encode(allowed, intention)))


async def _recv_exactly(tls: ssl.SSLSocket, n: int) -> bytes:
    fd = tls.fileno()
    got = b""
    while len(got) < n:
        try:
            chunk = tls.recv(n - len(got))
        except ssl.SSLWantReadError:
            await wait_fd(fd, readable=True)
            continue
        except ssl.SSLWantWriteError:
            await wait_fd(fd, readable=False)
            continue
        except ssl.SSLZeroReturnError:
            chunk = b""
        if not chunk:
            raise VerdictError("connection closed before the destination's verdict")
        got += chunk
    return got


async def receive(tls: ssl.SSLSocket) -> tuple[bool, str]:
    """Read the verdict: ``(allowed, intention id)``. Bound it with a cancel
    scope. Raises ``VerdictError`` (closed, or not a verdict), OSError or
    ssl.SSLError; reads nothing past the verdict."""
    kind = await _recv_exactly(tls, 1)
    if kind == _ALLOWED:
        return True, ""
    if kind[0] != _DENIED:
        raise VerdictError(f"unknown verdict byte {kind[0]:#x}")
    size = (await _recv_exactly(tls, 1))[0]
    ident = await _recv_exactly(tls, size) if size else b""
    return False, ident.decode("utf-8", "replace")
