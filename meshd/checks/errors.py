"""Errors raised by meshd.checks.

``ScriptChecksDisabled`` refuses a script check the agent is not allowed to
run, with Consul's message (agent.go ``verifyCheckScriptsAllowed``);
``NotATTLCheck`` answers a TTL update for a check that has no TTL (a 404, as
``registry.errors.NotFoundError``).
"""

from __future__ import annotations

from registry.errors import NotFoundError

from ..errors import MeshdError

__all__ = ["ChecksError", "NotATTLCheck", "ScriptChecksDisabled"]

LOCAL_SCRIPTS_DISABLED = (
    "Scripts are disabled on this agent; to enable, configure "
    "'enable_script_checks' or 'enable_local_script_checks' to true"
)
REMOTE_SCRIPTS_DISABLED = (
    "Scripts are disabled on this agent from remote calls; to enable, "
    "configure 'enable_script_checks' to true"
)


class ChecksError(MeshdError):
    """Base class of the errors meshd.checks raises on purpose."""


class ScriptChecksDisabled(ChecksError):
    """A script check was defined while script checks are disabled.

    ``remote`` is True for a check registered through the HTTP API, which
    only ``enable_script_checks`` allows; checks from configuration files are
    also allowed by ``enable_local_script_checks``. ``str()`` is Consul's
    message, meant to be returned verbatim (HTTP 400 is the sensible mapping).
    """

    def __init__(self, *, remote: bool = False) -> None:
        self.remote = remote
        super().__init__(REMOTE_SCRIPTS_DISABLED if remote else LOCAL_SCRIPTS_DISABLED)


class NotATTLCheck(NotFoundError):
    """A TTL update named a check that is unknown or has no TTL (HTTP 404)."""

    def __init__(self, check_id: str, *, unknown: bool = False) -> None:
        self.check_id = check_id
        if unknown:
            message = f'Unknown check ID "{check_id}"'
        else:
            message = f'CheckID "{check_id}" does not have associated TTL'
        super().__init__(message)
