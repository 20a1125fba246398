"""The HTTP/1.1 server over real sockets on 127.0.0.1 (e2e)."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
import time
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshd.http import (
    App,
    ErrorMapping,
    QueryMeta,
    QueryOptions,
    Request,
    Response,
    Router,
    decode_json_body,
)
from raft.stages import stamp
from tests.meshd.http._support import (
    BlockingQuery,
    RawClient,
    echo,
    echo_router,
    encode_request,
    running,
    slow_router,
    wait_until_served,
)

pytestmark = pytest.mark.e2e


def _app(router: Router | None = None) -> App:
    return App(router or echo_router(), errors=ErrorMapping())


async def test_routes_params_404_and_405_over_the_wire() -> None:
    async with running(_app()) as port:
        client = await RawClient.connect(port)
        r = await client.request("GET", "/v1/catalog/service/web?tag=v1&stale")
        assert r.status == 200
        assert r.header("content-type") == "application/json"
        assert r.json()["params"] == {"service": "web"}
        assert r.json()["query"] == {"tag": ["v1"], "stale": [""]}
        assert r.json()["route"] == "catalog_service"

        r = await client.request("PUT", "/v1/kv/a/b%2Fc", body=b"value")
        assert r.json()["params"] == {"key": "a/b/c"}
        assert r.json()["body"] == "value"

        r = await client.request("GET", "/v1/nothing/here")
        assert (r.status, r.body) == (404, b"Invalid URL path: not a recognized HTTP API endpoint")
        assert r.header("content-type") == "text/plain; charset=utf-8"

        r = await client.request("DELETE", "/v1/kv/a")
        assert (r.status, r.body) == (405, b"method DELETE not allowed")
        assert r.header("allow") == "OPTIONS,GET,PUT"
        await client.aclose()


async def test_keep_alive_serves_two_requests_on_one_connection() -> None:
    async with running(_app()) as port:
        client = await RawClient.connect(port)
        first = await client.request("GET", "/v1/json")
        second = await client.request("PUT", "/v1/echo", body=b"{}")
        assert (first.status, second.status) == (200, 200)
        assert second.json()["method"] == "PUT"
        assert first.header("connection") is None
        assert first.header("date") is not None
        await client.aclose()


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with running(_app(slow_router(0.05))) as port:
        client = await RawClient.connect(port)
        await client.send(
            encode_request("GET", "/v1/slow")
            + encode_request("GET", "/v1/kv/second")
            + encode_request("PUT", "/v1/echo", body=b"third")
        )
        bodies = []
        for _ in range(3):
            r = await client.read_response()
            assert r is not None and r.status == 200
            bodies.append(r.body)
        assert bodies[0] == b"slow"
        assert b'"key":"second"' in bodies[1]
        assert b'"body":"third"' in bodies[2]
        await client.aclose()


async def test_requests_before_malformed_input_are_answered_first() -> None:
    async with running(_app()) as port:
        client = await RawClient.connect(port)
        await client.send(encode_request("GET", "/v1/json") + b"GARBAGE\r\n\r\n")
        first = await client.read_response()
        assert first is not None and first.status == 200
        second = await client.read_response()
        assert second is not None and (second.status, second.body) == (400, b"400 Bad Request")
        assert await client.at_eof()


async def test_upgrade_request_is_answered_then_closed() -> None:
    async with running(_app()) as port:
        client = await RawClient.connect(port)
        r = await client.request(
            "GET", "/v1/json", headers=[("Connection", "Upgrade"), ("Upgrade", "websocket")]
        )
        assert r.status == 200
        assert r.header("connection") == "close"
        assert await client.at_eof()


async def test_connection_close_is_honoured() -> None:
    async with running(_app()) as port:
        client = await RawClient.connect(port)
        r = await client.request("GET", "/v1/json", headers=[("Connection", "close")])
        assert r.status == 200
        assert r.header("connection") == "close"
        assert await client.at_eof()


async def test_head_sends_get_headers_without_body() -> None:
    async def services(req: Request) -> Response:
        return Response.json({"consul": [], "web": ["v1"]})

    router = Router()
    router.add("GET", "/v1/catalog/services", services, name="catalog_services")
    async with running(_app(router)) as port:
        client = await RawClient.connect(port)
        get = await client.request("GET", "/v1/catalog/services")
        head = await client.request("HEAD", "/v1/catalog/services")
        assert head.status == 200
        assert head.header("content-length") == get.header("content-length") != "0"
        assert head.body == b""
        # Nothing stray was written after the head: the next answer parses.
        again = await client.request("GET", "/v1/catalog/services")
        assert again.body == get.body == b'{"consul":[],"web":["v1"]}'
        await client.aclose()


async def test_expect_100_continue_then_body() -> None:
    async with running(_app()) as port:
        client = await RawClient.connect(port)
        await client.send(
            encode_request(
                "PUT",
                "/v1/echo",
                headers=[("Expect", "100-continue"), ("Content-Length", "5")],
            )
        )
        interim = await client.read_response()
        assert interim is not None and interim.status == 100
        await client.send(b"hello")
        final = await client.read_response()
        assert final is not None and final.status == 200
        assert final.json()["body"] == "hello"
        await client.aclose()


async def test_chunked_request_body_is_assembled() -> None:
    async with running(_app()) as port:
        client = await RawClient.connect(port)
        r = await client.request(
            "PUT",
            "/v1/echo",
            headers=[("Transfer-Encoding", "chunked")],
            body=b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
        )
        assert r.json()["body"] == "abcdefg"
        await client.aclose()


async def test_declared_oversized_body_is_413_and_closed() -> None:
    async with running(_app(), max_body=1024) as port:
        client = await RawClient.connect(port)
        r = await client.request("PUT", "/v1/echo", body=b"x" * 4096)
        assert r.status == 413
        assert r.body == b"Request body too large, max size: 1024 bytes"
        assert r.header("connection") == "close"
        assert await client.at_eof()


async def test_chunked_oversized_body_is_413_and_closed() -> None:
    chunk = b"400\r\n" + b"y" * 1024 + b"\r\n"
    async with running(_app(), max_body=2048) as port:
        client = await RawClient.connect(port)
        r = await client.request(
            "PUT",
            "/v1/echo",
            headers=[("Transfer-Encoding", "chunked")],
            body=chunk * 3 + b"0\r\n\r\n",
        )
        assert r.status == 413
        assert await client.at_eof()


async def test_oversized_headers_are_431() -> None:
    async with running(_app(), max_header_bytes=2048) as port:
        client = await RawClient.connect(port)
        r = await client.request("GET", "/v1/json", headers=[("X-Big", "z" * 4096)])
        assert r.status == 431
        assert await client.at_eof()


@pytest.mark.parametrize(
    "garbage",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET /v1/json HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /v1/json HTTP/1.1\r\nBad Header Line\r\n\r\n",
    ],
)
async def test_malformed_http_is_400_and_closed(garbage: bytes) -> None:
    async with running(_app()) as port:
        client = await RawClient.connect(port)
        await client.send(garbage)
        r = await client.read_response()
        assert r is not None and r.status == 400
        assert r.body == b"400 Bad Request"
        assert await client.at_eof()


async def test_handler_exception_is_500_and_the_server_keeps_serving() -> None:
    async def boom(req: Request) -> Response:
        raise RuntimeError("kaboom: do not leak me")

    router = echo_router()
    router.add("GET", "/v1/boom", boom, name="boom")
    async with running(_app(router)) as port:
        client = await RawClient.connect(port)
        r = await client.request("GET", "/v1/boom")
        assert (r.status, r.body) == (500, b"Internal error")
        ok = await client.request("GET", "/v1/json")  # same connection still usable
        assert ok.status == 200
        other = await RawClient.connect(port)
        assert (await other.request("GET", "/v1/json")).status == 200
        await client.aclose()
        await other.aclose()


async def test_invalid_response_from_handler_becomes_500() -> None:
    async def bad_header(req: Request) -> Response:
        return Response(200, [("X-Evil", "a\r\nInjected: yes")], b"")

    router = echo_router()
    router.add("GET", "/v1/bad", bad_header, name="bad")
    async with running(_app(router)) as port:
        client = await RawClient.connect(port)
        r = await client.request("GET", "/v1/bad")
        assert (r.status, r.body) == (500, b"Internal error")
        assert r.header("injected") is None
        await client.aclose()


async def test_client_disconnect_cancels_a_long_handler() -> None:
    query = BlockingQuery()
    router = echo_router()
    router.add("GET", "/v1/block", query, name="block")
    async with running(_app(router)) as port:
        client = await RawClient.connect(port)
        await client.send(encode_request("GET", "/v1/block?index=5&wait=10m"))
        with trio.fail_after(2):
            await query.started.wait()
        await client.aclose()
        with trio.fail_after(1):
            await query.cancelled.wait()
        # The server is still fine afterwards.
        fresh = await RawClient.connect(port)
        assert (await fresh.request("GET", "/v1/json")).status == 200
        await fresh.aclose()


async def test_zero_connection_limits_mean_unlimited() -> None:
    """Consul's http_max_conns_per_client: 0 disables the limit (it used to
    answer every connection 429)."""
    async with running(_app(), per_client_max_connections=0, max_connections=0) as port:
        clients = [await RawClient.connect(port) for _ in range(5)]
        for c in clients:
            assert (await c.request("GET", "/v1/json")).status == 200
        for c in clients:
            await c.aclose()


async def test_per_client_connection_limit_is_429() -> None:
    async with running(_app(), per_client_max_connections=2) as port:
        first = await RawClient.connect(port)
        second = await RawClient.connect(port)
        assert (await first.request("GET", "/v1/json")).status == 200
        assert (await second.request("GET", "/v1/json")).status == 200
        third = await RawClient.connect(port)
        await third.send(encode_request("GET", "/v1/json"))
        r = await third.read_response()
        assert r is not None and r.status == 429
        assert r.body == b"Too many connections from this client"
        assert await third.at_eof()
        await first.aclose()
        # A slot freed up: a new connection is served again.
        await wait_until_served(port, refused=429, timeout=2)
        await second.aclose()


async def test_total_connection_limit_is_503() -> None:
    async with running(_app(), max_connections=1) as port:
        first = await RawClient.connect(port)
        assert (await first.request("GET", "/v1/json")).status == 200
        second = await RawClient.connect(port)
        await second.send(encode_request("GET", "/v1/json"))
        r = await second.read_response()
        assert r is not None and r.status == 503
        await first.aclose()


async def test_idle_connection_is_closed_silently() -> None:
    async with running(_app(), idle_timeout=0.2) as port:
        client = await RawClient.connect(port)
        assert (await client.request("GET", "/v1/json")).status == 200
        assert await client.at_eof(timeout=2)


async def test_idle_and_request_timeouts_spare_a_handler_that_outlasts_them() -> None:
    async with running(
        _app(slow_router(0.4, "done")), idle_timeout=0.1, request_timeout=0.1
    ) as port:
        client = await RawClient.connect(port)
        started = trio.current_time()
        r = await client.request("GET", "/v1/slow")
        assert (r.status, r.body) == (200, b"done")
        # The idle timeout runs again from the answer: the connection then closes.
        assert await client.at_eof(timeout=2)
        assert trio.current_time() - started >= 0.4


async def test_slow_request_is_408() -> None:
    async with running(_app(), request_timeout=0.2) as port:
        client = await RawClient.connect(port)
        await client.send(b"PUT /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        r = await client.read_response()
        assert r is not None and r.status == 408
        assert await client.at_eof()


async def test_consul_query_options_and_meta_headers_over_the_wire() -> None:
    async def services(req: Request) -> Response:
        opts = QueryOptions.from_request(req)
        response = Response.json({"wait": opts.wait, "index": opts.index}, pretty=opts.pretty)
        return QueryMeta(index=0, known_leader=True, last_contact=0.0).apply_headers(response)

    router = Router()
    router.add("GET", "/v1/catalog/services", services, name="catalog_services")
    async with running(_app(router)) as port:
        client = await RawClient.connect(port)
        r = await client.request("GET", "/v1/catalog/services?index=3&wait=1m&pretty")
        assert r.status == 200
        assert r.body == b'{\n    "wait": 60.0,\n    "index": 3\n}\n'
        assert r.header("x-consul-index") == "1"
        assert r.header("x-consul-knownleader") == "true"
        assert r.header("x-consul-lastcontact") == "0"
        assert r.header("x-consul-effective-consistency") == "leader"
        bad = await client.request("GET", "/v1/catalog/services?wait=forever")
        assert (bad.status, bad.body) == (400, b"Invalid wait time")
        conflict = await client.request("GET", "/v1/catalog/services?stale&consistent")
        assert conflict.body == b"Cannot specify ?stale with ?consistent, conflicting semantics."
        await client.aclose()


async def test_json_body_errors_over_the_wire() -> None:
    async def register(req: Request) -> Response:
        body = decode_json_body(req, fields=["Name", "Port"])
        return Response.json(body)

    router = Router()
    router.add("PUT", "/v1/agent/service/register", register, name="register")
    async with running(_app(router)) as port:
        client = await RawClient.connect(port)
        r = await client.request(
            "PUT", "/v1/agent/service/register", body=b'{"name":"web","Bogus":1}'
        )
        assert (r.status, r.body) == (400, b'Request decode failed: json: unknown field "Bogus"')
        r = await client.request("PUT", "/v1/agent/service/register", body=b'{"Name":')
        assert r.status == 400
        assert r.body.startswith(b"Request decode failed: Expecting value")
        r = await client.request("PUT", "/v1/agent/service/register", body=b'{"name":"web"}')
        assert r.json() == {"Name": "web"}
        await client.aclose()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_listener_with_self_signed_certificate(tmp_path: Path) -> None:
    cert_path, key_path = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)
    client_ctx = ssl.create_default_context(cafile=str(cert_path))
    async with running(_app(), ssl_context=server_ctx) as port:
        client = await RawClient.connect(port, ssl_context=client_ctx)
        r = await client.request("GET", "/v1/kv/secure")
        assert r.status == 200
        assert r.json()["params"] == {"key": "secure"}
        assert (await client.request("GET", "/v1/json")).status == 200  # keep-alive over TLS
        await client.aclose()
        # Plain HTTP to the HTTPS port gets no HTTP answer and does not hurt the server.
        plain = await trio.open_tcp_stream("127.0.0.1", port)
        await plain.send_all(encode_request("GET", "/v1/json"))
        received = b""
        with trio.fail_after(2):
            while chunk := await plain.receive_some(4096):
                received += chunk
        assert b"HTTP/1.1" not in received
        await plain.aclose()
        again = await RawClient.connect(port, ssl_context=client_ctx)
        assert (await again.request("GET", "/v1/json")).status == 200
        await again.aclose()


async def test_absolute_form_target_is_routed_by_path() -> None:
    async with running(_app()) as port:
        client = await RawClient.connect(port)
        r = await client.request("GET", "http://127.0.0.1/v1/kv/abs?x=1")
        assert r.json()["params"] == {"key": "abs"}
        assert r.json()["query"] == {"x": ["1"]}
        await client.aclose()


async def test_remote_address_and_request_id_are_set() -> None:
    seen: list[Request] = []

    async def capture(req: Request) -> Response:
        seen.append(req)
        return await echo(req)

    router = Router()
    router.add("GET", "/v1/me", capture, name="me")
    async with running(_app(router)) as port:
        client = await RawClient.connect(port)
        await client.request("GET", "/v1/me")
        await client.request("GET", "/v1/me")
        await client.aclose()
    assert seen[0].remote_addr is not None and seen[0].remote_addr[0] == "127.0.0.1"
    assert seen[0].request_id != seen[1].request_id
    assert seen[0].scheme == "http"


async def test_large_body_within_limit_is_received_whole() -> None:
    async def size(req: Request) -> Response:
        return Response.json({"size": len(req.body), "tail": req.body[-4:].decode()})

    router = Router()
    router.add("PUT", "/v1/txn", size, name="txn")
    payload = b"a" * (3 << 20) + b"TAIL"
    async with running(_app(router)) as port:
        client = await RawClient.connect(port)
        r = await client.request("PUT", "/v1/txn", body=payload)
        assert r.json() == {"size": len(payload), "tail": "TAIL"}
        # Many pipelined requests at once: more than the read-ahead window.
        many = b"".join(encode_request("PUT", "/v1/txn", body=b"x" * 20_000) for _ in range(40))
        await client.send(many)
        for _ in range(40):
            reply = await client.read_response()
            assert reply is not None and reply.json()["size"] == 20_000
        await client.aclose()


async def test_incomplete_head_times_out_with_408() -> None:
    async with running(_app(), idle_timeout=0.2) as port:
        client = await RawClient.connect(port)
        await client.send(b"GET /v1/json HTTP/1.1\r\nHo")
        r = await client.read_response()
        assert r is not None and r.status == 408
        assert await client.at_eof()


async def test_http10_request_is_answered_then_closed() -> None:
    async with running(_app()) as port:
        client = await RawClient.connect(port)
        await client.send(b"GET /v1/json HTTP/1.0\r\n\r\n")
        r = await client.read_response()
        assert r is not None and r.status == 200
        assert r.json()["route"] == "json"
        assert await client.at_eof()


async def test_shutdown_cancels_handlers_in_progress() -> None:
    started = trio.Event()
    cancelled = trio.Event()

    async def blocking_query(req: Request) -> Response:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    router = Router()
    router.add("GET", "/v1/block", blocking_query, name="block")
    async with running(_app(router)) as port:
        client = await RawClient.connect(port)
        await client.send(encode_request("GET", "/v1/block"))
        with trio.fail_after(2):
            await started.wait()
    # Leaving running() cancelled serve_http.
    assert cancelled.is_set()
    assert await client.at_eof()


async def test_debug_request_log_has_one_line_per_request_and_never_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from meshd.logs import record_fields

    caplog.set_level(logging.DEBUG, logger="meshd.http.request")
    async with running(_app()) as port:
        client = await RawClient.connect(port)
        secret = "b1gs3cr3t-0000-token"
        headers = [("X-Consul-Token", secret)]
        await client.request("GET", f"/v1/kv/a?token={secret}", headers=headers)
        await client.request("GET", "/v1/nothing-here")
        await client.aclose()
    lines = [r for r in caplog.records if r.name == "meshd.http.request"]
    assert len(lines) == 2
    first, second = (record_fields(r) for r in lines)
    assert first["event"] == "http_request"
    assert (first["method"], first["path"], first["status"]) == ("GET", "/v1/kv/a", 200)
    assert second["status"] == 404 and second["path"] == "/v1/nothing-here"
    assert str(first["remote"]).startswith("127.0.0.1:")
    assert isinstance(first["duration_ms"], float)
    assert all(secret not in r.getMessage() for r in caplog.records)


async def test_request_log_is_silent_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="meshd.http.request")
    async with running(_app()) as port:
        client = await RawClient.connect(port)
        assert (await client.request("GET", "/v1/json")).status == 200
        await client.aclose()
    assert not [r for r in caplog.records if r.name == "meshd.http.request"]


async def test_a_burst_of_requests_is_dispatched_in_bounded_batches_per_round(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Thousands of watchers re-arming at once must not all run their handler
    in one scheduler round: that round would hold the loop (and the Raft
    driver sharing it) for all of them (issue 18). A probe running once per
    round sees at most two batches dispatched in between."""
    import itertools

    import registry.blocking

    monkeypatch.setattr(registry.blocking, "WAKE_BATCH", 8)  # 200 requests: many batches
    handled = 0

    async def count(req: Request) -> Response:
        nonlocal handled
        handled += 1
        return Response.json({})

    router = Router()
    router.add("GET", "/v1/count", count, name="count")
    async with running(_app(router)) as port:
        clients = [await RawClient.connect(port) for _ in range(200)]
        samples = [0]

        async def probe() -> None:
            while handled < len(clients):
                samples.append(handled)
                await trio.lowlevel.cancel_shielded_checkpoint()

        async with trio.open_nursery() as nursery:
            for c in clients:
                nursery.start_soon(c.send, encode_request("GET", "/v1/count"))
            nursery.start_soon(probe)
        statuses = [(await c.read_response()) for c in clients]
        assert all(r is not None and r.status == 200 for r in statuses)
        for c in clients:
            await c.aclose()
    steps = [b - a for a, b in itertools.pairwise(samples)]
    # Per round: a batch let through the queue and one started directly;
    # the probe may see two rounds in one step (trio varies the order).
    assert handled == 200 and max(steps) <= 4 * 8, steps


async def test_answer_larger_than_the_socket_buffer_arrives_whole_then_keep_alive() -> None:
    # The first write takes only part of it; the rest waits for the reader.
    big = bytes(range(256)) * (16 * 1024)  # 4 MiB

    async def large(req: Request) -> Response:
        return Response(200, [("Content-Type", "application/octet-stream")], big)

    router = echo_router()
    router.add("GET", "/v1/large", large, name="large")
    async with running(_app(router)) as port:
        client = await RawClient.connect(port)
        await client.send(encode_request("GET", "/v1/large"))
        await trio.sleep(0.05)  # let the server fill the socket buffer first
        r = await client.read_response()
        assert r is not None and r.status == 200 and r.body == big
        assert (await client.request("GET", "/v1/json")).status == 200
        await client.aclose()


async def test_a_request_asking_for_stage_timing_is_timed_from_its_clients_send(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Benchmarks only (bench/kv_stages.py): off unless MESHD_RAFT_STAGES is set.
    monkeypatch.setenv("MESHD_RAFT_STAGES", "1")

    async def timed(req: Request) -> Response:
        stamp("command")  # what a handler (meshd/api/kv.py) stamps
        return Response.text("ok")

    router = echo_router()
    router.add("PUT", "/v1/timed", timed, name="timed")
    with caplog.at_level(logging.INFO, logger="raft.stages"):
        async with running(_app(router)) as port:
            client = await RawClient.connect(port)
            sent = str(time.perf_counter_ns())
            r = await client.request("PUT", "/v1/timed", headers=[("X-Meshd-Stages", sent)])
            assert (r.status, r.body) == (200, b"ok")
            r = await client.request("PUT", "/v1/timed")  # not asked: not timed
            assert r.status == 200
            # Not a timestamp (int() would refuse 5,000 digits): not timed, answered.
            r = await client.request("PUT", "/v1/timed", headers=[("X-Meshd-Stages", "9" * 5000)])
            assert r.status == 200
            await client.aclose()
    lines = [r.getMessage() for r in caplog.records if "raft_stages" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("event=raft_stages path=http_put n=1 ")
    fields = dict(kv.split("=") for kv in lines[0].split()[3:])
    assert list(fields) == ["read", "dequeued", "routed", "command", "answered", "written"]
    offsets = [float(v) for v in fields.values()]
    assert offsets[0] > 0 and offsets == sorted(offsets)
