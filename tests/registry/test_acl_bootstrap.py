"""ACLBootstrap: one management token, then refusals until the reset index is given."""

from __future__ import annotations

import pytest

from registry import queries
from registry.commands import (
    ACLBootstrap,
    ACLPolicySet,
    ACLTokenSet,
    decode_command,
    encode_command,
)
from registry.errors import ErrorCode, ValidationError
from registry.fsm import RegistryFSM
from registry.records import ACLLink, ACLPolicy, ACLToken
from registry.state.acl import BOOTSTRAP_INDEX, GLOBAL_MANAGEMENT_POLICY_ID, acl_bootstrap_state

from .builders import Log

A1 = "aaaaaaaa-0000-0000-0000-000000000001"
A2 = "aaaaaaaa-0000-0000-0000-000000000002"
A3 = "aaaaaaaa-0000-0000-0000-000000000003"


def _token(accessor: str, secret: str) -> ACLToken:
    return ACLToken(accessor, secret, "Bootstrap", policies=(ACLLink(GLOBAL_MANAGEMENT_POLICY_ID),))


@pytest.fixture
def gm_log(log: Log) -> Log:
    log.ok(
        ACLPolicySet(policies=(ACLPolicy(GLOBAL_MANAGEMENT_POLICY_ID, name="global-management"),))
    )
    return log


def test_first_bootstrap_creates_the_token_and_records_its_index(gm_log: Log) -> None:
    assert acl_bootstrap_state(gm_log.store, None)[1] == (True, 0)
    gm_log.ok(ACLBootstrap(token=_token(A1, "s1")))
    _, token = queries.acl_token_by_secret(gm_log.store, None, "s1")
    assert token is not None and token.accessor_id == A1
    assert token.policies == (ACLLink(GLOBAL_MANAGEMENT_POLICY_ID, "global-management"),)
    assert gm_log.store.indexes[BOOTSTRAP_INDEX] == gm_log.index == 2
    assert acl_bootstrap_state(gm_log.store, None)[1] == (False, 2)


def test_second_bootstrap_is_refused_with_the_reset_index(gm_log: Log) -> None:
    gm_log.ok(ACLBootstrap(token=_token(A1, "s1")))
    result = gm_log.apply(ACLBootstrap(token=_token(A2, "s2")))
    assert (result.error, result.message) == (
        ErrorCode.CONFLICT,
        "ACL bootstrap no longer allowed (reset index: 2)",
    )
    assert queries.acl_token_get(gm_log.store, None, A2)[1] is None


def test_wrong_reset_index_is_refused_and_the_right_one_rebootstraps(gm_log: Log) -> None:
    gm_log.ok(ACLBootstrap(token=_token(A1, "s1")))
    wrong = gm_log.apply(ACLBootstrap(token=_token(A2, "s2"), reset_index=7))
    assert wrong.error is ErrorCode.INVALID
    assert wrong.message == "Invalid bootstrap reset index (specified 7, reset index: 2)"
    gm_log.ok(ACLBootstrap(token=_token(A2, "s2"), reset_index=2))
    assert gm_log.store.indexes[BOOTSTRAP_INDEX] == 4
    assert queries.acl_token_get(gm_log.store, None, A2)[1] is not None
    # The old reset index is spent.
    again = gm_log.apply(ACLBootstrap(token=_token(A3, "s3"), reset_index=2))
    assert again.error is ErrorCode.INVALID


def test_failed_token_write_does_not_consume_the_bootstrap(log: Log) -> None:
    # No global-management policy yet: the link is dangling, so nothing changes.
    result = log.apply(ACLBootstrap(token=_token(A1, "s1")))
    assert result.error is ErrorCode.NOT_FOUND
    assert BOOTSTRAP_INDEX not in log.store.indexes


def test_secret_in_use_is_refused(gm_log: Log) -> None:
    gm_log.ok(ACLTokenSet(tokens=(ACLToken(A3, "taken"),)))
    result = gm_log.apply(ACLBootstrap(token=_token(A1, "taken")))
    assert result.error is ErrorCode.CONFLICT
    assert acl_bootstrap_state(gm_log.store, None)[1] == (True, 0)


def test_bootstrap_state_survives_snapshot_restore(gm_log: Log) -> None:
    gm_log.ok(ACLBootstrap(token=_token(A1, "s1")))
    fresh = RegistryFSM()
    fresh.restore(gm_log.fsm.snapshot())
    assert acl_bootstrap_state(fresh.store, None)[1] == (False, 2)


def test_command_round_trips_and_validates() -> None:
    cmd = ACLBootstrap(token=_token(A1, "s1"), reset_index=5)
    assert decode_command(encode_command(cmd)) == cmd
    with pytest.raises(ValidationError) as info:
        ACLBootstrap(token=_token("not-a-uuid", "s1")).validate()
    assert info.value.field == "Token.AccessorID"
