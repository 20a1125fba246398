"""An in-memory network implementing the driver's TransportLike, for
in-process tests of raft.node (the real mTLS transport has its own tests)."""

from __future__ import annotations

from collections.abc import Callable

import trio

from raft.types import Message, MessageType


class LocalNetwork:
    def __init__(self) -> None:
        self.transports: dict[str, LocalTransport] = {}
        self.cut: set[tuple[str, str]] = set()

    def transport(self, node_id: str) -> LocalTransport:
        t = LocalTransport(self, node_id)
        self.transports[node_id] = t
        return t

    def isolate(self, node_id: str) -> None:
        for other in self.transports:
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))

    def heal(self) -> None:
        self.cut.clear()


class LocalTransport:
    def __init__(self, net: LocalNetwork, node_id: str) -> None:
        self.net = net
        self.id = node_id
        self._send, self.incoming = trio.open_memory_channel[Message](100_000)
        self.on_snapshot_done: Callable[[str, bool], None] | None = None
        self.on_unreachable: Callable[[str], None] | None = None
        self.on_peer_lost: Callable[[str], None] | None = None
        self.on_message: Callable[[Message], None] | None = None
        self.peers: dict[str, str] = {}
        self.down = False

    def send(self, msg: Message) -> None:
        dst = self.net.transports.get(msg.dst)
        ok = (
            dst is not None
            and not dst.down
            and not self.down
            and (msg.src, msg.dst) not in self.net.cut
        )
        if ok and dst is not None:
            if dst.on_message is not None:
                dst.on_message(msg)
            else:
                try:
                    dst._send.send_nowait(msg)
                except trio.WouldBlock:
                    ok = False
        if msg.type == MessageType.SNAP and self.on_snapshot_done is not None:
            self.on_snapshot_done(msg.dst, ok)
        elif not ok and self.on_unreachable is not None:
            self.on_unreachable(msg.dst)

    def set_peer(self, peer_id: str, address: str) -> None:
        self.peers[peer_id] = address

    def remove_peer(self, peer_id: str) -> None:
        self.peers.pop(peer_id, None)
