"""L7 intentions decided per request as Consul's xDS RBAC makes Envoy decide them."""

from __future__ import annotations

from typing import Any

import pytest

from connect.l7.entries import parse_entry
from connect.l7.entries_intentions import ServiceIntentionsEntry, SourceIntention
from connect.l7.rbac import RbacDecision, evaluate, order_sources
from connect.l7.request import Request


def entry(name: str, *sources: dict[str, Any]) -> ServiceIntentionsEntry:
    e = parse_entry({"Kind": "service-intentions", "Name": name, "Sources": list(sources)})
    assert isinstance(e, ServiceIntentionsEntry)
    return e


def perm(action: str, **http: Any) -> dict[str, Any]:
    return {"Action": action, "HTTP": http}


# The scenario: web may GET /api/*, DELETE /admin is denied.
API = entry(
    "api",
    {
        "Name": "web",
        "Permissions": [
            perm("deny", PathPrefix="/admin"),
            perm("allow", PathPrefix="/api/", Methods=["GET"]),
        ],
    },
    {"Name": "*", "Action": "allow"},
)


def decide(
    target: str,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    *,
    sources: tuple[SourceIntention, ...] = API.sources,
    source: str = "web",
    default_allow: bool = False,
) -> RbacDecision:
    request = Request.build(method, target, headers or [])
    return evaluate(sources, request, destination="api", source=source, default_allow=default_allow)


def test_get_api_is_allowed_by_the_second_permission() -> None:
    d = decide("/api/users?x=1")
    assert d == RbacDecision(
        True, "web => api", 1, "Matched L7 intention web => api permission 1 (Action: allow)"
    )


def test_delete_admin_is_denied_by_the_first_permission() -> None:
    d = decide("/admin", "DELETE")
    assert (d.allowed, d.intention, d.permission) == (False, "web => api", 0)


def test_first_matching_permission_decides_even_if_a_later_one_allows() -> None:
    sources = entry(
        "api",
        {
            "Name": "web",
            "Permissions": [perm("deny", PathPrefix="/api/secret"), perm("allow", PathPrefix="/")],
        },
    ).sources
    assert decide("/api/secret/x", sources=sources).permission == 0
    assert not decide("/api/secret/x", sources=sources).allowed
    assert decide("/api/open", sources=sources).allowed


@pytest.mark.parametrize(
    "target",
    [
        "/api/%2e%2e/admin",
        "/api/%2E%2E/admin",
        "/api/../admin",
        "/api/./../admin",
        "//admin",
        "/api/..//admin",
        "/%61dmin",  # an encoded unreserved letter is decoded: /admin
        "/api\\..\\admin",
        "/api/%2e%2e/admin?x=/api/",
    ],
)
def test_encoded_dot_segments_and_slashes_cannot_bypass_the_admin_rule(target: str) -> None:
    d = decide(target, "DELETE")
    assert (d.allowed, d.permission) == (False, 0), target


@pytest.mark.parametrize(
    ("target", "method"),
    [
        ("/API/users", "GET"),  # paths are case-sensitive: /API is not /api/
        ("/api/users", "DELETE"),  # the allow is GET only
        ("/api%2Fusers", "GET"),  # an encoded slash stays encoded (Envoy's default)
        ("/api/%2e%2e/internal", "GET"),  # /internal, outside /api/
    ],
)
def test_requests_outside_the_allow_rule_get_the_default_deny(target: str, method: str) -> None:
    d = decide(target, method)
    assert (d.allowed, d.intention, d.permission) == (False, "web => api", None)
    assert "No permission of L7 intention web => api matched" in d.reason
    assert "(deny)" in d.reason


def test_lowercase_method_is_judged_as_its_uppercase() -> None:
    assert not decide("/admin", "delete").allowed
    assert decide("/api/x", "get").allowed


def test_unmatched_permissions_fall_to_the_default_not_to_a_lower_intention() -> None:
    # The "*" source allows everything, but web's L7 intention applies first
    # (Consul subtracts web from "*"): its unmatched request gets the default.
    d = decide("/other")
    assert (d.allowed, d.intention) == (False, "web => api")
    assert decide("/other", default_allow=True).allowed


def test_a_caller_without_its_own_intention_gets_the_wildcard_l4_intention() -> None:
    d = decide("/admin", "DELETE", source="billing")
    assert d == RbacDecision(
        True, "* => api", None, "Matched L4 intention * => api (Action: allow)"
    )


def test_no_matching_intention_is_the_default_behaviour() -> None:
    sources = entry("api", {"Name": "web", "Action": "deny"}).sources
    d = decide("/", sources=sources, source="ops")
    assert (d.allowed, d.intention, d.permission) == (False, "default", None)
    assert decide("/", sources=sources, source="ops", default_allow=True).allowed
    assert not decide("/", sources=sources, default_allow=True).allowed


def test_malformed_escape_is_denied() -> None:
    d = decide("/api/%zz", default_allow=True)
    assert not d.allowed and d.reason == "path cannot be normalized"


def test_path_exact_and_regex_match_the_normalized_path() -> None:
    sources = entry(
        "api",
        {
            "Name": "web",
            "Permissions": [
                perm("allow", PathExact="/health"),
                perm("allow", PathRegex="/v[0-9]+/items/[a-z]+"),
            ],
        },
    ).sources
    assert decide("/x/../health", sources=sources).permission == 0
    assert not decide("/health/", sources=sources).allowed
    assert decide("/v2/items/abc", sources=sources).permission == 1
    # RE2 must match the whole path, as Envoy's safe_regex.
    assert not decide("/v2/items/abc/more", sources=sources).allowed


@pytest.mark.parametrize(
    ("matcher", "headers", "expected"),
    [
        ({"Name": "x-user", "Present": True}, [("X-User", "a")], True),
        ({"Name": "x-user", "Present": True}, [], False),
        ({"Name": "x-user", "Present": True, "Invert": True}, [], True),
        ({"Name": "x-user", "Exact": "admin"}, [("x-user", "admin")], True),
        ({"Name": "x-user", "Exact": "admin"}, [("x-user", "Admin")], False),
        ({"Name": "x-user", "Exact": "admin", "Invert": True}, [("x-user", "bob")], True),
        # A missing header never satisfies an inverted Exact (Envoy).
        ({"Name": "x-user", "Exact": "admin", "Invert": True}, [], False),
        ({"Name": "x-user", "Prefix": "adm"}, [("x-user", "admin")], True),
        ({"Name": "x-user", "Suffix": "min"}, [("x-user", "admin")], True),
        ({"Name": "x-user", "Regex": "a.*n"}, [("x-user", "admin")], True),
        ({"Name": "x-user", "Regex": "a.*n"}, [("x-user", "admins")], False),
    ],
)
def test_header_rules(
    matcher: dict[str, Any], headers: list[tuple[str, str]], expected: bool
) -> None:
    sources = entry(
        "api", {"Name": "web", "Permissions": [perm("allow", Header=[matcher])]}
    ).sources
    assert decide("/", headers=headers, sources=sources).allowed is expected


def test_every_matcher_of_a_permission_must_hold() -> None:
    sources = entry(
        "api",
        {
            "Name": "web",
            "Permissions": [
                perm(
                    "allow",
                    PathPrefix="/api/",
                    Methods=["POST"],
                    Header=[{"Name": "x-team", "Exact": "core"}],
                )
            ],
        },
    ).sources
    assert decide("/api/x", "POST", [("x-team", "core")], sources=sources).allowed
    assert not decide("/api/x", "POST", [("x-team", "edge")], sources=sources).allowed
    assert not decide("/api/x", "GET", [("x-team", "core")], sources=sources).allowed


def test_legacy_id_names_the_intention() -> None:
    src = SourceIntention(name="web", action="deny", extra={"LegacyID": "0b1c"})
    d = decide("/", sources=(src,))
    assert (d.allowed, d.intention) == (False, "0b1c")


def test_exact_destination_outranks_the_wildcard_entry_when_merged() -> None:
    star = entry("*", {"Name": "web", "Action": "deny"})
    merged = order_sources([*star.sources, *API.sources])
    assert [s.precedence for s in merged] == sorted((s.precedence for s in merged), reverse=True)
    assert decide("/api/x", sources=tuple(merged)).allowed
    # Without api's own entry, the * destination's deny applies.
    d = decide("/api/x", sources=star.sources, default_allow=True)
    assert (d.allowed, d.intention) == (False, "web => *")


def test_namespace_partition_and_peer_of_a_source() -> None:
    other_ns = SourceIntention(name="web", namespace="team", action="allow")
    peered = SourceIntention(name="web", peer="east", action="allow")
    for src in (other_ns, peered):
        assert decide("/", sources=(src,)).intention == "default"
    assert decide(
        "/", sources=(SourceIntention(name="web", namespace="*", action="allow"),)
    ).allowed
