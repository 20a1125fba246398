"""gRPC health checks (Consul agent/checks/grpc.go ``GrpcHealthProbe``).

Calls ``grpc.health.v1.Health/Check`` on ``GRPC`` (``host:port`` or
``host:port/service``) over HTTP/2 with h2, in cleartext (h2c) or, with
``GRPCUseTLS``, over TLS with ALPN ``h2`` (``TLSSkipVerify`` and
``TLSServerName`` apply). SERVING is passing (``gRPC check <target>:
success``); any other serving status, gRPC error or connection failure is
critical, worded as grpc-go words it (``rpc error: code = Unimplemented desc
= ...``).

The health protocol's two messages have one field each, so they are encoded
and decoded here by hand rather than with protobuf: HealthCheckRequest is
``string service = 1``, HealthCheckResponse ``ServingStatus status = 1``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import h2.events

from .base import CRITICAL, PASSING, CheckOptions, CheckResult
from .dial import DialError, join_host_port, open_stream, split_host_port, tls_context
from .http2 import HTTP2Connection, HTTP2Error

__all__ = ["GRPCChecker", "decode_response", "encode_request"]

HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check"
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
CODES = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
]
# grpc-go's mapping of an HTTP status to a gRPC code when grpc-status is absent.
_HTTP_CODES = {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}


class _RPCError(Exception):
    def __init__(self, code: int, desc: str) -> None:
        name = CODES[code] if 0 <= code < len(CODES) else f"Code({code})"
        super().__init__(f"rpc error: code = {name} desc = {desc}")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def encode_request(service: str) -> bytes:
    """A length-prefixed gRPC message holding HealthCheckRequest{service}."""
    raw = service.encode()
    message = (b"\x0a" + _varint(len(raw)) + raw) if raw else b""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def decode_response(frame: bytes) -> int:
    """The ``status`` field of a length-prefixed HealthCheckResponse (0 when absent).

    Unknown fields are skipped. Raises ``ValueError`` for a compressed or
    malformed message.
    """
    if len(frame) < 5 or frame[0] != 0:
        raise ValueError("malformed or compressed gRPC message")
    data = frame[5 : 5 + int.from_bytes(frame[1:5], "big")]
    pos, status = 0, 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            if field == 1:
                status = value
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return status


class GRPCChecker:
    """Probe one gRPC server's health service; see the module docstring."""

    def __init__(self, spec: dict[str, Any], options: CheckOptions) -> None:
        """Raises ``ValueError`` when ``GRPC`` is not ``host:port[/service]``."""
        self.target = str(spec["GRPC"])
        self.server, _, self.service = self.target.partition("/")
        self.host, self.port = split_host_port(self.server)
        self.authority = join_host_port(self.host, self.port)
        self.use_tls = bool(spec.get("GRPCUseTLS"))
        self.skip_verify = bool(spec.get("TLSSkipVerify"))
        self.server_name = str(spec.get("TLSServerName") or "")
        self.request = encode_request(self.service)

    async def run(self) -> CheckResult:
        """One Health/Check call on a fresh connection."""
        try:
            status = await self._call()
        except _RPCError as exc:
            return CheckResult(CRITICAL, str(exc))
        if status != 1:
            name = SERVING_STATUS.get(status, str(status))
            return CheckResult(CRITICAL, f"gRPC {self.server} serving status: {name}")
        return CheckResult(PASSING, f"gRPC check {self.target}: success")

    def timed_out(self, timeout: float) -> CheckResult:
        """Critical, worded as grpc-go's deadline error."""
        return CheckResult(CRITICAL, str(_RPCError(4, "context deadline exceeded")))

    async def _call(self) -> int:
        tls = tls_context(self.skip_verify, ("h2",)) if self.use_tls else None
        try:
            stream = await open_stream(self.host, self.port, tls=tls, server_name=self.server_name)
        except DialError as exc:
            desc = f'connection error: desc = "transport: Error while dialing: {exc}"'
            raise _RPCError(14, desc) from None
        conn = HTTP2Connection(stream)
        try:
            return await self._exchange(conn)
        except HTTP2Error as exc:
            raise _RPCError(14, f"connection error: desc = {exc}") from None
        finally:
            await conn.aclose()

    async def _exchange(self, conn: HTTP2Connection) -> int:
        await conn.start()
        sid = conn.h2.get_next_available_stream_id()
        headers = [
            (":method", "POST"),
            (":scheme", "https" if self.use_tls else "http"),
            (":path", HEALTH_CHECK_PATH),
            (":authority", self.authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", "Consul Health Check"),
        ]
        conn.h2.send_headers(sid, headers)
        conn.h2.send_data(sid, self.request, end_stream=True)
        await conn.flush()
        fields: dict[str, str] = {}
        body = bytearray()
        while True:
            for event in await conn.events():
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    fields.update((str(k), str(v)) for k, v in event.headers)
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == sid:
                    body += event.data
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == sid:
                    raise _RPCError(13, f"stream terminated by RST_STREAM ({event.error_code})")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == sid:
                    return _status_of(fields, bytes(body))


def _status_of(fields: dict[str, str], body: bytes) -> int:
    """The serving status from a finished call's headers, trailers and body."""
    http_status = fields.get(":status", "")
    if "grpc-status" not in fields:
        if http_status != "200":
            code = _HTTP_CODES.get(int(http_status) if http_status.isdigit() else 0, 2)
            desc = f"unexpected HTTP status code received from server: {http_status}"
            raise _RPCError(code, desc)
        raise _RPCError(13, "server closed the stream without sending trailers")
    code = int(fields["grpc-status"]) if fields["grpc-status"].isdigit() else 2
    if code != 0:
        raise _RPCError(code, unquote(fields.get("grpc-message", "")))
    try:
        return decode_response(body)
    except ValueError as exc:
        raise _RPCError(13, f"grpc: failed to unmarshal the received message: {exc}") from None
