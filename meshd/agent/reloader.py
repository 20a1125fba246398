"""The agent's configured services and checks, and configuration reload.

At start the configuration's service and check definitions become local
state (beside those the API registered and the agent persisted); a reload
(``PUT /v1/agent/reload``, SIGHUP) re-reads the configuration in a thread,
validates it before changing anything, makes the configured definitions the
local ones that came from configuration (adding, replacing, dropping those it
lost), and applies what can change at run time: node meta, tokens and the log
level. Other changes wait for a restart (logged).

The agent owns one ``Reloader``; it reads and sets the agent's configuration
through the ``ReloadHost`` protocol.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import trio

from ..config import AgentConfig
from ..defs.definitions import CheckDefinition, ServiceDefinition, parse_check, parse_service
from ..errors import ConfigError
from .local import LocalState
from .sync import AntiEntropy, NodeInfo
from .tokens import TokenStore

log = logging.getLogger("meshd.agent")


class ReloadHost(Protocol):
    config: AgentConfig

    @property
    def config_loader(self) -> Callable[[], AgentConfig] | None: ...
    @property
    def node_name(self) -> str: ...
    @property
    def local(self) -> LocalState: ...
    @property
    def tokens(self) -> TokenStore: ...
    @property
    def sync(self) -> AntiEntropy | None: ...

    def node_info(self) -> NodeInfo: ...


class Reloader:
    def __init__(self, agent: ReloadHost) -> None:
        self._agent = agent
        self._services: set[str] = set()  # IDs that came from configuration
        self._checks: set[str] = set()

    def parse(self, config: AgentConfig) -> tuple[list[ServiceDefinition], list[CheckDefinition]]:
        services, checks = [], []
        for i, raw in enumerate(config.services):
            try:
                services.append(parse_service(raw, node=self._agent.node_name))
            except Exception as exc:
                raise ConfigError(None, f"services[{i}]", str(exc)) from exc
        for i, raw in enumerate(config.checks):
            try:
                checks.append(parse_check(raw, node=self._agent.node_name))
            except Exception as exc:
                raise ConfigError(None, f"checks[{i}]", str(exc)) from exc
        return services, checks

    def apply(self, services: list[ServiceDefinition], checks: list[CheckDefinition]) -> None:
        """Make the configuration's services and checks the local ones that
        came from configuration: add or replace these, drop those it lost."""
        want_services = {d.service.id for d in services}
        want_checks = {c.check.check_id for c in checks}
        for sid in self._services - want_services:
            if sid in self._agent.local.services and sid not in self._agent.local.persisted_ids:
                self._agent.local.remove_service(sid)
        for cid in self._checks - want_checks:
            if (
                cid in self._agent.local.checks
                and "check:" + cid not in self._agent.local.persisted_ids
            ):
                self._agent.local.remove_check(cid)
        for i, defn in enumerate(services):
            try:
                self._agent.local.add_service(defn, persist=False)
            except Exception as exc:
                raise ConfigError(None, f"services[{i}]", str(exc)) from exc
        for i, check in enumerate(checks):
            try:
                self._agent.local.add_check(check, persist=False)
            except Exception as exc:
                raise ConfigError(None, f"checks[{i}]", str(exc)) from exc
        self._services, self._checks = want_services, want_checks

    def load(self) -> None:
        self.apply(*self.parse(self._agent.config))
        restored = self._agent.local.load()
        if restored:
            log.info("event=local_state_restored count=%d", restored)

    async def reload(self) -> None:
        """Re-read the configuration (``config_loader``, in a thread) and apply
        what can change at run time: services, checks, node meta, tokens and
        the log level. Other changes wait for a restart (logged). Raises
        ``ConfigError`` (nothing changed) for a bad configuration. SIGHUP
        should call this."""
        if self._agent.config_loader is None:
            new = self._agent.config
        else:
            new = await trio.to_thread.run_sync(self._agent.config_loader)
        services, checks = self.parse(new)  # validate before changing anything
        self._check_service_ids(services, checks)
        self.apply(services, checks)
        restart_only = [
            name
            for name in ("datacenter", "server", "ports", "bind_addr", "client_addr", "data_dir")
            if getattr(new, name) != getattr(self._agent.config, name)
        ]
        if restart_only:
            log.warning("event=reload_ignored keys=%s reason=needs_restart", restart_only)
        self._agent.tokens.apply_config(self._agent.config.acl, new.acl)
        self._agent.config = new
        logging.getLogger("meshd").setLevel(_py_level(new.log_level))
        if self._agent.sync is not None:
            self._agent.sync.node = self._agent.node_info()
            self._agent.sync.trigger_full()
        log.info(
            "event=reloaded services=%d checks=%d",
            len(self._agent.local.services),
            len(self._agent.local.checks),
        )

    def _check_service_ids(
        self, services: list[ServiceDefinition], checks: list[CheckDefinition]
    ) -> None:
        """Every configured service check must name a service that will exist."""
        from_api = {
            sid for sid in self._agent.local.services if sid in self._agent.local.persisted_ids
        }
        known = {d.service.id for d in services} | from_api
        for i, c in enumerate(checks):
            sid = c.check.service_id
            if sid and sid not in known:
                raise ConfigError(None, f"checks[{i}].service_id", f'"{sid}" does not exist')


def _py_level(level: str) -> str:
    return {"TRACE": "DEBUG", "WARN": "WARNING", "ERR": "ERROR"}.get(level, level)
