"""/v1/kv against a dev agent, asserting Consul's documented shapes
(https://developer.hashicorp.com/consul/api-docs/kv). In-process
(tests/meshd/inproc.py, autojump clock) but for one e2e test on a real socket."""

from __future__ import annotations

import base64

import pytest
from trio.testing import MockClock

from tests.meshd.harness import APIClient, dev_agent
from tests.meshd.inproc import InprocClient, inproc_agent

ENTRY_KEYS = {"LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"}


async def put(api: APIClient | InprocClient, path: str, value: bytes = b"") -> object:
    r = await api.put(path, raw=value)
    assert r.status == 200, (path, r.status, r.text)
    assert r.headers["content-type"] == "application/json"
    return r.json()


async def all_keys(api: APIClient | InprocClient) -> list[str]:
    r = await api.get("/v1/kv/?keys")
    assert r.status == 200
    keys: list[str] = r.json()
    return keys


@pytest.mark.e2e
async def test_put_then_get_returns_consuls_entry_shape() -> None:
    async with dev_agent() as (_agent, api):
        assert await put(api, "/v1/kv/app/config?flags=42", b"hello \x00 world") is True
        r = await api.get("/v1/kv/app/config")
        assert r.status == 200
        [entry] = r.json()
        assert set(entry) == ENTRY_KEYS  # Session is omitted when no lock is held
        assert entry["Key"] == "app/config" and entry["Flags"] == 42
        assert base64.b64decode(entry["Value"]) == b"hello \x00 world"
        assert entry["LockIndex"] == 0 and entry["CreateIndex"] == entry["ModifyIndex"] > 0
        assert int(r.headers["x-consul-index"]) == entry["ModifyIndex"]
        assert r.headers["x-consul-knownleader"] == "true"
        assert r.headers["x-consul-lastcontact"].isdigit()

        # A second set keeps CreateIndex and moves ModifyIndex; flags reset to 0.
        assert await put(api, "/v1/kv/app/config", b"v2") is True
        [entry2] = (await api.get("/v1/kv/app/config")).json()
        assert entry2["CreateIndex"] == entry["CreateIndex"]
        assert entry2["ModifyIndex"] > entry["ModifyIndex"] and entry2["Flags"] == 0

        # An empty value is JSON null; a percent-encoded slash is part of the key.
        assert await put(api, "/v1/kv/empty") is True
        assert (await api.get("/v1/kv/empty")).json()[0]["Value"] is None
        assert await put(api, "/v1/kv/a%2Fb", b"x") is True
        assert (await api.get("/v1/kv/a/b")).json()[0]["Key"] == "a/b"


async def test_missing_key_is_404_with_an_index(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        for path in ("/v1/kv/nope", "/v1/kv/nope?raw", "/v1/kv/nope/?recurse", "/v1/kv/no?keys"):
            r = await api.get(path)
            assert (r.status, r.body) == (404, b""), path
            assert int(r.headers["x-consul-index"]) >= 1
            assert r.headers["x-consul-knownleader"] == "true"
        # The root of an empty store lists no keys with 200 rather than 404.
        r = await api.get("/v1/kv/?keys")
        assert (r.status, r.json()) == (200, [])


async def test_raw_returns_the_stored_bytes_with_safe_headers(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        value = b"<script>alert(1)</script>\xff"
        await put(api, "/v1/kv/page", value)
        r = await api.get("/v1/kv/page?raw")
        assert (r.status, r.body) == (200, value)
        assert r.headers["content-type"] == "text/plain"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "sandbox"
        assert int(r.headers["x-consul-index"]) > 0
        await put(api, "/v1/kv/blank")
        r = await api.get("/v1/kv/blank?raw")
        assert (r.status, r.body) == (200, b"")


async def test_recurse_keys_and_separator(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        for key in ("a/b", "a/c/d", "a/c/e", "ab", "b"):
            await put(api, f"/v1/kv/{key}", key.encode())
        r = await api.get("/v1/kv/a/?recurse")
        entries = r.json()
        assert [e["Key"] for e in entries] == ["a/b", "a/c/d", "a/c/e"]
        assert all(set(e) == ENTRY_KEYS for e in entries)
        assert base64.b64decode(entries[1]["Value"]) == b"a/c/d"
        assert int(r.headers["x-consul-index"]) == max(e["ModifyIndex"] for e in entries)
        r = await api.get("/v1/kv/?recurse")
        assert len(r.json()) == 5
        r = await api.get("/v1/kv/a?keys")
        assert r.json() == ["a/b", "a/c/d", "a/c/e", "ab"]
        r = await api.get("/v1/kv/a/?keys&separator=/")
        assert r.json() == ["a/b", "a/c/"]
        r = await api.get("/v1/kv/?keys&separator=/")
        assert r.json() == ["a/", "ab", "b"]
        # Consul still accepts its historic misspelling.
        r = await api.get("/v1/kv/a/?keys&seperator=/")
        assert r.json() == ["a/b", "a/c/"]
        # ?keys wins over ?recurse.
        r = await api.get("/v1/kv/a/?keys&recurse")
        assert r.json() == ["a/b", "a/c/d", "a/c/e"]
        r = await api.get("/v1/kv/a/?recurse&filter=" + "Key%20%3D%3D%20%22a%2Fb%22")
        assert [e["Key"] for e in r.json()] == ["a/b"]


async def test_cas_put_and_delete(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        assert await put(api, "/v1/kv/k?cas=0", b"1") is True
        assert await put(api, "/v1/kv/k?cas=0", b"2") is False  # create-only
        [entry] = (await api.get("/v1/kv/k")).json()
        index = entry["ModifyIndex"]
        assert await put(api, f"/v1/kv/k?cas={index + 100}", b"3") is False
        assert await put(api, f"/v1/kv/k?cas={index}", b"4") is True
        [entry] = (await api.get("/v1/kv/k")).json()
        assert base64.b64decode(entry["Value"]) == b"4"
        r = await api.delete(f"/v1/kv/k?cas={index}")
        assert (r.status, r.json()) == (200, False)
        assert (await api.get("/v1/kv/k")).status == 200
        r = await api.delete(f"/v1/kv/k?cas={entry['ModifyIndex']}")
        assert (r.status, r.json()) == (200, True)
        assert (await api.get("/v1/kv/k")).status == 404
        # A plain delete of a missing key is still true.
        assert (await api.delete("/v1/kv/k")).json() is True


async def test_delete_single_and_recursive(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        for key in ("t/1", "t/2", "t2", "u"):
            await put(api, f"/v1/kv/{key}", b"x")
        assert (await api.delete("/v1/kv/u")).json() is True
        assert await all_keys(api) == ["t/1", "t/2", "t2"]
        r = await api.delete("/v1/kv/t/?recurse")
        assert (r.status, r.json()) == (200, True)
        assert await all_keys(api) == ["t2"]
        assert (await api.delete("/v1/kv/?recurse")).json() is True
        assert await all_keys(api) == []


async def test_bad_input_gets_400_or_413_and_changes_nothing(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await put(api, "/v1/kv/keep", b"original")
        before = (await api.get("/v1/kv/?recurse")).json()
        cases: list[tuple[str, str, bytes, int, str]] = [
            ("PUT", "/v1/kv/", b"x", 400, "Missing key name"),
            ("PUT", "/v1/kv/keep?flags=abc", b"x", 400, "flags"),
            ("PUT", "/v1/kv/keep?flags=-1", b"x", 400, "flags"),
            ("PUT", "/v1/kv/keep?cas=1.5", b"x", 400, "cas"),
            ("PUT", "/v1/kv/keep?cas=0&acquire=abc", b"x", 400, "Conflicting flags"),
            ("PUT", "/v1/kv/keep?acquire=a&release=b", b"x", 400, "Conflicting flags"),
            ("PUT", "/v1/kv/keep?acquire=", b"x", 400, "Session"),
            ("PUT", "/v1/kv//keep", b"x", 400, "must not begin with a '/'"),
            ("PUT", "/v1/kv/keep?dc=dc9", b"x", 400, "No path to datacenter"),
            ("PUT", "/v1/kv/keep", b"x" * (512 * 1024 + 1), 413, "too large"),
            ("DELETE", "/v1/kv/", b"", 400, "Missing key name"),
            ("DELETE", "/v1/kv/keep?recurse&cas=1", b"", 400, "Conflicting flags"),
            ("DELETE", "/v1/kv/keep?cas=x", b"", 400, "cas"),
            ("GET", "/v1/kv/", b"", 400, "Missing key name"),
            ("GET", "/v1/kv/keep?index=x", b"", 400, "Invalid index"),
        ]
        for method, path, body, status, text in cases:
            r = await api.request(method, path, raw=body)
            assert r.status == status and text in r.text, (method, path, r.status, r.text)
        r = await api.put("/v1/kv/keep", raw=b"x" * (512 * 1024))
        assert r.status == 200  # exactly the limit is accepted
        await put(api, "/v1/kv/keep", b"original")
        after = (await api.get("/v1/kv/?recurse")).json()
        assert [(e["Key"], e["Value"]) for e in after] == [(e["Key"], e["Value"]) for e in before]
        r = await api.request("POST", "/v1/kv/keep")
        assert r.status == 405 and set(r.headers["allow"].split(",")) >= {"GET", "PUT", "DELETE"}
