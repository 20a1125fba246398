"""``RegistryFSM``: the state machine raft/ applies (matches raft.fsm.StateMachine).

Dispatch goes through ``HANDLERS``, a table from command class to handler
(Consul's fsm/commands_oss.go style). Every handler runs inside one
``WriteTx`` at the entry's raft index: a result that is not ok aborts it, so
a failed command changes nothing; an ok result commits it, bumping indexes
and firing watches. Domain errors are results; only undecodable bytes raise
(``CorruptCommandError``), which raft/ treats as fatal. A plain KV write
(set, cas, delete, delete-cas: most entries) skips the ``WriteTx``: it
checks everything before its one change, so ``kv.apply_plain`` makes the
change and bumps and fires what the commit would have.

``apply`` is deterministic: no clock, no randomness, no iteration over
unordered containers that could leak into the state. It is called on the
trio thread, so watch callbacks fire there too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .commands import (
    ACLAuthMethodDelete,
    ACLAuthMethodSet,
    ACLBindingRuleDelete,
    ACLBindingRuleSet,
    ACLBootstrap,
    ACLPolicyDelete,
    ACLPolicySet,
    ACLRoleDelete,
    ACLRoleSet,
    ACLTokenDelete,
    ACLTokenSet,
    AutopilotConfigSet,
    CAConfigSet,
    CanarySet,
    CARootsSet,
    Command,
    ConfigEntryBatch,
    ConfigEntryRequest,
    CoordinateBatchUpdate,
    DecodedBatch,
    DeregisterRequest,
    ForwardedBatch,
    IntentionDelete,
    IntentionsMigrate,
    IntentionUpsert,
    KVRequest,
    LivenessSet,
    PlainKV,
    RegisterRequest,
    SessionCreate,
    SessionDestroy,
    TombstoneReap,
    TxnRequest,
    decode_command,
    decode_plain_kv,
)
from .errors import CorruptCommandError, ErrorCode, ValidationError
from .results import Result, failed
from .state import (
    acl,
    autopilot,
    ca,
    canaries,
    catalog,
    config_entries,
    coordinates,
    intentions,
    kv,
    liveness,
    sessions,
    txn,
)
from .state.frozen import FrozenSnapshot
from .state.store import StateStore, WriteTx

Handler = Callable[[StateStore, WriteTx, Any], Result]


def _kv(store: StateStore, tx: WriteTx, cmd: KVRequest) -> Result:
    op = cmd.op
    if op == "set":
        return kv.kv_set(store, tx, cmd.key, cmd.value, cmd.flags)
    if op == "cas":
        return kv.kv_cas(store, tx, cmd.key, cmd.value, cmd.flags, cmd.cas)
    if op == "delete":
        return kv.kv_delete_key(store, tx, cmd.key)
    if op == "delete-cas":
        return kv.kv_delete_cas(store, tx, cmd.key, cmd.cas)
    if op == "delete-tree":
        return kv.kv_delete_tree(store, tx, cmd.key)
    if op == "lock":
        return kv.kv_lock(store, tx, cmd.key, cmd.value, cmd.flags, cmd.session)
    return kv.kv_unlock(store, tx, cmd.key, cmd.value, cmd.flags, cmd.session)


HANDLERS: dict[type[Command], Handler] = {
    RegisterRequest: catalog.ensure_registration,
    DeregisterRequest: catalog.apply_deregister,
    KVRequest: _kv,
    TombstoneReap: lambda s, tx, c: kv.reap_tombstones(s, tx, c.until_index),
    SessionCreate: sessions.create_session,
    SessionDestroy: lambda s, tx, c: sessions.invalidate_session(s, tx, c.id),
    TxnRequest: lambda s, tx, c: txn.apply_txn(s, tx, c.ops),
    IntentionUpsert: intentions.upsert_intention,
    IntentionDelete: intentions.delete_intention,
    IntentionsMigrate: lambda s, tx, c: intentions.migrate_intentions(s, tx),
    ConfigEntryRequest: config_entries.apply_config_entry,
    ConfigEntryBatch: config_entries.apply_config_batch,
    CARootsSet: ca.set_roots,
    CAConfigSet: ca.set_config,
    ACLTokenSet: acl.set_tokens,
    ACLTokenDelete: lambda s, tx, c: acl.delete_tokens(s, tx, c.accessor_ids),
    ACLPolicySet: acl.set_policies,
    ACLPolicyDelete: lambda s, tx, c: acl.delete_policies(s, tx, c.ids),
    ACLRoleSet: acl.set_roles,
    ACLRoleDelete: lambda s, tx, c: acl.delete_roles(s, tx, c.ids),
    LivenessSet: lambda s, tx, c: liveness.set_liveness(s, tx, c.node, c.status),
    ACLBootstrap: acl.bootstrap,
    ACLAuthMethodSet: acl.set_auth_methods,
    ACLAuthMethodDelete: lambda s, tx, c: acl.delete_auth_methods(s, tx, c.names),
    ACLBindingRuleSet: acl.set_binding_rules,
    ACLBindingRuleDelete: lambda s, tx, c: acl.delete_binding_rules(s, tx, c.ids),
    AutopilotConfigSet: autopilot.set_config,
    CoordinateBatchUpdate: coordinates.batch_update,
    CanarySet: canaries.set_canary,
}


def _decode_inner(data: bytes) -> Command | Result | PlainKV:
    """One command of a ``ForwardedBatch``: bytes that do not decode fail
    that command alone (every server alike) instead of stopping the
    servers, which an undecodable entry does (``CorruptCommandError``).
    A plain KV write comes as its fields (``decode_plain_kv``)."""
    plain = decode_plain_kv(data)
    if plain is not None:
        return plain
    try:
        return decode_command(data)
    except CorruptCommandError as exc:
        return failed(ErrorCode.INVALID, f"a forwarded command does not decode: {exc}")


class RegistryFSM:
    """The registry's replicated state machine; reads go to ``self.store``."""

    def __init__(self, store: StateStore | None = None) -> None:
        self.store = store if store is not None else StateStore()

    def apply(self, index: int, data: bytes) -> Result:
        """Decode and apply one committed command at raft ``index``.

        Returns a ``Result`` (domain errors included). Raises
        ``CorruptCommandError`` if ``data`` is not a command.
        """
        plain = decode_plain_kv(data)  # most entries: a KV write, applied from its fields
        if plain is not None:
            return kv.apply_plain(self.store, index, *plain)
        cmd = decode_command(data)
        if type(cmd) is ForwardedBatch:
            return self._apply_batch(index, tuple(_decode_inner(b) for b in cmd.cmds))
        return self.apply_command(index, cmd)

    def apply_decoded(self, index: int, command: Any) -> Result:
        """raft's ``DecodedStateMachine``: the leader applies the command it
        encoded itself (or a ``DecodedBatch`` of the commands it decoded)
        rather than decoding its log entry again. Anything else is refused
        (the bytes are the truth)."""
        if type(command) is DecodedBatch:
            return self._apply_batch(index, command.commands)
        if not isinstance(command, Command):
            raise CorruptCommandError(f"not a command: {type(command).__name__}")
        return self.apply_command(index, command)

    def _apply_batch(self, index: int, cmds: tuple[Command | Result | PlainKV, ...]) -> Result:
        """A ``ForwardedBatch``'s commands, in order, each in its own write
        at ``index``: ``Result(True, value=(each command's Result, ...))``.
        A batch inside a batch is refused (the leader never builds one); an
        inner command that did not decode arrives as its failed ``Result``,
        a plain KV write as its fields."""
        results = tuple(
            kv.apply_plain(self.store, index, *cmd)
            if isinstance(cmd, tuple)
            else cmd
            if isinstance(cmd, Result)
            else failed(ErrorCode.INVALID, "a forwarded batch cannot hold a batch")
            if type(cmd) is ForwardedBatch
            else self.apply_command(index, cmd)
            for cmd in cmds
        )
        return Result(True, results)

    def apply_command(self, index: int, cmd: Command) -> Result:
        """Apply an already decoded command (tests, the single-node dev path
        and the leader's own proposals)."""
        if type(cmd) is KVRequest and cmd.op in kv.PLAIN_OPS:  # most writes: no WriteTx
            try:
                cmd.validate()
            except ValidationError as exc:
                return failed(ErrorCode.INVALID, str(exc))
            return kv.apply_plain(self.store, index, cmd.op, cmd.key, cmd.value, cmd.flags, cmd.cas)
        try:
            cmd.validate()
        except ValidationError as exc:
            return failed(ErrorCode.INVALID, str(exc))
        handler = HANDLERS.get(type(cmd))
        if handler is None:  # a ForwardedBatch applied as one command
            return failed(ErrorCode.INVALID, f"{type(cmd).__name__} is not applied alone")
        tx = self.store.begin(index, float(getattr(cmd, "now", 0.0)))
        try:
            result = handler(self.store, tx, cmd)
        except BaseException:
            tx.abort()
            raise
        if result.ok:
            tx.commit()
        else:
            tx.abort()
        return result

    def snapshot(self) -> bytes:
        """Every table, deterministically encoded (equal states give equal bytes)."""
        return self.store.snapshot()

    def snapshot_view(self) -> FrozenSnapshot:
        """Freeze the state cheaply now; the result serializes it to the same
        bytes as ``snapshot``, in bounded steps (raft.node runs one step per
        scheduler round, so a large snapshot does not stall the loop)."""
        return self.store.snapshot_view()

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's and wake every blocked reader.

        Raises ``CorruptSnapshotError`` (state unchanged) on bad bytes.
        """
        self.store.restore(data)
