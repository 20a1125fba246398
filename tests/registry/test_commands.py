"""Command encoding is strict and versioned; validate() names Consul's JSON fields."""

from __future__ import annotations

import msgpack
import pytest

from registry.commands import (
    COMMAND_TYPES,
    ACLAuthMethodDelete,
    ACLAuthMethodSet,
    ACLBindingRuleDelete,
    ACLBindingRuleSet,
    ACLPolicySet,
    ACLTokenSet,
    AutopilotConfigSet,
    CAConfigSet,
    CanarySet,
    CARootsSet,
    ConfigEntryBatch,
    ConfigEntryRequest,
    CoordinateBatchUpdate,
    DecodedBatch,
    DeregisterRequest,
    ForwardedBatch,
    IntentionUpsert,
    KVRequest,
    LivenessSet,
    RegisterRequest,
    SessionCreate,
    TxnKVOp,
    TxnOp,
    TxnRequest,
    decode_command,
    encode_command,
)
from registry.errors import CorruptCommandError, ErrorCode, ValidationError
from registry.fsm import RegistryFSM
from registry.records import (
    KIND_CONNECT_PROXY,
    ACLAuthMethod,
    ACLBindingRule,
    ACLLink,
    ACLPolicy,
    ACLTemplatedPolicy,
    ACLToken,
    AutopilotConfig,
    CAConfig,
    Canary,
    CanaryEvent,
    CARoot,
    ConfigEntry,
    Coordinate,
    Intention,
)
from registry.state.kv import kv_list

from .builders import chk, reg, svc

SAMPLES = [
    reg("n1", svc("web", tags=("a",), meta={"m": "1"}), (chk("c", service_id="web"),), now=5.5),
    DeregisterRequest(node="n1", service_id="web"),
    KVRequest(op="lock", key="k", value=b"\x00\xff", flags=3, session="s", now=2.0),
    SessionCreate(id="11111111-1111-1111-1111-111111111111", node="n1", ttl="30s"),
    TxnRequest(ops=(TxnOp(kv=TxnKVOp(verb="set", key="k", value=b"v")),)),
    IntentionUpsert(
        intention=Intention("i", source_name="a", destination_name="b", action="allow")
    ),
    ConfigEntryRequest(
        op="upsert", entry=ConfigEntry("service-router", "web", {"Routes": [{"Match": {}}]})
    ),
    ConfigEntryBatch(
        entries=(ConfigEntry("service-defaults", "web", {"Protocol": "http"}),), index=7
    ),
    CARootsSet(roots=(CARoot("r", root_cert="x", signing_key="k", active=True),), cas=3),
    CAConfigSet(config=CAConfig(cluster_id="c", config={"LeafCertTTL": "72h"}), cas=None),
    ACLTokenSet(
        tokens=(ACLToken("aaaaaaaa-0000-0000-0000-000000000001", "s", policies=(ACLLink("p"),)),)
    ),
    ACLPolicySet(
        policies=(ACLPolicy("p", name="read", rules='key_prefix "" { policy = "read" }'),)
    ),
    LivenessSet(node="n1", status="failed"),
    ACLAuthMethodSet(
        methods=(ACLAuthMethod("k8s", type="jwt", max_token_ttl=60.0, config={"a": ["b"]}),)
    ),
    ACLAuthMethodDelete(names=("k8s",)),
    ACLBindingRuleSet(
        rules=(
            ACLBindingRule(
                "bbbbbbbb-0000-0000-0000-000000000001",
                auth_method="k8s",
                bind_type="templated-policy",
                bind_name="builtin/service",
                bind_vars_name="${value.name}",
            ),
        )
    ),
    ACLBindingRuleDelete(ids=("bbbbbbbb-0000-0000-0000-000000000001",)),
    ACLTokenSet(
        tokens=(
            ACLToken(
                "aaaaaaaa-0000-0000-0000-000000000002",
                "s2",
                templated_policies=(ACLTemplatedPolicy("builtin/dns"),),
                auth_method="k8s",
            ),
        )
    ),
    AutopilotConfigSet(config=AutopilotConfig(last_contact_threshold=0.25), cas=4),
    CoordinateBatchUpdate(updates=(Coordinate("n1", "seg", (0.1,) * 8, 0.2, -0.1, 1e-5),)),
    CanarySet(
        canary=Canary(
            "api",
            "v1",
            "v2",
            (5.0, 100.0),
            last=CanaryEvent(time=2.0, step=0, weight=5.0, event="step", p99_ms=1.5),
            history=(CanaryEvent(time=2.0, step=0, weight=5.0, event="step"),),
        ),
        splitter=ConfigEntry("service-splitter", "api", {"Splits": []}),
        cas=7,
        config_index=3,
        now=2.0,
    ),
    ForwardedBatch(cmds=(encode_command(KVRequest(op="set", key="k", value=b"v")), b"")),
]


@pytest.mark.parametrize("cmd", SAMPLES, ids=lambda c: type(c).__name__)
def test_round_trip(cmd: object) -> None:
    data = encode_command(cmd)  # type: ignore[arg-type]
    assert decode_command(data) == cmd
    assert encode_command(decode_command(data)) == data


def test_every_command_type_has_a_unique_code() -> None:
    assert len(COMMAND_TYPES) == len({c.__name__ for c in COMMAND_TYPES.values()}) == 30


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",  # never-used msgpack byte
        msgpack.packb({"not": "a command"}),
        msgpack.packb([999, 1, {}]),
        msgpack.packb([3, 2, {"op": "set", "key": "k"}]),  # newer version than we know
        msgpack.packb([3, 1, {"op": "set"}]),  # missing required field
        msgpack.packb([3, 1, {"op": "set", "key": 7}]),  # wrong type
        msgpack.packb([3, 1, {"op": "set", "key": "k", "bogus": 1}]),  # unknown field
        msgpack.packb([1, 1, {"node": "n", "service": {"service": "s", "port": "80"}}]),
    ],
)
def test_undecodable_bytes_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptCommandError):
        decode_command(data)


def test_fsm_raises_corrupt_command(log: object) -> None:
    from registry.fsm import RegistryFSM

    with pytest.raises(CorruptCommandError):
        RegistryFSM().apply(1, b"garbage")


@pytest.mark.parametrize(
    ("cmd", "field"),
    [
        (RegisterRequest(node="", address="a"), "Node"),
        (RegisterRequest(node="n"), "Address"),
        (RegisterRequest(node="n", address="a", id="not-a-uuid"), "ID"),
        (reg("n", svc("web", port=70000)), "Service.Port"),
        (reg("n", svc("")), "Service.Service"),
        (
            reg("n", svc("p", kind=KIND_CONNECT_PROXY, port=1)),
            "Service.Proxy.DestinationServiceName",
        ),
        (reg("n", svc("web", meta={"bad key": "v"})), "Service.Meta"),
        (reg("n", checks=(chk("c", node="other"),)), "Checks[0].Node"),
        (reg("n", checks=(chk("c", status="sad"),)), "Checks[0].Status"),
        (KVRequest(op="lock", key="k"), "Session"),
        (KVRequest(op="nope", key="k"), "Op"),
        (SessionCreate(id="x", node="n"), "ID"),
        (
            SessionCreate(id="11111111-1111-1111-1111-111111111111", node="n", behavior="x"),
            "Behavior",
        ),
        (LivenessSet(node="n", status="zombie"), "Status"),
    ],
)
def test_validation_names_the_consul_field(cmd: object, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        cmd.validate()  # type: ignore[attr-defined]
    assert err.value.field == field


def test_fsm_apply_decoded_matches_apply_of_the_bytes_and_refuses_non_commands() -> None:
    cmd = KVRequest(op="set", key="a/b", value=b"v", flags=7, now=5.0)
    by_bytes, by_object = RegistryFSM(), RegistryFSM()
    assert by_bytes.apply(3, encode_command(cmd)) == by_object.apply_decoded(3, cmd)
    assert by_bytes.snapshot() == by_object.snapshot()
    with pytest.raises(CorruptCommandError):
        by_object.apply_decoded(4, {"op": "set"})
    assert by_bytes.snapshot() == by_object.snapshot()


def test_a_forwarded_batch_applies_each_command_on_its_own_at_one_index() -> None:
    """Replayed from the bytes or applied as the leader's decoded batch: the
    same state and results; a failing command fails alone, a nested batch
    is refused, and the writes share the entry's index."""
    cmds = (
        KVRequest(op="set", key="fb/a", value=b"1", now=1.0),
        KVRequest(op="cas", key="fb/a", value=b"lost", cas=999, now=1.0),  # plain false
        KVRequest(op="set", key="", value=b"x", now=1.0),  # invalid: no key
        KVRequest(op="set", key="fb/b", value=b"2", now=1.0),
    )
    encoded = tuple(encode_command(c) for c in cmds)
    nested = encode_command(ForwardedBatch(cmds=encoded[:1]))
    by_bytes, by_object = RegistryFSM(), RegistryFSM()
    data = encode_command(ForwardedBatch(cmds=(*encoded, nested)))
    got = by_bytes.apply(9, data)
    assert got == by_object.apply_decoded(
        9, DecodedBatch((*cmds, ForwardedBatch(cmds=encoded[:1])))
    )
    assert by_bytes.snapshot() == by_object.snapshot()
    results = got.value
    assert [r.ok for r in results] == [True, False, False, True, False]
    assert results[1].error is ErrorCode.CAS_CONFLICT
    assert results[2].error is ErrorCode.INVALID and "Key" in results[2].message
    assert results[4].error is ErrorCode.INVALID
    _, entries = kv_list(by_bytes.store, None, "fb/")
    assert [(e.key, e.value, e.modify_index) for e in entries] == [
        ("fb/a", b"1", 9),
        ("fb/b", b"2", 9),
    ]


def test_a_batch_command_that_does_not_decode_fails_alone() -> None:
    """Bytes in a ForwardedBatch that are no command fail that command (the
    same on every server) instead of raising CorruptCommandError, which
    would stop every server and replay on restart."""
    fsm = RegistryFSM()
    good = encode_command(KVRequest(op="set", key="fb/ok", value=b"1", now=1.0))
    data = encode_command(ForwardedBatch(cmds=(b"\xc1junk", good, b"\x93\x03\x01\xc0")))
    got = fsm.apply(5, data)
    assert got.ok
    assert [(r.ok, r.error) for r in got.value] == [
        (False, ErrorCode.INVALID),
        (True, None),
        (False, ErrorCode.INVALID),
    ]
    assert "does not decode" in got.value[0].message
    _, entries = kv_list(fsm.store, None, "fb/")
    assert [(e.key, e.modify_index) for e in entries] == [("fb/ok", 5)]
