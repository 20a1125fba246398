"""Errors of the mesh proxy (connect/proxy).

Expected conditions are named: a sidecar registration the proxy cannot
serve (``ProxyConfigError(field, message)``), an agent that cannot be
reached or answers badly (``AgentUnavailableError``/``AgentResponseError``),
a peer whose certificate names the wrong identity (``PeerIdentityError``)
and an upstream with no instance that accepted us (``NoHealthyUpstreamError``).
trio, ssl and h11 exceptions are mapped into these at the boundary.
"""

from __future__ import annotations

from ..errors import ConnectError


class ProxyError(ConnectError):
    """Base class of every error the proxy raises on purpose."""


class ProxyConfigError(ProxyError):
    """A sidecar registration is unusable; ``field`` names the bad field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class AgentError(ProxyError):
    """The agent's HTTP API failed us."""


class AgentUnavailableError(AgentError):
    """No HTTP answer: refused, reset, timed out, or a malformed response."""


class AgentResponseError(AgentError):
    """The agent answered with a status outside 2xx."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"unexpected response code {status}: {body[:200]}")
        self.status = status
        self.body = body


class PeerIdentityError(ProxyError):
    """A TLS peer presented a certificate naming another identity."""


class NoHealthyUpstreamError(ProxyError):
    """Every instance of an upstream failed to connect or handshake."""
