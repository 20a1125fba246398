"""Health checks, one module per kind (as Consul splits ``agent/checks``).

``base`` holds the result type, the ``Checker`` protocol, the pure status
threshold state machine and output capping; ``runner`` runs the agent's
checks from its local state. Kinds: ``http``, ``tcp``, ``udp``, ``ttl``,
``script``, ``grpc``, ``h2ping``, ``alias``; ``maintenance`` builds the
service and node maintenance-mode checks.
"""

from .base import CRITICAL, MAINTENANCE, PASSING, WARNING, Checker, CheckResult, StatusHandler
from .errors import ChecksError, NotATTLCheck, ScriptChecksDisabled
from .runner import CheckRunner

__all__ = [
    "CRITICAL",
    "MAINTENANCE",
    "PASSING",
    "WARNING",
    "CheckResult",
    "CheckRunner",
    "Checker",
    "ChecksError",
    "NotATTLCheck",
    "ScriptChecksDisabled",
    "StatusHandler",
]
