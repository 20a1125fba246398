"""The real proxy on loopback against a fake agent: TLS, intentions, rotation, failover."""

from __future__ import annotations

import socket

import pytest
import trio

from .harness import TOKEN, Mesh, read_to_eof, read_until

pytestmark = pytest.mark.e2e


@pytest.fixture
async def mesh(nursery: trio.Nursery) -> Mesh:
    m = Mesh()
    await m.start(nursery)
    return m


async def test_web_reaches_api_through_the_pair(mesh: Mesh) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", mesh.up_port)
    await stream.send_all(b"hello api")
    assert await read_until(stream, b"hello api") == b"hello api"
    await stream.aclose()
    assert (
        mesh.sample(
            "meshd_proxy_connections_total",
            {"direction": "inbound", "source": "web", "destination": "api", "result": "allowed"},
        )
        == 1.0
    )
    assert mesh.agent.token_seen and set(mesh.agent.token_seen) == {TOKEN}


def _deny(source: str, dest: str, ixn_id: str = "ixn-deny") -> dict[str, object]:
    return {
        "ID": ixn_id,
        "SourceName": source,
        "DestinationName": dest,
        "Action": "deny",
        "Permissions": None,
        "Precedence": 9,
        "SourceNS": "default",
        "DestinationNS": "default",
    }


async def _tls_to_inbound(mesh: Mesh, ctx: object) -> trio.SSLStream[trio.SocketStream]:
    raw = await trio.open_tcp_stream("127.0.0.1", mesh.api_in)
    return trio.SSLStream(raw, ctx, server_hostname=None)  # type: ignore[arg-type]


async def _refused(stream: trio.abc.Stream) -> bool:
    """True when the peer closes or fails the connection instead of echoing."""
    try:
        with trio.fail_after(5):
            await stream.send_all(b"ping")
            data = await read_to_eof(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return True
    return b"ping" not in data


async def test_plaintext_to_the_inbound_port_is_refused(mesh: Mesh) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", mesh.api_in)
    await stream.send_all(b"GET / HTTP/1.1\r\n\r\n")
    try:
        got = await read_to_eof(stream)
    except trio.BrokenResourceError:
        got = b""  # reset: the proxy closed with our bytes unread
    assert b"HTTP" not in got and b"<EOF>" not in got
    assert (
        mesh.sample(
            "meshd_proxy_connections_total",
            {"direction": "inbound", "source": "", "destination": "api", "result": "error"},
        )
        == 1.0
    )


async def test_client_cert_from_another_ca_is_refused(mesh: Mesh) -> None:
    from .pki import TestCA

    other = TestCA()
    ctx = mesh.client_context(other.leaf("web"), ca=mesh.ca)
    stream = await _tls_to_inbound(mesh, ctx)
    assert await _refused(stream)


async def test_valid_cert_of_a_denied_source_is_refused_and_counted(mesh: Mesh) -> None:
    mesh.agent.set_intentions([_deny("evil", "api")])
    await trio.sleep(0.2)
    ctx = mesh.client_context(mesh.ca.leaf("evil"))
    stream = await _tls_to_inbound(mesh, ctx)
    assert await _refused(stream)
    labels = {"source": "evil", "destination": "api", "intention": "ixn-deny"}
    assert mesh.sample("meshd_proxy_denials_total", labels) == 1.0


async def test_default_deny_comes_from_the_agent_and_is_cached(mesh: Mesh) -> None:
    mesh.agent.default_allow = False
    ctx = mesh.client_context(mesh.ca.leaf("stranger"))
    for _ in range(3):
        stream = await _tls_to_inbound(mesh, ctx)
        assert await _refused(stream)
    assert mesh.agent.authorize_calls == 1
    labels = {"source": "stranger", "destination": "api", "intention": "default"}
    assert mesh.sample("meshd_proxy_denials_total", labels) == 3.0


async def test_intention_change_closes_an_existing_connection_within_a_second(mesh: Mesh) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", mesh.up_port)
    await stream.send_all(b"before")
    assert await read_until(stream, b"before") == b"before"
    mesh.agent.set_intentions([_deny("web", "api")])
    start = trio.current_time()
    tail = await read_to_eof(stream, limit=3)
    assert trio.current_time() - start < 1.0
    assert b"<EOF>" not in tail  # closed by the proxy, not by the backend
    fresh = await trio.open_tcp_stream("127.0.0.1", mesh.up_port)
    assert await _refused(fresh)


async def test_half_close_still_delivers_the_answer(mesh: Mesh) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", mesh.up_port)
    await stream.send_all(b"request-body")
    await stream.send_eof()
    got = await read_to_eof(stream)
    assert got == b"request-body<EOF>"


async def test_leaf_rotation_keeps_old_connections_and_serves_the_new_leaf(mesh: Mesh) -> None:
    old = await trio.open_tcp_stream("127.0.0.1", mesh.up_port)
    await old.send_all(b"one")
    assert await read_until(old, b"one") == b"one"
    new_leaf = mesh.issue("api")
    with trio.fail_after(5):
        while True:
            creds = mesh.proxy.credentials("api") if mesh.proxy else None
            if creds and creds.current and creds.current.serial == new_leaf.serial_hex:
                break
            await trio.sleep(0.02)
    await old.send_all(b"two")
    assert await read_until(old, b"two") == b"two"
    stream = await _tls_to_inbound(mesh, mesh.client_context(mesh.leaves["web"]))
    await stream.do_handshake()
    der = stream.getpeercert(binary_form=True)
    from cryptography import x509

    from connect.ca import serial_hex

    assert serial_hex(x509.load_der_x509_certificate(der).serial_number) == new_leaf.serial_hex
    await stream.send_all(b"three")
    assert await read_until(stream, b"three") == b"three"


async def test_server_with_the_wrong_identity_is_refused(mesh: Mesh) -> None:
    # api's only instance is web's inbound listener: it presents web's leaf.
    from .harness import health_entry

    mesh.agent.set_health("api", [health_entry(mesh.web_in, "web-sidecar-proxy")])
    await trio.sleep(0.2)
    stream = await trio.open_tcp_stream("127.0.0.1", mesh.up_port)
    assert await _refused(stream)
    assert (
        mesh.sample(
            "meshd_proxy_connections_total",
            {"direction": "outbound", "source": "web", "destination": "api", "result": "error"},
        )
        == 1.0
    )


async def test_listeners_follow_registrations(mesh: Mesh) -> None:
    assert mesh.proxy is not None
    services = mesh.services()
    del services["web-sidecar-proxy"]
    applied = mesh.proxy.applied
    mesh.agent.set_services(services)
    with trio.fail_after(5):
        await mesh.proxy.wait_applied(applied + 1)
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", mesh.up_port)
    assert ("127.0.0.1", mesh.up_port) not in mesh.proxy.running
    mesh.agent.set_services(mesh.services())
    with trio.fail_after(5):
        await mesh.proxy.wait_listening("127.0.0.1", mesh.up_port)
    await mesh.wait_upstream_endpoints()
    stream = await trio.open_tcp_stream("127.0.0.1", mesh.up_port)
    await stream.send_all(b"back")
    assert await read_until(stream, b"back") == b"back"


async def test_connection_limit_and_idle_timeout_from_proxy_config(mesh: Mesh) -> None:
    assert mesh.proxy is not None
    services = mesh.services()
    services["web-sidecar-proxy"]["Proxy"]["Upstreams"][0]["Config"] = {
        "max_connections": 1,
        "idle_timeout": 0.5,
    }
    applied = mesh.proxy.applied
    mesh.agent.set_services(services)
    with trio.fail_after(5):
        await mesh.proxy.wait_applied(applied + 1)
    first = await trio.open_tcp_stream("127.0.0.1", mesh.up_port)
    await first.send_all(b"x")
    assert await read_until(first, b"x") == b"x"
    second = await trio.open_tcp_stream("127.0.0.1", mesh.up_port)
    assert await read_to_eof(second) == b""
    start = trio.current_time()
    assert await read_to_eof(first, limit=5) == b""
    assert 0.3 < trio.current_time() - start < 3.0


async def test_failed_instance_is_skipped_for_new_connections(nursery: trio.Nursery) -> None:
    from .harness import health_entry

    mesh = Mesh()
    await mesh.start(nursery)
    # A second api instance whose proxy died: its port refuses connections.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    mesh.agent.set_health("api", [health_entry(mesh.api_in), health_entry(dead_port, "api2")])
    await trio.sleep(0.2)
    for i in range(6):
        stream = await trio.open_tcp_stream("127.0.0.1", mesh.up_port)
        msg = f"req{i}".encode()
        await stream.send_all(msg)
        assert await read_until(stream, msg) == msg
        await stream.aclose()


async def test_the_calling_side_counts_a_destination_deny_as_denied(mesh: Mesh) -> None:
    mesh.agent.set_intentions([_deny("web", "api", "ixn-web-api")])
    await trio.sleep(0.2)
    stream = await trio.open_tcp_stream("127.0.0.1", mesh.up_port)
    assert await _refused(stream)
    outbound = {"direction": "outbound", "source": "web", "destination": "api"}
    with trio.fail_after(5):
        while not mesh.sample("meshd_proxy_connections_total", {**outbound, "result": "denied"}):
            await trio.sleep(0.02)
    assert mesh.sample("meshd_proxy_connections_total", {**outbound, "result": "allowed"}) == 0.0


async def test_a_health_probe_is_not_an_inbound_error(mesh: Mesh) -> None:
    for _ in range(3):
        probe = socket.create_connection(("127.0.0.1", mesh.api_in))
        probe.close()
    labels = {"destination": "api"}
    with trio.fail_after(5):
        while mesh.sample("meshd_proxy_closed_before_handshake_total", labels) != 3.0:
            await trio.sleep(0.02)
    error = {"direction": "inbound", "source": "", "destination": "api", "result": "error"}
    assert mesh.sample("meshd_proxy_connections_total", error) == 0.0


async def test_a_client_without_the_verdict_protocol_gets_plain_bytes(mesh: Mesh) -> None:
    ctx = mesh.client_context(mesh.ca.leaf("web"))
    stream = await _tls_to_inbound(mesh, ctx)
    await stream.send_all(b"ping")
    assert await read_until(stream, b"ping") == b"ping"
    await stream.aclose()
