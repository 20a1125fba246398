"""The semaphore behind ``meshd lock -n N`` (Consul's api.Semaphore).

Each contender holds its own key ``PREFIX/<session>`` with its session; the
key ``PREFIX/.lock`` holds ``{"Limit": N, "Holders": {session: true}}``,
changed only by check-and-set. A contender joins the holders when fewer
than N live sessions are listed (holders whose contender key is gone or
unlocked are pruned), and waits with blocking queries on the prefix
otherwise.
https://developer.hashicorp.com/consul/tutorials/developer-configuration/distributed-semaphore
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from typing import Any

from .client import AgentClient, quote_path
from .errors import AgentUnreachable, CLIError, UnexpectedResponse

SEMAPHORE_FLAG = 0xE0F69A2BAA414DE0  # Consul's api.SemaphoreFlagValue
LOCK_KEY = ".lock"
WAIT = 60.0


def _decode(entry: dict[str, Any]) -> dict[str, Any]:
    raw = base64.b64decode(entry.get("Value") or "") if entry.get("Value") else b""
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError:
        raise CLIError(f"Lock acquisition failed: {entry.get('Key')} is not a semaphore") from None
    if not isinstance(doc, dict):
        raise CLIError(f"Lock acquisition failed: {entry.get('Key')} is not a semaphore")
    return doc


class Semaphore:
    """Up to ``limit`` sessions hold ``prefix`` at once."""

    def __init__(self, client: AgentClient, prefix: str, session: str, limit: int) -> None:
        self.client = client
        self.prefix = prefix.strip("/")
        self.session = session
        self.limit = limit
        self.lock_path = f"/v1/kv/{quote_path(self.prefix)}/{LOCK_KEY}"
        self.contender_path = f"/v1/kv/{quote_path(self.prefix)}/{session}"

    def _state(self, index: int, wait: float) -> tuple[int, dict[str, Any] | None, set[str]]:
        """The prefix's index, its .lock entry and the sessions holding contender keys."""
        params: dict[str, Any] = {"recurse": True}
        if index:
            params.update(index=index, wait=f"{wait:.3f}s")
        resp = self.client.request(
            "GET", f"/v1/kv/{quote_path(self.prefix)}/", params=params, allow=(404,)
        )
        entries = resp.json() if resp.status == 200 else []
        lock = next((e for e in entries if e["Key"] == f"{self.prefix}/{LOCK_KEY}"), None)
        live = {
            e["Session"]
            for e in entries
            if e.get("Session") and e["Key"] == f"{self.prefix}/{e['Session']}"
        }
        return resp.index, lock, live

    def _holders(self, lock: dict[str, Any] | None, live: set[str]) -> set[str]:
        if lock is None:
            return set()
        doc = _decode(lock)
        limit = doc.get("Limit")
        if limit != self.limit:
            conflict = f"semaphore limit conflict (lock: {limit}, local: {self.limit})"
            raise CLIError(f"Lock acquisition failed: {conflict}")
        return {h for h in (doc.get("Holders") or {}) if h in live}

    def _write(self, lock: dict[str, Any] | None, holders: set[str]) -> bool:
        value = json.dumps({"Limit": self.limit, "Holders": dict.fromkeys(sorted(holders), True)})
        cas = lock["ModifyIndex"] if lock is not None else 0
        resp = self.client.request(
            "PUT",
            self.lock_path,
            params={"cas": cas, "flags": SEMAPHORE_FLAG},
            body=value.encode(),
        )
        return resp.json() is True

    def acquire(self, timeout: float) -> bool:
        """Join the holders, waiting for a free slot; False after ``timeout`` (0: never).

        A contender that gives up (timeout or error) removes its key."""
        held = False
        try:
            held = self._acquire(timeout)
        finally:
            if not held:
                with contextlib.suppress(AgentUnreachable, UnexpectedResponse):
                    self.client.request("DELETE", self.contender_path)
        return held

    def _acquire(self, timeout: float) -> bool:
        made = self.client.request(
            "PUT",
            self.contender_path,
            params={"acquire": self.session, "flags": SEMAPHORE_FLAG},
            body=b"",
        ).json()
        if made is not True:
            raise CLIError("Lock acquisition failed: failed to make contender entry")
        deadline = time.monotonic() + timeout if timeout else None
        index = 0
        while True:
            wait = WAIT
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                wait = min(wait, max(left, 0.01))
            index, lock, live = self._state(index, wait)
            holders = self._holders(lock, live)
            if self.session in holders:
                return True
            if len(holders) < self.limit:
                if self._write(lock, holders | {self.session}):
                    return True
                index = 0  # someone else changed it first: look again at once

    def release(self) -> None:
        """Leave the holders and remove our contender key (the session goes after)."""
        try:
            for _ in range(10):
                _index, lock, live = self._state(0, 0)
                if lock is None:
                    break
                holders = self._holders(lock, live | {self.session}) - {self.session}
                if self._write(lock, holders):
                    break
            self.client.request("DELETE", self.contender_path)
            # Consul's Semaphore.Destroy: the last one out removes the .lock key.
            _index, lock, live = self._state(0, 0)
            if lock is not None and not live and not self._holders(lock, live):
                self.client.request("DELETE", self.lock_path, params={"cas": lock["ModifyIndex"]})
        except (AgentUnreachable, UnexpectedResponse) as exc:
            raise CLIError(f"Lock release failed: {exc.message}") from None
