"""Shared pieces of the DNS tests: catalog rows, a running server, and ``dig``."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
import trio

from meshd.dns import DNSSettings, StaticLookup, serve_dns
from meshd.dns.records import Row
from tests.machine_lock import machine_lock


def check(status: str, service: str = "", check_id: str = "") -> dict[str, Any]:
    return {"CheckID": check_id or f"check-{status}", "Status": status, "ServiceName": service}


def row(
    node: str,
    address: str,
    *,
    service: str = "web",
    port: int = 8080,
    tags: Sequence[str] = (),
    service_address: str = "",
    status: str = "passing",
    weights: dict[str, int] | None = None,
    meta: dict[str, str] | None = None,
    kind: str = "",
    destination: str = "",
) -> dict[str, Any]:
    """One ``/v1/health/service`` row: a node check (passing) and a service check."""
    svc: dict[str, Any] = {
        "ID": f"{service}-{node}",
        "Service": service,
        "Tags": list(tags),
        "Address": service_address,
        "Port": port,
    }
    if weights is not None:
        svc["Weights"] = weights
    if kind:
        svc["Kind"] = kind
        svc["Proxy"] = {"DestinationServiceName": destination}
    return {
        "Node": {"Node": node, "Address": address, "Datacenter": "dc1", "Meta": meta or {}},
        "Service": svc,
        "Checks": [check("passing", check_id="serfHealth"), check(status, service)],
    }


@asynccontextmanager
async def running(
    lookup: Any,
    settings: DNSSettings | None = None,
    *,
    recursors: Sequence[str | tuple[str, int]] = (),
) -> AsyncIterator[int]:
    """A DNS server on 127.0.0.1 (UDP and TCP on one free port), stopped on exit."""
    async with trio.open_nursery() as nursery:
        serve = partial(serve_dns, recursors=recursors)
        udp, tcp = await nursery.start(serve, ("127.0.0.1", 0), lookup, settings or DNSSettings())
        assert udp == tcp
        yield udp[1]
        nursery.cancel_scope.cancel()


def static(rows: Iterable[Row], nodes: Iterable[Row] = ()) -> StaticLookup:
    return StaticLookup(rows, nodes)


_DIG: list[str] = []


def dig_binary() -> str:
    """The path of ``dig``, installing Debian's dnsutils if it is missing (never skips)."""
    if _DIG:
        return _DIG[0]
    path = shutil.which("dig")
    if path is None:
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        install = ["apt-get", "install", "-y", "-qq", "dnsutils"]
        with machine_lock("apt"):
            if subprocess.run(install, env=env, capture_output=True, check=False).returncode:
                update = ["apt-get", "update", "-qq"]
                subprocess.run(update, env=env, capture_output=True, check=False)
                subprocess.run(install, env=env, capture_output=True, check=False)
        path = shutil.which("dig")
    if path is None:
        pytest.fail("dig is missing and `apt-get install -y dnsutils` did not install it")
    _DIG.append(path)
    return path


@dataclass
class Dig:
    """What ``dig`` printed: status, header flags and the records of each section."""

    status: str
    flags: set[str]
    answer: list[list[str]] = field(default_factory=list)
    authority: list[list[str]] = field(default_factory=list)
    additional: list[list[str]] = field(default_factory=list)

    def values(self, rtype: str, section: str = "answer") -> list[str]:
        """The data of the records of type ``rtype`` (e.g. the addresses of A records)."""
        return [" ".join(r[4:]) for r in getattr(self, section) if r[3] == rtype]


async def dig(port: int, name: str, rtype: str = "A", *options: str) -> Dig:
    """Run ``dig @127.0.0.1 -p port name rtype`` and parse its answer."""
    argv = [dig_binary(), "@127.0.0.1", "-p", str(port), name, rtype, "+tries=1", "+time=3"]
    argv += ["+nocookie", *options]
    done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    return parse_dig(done.stdout.decode())


def parse_dig(text: str) -> Dig:
    result = Dig(status="", flags=set())
    section: list[list[str]] | None = None
    for line in text.splitlines():
        if "->>HEADER<<-" in line:
            result.status = line.split("status: ")[1].split(",")[0]
        elif line.startswith(";; flags:"):
            result.flags = set(line.split(";")[2].split(":")[1].split())
        elif line.startswith(";; ANSWER SECTION"):
            section = result.answer
        elif line.startswith(";; AUTHORITY SECTION"):
            section = result.authority
        elif line.startswith(";; ADDITIONAL SECTION"):
            section = result.additional
        elif not line.strip() or line.startswith(";"):
            section = None if not line.strip() else section
        elif section is not None:
            section.append(line.split())
    if not result.status:
        raise AssertionError(f"dig printed no answer:\n{text}")
    return result
