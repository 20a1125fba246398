"""ACL tokens, policies, roles; node liveness records."""

from __future__ import annotations

from registry import queries, shapes
from registry.commands import (
    ACLPolicyDelete,
    ACLPolicySet,
    ACLRoleSet,
    ACLTokenDelete,
    ACLTokenSet,
    LivenessSet,
)
from registry.errors import ErrorCode
from registry.records import ACLLink, ACLPolicy, ACLRole, ACLToken
from registry.state.acl import GLOBAL_MANAGEMENT_POLICY_ID

from .builders import Log

A1 = "aaaaaaaa-0000-0000-0000-000000000001"
A2 = "aaaaaaaa-0000-0000-0000-000000000002"


def test_token_indexes_by_accessor_and_secret(log: Log) -> None:
    log.ok(ACLPolicySet(policies=(ACLPolicy("p1", name="read"),)))
    log.ok(ACLTokenSet(tokens=(ACLToken(A1, secret_id="s1", policies=(ACLLink("p1"),)),)))
    _, by_accessor = queries.acl_token_get(log.store, None, A1)
    idx, by_secret = queries.acl_token_by_secret(log.store, None, "s1")
    assert by_accessor == by_secret and by_secret is not None and idx == 2
    assert by_secret.policies == (ACLLink("p1", "read"),)  # name resolved at read time
    assert shapes.acl_token_json(by_secret)["Policies"] == [{"ID": "p1", "Name": "read"}]


def test_secret_must_be_unique_and_immutable(log: Log) -> None:
    log.ok(ACLTokenSet(tokens=(ACLToken(A1, secret_id="s1"),)))
    assert (
        log.apply(ACLTokenSet(tokens=(ACLToken(A2, secret_id="s1"),))).error is ErrorCode.CONFLICT
    )
    assert log.apply(ACLTokenSet(tokens=(ACLToken(A1, secret_id="s2"),))).error is ErrorCode.INVALID


def test_batch_is_all_or_nothing(log: Log) -> None:
    result = log.apply(
        ACLTokenSet(
            tokens=(
                ACLToken(A1, secret_id="s1"),
                ACLToken(A2, secret_id="s2", policies=(ACLLink("missing"),)),
            )
        )
    )
    assert result.error is ErrorCode.NOT_FOUND
    assert queries.acl_token_list(log.store, None)[1] == []


def test_policy_rename_shows_in_links_and_delete_drops_them(log: Log) -> None:
    log.ok(ACLPolicySet(policies=(ACLPolicy("p1", name="old"),)))
    log.ok(ACLRoleSet(roles=(ACLRole("r1", name="ops", policies=(ACLLink("p1", "old"),)),)))
    log.ok(ACLTokenSet(tokens=(ACLToken(A1, secret_id="s", roles=(ACLLink("r1"),)),)))
    log.ok(ACLPolicySet(policies=(ACLPolicy("p1", name="new"),)))
    assert queries.acl_role_by_name(log.store, None, "ops")[1].policies == (ACLLink("p1", "new"),)  # type: ignore[union-attr]
    log.ok(ACLPolicyDelete(ids=("p1",)))
    assert queries.acl_role_get(log.store, None, "r1")[1].policies == ()  # type: ignore[union-attr]
    assert queries.acl_token_get(log.store, None, A1)[1].roles == (ACLLink("r1", "ops"),)  # type: ignore[union-attr]


def test_policy_names_unique_and_builtin_undeletable(log: Log) -> None:
    log.ok(
        ACLPolicySet(policies=(ACLPolicy(GLOBAL_MANAGEMENT_POLICY_ID, name="global-management"),))
    )
    assert (
        log.apply(ACLPolicySet(policies=(ACLPolicy("p2", name="global-management"),))).error
        is ErrorCode.CONFLICT
    )
    assert log.apply(ACLPolicyDelete(ids=(GLOBAL_MANAGEMENT_POLICY_ID,))).error is ErrorCode.INVALID
    assert queries.acl_policy_by_name(log.store, None, "global-management")[1] is not None
    assert [p.name for p in queries.acl_policy_list(log.store, None)[1]] == ["global-management"]


def test_token_delete(log: Log) -> None:
    log.ok(ACLTokenSet(tokens=(ACLToken(A1, secret_id="s1"), ACLToken(A2, secret_id="s2"))))
    log.ok(ACLTokenDelete(accessor_ids=(A1, "unknown")))
    assert [t.accessor_id for t in queries.acl_token_list(log.store, None)[1]] == [A2]
    assert queries.acl_token_by_secret(log.store, None, "s1")[1] is None


def test_liveness_written_on_change_only(log: Log) -> None:
    log.ok(LivenessSet(node="n1", status="alive"))
    log.ok(LivenessSet(node="n1", status="alive"))
    idx, rec = queries.liveness_get(log.store, None, "n1")
    assert rec is not None and idx == 1 and rec.modify_index == 1
    log.ok(LivenessSet(node="n1", status="failed"))
    idx, rec = queries.liveness_get(log.store, None, "n1")
    assert rec is not None and (idx, rec.status, rec.create_index) == (3, "failed", 1)
    assert [r.node for r in queries.liveness_list(log.store, None)[1]] == ["n1"]
    assert shapes.liveness_json(rec)["Status"] == "failed"


# -------------------------------------------------------- auth methods and binding rules


def test_deleting_an_auth_method_deletes_its_rules_and_login_tokens() -> None:
    from registry.commands import (
        ACLAuthMethodDelete,
        ACLAuthMethodSet,
        ACLBindingRuleSet,
        ACLTokenSet,
    )
    from registry.fsm import RegistryFSM
    from registry.records import ACLAuthMethod, ACLBindingRule, ACLToken
    from registry.state import acl as acl_state

    fsm = RegistryFSM()
    rule = ACLBindingRule("bbbbbbbb-0000-0000-0000-000000000001", auth_method="m", bind_type="node")
    orphan = ACLBindingRule(
        "bbbbbbbb-0000-0000-0000-000000000002", auth_method="x", bind_type="node"
    )
    assert fsm.apply_command(1, ACLAuthMethodSet(methods=(ACLAuthMethod("m", type="jwt"),))).ok
    assert fsm.apply_command(2, ACLBindingRuleSet(rules=(rule,))).ok
    refused = fsm.apply_command(3, ACLBindingRuleSet(rules=(orphan,)))
    assert not refused.ok and "non-existent auth method 'x'" in (refused.message or "")
    login = ACLToken("aaaaaaaa-0000-0000-0000-000000000001", "s1", auth_method="m")
    plain = ACLToken("aaaaaaaa-0000-0000-0000-000000000002", "s2")
    assert fsm.apply_command(4, ACLTokenSet(tokens=(login, plain))).ok
    assert fsm.apply_command(5, ACLAuthMethodDelete(names=("m",))).ok
    store = fsm.store
    assert acl_state.acl_auth_method_list(store, None) == (5, [])
    assert acl_state.acl_binding_rule_list(store, None) == (5, [])
    _, tokens = acl_state.acl_token_list(store, None)
    assert [t.accessor_id for t in tokens] == [plain.accessor_id]


def test_token_expiry_is_one_function() -> None:
    from registry.records import ACLToken, expired_at

    token = ACLToken("a", "s", expiration_time="2030-01-01T00:00:00Z")
    at = 1893456000.0  # 2030-01-01T00:00:00Z
    assert not token.expired(at - 1) and token.expired(at) and token.expired(at + 1)
    assert not ACLToken("a", "s").expired(at)
    assert expired_at("2030-01-01T00:00:00+00:00", at) and not expired_at("garbage", at)
