"""KV keys are bounded and never alias (issue 13 items 8 and 11).

Keys are at most ``MAX_KV_KEY`` (16 KiB) of UTF-8 on /v1/kv and /v1/txn;
a percent-encoded path that is not UTF-8 is refused instead of being decoded
with U+FFFD replacement (which made ``a%FF`` and ``a%FE`` the same key).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from trio.testing import MockClock

from registry.commands import MAX_KV_KEY
from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent


async def _keys(api: APIClient | InprocClient) -> list[str]:
    r = await api.get("/v1/kv/?keys")
    assert r.status == 200, r.text
    keys: list[str] = r.json()
    return keys


def _txn_set(key: str) -> list[dict[str, Any]]:
    value = base64.b64encode(b"v").decode()
    return [{"KV": {"Verb": "set", "Key": key, "Value": value}}]


@pytest.mark.e2e
async def test_oversize_key_is_400_naming_the_key_and_stores_nothing() -> None:
    async with dev_agent() as (_agent, api):
        big = "k" * (MAX_KV_KEY + 1)
        r = await api.put(f"/v1/kv/{big}", raw=b"v")
        assert r.status == 400, (r.status, r.text[:200])
        assert "key" in r.text and str(MAX_KV_KEY) in r.text
        r = await api.delete(f"/v1/kv/{big}")
        assert r.status == 400
        # The same key through /v1/txn (where a 400 KB key fits the body).
        r = await api.put("/v1/txn", _txn_set("t" * 400_000))
        assert r.status == 400, (r.status, r.text[:200])
        assert "Ops[0].KV.Key" in r.text
        assert await _keys(api) == []


async def test_key_at_the_limit_is_stored_and_read_back_by_path(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        # 3-byte characters percent-encode to 9 bytes each: the worst case
        # still fits the HTTP server's request-head limit.
        key = "é" * (MAX_KV_KEY // 2)
        assert len(key.encode()) == MAX_KV_KEY
        encoded = "".join(f"%{b:02X}" for b in key.encode())
        r = await api.put(f"/v1/kv/{encoded}", raw=b"v")
        assert r.status == 200, (r.status, r.text[:200])
        r = await api.get(f"/v1/kv/{encoded}?raw")
        assert (r.status, r.body) == (200, b"v")
        assert await _keys(api) == [key]


async def test_invalid_utf8_keys_are_refused_and_never_alias(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        for path in ("/v1/kv/a%FF", "/v1/kv/a%FE", "/v1/kv/a%ED%A0%80"):
            r = await api.put(path, raw=b"v")
            assert r.status == 400, (path, r.status, r.text)
            assert "UTF-8" in r.text and "path" in r.text
        assert (await api.get("/v1/kv/a%FF")).status == 400
        assert (await api.get("/v1/kv/a%EF%BF%BD")).status == 404  # U+FFFD itself: a real key
        # A lone surrogate in a txn key (valid JSON, not UTF-8) is refused too.
        r = await api.put("/v1/txn", raw=b'[{"KV": {"Verb": "set", "Key": "a\\udcff"}}]')
        assert r.status == 400, (r.status, r.text)
        assert await _keys(api) == []
        # Valid multi-byte keys still work and stay distinct.
        assert (await api.put("/v1/kv/a%C3%A9", raw=b"1")).status == 200
        assert (await api.put("/v1/kv/a%C3%A8", raw=b"2")).status == 200
        assert await _keys(api) == ["aè", "aé"]


@pytest.mark.parametrize(
    ("key", "body"),
    [
        ("a", b""),
        ("app/config/x", b"v" * 100),
        ("k" * MAX_KV_KEY, b"v"),  # at the limit: still the fast path
        ("k" * (MAX_KV_KEY + 1), b"v"),  # over it: the checks that name the field
        ("é/ключ", b"v"),  # not ASCII: the full checks
        ("a", b"v" * (512 * 1024 + 1)),  # too large: 413
    ],
)
def test_put_without_parameters_builds_what_the_full_path_builds(key: str, body: bytes) -> None:
    """A PUT with no query string skips the parameter parsing and the second
    validation: the command (or the error) is the one ``?flags=0`` gets."""
    from meshd.api.kv import put_request
    from meshd.http import Request

    def outcome(target: str) -> object:
        try:
            return put_request(Request.build("PUT", target, body=body), key)
        except Exception as exc:
            return (type(exc).__name__, str(exc))

    plain = outcome(f"/v1/kv/{key}")
    assert plain == outcome(f"/v1/kv/{key}?flags=0")
    if len(body) <= 512 * 1024 and len(key) <= MAX_KV_KEY:
        assert getattr(plain, "op", None) == "set"
        assert getattr(plain, "value", None) == body
    else:
        assert isinstance(plain, tuple)
