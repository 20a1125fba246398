"""A tiny KV state machine for driver tests: msgpack commands put/cas/incr."""

from __future__ import annotations

from typing import Any

import msgpack


class KVFSM:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.applied: list[int] = []

    def apply(self, index: int, data: bytes) -> Any:
        cmd = msgpack.unpackb(data)
        self.applied.append(index)
        op, key = cmd["op"], cmd["key"]
        if op == "put":
            self.data[key] = cmd["value"]
            return True
        if op == "cas":
            if self.data.get(key) != cmd["expected"]:
                return False
            self.data[key] = cmd["value"]
            return True
        if op == "incr":
            self.data[key] = self.data.get(key, 0) + 1
            return self.data[key]
        raise ValueError(f"unknown op {op}")

    def snapshot(self) -> bytes:
        return msgpack.packb(self.data)  # type: ignore[no-any-return]

    def restore(self, data: bytes) -> None:
        self.data = msgpack.unpackb(data)


def put(key: str, value: Any) -> bytes:
    return msgpack.packb({"op": "put", "key": key, "value": value})  # type: ignore[no-any-return]


def incr(key: str) -> bytes:
    return msgpack.packb({"op": "incr", "key": key})  # type: ignore[no-any-return]
