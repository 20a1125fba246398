"""Helpers shared by the agent configuration tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from meshd.config import AgentConfig, load_config
from meshd.errors import ConfigError


class FakeHost:
    """HostInfo for tests: a fixed host name and private address."""

    def __init__(self, hostname: str = "node-a", ipv4: str | None = "10.1.2.3") -> None:
        self._hostname, self._ipv4 = hostname, ipv4

    def hostname(self) -> str:
        return self._hostname

    def private_ipv4(self) -> str | None:
        return self._ipv4


# What `meshd tls ca create` and `meshd tls cert create --server` would produce.
TLS_FILES: dict[str, str] = {
    "ca_file": "/etc/meshd/tls/meshd-agent-ca.pem",
    "cert_file": "/etc/meshd/tls/dc1-server-meshd-0.pem",
    "key_file": "/etc/meshd/tls/dc1-server-meshd-0-key.pem",
}
TLS: dict[str, Any] = {"tls": {"defaults": TLS_FILES}}
CLIENT: dict[str, Any] = {"data_dir": "/var/lib/meshd"}
SERVER: dict[str, Any] = {**CLIENT, "server": True, **TLS}


def write(directory: Path, name: str, content: dict[str, Any] | str) -> str:
    path = directory / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def load(
    files: list[str],
    dirs: list[str] | None = None,
    flags: dict[str, Any] | None = None,
    *,
    dev: bool = False,
    host: FakeHost | None = None,
) -> tuple[AgentConfig, list[str]]:
    return load_config(files, dirs or [], flags or {}, dev=dev, host=host or FakeHost())


def load_doc(tmp_path: Path, doc: dict[str, Any], **kwargs: Any) -> tuple[AgentConfig, list[str]]:
    return load([write(tmp_path, "agent.json", doc)], **kwargs)


def error_for(
    tmp_path: Path, doc: dict[str, Any] | str, name: str = "agent.json", **kw: Any
) -> ConfigError:
    path = write(tmp_path, name, doc)
    with pytest.raises(ConfigError) as info:
        load([path], **kw)
    return info.value


def assert_located(err: ConfigError, file: str | None, key: str, reason: str) -> None:
    """The error names the file and key, contains the reason, and renders all three."""
    assert (err.file, err.key) == (file, key)
    assert reason in err.reason
    prefix = f"config: {file}: {key}: " if file else f"config: {key}: "
    assert str(err) == prefix + err.reason
