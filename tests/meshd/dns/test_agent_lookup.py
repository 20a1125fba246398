"""``AgentLookup`` over the real registry reads: the rows DNS sees are the API's rows."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import dns.message
import dns.rcode

from meshd.agent import reads
from meshd.agent.wire import ReadOptions, ReadResult
from meshd.dns import DNSHandler, DNSSettings
from meshd.dns.agent_lookup import AgentLookup
from registry.commands import RegisterRequest
from registry.fsm import RegistryFSM
from registry.records import HealthCheck, ServiceInstance


class StoreReader:
    """Runs the agent's named reads against a state store, as a server does locally."""

    def __init__(self, fsm: RegistryFSM) -> None:
        self.fsm = fsm
        self.options: list[ReadOptions] = []

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult:
        self.options.append(opts)
        index, value = reads.lookup(name)(self.fsm.store, None, args)
        return ReadResult(value, index, True, 0.0, "stale")


def register(fsm: RegistryFSM, index: int, node: str, address: str, **svc: Any) -> None:
    status = svc.pop("status", "passing")
    service = ServiceInstance(id=f"{svc['service']}-{node}", **svc)
    check = HealthCheck(
        check_id=f"service:{service.id}",
        name="health",
        status=status,
        service_id=service.id,
        service_name=service.service,
    )
    cmd = RegisterRequest(node=node, address=address, service=service, checks=(check,))
    assert fsm.apply_command(index, cmd)


def cluster() -> RegistryFSM:
    fsm = RegistryFSM()
    register(fsm, 1, "node-a", "10.0.0.1", service="web", port=80, tags=("v1",))
    register(fsm, 2, "node-b", "10.0.0.2", service="web", port=80, status="critical")
    register(fsm, 3, "node-c", "10.0.0.3", service="web", port=81, status="warning")
    sidecar = {"kind": "connect-proxy", "port": 21000, "proxy": {"DestinationServiceName": "web"}}
    register(fsm, 4, "node-a", "10.0.0.1", service="web-proxy", **sidecar)
    return fsm


async def ask(handler: DNSHandler, name: str, qtype: str) -> dns.message.Message:
    reply = await handler.reply(dns.message.make_query(name, qtype).to_wire(), "tcp")
    assert reply is not None
    return dns.message.from_wire(reply)


def answers(msg: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in msg.answer for rd in rrset)


async def test_dns_answers_from_the_registry_reads() -> None:
    reader = StoreReader(cluster())
    settings = DNSSettings()
    lookup = AgentLookup(reader, settings, state_index=lambda: 4)
    handler = DNSHandler(lookup, settings, rng=random.Random(1))
    assert answers(await ask(handler, "web.service.consul", "A")) == ["10.0.0.1", "10.0.0.3"]
    assert answers(await ask(handler, "v1.web.service.consul", "A")) == ["10.0.0.1"]
    assert answers(await ask(handler, "web.connect.consul", "SRV")) == [
        "1 1 21000 node-a.node.dc1.consul."
    ]
    assert answers(await ask(handler, "node-b.node.consul", "A")) == ["10.0.0.2"]
    missing = await ask(handler, "node-z.node.consul", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN
    assert {o.consistency for o in reader.options} == {"stale"}
    assert {o.index for o in reader.options} == {0}


async def test_only_passing_and_consistent_reads_follow_the_settings() -> None:
    reader = StoreReader(cluster())
    settings = DNSSettings(only_passing=True, allow_stale=False)
    handler = DNSHandler(AgentLookup(reader, settings), settings, rng=random.Random(1))
    assert answers(await ask(handler, "web.service.consul", "A")) == ["10.0.0.1"]
    assert {o.consistency for o in reader.options} == {"default"}
