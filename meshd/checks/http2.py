"""A minimal HTTP/2 client over trio for the gRPC and H2PING checks.

h2 (python-hyper, sans-I/O like h11) does the framing and HPACK; this module
only moves bytes: ``HTTP2Connection`` sends what h2 wants to send and turns
received bytes into h2 events. Protocol errors become ``HTTP2Error`` with a
short description; the connection is not reused after one.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trio

from .dial import describe_error

__all__ = ["HTTP2Connection", "HTTP2Error"]

_READ_SIZE = 65536


class HTTP2Error(Exception):
    """The HTTP/2 exchange failed; ``str()`` says how (Go-like wording)."""


class HTTP2Connection:
    """The client side of one HTTP/2 connection on an open ``stream``."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=config)

    async def start(self) -> None:
        """Send the connection preface and our SETTINGS. Raises ``HTTP2Error``."""
        self.h2.initiate_connection()
        await self.flush()

    async def flush(self) -> None:
        """Send whatever h2 has queued. Raises ``HTTP2Error``."""
        data = self.h2.data_to_send()
        if data:
            try:
                await self.stream.send_all(data)
            except (OSError, ssl.SSLError, trio.BrokenResourceError) as exc:
                raise HTTP2Error(describe_error(exc)) from None

    async def events(self) -> Sequence[h2.events.Event]:
        """Wait for bytes and return the events they make (acknowledging any
        received data so the peer's window never closes). Raises
        ``HTTP2Error`` when the peer closes the connection or breaks the
        protocol."""
        try:
            data = await self.stream.receive_some(_READ_SIZE)
        except (OSError, ssl.SSLError, trio.BrokenResourceError) as exc:
            raise HTTP2Error(describe_error(exc)) from None
        if not data:
            raise HTTP2Error("EOF")
        try:
            events = self.h2.receive_data(data)
            for event in events:
                if isinstance(event, h2.events.DataReceived) and event.stream_id:
                    self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        except h2.exceptions.H2Error as exc:
            raise HTTP2Error(f"http2: {exc}") from None
        await self.flush()
        for event in events:
            if isinstance(event, h2.events.ConnectionTerminated):
                raise HTTP2Error(f"http2: server sent GOAWAY (error code {event.error_code})")
        return events

    async def aclose(self) -> None:
        """Close the transport at once (no GOAWAY: the checks never linger)."""
        await trio.aclose_forcefully(self.stream)
