"""A write's time is read once, where it enters an agent or a server."""

from __future__ import annotations

from registry.commands import ACLPolicyDelete, DeregisterRequest, KVRequest, stamped


def test_unset_now_is_stamped_and_a_set_one_is_kept() -> None:
    fresh = stamped(DeregisterRequest(node="n1"), 1700.5)
    assert fresh.now == 1700.5 and fresh.node == "n1"
    kept = stamped(KVRequest(op="set", key="k", now=12.0), 1700.5)
    assert kept.now == 12.0


def test_a_command_without_a_time_is_returned_as_is() -> None:
    cmd = ACLPolicyDelete(ids=("p1",))
    assert stamped(cmd, 1700.5) is cmd


def test_a_kv_write_is_stamped_with_every_field_kept() -> None:
    cmd = KVRequest(op="lock", key="k", value=b"v", flags=7, session="s1", cas=3)
    fresh = stamped(cmd, 1700.5)
    assert fresh == KVRequest(
        op="lock", key="k", value=b"v", flags=7, session="s1", cas=3, now=1700.5
    )
