"""What the HTTP API needs from the agent, one narrow ``Protocol`` per area.

API modules type against the ports they use and never name the agent class:
``meshd.agent.agent.Agent`` satisfies every port structurally (mypy checks
that where ``build_app`` is called). A handler that needs two areas declares
a local protocol inheriting both. The value types the ports carry live below
api/ and the agent's composition root: ``meshd.wire`` (reads and writes),
``meshd.config``, ``meshd.values`` (events, ejection reports, request
samples, mesh windows) and connect's telemetry types; the agent's stores
that the API only calls are narrow protocols here (``TokenStore``,
``TraceSink``, ``MeshFigures``). Only ``LocalState`` is still the agent's
class (meshd.agent.local): the API reads much of it.

Ports (Consul's agent/http.go reaches one big ``*Agent``; these are its parts):

- ``Datacenter``: the local datacenter's name.
- ``Registry``: registry reads and writes of the local datacenter.
- ``RawReads``: a read with no ACL filtering.
- ``Servers``: an RPC to the servers (ACL, CA, operator, sessions).
- ``Configured``: the agent's configuration.
- ``Tokens``: the agent's own ACL tokens.
- ``LocalAgent``: this agent's services, checks, tokens and identity.
- ``Cluster``: membership, join/leave, leader and peers, server stats.
- ``Connect``: leaf certificates and proxy ejection reports.
- ``Events``: user events.
- ``Snapshots``: snapshot save and restore.
- ``ACL``: token resolution for the request being served.
- ``Telemetry``: metrics and traces.
- ``MeshTelemetry``: proxies' per-edge figures and request samples.
- ``Readiness``: waiting for the leader to establish leadership.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ..wire import ReadOptions, ReadResult, WriteResult

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from connect.telemetry.lint import PropagationLint
    from connect.telemetry.spans import Span, TraceStore

    from ..acl import ACLAuthorizer
    from ..agent.local import LocalState
    from ..config import AgentConfig
    from ..metrics.prometheus import Metrics
    from ..values.ejections import ProxyEjections
    from ..values.events import EventRing, UserEvent
    from ..values.mesh_window import Delta, Push
    from ..values.request_samples import SampleStore


class Datacenter(Protocol):
    @property
    def datacenter(self) -> str: ...


class Registry(Datacenter, Protocol):
    """Registry reads (filtered to the request's token under ACLs) and writes."""

    @property
    def node_name(self) -> str: ...

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult: ...

    async def write(self, cmd: Any) -> WriteResult: ...


class RawReads(Protocol):
    """A registry read with no ACL filtering (for validation that must see
    every entry, e.g. the config entry graph)."""

    async def read_unfiltered(
        self, name: str, args: Mapping[str, Any], opts: ReadOptions
    ) -> ReadResult: ...


class Servers(Protocol):
    """One RPC to the servers: in-process on a server, through the pool on a client."""

    async def server_call(
        self, method: str, args: Mapping[str, Any], *, timeout: float = 60.0
    ) -> Any: ...


class Configured(Protocol):
    @property
    def config(self) -> AgentConfig: ...


class TokenStore(Protocol):
    """The agent's own tokens by URL kind (meshd.agent.tokens.TokenStore)."""

    def get(self, kind: str) -> str: ...

    def set(self, kind: str, token: str) -> None: ...


class Tokens(Protocol):
    @property
    def tokens(self) -> TokenStore: ...


class LocalAgent(Datacenter, Tokens, Protocol):
    """This agent: identity, local services and checks, tokens."""

    @property
    def node_id(self) -> str: ...

    @property
    def node_name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def config(self) -> AgentConfig: ...

    @property
    def local(self) -> LocalState: ...

    @property
    def http_addresses(self) -> list[tuple[str, int]]: ...

    def node_meta(self) -> dict[str, str]: ...

    async def wait_synced(self, timeout: float = 1.0) -> None: ...

    def ttl_update(self, check_id: str, status: str, output: str) -> None: ...

    async def reload(self) -> None: ...


class Cluster(Protocol):
    """Membership and the servers' Raft state as this agent sees them."""

    async def members(self) -> list[dict[str, Any]]: ...

    def self_member(self) -> dict[str, Any]: ...

    async def join(self, address: str) -> None: ...

    async def leave(self, *, delay: float = 0.0) -> None: ...

    async def status_leader(self) -> str: ...

    async def status_peers(self) -> list[str]: ...

    def consul_stats(self) -> dict[str, str]: ...

    def raft_stats(self) -> dict[str, str] | None: ...


class LeafCerts(Protocol):
    async def get(
        self, service: str, index: int = 0, wait: float = 300.0, *, token: str = ""
    ) -> dict[str, Any]: ...


class Connect(Protocol):
    """Leaf certificates of local services and proxies' ejection reports."""

    @property
    def leaf_cache(self) -> LeafCerts: ...

    @property
    def proxy_ejections(self) -> ProxyEjections: ...


class Events(Protocol):
    @property
    def events(self) -> EventRing: ...

    async def fire_event(self, event: UserEvent) -> UserEvent: ...

    async def list_events(
        self, name: str = "", *, index: int = 0, wait: float = 300.0
    ) -> tuple[list[UserEvent], int]: ...


class Snapshots(Protocol):
    async def snapshot_save(self, *, stale: bool = False) -> tuple[bytes, int]: ...

    async def snapshot_restore(self, archive: bytes) -> int: ...


class TokenResolver(Protocol):
    @property
    def enabled(self) -> bool: ...

    async def resolve(self, secret: str) -> ACLAuthorizer: ...

    def effective_secret(self, secret: str) -> str: ...

    def forget(self, secret: str) -> None: ...


class ACL(Protocol):
    @property
    def acl(self) -> TokenResolver: ...


class TraceSink(Protocol):
    """The local proxies' spans (meshd.agent.traces.AgentTraces)."""

    @property
    def store(self) -> TraceStore: ...

    @property
    def lint(self) -> PropagationLint: ...

    def ingest(self, spans: Iterable[Span]) -> int: ...

    def report_breaks(self, breaks: Iterable[tuple[str, str, int]]) -> None: ...


class MeshFigures(Protocol):
    """The local proxies' per-edge figures (meshd.agent.mesh_stats.MeshStats)."""

    def ingest(self, push: Push) -> bool: ...

    def local(self, window: float) -> list[Delta]: ...

    async def graph(
        self,
        window: float,
        service: str | None = None,
        *,
        token: str | None = None,
        allowed: Callable[[str], bool] | None = None,
    ) -> dict[str, Any]: ...


class Telemetry(Protocol):
    @property
    def metrics(self) -> Metrics: ...

    @property
    def traces(self) -> TraceSink: ...


class MeshTelemetry(Protocol):
    """The local proxies' per-edge figures (mesh graph) and request samples
    (config write --dry-run)."""

    @property
    def mesh_stats(self) -> MeshFigures: ...

    @property
    def request_samples(self) -> SampleStore: ...


class Readiness(Protocol):
    def initialized(self) -> bool: ...

    async def wait_initialized(self, timeout: float) -> bool: ...

    def no_leader_detail(self) -> str: ...


class AgentPorts(
    Registry,
    RawReads,
    Servers,
    LocalAgent,
    Cluster,
    Connect,
    Events,
    Snapshots,
    ACL,
    Telemetry,
    MeshTelemetry,
    Readiness,
    Protocol,
):
    """Every port: what the route table is built from (the agent)."""
