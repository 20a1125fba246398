"""Builders for registry tests: an FSM fed encoded commands, and record shortcuts."""

from __future__ import annotations

import dataclasses
from typing import Any

from registry.commands import Command, RegisterRequest, encode_command
from registry.fsm import RegistryFSM
from registry.records import HealthCheck, ServiceInstance
from registry.results import Result
from registry.state.store import StateStore


class Log:
    """Applies commands like raft would: encoded, at increasing indexes, with ``now``."""

    def __init__(self) -> None:
        self.fsm = RegistryFSM()
        self.index = 0
        self.now = 1_000_000.0

    @property
    def store(self) -> StateStore:
        return self.fsm.store

    def apply(self, cmd: Command) -> Result:
        fields = {f.name for f in dataclasses.fields(cmd)}  # type: ignore[arg-type]
        if "now" in fields and not cmd.now:
            cmd = dataclasses.replace(cmd, now=self.now)  # type: ignore[type-var]
        self.index += 1
        return self.fsm.apply(self.index, encode_command(cmd))

    def ok(self, cmd: Command) -> Result:
        result = self.apply(cmd)
        assert result.ok, result
        return result


def svc(name: str, id: str = "", port: int = 80, **kw: Any) -> ServiceInstance:
    return ServiceInstance(service=name, id=id, port=port, **kw)


def chk(check_id: str, status: str = "passing", service_id: str = "", **kw: Any) -> HealthCheck:
    kw.setdefault("name", check_id)
    return HealthCheck(check_id=check_id, status=status, service_id=service_id, **kw)


def reg(
    node: str,
    service: ServiceInstance | None = None,
    checks: tuple[HealthCheck, ...] = (),
    address: str = "10.0.0.1",
    **kw: Any,
) -> RegisterRequest:
    return RegisterRequest(node=node, address=address, service=service, checks=checks, **kw)
