"""Hypothesis strategies: random command logs over a small universe of names."""

from __future__ import annotations

from hypothesis import strategies as st

from registry.commands import (
    Command,
    ConfigEntryRequest,
    DeregisterRequest,
    IntentionDelete,
    IntentionUpsert,
    KVRequest,
    LivenessSet,
    RegisterRequest,
    SessionCreate,
    SessionDestroy,
    TombstoneReap,
    TxnKVOp,
    TxnOp,
    TxnRequest,
)
from registry.records import ConfigEntry, HealthCheck, Intention, ServiceInstance

NODES = ("n0", "n1", "n2")
SERVICES = ("web", "db", "api")
SESSIONS = tuple(f"0000000{i}-0000-0000-0000-000000000000" for i in range(3))
KEYS = ("a", "a/b", "a/c", "b/x", "lock")
STATUSES = ("passing", "warning", "critical")

nodes = st.sampled_from(NODES)
keys = st.sampled_from(KEYS)
sessions = st.sampled_from(SESSIONS)
values = st.binary(max_size=4)
small_index = st.integers(min_value=0, max_value=40)


@st.composite
def registers(draw: st.DrawFn) -> RegisterRequest:
    node = draw(nodes)
    service = None
    checks = [HealthCheck("serfHealth", name="Serf", status=draw(st.sampled_from(STATUSES)))]
    if draw(st.booleans()):
        name = draw(st.sampled_from(SERVICES))
        service = ServiceInstance(
            service=name,
            port=draw(st.integers(min_value=1, max_value=3)),
            tags=tuple(draw(st.lists(st.sampled_from(("a", "b")), max_size=2, unique=True))),
        )
        if draw(st.booleans()):
            checks.append(
                HealthCheck(
                    f"{name}-check", status=draw(st.sampled_from(STATUSES)), service_id=name
                )
            )
    meta = draw(
        st.dictionaries(st.sampled_from(("rack", "env")), st.sampled_from(("x", "y")), max_size=2)
    )
    return RegisterRequest(
        node=node, address="10.0.0.1", node_meta=meta, service=service, checks=tuple(checks)
    )


deregisters = st.builds(
    lambda node, which, name: DeregisterRequest(
        node=node,
        service_id=name if which == 1 else "",
        check_id=("serfHealth" if which == 2 else ""),
    ),
    nodes,
    st.integers(min_value=0, max_value=2),
    st.sampled_from(SERVICES),
)

kv_requests = st.builds(
    lambda op, key, value, session, cas: KVRequest(
        op=op, key=key, value=value, session=session, cas=cas
    ),
    st.sampled_from(
        ("set", "cas", "delete", "delete-cas", "delete-tree", "lock", "lock", "unlock")
    ),
    keys,
    values,
    sessions,
    small_index,
)

session_creates = st.builds(
    lambda sid, node, behavior, delay, with_check: SessionCreate(
        id=sid,
        node=node,
        behavior=behavior,
        lock_delay=delay,
        node_checks=("serfHealth",) if with_check else (),
    ),
    sessions,
    nodes,
    st.sampled_from(("release", "delete")),
    st.sampled_from((0.0, 5.0, 15.0)),
    st.booleans(),
)

txns = st.builds(
    lambda ops: TxnRequest(ops=tuple(ops)),
    st.lists(
        st.builds(
            lambda verb, key, value, index, session: TxnOp(
                kv=TxnKVOp(verb=verb, key=key, value=value, index=index, session=session)
            ),
            st.sampled_from(
                ("set", "cas", "get", "delete", "check-index", "lock", "check-not-exists")
            ),
            keys,
            values,
            small_index,
            sessions,
        ),
        min_size=1,
        max_size=4,
    ),
)

intentions = st.one_of(
    st.builds(
        lambda i, src, dst, action: IntentionUpsert(
            intention=Intention(f"i{i}", source_name=src, destination_name=dst, action=action)
        ),
        st.integers(min_value=0, max_value=2),
        st.sampled_from(("web", "*")),
        st.sampled_from(("db", "*")),
        st.sampled_from(("allow", "deny")),
    ),
    st.builds(lambda i: IntentionDelete(id=f"i{i}"), st.integers(min_value=0, max_value=2)),
)

config_entries = st.builds(
    lambda op, name, proto, cas: ConfigEntryRequest(
        op=op, entry=ConfigEntry("service-defaults", name, {"Protocol": proto}), cas=cas
    ),
    st.sampled_from(("upsert", "upsert-cas", "delete", "delete-cas")),
    st.sampled_from(SERVICES),
    st.sampled_from(("http", "tcp")),
    small_index,
)

commands: st.SearchStrategy[Command] = st.one_of(
    registers(),
    deregisters,
    kv_requests,
    kv_requests,
    session_creates,
    st.builds(lambda s: SessionDestroy(id=s), sessions),
    txns,
    intentions,
    config_entries,
    st.builds(
        lambda n, s: LivenessSet(node=n, status=s), nodes, st.sampled_from(("alive", "failed"))
    ),
    st.builds(lambda i: TombstoneReap(until_index=i), small_index),
)

locking: st.SearchStrategy[Command] = st.one_of(
    kv_requests.filter(lambda c: c.op in ("lock", "unlock")),
    session_creates,
    st.builds(lambda s: SessionDestroy(id=s), sessions),
    st.builds(
        lambda n: RegisterRequest(
            node=n, address="10.0.0.1", checks=(HealthCheck("serfHealth", status="critical"),)
        ),
        nodes,
    ),
)

# Every log starts by registering each node with a passing serfHealth check and
# creating every session, so locks are taken; then (command, clock advance) pairs.
PREAMBLE: list[tuple[Command, float]] = [
    (
        RegisterRequest(
            node=n, address="10.0.0.1", checks=(HealthCheck("serfHealth", status="passing"),)
        ),
        0.0,
    )
    for n in NODES
] + [
    (
        SessionCreate(
            id=sid, node=NODES[i], behavior=("release", "delete")[i % 2], lock_delay=5.0 * i
        ),
        0.0,
    )
    for i, sid in enumerate(SESSIONS)
]
timed_commands = st.tuples(st.one_of(commands, locking), st.sampled_from((0.0, 1.0, 4.0, 10.0)))
logs = st.lists(timed_commands, min_size=1, max_size=40).map(lambda cmds: PREAMBLE + cmds)
