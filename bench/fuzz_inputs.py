"""Strategies and checks for fuzzing the registration surfaces, shared by
the fuzz suite (tests/meshd/test_fuzz_api.py) and bench/fuzz_bench.py.

Definitions are built field by field from either a plausible value or a
hostile one: wrong JSON types, integers past 64 bits, lone surrogates,
strings of tens of kilobytes and nesting hundreds of levels deep. The
checkers assert that whatever an endpoint accepted was stored with the
types Consul's structs would have, and can be encoded for the wire.
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

import msgpack
from hypothesis import strategies as st

F = TypeVar("F", bound=Callable[..., Any])

# The random seed of this run (the fixed-seed passes use derandomize=True).
RANDOM_SEED = int(os.environ.get("MESHD_FUZZ_SEED") or random.randrange(2**32))


def with_seed_note(fn: F) -> F:
    """Name the random seed in any failure, so the run can be repeated
    with ``MESHD_FUZZ_SEED=<seed>``."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            note = f"fuzz random seed {RANDOM_SEED}: rerun with MESHD_FUZZ_SEED={RANDOM_SEED}"
            if note not in getattr(exc, "__notes__", []):
                exc.add_note(note)
            raise

    return wrapper  # type: ignore[return-value]


def _nest(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


HOSTILE_VALUES: list[Any] = [
    2**64,
    2**63,
    -(2**63) - 1,
    10**40,
    -(10**40),
    "\ud800",
    "a\udfffb",
    "x" * 70_000,
    1.5,
    -1,
    0,
    True,
    False,
    None,
    "",
    "false",
    "0",
    "10s",
    [],
    {},
    [1],
    {"a": 1},
    _nest(40),
]
HOSTILE_SCALARS = st.sampled_from(HOSTILE_VALUES)
_LEAF = st.one_of(
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    HOSTILE_SCALARS,
    st.none(),
)
_KEY = st.text(max_size=8) | st.sampled_from(["\ud800", "Config", "Port", "x" * 300])
ANY_JSON = st.recursive(
    _LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEY, inner, max_size=4),
    max_leaves=10,
)
DEEP = st.integers(20, 600).map(_nest)
HOSTILE = ANY_JSON | DEEP


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value most of the time, a hostile one otherwise."""
    return st.one_of(good, good, HOSTILE)


def _clean(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return good


NAMES = st.sampled_from(["web", "api", "db-1", "cache"])
PORTS = st.integers(0, 65535)
DURATIONS = st.sampled_from(["10s", "1m", "500ms"])


def _build(maybe: Callable[[st.SearchStrategy[Any]], st.SearchStrategy[Any]]) -> dict[str, Any]:
    """The definition strategies, each field drawn through ``maybe``."""
    UPSTREAM = st.fixed_dictionaries(
        {"DestinationName": maybe(NAMES), "LocalBindPort": maybe(st.integers(9000, 9010))},
        optional={
            "LocalBindAddress": maybe(st.just("127.0.0.1")),
            "Datacenter": maybe(st.just("dc1")),
            "DestinationType": maybe(st.just("service")),
            "Config": maybe(st.dictionaries(st.sampled_from(["balance", "idle_timeout"]), _LEAF)),
        },
    )
    UPSTREAMS = maybe(st.lists(UPSTREAM, max_size=3))
    PROXY = st.fixed_dictionaries(
        {"DestinationServiceName": maybe(NAMES)},
        optional={
            "DestinationServiceID": maybe(NAMES),
            "LocalServicePort": maybe(PORTS),
            "Upstreams": UPSTREAMS,
            "Config": maybe(st.dictionaries(st.text(max_size=6), ANY_JSON, max_size=3)),
        },
    )
    SIDECAR = st.fixed_dictionaries(
        {},
        optional={
            "Port": maybe(st.integers(21000, 21010)),
            "Name": maybe(NAMES),
            "Proxy": maybe(st.fixed_dictionaries({}, optional={"Upstreams": UPSTREAMS})),
            "ID": maybe(st.just("side-1")),
            "Tags": maybe(st.lists(st.text(max_size=5), max_size=2)),
        },
    )
    CONNECT = st.one_of(
        st.fixed_dictionaries({"SidecarService": maybe(SIDECAR)}),
        st.fixed_dictionaries({"Native": maybe(st.booleans())}),
    )
    CHECK = st.fixed_dictionaries(
        {"Name": maybe(st.sampled_from(["alive", "ready"]))},
        optional={
            "CheckID": maybe(st.sampled_from(["c1", "c2"])),
            "TTL": maybe(DURATIONS),
            "TCP": maybe(st.just("127.0.0.1:1")),
            "Interval": maybe(DURATIONS),
            "Timeout": maybe(DURATIONS),
            "Notes": maybe(st.text(max_size=20)),
            "Status": maybe(st.sampled_from(["passing", "warning", "critical"])),
            "Header": maybe(st.dictionaries(st.just("X-A"), st.lists(st.text(max_size=5)))),
            "TLSSkipVerify": maybe(st.booleans()),
            "SuccessBeforePassing": maybe(st.integers(0, 5)),
            "Definition": maybe(st.dictionaries(st.text(max_size=5), ANY_JSON, max_size=2)),
        },
    )
    SERVICE = st.fixed_dictionaries(
        {"Name": maybe(NAMES)},
        optional={
            "ID": maybe(st.sampled_from(["s1", "s2", "s3"])),
            "Port": maybe(PORTS),
            "Tags": maybe(st.lists(st.text(max_size=8), max_size=3)),
            "Address": maybe(st.just("127.0.0.1")),
            "Meta": maybe(
                st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), st.text(max_size=8))
            ),
            "Kind": maybe(st.sampled_from(["", "connect-proxy", "typical"])),
            "Proxy": maybe(PROXY),
            "Connect": maybe(CONNECT),
            "Weights": maybe(
                st.fixed_dictionaries(
                    {}, optional={"Passing": maybe(PORTS), "Warning": maybe(PORTS)}
                )
            ),
            "EnableTagOverride": maybe(st.booleans()),
            "TaggedAddresses": maybe(
                st.dictionaries(
                    st.sampled_from(["lan", "wan"]),
                    st.fixed_dictionaries({"Address": st.just("10.0.0.1"), "Port": maybe(PORTS)}),
                )
            ),
            "Check": maybe(CHECK),
            "Checks": maybe(st.lists(CHECK, max_size=2)),
        },
    )
    CATALOG_SERVICE = st.fixed_dictionaries(
        {"Service": maybe(NAMES)},
        optional={
            "ID": maybe(st.sampled_from(["s1", "s2"])),
            "Port": maybe(PORTS),
            "Tags": maybe(st.lists(st.text(max_size=5))),
            "Meta": maybe(st.dictionaries(st.just("v"), st.text(max_size=5))),
            "EnableTagOverride": maybe(st.booleans()),
        },
    )
    CATALOG = st.fixed_dictionaries(
        {"Node": maybe(st.sampled_from(["ext1", "ext2"])), "Address": maybe(st.just("10.0.0.9"))},
        optional={
            "Datacenter": maybe(st.just("dc1")),
            "SkipNodeUpdate": maybe(st.booleans()),
            "NodeMeta": maybe(st.dictionaries(st.sampled_from(["rack"]), st.text(max_size=5))),
            "TaggedAddresses": maybe(st.dictionaries(st.just("lan"), st.just("10.0.0.9"))),
            "Service": maybe(CATALOG_SERVICE),
            "Checks": maybe(st.lists(CHECK, max_size=2)),
        },
    )

    return {
        "PROXY": PROXY,
        "CHECK": CHECK,
        "SERVICE": SERVICE,
        "CATALOG": CATALOG,
        "CATALOG_SERVICE": CATALOG_SERVICE,
    }


_HOSTILE = _build(maybe)
_CLEAN = _build(_clean)
# Field names a mutation may add anywhere (Consul's, nested ones included).
_KNOWN_KEYS = st.sampled_from(
    [
        *("ID", "Name", "Tags", "Address", "Port", "Meta", "Kind", "Proxy", "Connect"),
        *("Weights", "EnableTagOverride", "TaggedAddresses", "Check", "Checks", "Token"),
        *("SidecarService", "Native", "Upstreams", "DestinationName", "LocalBindPort"),
        *("LocalBindAddress", "DestinationServiceName", "LocalServicePort", "Config"),
        *("CheckID", "TTL", "HTTP", "TCP", "Interval", "Status", "ServiceID", "Header"),
        *("Service", "Node", "Datacenter", "NodeMeta", "SkipNodeUpdate", "Passing"),
    ]
)


def _containers(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if len(path) > 6:  # Consul's shapes are shallow; deeper is already hostile
        return out
    if isinstance(obj, dict):
        out.append(path)
        for k, v in obj.items():
            out += _containers(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _containers(v, (*path, i))
    return out


@st.composite
def one_fault(draw: st.DrawFn, base: st.SearchStrategy[Any]) -> Any:
    """A well-formed definition with exactly one hostile value at a random
    place (an existing field or a known field name added), so that every
    nested field gets its turn, however deep."""
    body = copy.deepcopy(draw(base))  # drawn values may be shared: never mutate them
    path = draw(st.sampled_from(_containers(body)))
    target = body
    for step in path:
        target = target[step]
    keys = list(target)
    use_existing = bool(keys) and draw(st.booleans())
    key = draw(st.sampled_from(keys)) if use_existing else draw(_KNOWN_KEYS)
    target[key] = copy.deepcopy(draw(HOSTILE))
    return body


# A third of the definitions are well formed field by field (so accepted
# registrations and their read-back get exercised), a third carry hostile
# values anywhere, a third exactly one hostile value somewhere.
PROXY = st.one_of(_CLEAN["PROXY"], _HOSTILE["PROXY"], one_fault(_CLEAN["PROXY"]))
CHECK = st.one_of(_CLEAN["CHECK"], _HOSTILE["CHECK"], one_fault(_CLEAN["CHECK"]))
SERVICE = st.one_of(_CLEAN["SERVICE"], _HOSTILE["SERVICE"], one_fault(_CLEAN["SERVICE"]))
CATALOG = st.one_of(_CLEAN["CATALOG"], _HOSTILE["CATALOG"], one_fault(_CLEAN["CATALOG"]))
CATALOG_SERVICE = st.one_of(
    _CLEAN["CATALOG_SERVICE"],
    _HOSTILE["CATALOG_SERVICE"],
    one_fault(_CLEAN["CATALOG_SERVICE"]),
)


# ------------------------------------------------------------- checkers


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _str_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def encodable(value: Any) -> None:
    """Raise unless ``value`` packs with msgpack (what sync and persistence do)."""
    msgpack.packb(value, use_bin_type=True)


def check_service_json(s: Mapping[str, Any]) -> None:
    """An AgentService/NodeService as stored: Consul's field types and sizes."""
    assert isinstance(s["ID"], str) and 0 < len(s["ID"]) <= 600, s["ID"][:50]
    assert isinstance(s["Service"], str) and 0 < len(s["Service"]) <= 256
    assert _is_int(s["Port"], 0, 65535), s["Port"]
    assert isinstance(s["Address"], str) and len(s["Address"]) <= 256
    assert isinstance(s["EnableTagOverride"], bool)
    assert _str_list(s.get("Tags") or [])
    assert _str_map(s.get("Meta") or {})
    w = s["Weights"]
    assert _is_int(w["Passing"], 1, 2**31) and _is_int(w["Warning"], 0, 2**31)
    assert isinstance(s.get("TaggedAddresses") or {}, Mapping)
    kind = s.get("Kind", "")
    assert kind in ("", "connect-proxy", "mesh-gateway", "ingress-gateway")
    if kind == "connect-proxy":
        proxy = s["Proxy"]
        assert isinstance(proxy, Mapping) and isinstance(proxy["DestinationServiceName"], str)
        ups = proxy.get("Upstreams") or []
        assert isinstance(ups, list)
        for up in ups:
            assert isinstance(up, Mapping) and isinstance(up["DestinationName"], str)
            assert _is_int(up["LocalBindPort"], 1, 65535)
    connect = s.get("Connect")
    if connect is not None:
        assert isinstance(connect, Mapping) and "SidecarService" not in connect
        assert isinstance(connect.get("Native", False), bool)
    encodable(dict(s))


def check_check_json(c: Mapping[str, Any]) -> None:
    """A HealthCheck as stored."""
    for key in ("CheckID", "Name", "Status", "Notes", "ServiceID", "ServiceName", "Output"):
        assert isinstance(c.get(key, ""), str), key
    assert c["Status"] in ("passing", "warning", "critical", "maintenance")
    assert _str_list(c.get("ServiceTags") or [])
    assert isinstance(c.get("Definition") or {}, Mapping)
    encodable(dict(c))


# ------------------------------------------------- every field, every value

FULL_SERVICE: dict[str, Any] = {
    "ID": "full",
    "Name": "full",
    "Tags": ["a"],
    "Address": "127.0.0.1",
    "Port": 8080,
    "Meta": {"k": "v"},
    "Weights": {"Passing": 2, "Warning": 1},
    "EnableTagOverride": False,
    "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 8080}},
    "Check": {"CheckID": "full-ttl", "Name": "ttl", "TTL": "30s", "Notes": "n"},
    "Checks": [
        {
            "CheckID": "full-tcp",
            "Name": "tcp",
            "TCP": "127.0.0.1:1",
            "Interval": "10s",
            "Timeout": "1s",
            "Status": "passing",
            "Header": {"X": ["y"]},
        }
    ],
    "Connect": {
        "SidecarService": {
            "Port": 21100,
            "Tags": ["s"],
            "Proxy": {
                "LocalServicePort": 8080,
                "Config": {"idle_timeout": 5},
                "Upstreams": [
                    {
                        "DestinationName": "api",
                        "LocalBindPort": 9300,
                        "LocalBindAddress": "127.0.0.1",
                        "Config": {"balance": "least_conn"},
                    }
                ],
            },
        }
    },
}
FULL_PROXY: dict[str, Any] = {
    "ID": "full-proxy",
    "Name": "full-proxy",
    "Kind": "connect-proxy",
    "Port": 21101,
    "Proxy": {
        "DestinationServiceName": "full",
        "DestinationServiceID": "full",
        "LocalServiceAddress": "127.0.0.1",
        "LocalServicePort": 8080,
        "Upstreams": [{"DestinationName": "db", "LocalBindPort": 9301}],
    },
    "Connect": {"Native": False},
}
FULL_CATALOG: dict[str, Any] = {
    "Node": "full-node",
    "Address": "10.0.0.7",
    "Datacenter": "dc1",
    "NodeMeta": {"rack": "r1"},
    "TaggedAddresses": {"lan": "10.0.0.7"},
    "Service": {"Service": "full", "Port": 1, "Tags": ["t"], "Meta": {"v": "1"}},
    "Checks": [{"CheckID": "n1", "Name": "n1", "Status": "passing", "Definition": {"A": "b"}}],
}


def field_paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path in ``obj`` (inner containers included)."""
    out: list[tuple[Any, ...]] = []
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    )
    for k, v in items:
        out.append((*path, k))
        out += field_paths(v, (*path, k))
    return out


def replaced(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A deep copy of ``obj`` with the value at ``path`` replaced."""
    out = copy.deepcopy(obj)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = copy.deepcopy(value)
    return out
