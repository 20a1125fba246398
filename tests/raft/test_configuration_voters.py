"""``Configuration.voters()`` is computed once per configuration and stays
right across membership changes (a cached set must never outlive its servers)."""

from __future__ import annotations

from raft.codec import decode_configuration, encode_configuration
from raft.types import Configuration, Server, Suffrage


def test_voters_cached_and_follow_membership_changes() -> None:
    conf = Configuration((Server("a", "h:1"), Server("b", "h:2", Suffrage.NONVOTER)))
    first = conf.voters()
    assert first == {"a"}
    assert conf.voters() is first  # the same set: not rebuilt per call
    grown = conf.with_server(Server("b", "h:2"))
    assert grown.voters() == {"a", "b"}
    assert conf.voters() == {"a"}  # the old configuration is unchanged
    assert grown.without("a").voters() == {"b"}
    # The cache takes no part in equality, hashing or the encoding.
    assert grown == Configuration((Server("a", "h:1"), Server("b", "h:2")))
    assert hash(grown) == hash(Configuration(grown.servers))
    decoded = decode_configuration(encode_configuration(grown))
    assert decoded == grown and decoded.voters() == {"a", "b"}
