"""The DNS interface (port 8600, UDP and TCP), Consul-compatible.

``serve_dns(bind, lookup, settings, recursors=...)`` runs the listeners;
``Lookup`` is what the agent implements over its catalog reads;
``DNSSettings.from_agent_config`` turns the agent configuration into
settings. The answer logic is sans-I/O in ``answers`` (with ``names`` for
the name grammar and ``records`` for the records), the servers in
``server``, the per-query glue (cache, forwarding) in ``handler``.
"""

from __future__ import annotations

from .errors import DNSBindError, DNSError, RecursorAddressError
from .handler import DNSHandler
from .lookup import Lookup, StaticLookup
from .server import DNSServerLimits, serve_dns, serve_responder
from .settings import DNSSettings, SOASettings

__all__ = [
    "DNSBindError",
    "DNSError",
    "DNSHandler",
    "DNSServerLimits",
    "DNSSettings",
    "Lookup",
    "RecursorAddressError",
    "SOASettings",
    "StaticLookup",
    "serve_dns",
    "serve_responder",
]
