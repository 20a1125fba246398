"""registry/kv_codec.py: a KV write's own encoder and decoder give exactly
what the generic map-form converters give, and leave anything unusual to them."""

from __future__ import annotations

import dataclasses
import sys

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry import kv_codec
from registry.codec import from_obj, pack, to_obj
from registry.commands import (
    MAX_KV_KEY,
    MAX_KV_VALUE,
    KVRequest,
    decode_command,
    encode_command,
)
from registry.errors import CorruptCommandError, ValidationError
from registry.kv_codec import kv_body, kv_from_body

from .strategies import kv_requests

kv_full = st.builds(
    lambda cmd, flags, now: KVRequest(
        op=cmd.op,
        key=cmd.key,
        value=cmd.value,
        flags=flags,
        session=cmd.session,
        cas=cmd.cas,
        now=now,
    ),
    kv_requests,
    st.sampled_from((0, 1, 42, 2**64 - 1)),
    st.sampled_from((0.0, 1.5, 1.7e9)),
)


@settings(max_examples=60, deadline=None)
@given(kv_full)
def test_same_bytes_and_object_as_the_generic_converters(cmd: KVRequest) -> None:
    generic = pack([KVRequest.TYPE, KVRequest.VERSION, to_obj(cmd, KVRequest)])
    assert encode_command(cmd) == generic
    assert kv_body(cmd) == to_obj(cmd, KVRequest)
    body = msgpack.unpackb(generic, raw=False)[2]
    fast = kv_from_body(body, KVRequest)
    assert fast == from_obj(body, KVRequest) == cmd
    assert decode_command(generic) == cmd


def test_decoded_strings_are_interned_and_an_int_time_is_a_float() -> None:
    body = {"op": "set", "key": "".join(["a/", "b"]), "now": 5}
    cmd = kv_from_body(body, KVRequest)
    assert cmd is not None and cmd.key is sys.intern("a/b") and cmd.op is sys.intern("set")
    assert type(cmd.now) is float and cmd.now == 5.0


@pytest.mark.parametrize(
    "body",
    [
        {"op": "set"},  # missing key
        {"op": "set", "key": 7},
        {"op": "set", "key": "k", "bogus": 1},
        {"op": "set", "key": "k", "value": "text"},
        {"op": "set", "key": "k", "flags": True},
        {"op": "set", "key": "k", "cas": 1.0},
        {"op": "set", "key": "k", "now": "1"},
        {"op": "set", "key": "k", "session": None},
        ["set", "k"],
    ],
)
def test_anything_unusual_is_left_to_the_generic_decoder(body: object) -> None:
    assert kv_from_body(body, KVRequest) is None
    with pytest.raises(CorruptCommandError, match="KVRequest"):
        decode_command(msgpack.packb([KVRequest.TYPE, 1, body], use_bin_type=True))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"key": "k" * MAX_KV_KEY}, None),
        ({"key": "k" * (MAX_KV_KEY + 1)}, "Key"),
        ({"key": "é" * (MAX_KV_KEY // 2)}, None),  # 2 bytes each: at the limit
        ({"key": "é" * (MAX_KV_KEY // 2 + 1)}, "Key"),
        ({"key": "\ud800"}, "Key"),  # not encodable as UTF-8
        ({"key": ""}, "Key"),
        ({"key": "", "op": "delete-tree"}, None),
        ({"value": b"v" * (MAX_KV_VALUE + 1)}, "Value"),
        ({"flags": 2**64}, "Flags"),
        ({"flags": -1}, "Flags"),
        ({"cas": 2**64, "op": "cas"}, "Cas"),
        ({"op": "lock"}, "Session"),
        ({"op": "lock", "session": "s1"}, None),
        ({"op": "bogus"}, "Op"),
    ],
)
def test_a_kv_write_is_validated_as_before_on_either_path(
    fields: dict[str, object], field: str | None
) -> None:
    args: dict[str, object] = {"op": "set", "key": "k", **fields}
    cmd = KVRequest(**args)  # type: ignore[arg-type]
    if field is None:
        cmd.validate()
    else:
        with pytest.raises(ValidationError) as err:
            cmd.validate()
        assert err.value.field == field


def test_a_key_that_is_not_text_never_takes_the_shortcut() -> None:
    # bytes has isascii() too: such a key must meet the full checks, which
    # refuse it, not reach the log as an entry no server can decode.
    with pytest.raises((ValidationError, AttributeError)):
        KVRequest(op="set", key=b"k").validate()  # type: ignore[arg-type]


def test_a_big_result_does_not_keep_the_threads_packer() -> None:
    from registry import codec

    assert msgpack.unpackb(pack(b"x" * (codec._PACKER_KEEP + 1))) == b"x" * (codec._PACKER_KEEP + 1)
    assert not hasattr(codec._local, "packer")
    assert msgpack.unpackb(pack([1, "a"])) == [1, "a"]
    assert hasattr(codec._local, "packer")


def test_the_fast_paths_know_every_field_of_a_kv_write() -> None:
    # kv_body, kv_from_body and stamped() name KVRequest's fields one by one:
    # a new field must be added there too (this fails until it is).
    names = tuple(f.name for f in dataclasses.fields(KVRequest))
    assert names == kv_codec._ORDER and set(names) == kv_codec._FIELDS
    assert not hasattr(KVRequest, "__post_init__")  # new_kv does not call __init__
    full = KVRequest(op="lock", key="k", value=b"v", flags=1, session="s", cas=2, now=3.0)
    assert all(getattr(full, f.name) != f.default for f in dataclasses.fields(KVRequest))
    assert kv_from_body(kv_body(full), KVRequest) == full
    made = kv_codec.new_kv(KVRequest, "lock", "k", b"v", 1, "s", 2, 3.0)
    assert made == full and hash(made) == hash(full) and repr(made) == repr(full)
