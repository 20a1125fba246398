"""Errors raised by meshd/ (the agent: configuration, CLI, runtime).

``MeshdError`` is the base of every error meshd raises on purpose. Problems
with user input name where the input came from: ``ConfigError`` carries the
file (or flag) and the dotted key, so an operator can fix it without reading
code.
"""

from __future__ import annotations

import json

__all__ = [
    "ConfigError",
    "DurationError",
    "MeshdError",
    "NoLeaderError",
    "NoServersError",
    "RemoteError",
    "StartupError",
]


class MeshdError(Exception):
    """Base class of every error meshd/ raises on purpose."""


class ConfigError(MeshdError):
    """The agent configuration is invalid.

    ``file`` is the configuration file the bad value came from (None for
    defaults, flags and whole-configuration rules), ``key`` the dotted
    configuration key (``ports.http``) or, for a command-line flag, the flag
    itself (``--http-port``), ``reason`` what is wrong. ``str()`` gives e.g.
    ``config: /etc/meshd/agent.json: ports.http: must be an integer between
    1 and 65535, got "abc"`` or ``flag --http-port: ...``.
    """

    def __init__(self, file: str | None, key: str | None, reason: str) -> None:
        super().__init__(file, key, reason)
        self.file = file
        self.key = key
        self.reason = reason

    @staticmethod
    def describe(file: str | None, key: str | None, text: str) -> str:
        """Render ``text`` located at ``file``/``key`` the way errors are rendered."""
        if file is None and key is not None and key.startswith("--"):
            return f"flag {key}: {text}"
        parts = ["config"]
        if file is not None:
            parts.append(file)
        if key:
            parts.append(key)
        parts.append(text)
        return ": ".join(parts)

    def __str__(self) -> str:
        return self.describe(self.file, self.key, self.reason)


class StartupError(MeshdError):
    """The agent cannot start in this environment although its configuration
    parsed: a port in use, an address this host does not have, a certificate
    or key that is missing or does not fit, a data_dir it cannot write.

    ``key`` is the configuration key at fault (``ports.http``), ``value`` its
    value, ``reason`` what went wrong and ``fix`` what to do about it;
    ``str()`` is one line: ``startup: ports.http = 8500: cannot listen on
    127.0.0.1:8500: address already in use (is another meshd running?); stop
    it or choose another port (-http-port)``.
    """

    def __init__(self, key: str, value: object, reason: str, fix: str) -> None:
        super().__init__(key, value, reason, fix)
        self.key = key
        self.value = value
        self.reason = reason
        self.fix = fix

    def __str__(self) -> str:
        return f"startup: {self.key} = {self.value}: {self.reason}; {self.fix}"


class DurationError(MeshdError, ValueError):
    """A duration string is not valid Go ``time.ParseDuration`` syntax (or is negative)."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(text, reason)
        self.text = text
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid duration {json.dumps(self.text, ensure_ascii=False)}: {self.reason}"


class NoLeaderError(MeshdError):
    """No cluster leader could be found within the hold timeout; the HTTP API
    answers 500 "No cluster leader" as Consul does."""

    def __init__(self, message: str = "No cluster leader") -> None:
        super().__init__(message)


class NoServersError(MeshdError):
    """A client agent knows no reachable server to send its request to; the
    HTTP API answers 500 "No known Consul servers" as Consul does."""

    def __init__(self, message: str = "No known Consul servers") -> None:
        super().__init__(message)


class RemoteError(MeshdError):
    """A server answered a forwarded request with an error of ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
