"""A web -> api mesh on loopback: fake agent, CA, echo backend and the real proxy."""

from __future__ import annotations

import functools
import os
import ssl
import tempfile
from typing import Any

import trio

from connect.proxy.agent_client import AgentClient
from connect.proxy.metrics import ProxyMetrics
from connect.proxy.proxy import Proxy, ProxyOptions
from tests.ports import free_port

from .fake_agent import FakeAgent
from .pki import LeafPEM, TestCA, leaf_json

TOKEN = "s3cr3t-token"


async def echo_handler(stream: trio.SocketStream, tag: bytes = b"") -> None:
    """Echo each chunk (prefixed by ``tag``); on EOF answer ``<EOF>`` and close."""
    try:
        while True:
            data = await stream.receive_some(65536)
            if not data:
                await stream.send_all(tag + b"<EOF>")
                break
            await stream.send_all(tag + data)
    except trio.BrokenResourceError:
        pass
    finally:
        await stream.aclose()


def health_entry(port: int, sid: str = "api-sidecar-proxy") -> dict[str, Any]:
    return {
        "Node": {"Node": "node1", "Address": "127.0.0.1"},
        "Service": {
            "ID": sid,
            "Service": "api-sidecar-proxy",
            "Kind": "connect-proxy",
            "Address": "",
            "Port": port,
            "Proxy": {"DestinationServiceName": "api"},
        },
        "Checks": [],
    }


class Mesh:
    def __init__(self, balance: str = "") -> None:
        self.ca = TestCA()
        self.agent = FakeAgent()
        self.backend_port = 0
        self.web_in = free_port()
        self.api_in = free_port()
        self.up_port = free_port()
        self.balance = balance
        self.leaves: dict[str, LeafPEM] = {}
        self.metrics = ProxyMetrics()
        self.proxy: Proxy | None = None

    def services(self) -> dict[str, Any]:
        up_config = {"balance": self.balance} if self.balance else {}
        return {
            "web": {"ID": "web", "Service": "web", "Port": 8080, "Address": "127.0.0.1"},
            "web-sidecar-proxy": {
                "ID": "web-sidecar-proxy",
                "Service": "web-sidecar-proxy",
                "Kind": "connect-proxy",
                "Address": "127.0.0.1",
                "Port": self.web_in,
                "Proxy": {
                    "DestinationServiceName": "web",
                    "DestinationServiceID": "web",
                    "LocalServicePort": self.backend_port,
                    "Config": {},
                    "Upstreams": [
                        {
                            "DestinationType": "service",
                            "DestinationName": "api",
                            "LocalBindAddress": "127.0.0.1",
                            "LocalBindPort": self.up_port,
                            "Config": up_config,
                        }
                    ],
                },
            },
            "api": {"ID": "api", "Service": "api", "Port": self.backend_port},
            "api-sidecar-proxy": {
                "ID": "api-sidecar-proxy",
                "Service": "api-sidecar-proxy",
                "Kind": "connect-proxy",
                "Address": "127.0.0.1",
                "Port": self.api_in,
                "Proxy": {"DestinationServiceName": "api", "DestinationServiceID": "api"},
            },
        }

    def issue(self, service: str) -> LeafPEM:
        leaf = self.ca.leaf(service)
        self.leaves[service] = leaf
        self.agent.set_leaf(service, leaf_json(leaf, self.agent.index + 1))
        return leaf

    async def start(self, nursery: trio.Nursery, **options: Any) -> None:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, echo_handler, 0, host="127.0.0.1")
        )
        self.backend_port = listeners[0].socket.getsockname()[1]
        await nursery.start(self.agent.serve)
        self.agent.set_roots(self.ca.trust_domain, [self.ca.root_json()])
        self.issue("web")
        self.issue("api")
        self.agent.set_health("api", [health_entry(self.api_in)])
        self.agent.set_services(self.services())
        client = AgentClient("127.0.0.1", self.agent.port, token=TOKEN)
        self.proxy = Proxy(client, ProxyOptions(wait=5.0, **options), self.metrics)
        await nursery.start(self.proxy.serve)
        with trio.fail_after(10):
            for port in (self.web_in, self.api_in, self.up_port):
                await self.proxy.wait_listening("127.0.0.1", port)
            await self.proxy.wait_credentials("web")
            await self.proxy.wait_credentials("api")
            await self.wait_upstream_endpoints()

    async def wait_upstream_endpoints(self) -> None:
        """Wait until web's upstream listener knows api's instances (its
        discovery chain is known at once, so nothing else waits for them)."""
        assert self.proxy is not None
        entry = self.proxy.running[("127.0.0.1", self.up_port)]
        handler: Any = entry.listener.handler
        with trio.fail_after(10):
            while not handler.l4.balancer.endpoints:
                await trio.sleep(0.01)

    def client_context(self, leaf: LeafPEM, ca: TestCA | None = None) -> ssl.SSLContext:
        """A TLS client context presenting ``leaf`` and trusting ``ca`` (ours by default)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cadata=(ca or self.ca).root.cert_pem)
        fd, path = tempfile.mkstemp(suffix=".pem")
        with os.fdopen(fd, "w") as fh:
            fh.write(leaf.cert_pem + leaf.key_pem)
        try:
            ctx.load_cert_chain(path)
        finally:
            os.unlink(path)
        return ctx

    def sample(self, name: str, labels: dict[str, str]) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


async def read_until(stream: trio.abc.ReceiveStream, want: bytes, limit: float = 5.0) -> bytes:
    """Read until ``want`` has been received (or EOF); returns everything read."""
    got = b""
    with trio.fail_after(limit):
        while want not in got:
            data = await stream.receive_some(65536)
            if not data:
                break
            got += data
    return got


async def read_to_eof(stream: trio.abc.ReceiveStream, limit: float = 5.0) -> bytes:
    got = b""
    with trio.fail_after(limit):
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return got
            got += data
