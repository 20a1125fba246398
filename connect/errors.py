"""Errors raised by connect/.

Expected conditions are named errors with a message that says what is wrong,
so the HTTP layer can hand it to the caller unchanged (Consul returns the
reason of a refused CSR in the response body). Broken invariants are not
modelled here: they raise whatever Python raises.
"""

from __future__ import annotations


class ConnectError(Exception):
    """Base class of every error connect/ raises on purpose."""


class SpiffeError(ConnectError, ValueError):
    """A string or certificate is not a SPIFFE ID meshd accepts; the message
    gives the reason (wrong scheme, empty trust domain, unknown path...)."""


class CSRError(ConnectError):
    """A certificate signing request is refused: malformed, badly signed, a
    weak or unsupported key, or a claim the caller may not make."""


class CAError(ConnectError):
    """The CA cannot do what was asked: unsupported key type or size, no
    active root, a signer that has expired, a serial out of range..."""
