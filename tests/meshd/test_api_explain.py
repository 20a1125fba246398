"""/v1/internal/explain in-process: route, splits, resolver target, eligible
and ejected instances, timeout, retries and the intention decision of one
described request; bad input is a 400 naming the field."""

from __future__ import annotations

import time
from typing import Any

from meshd.values.ejections import rfc3339
from tests.meshd.inproc import InprocClient, inproc_agent

PATH = "/v1/internal/explain"
V1 = "v1.api.default.default.dc1"
V2 = "v2.api.default.default.dc1"
ENTRIES = [
    {"Kind": "service-defaults", "Name": "api", "Protocol": "http"},
    {
        "Kind": "service-resolver",
        "Name": "api",
        "DefaultSubset": "v1",
        "Subsets": {
            "v1": {"Filter": 'Service.Meta.version == "v1"'},
            "v2": {"Filter": 'Service.Meta.version == "v2"'},
        },
        "RequestTimeout": "7s",
    },
    {
        "Kind": "service-splitter",
        "Name": "api",
        "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}],
    },
    {
        "Kind": "service-router",
        "Name": "api",
        "Routes": [
            {
                "Match": {"HTTP": {"Header": [{"Name": "x-version", "Exact": "v2"}]}},
                "Destination": {"ServiceSubset": "v2"},
            },
            {
                "Match": {"HTTP": {"PathPrefix": "/slow", "Methods": ["GET"]}},
                "Destination": {
                    "ServiceSubset": "v1",
                    "RequestTimeout": "3s",
                    "NumRetries": 2,
                    "RetryOnStatusCodes": [503],
                },
            },
        ],
    },
]


def api_instance(n: int, version: str) -> dict[str, Any]:
    return {
        "Node": "n2",
        "Address": "10.0.0.2",
        "Service": {
            "Kind": "connect-proxy",
            "ID": f"api-{n}-proxy",
            "Service": "api-sidecar-proxy",
            "Address": "127.0.0.1",
            "Port": 31000 + n,
            "Meta": {"version": version},
            "Proxy": {"DestinationServiceName": "api"},
        },
    }


async def ok(api: InprocClient, method: str, path: str, body: Any = None) -> Any:
    r = await api.request(method, path, body)
    assert r.status == 200, (path, r.status, r.text)
    return r.json() if r.body else None


async def seed_mesh(api: InprocClient) -> None:
    web = {
        "Name": "web",
        "Port": 8080,
        "Connect": {
            "SidecarService": {
                "Proxy": {"Upstreams": [{"DestinationName": "api", "LocalBindPort": 19191}]}
            }
        },
    }
    await ok(api, "PUT", "/v1/agent/service/register", web)
    app = {"Node": "n2", "Address": "10.0.0.2", "Service": {"Service": "api", "Port": 9000}}
    await ok(api, "PUT", "/v1/catalog/register", app)
    for n, version in ((1, "v1"), (2, "v1"), (3, "v2")):
        await ok(api, "PUT", "/v1/catalog/register", api_instance(n, version))
    for entry in ENTRIES:
        await ok(api, "PUT", "/v1/config", entry)
    await ok(
        api, "PUT", "/v1/connect/intentions/exact?source=web&destination=api", {"Action": "deny"}
    )


async def explain(api: InprocClient, **body: Any) -> dict[str, Any]:
    out: dict[str, Any] = await ok(
        api, "POST", PATH, {"Source": "web", "Destination": "api", **body}
    )
    return out


def addresses(items: list[dict[str, Any]]) -> list[str]:
    return [i["Address"] for i in items]


async def test_header_route_picks_the_v2_subset_and_names_the_deny(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await seed_mesh(api)
        out = await explain(api, Path="/x", Headers={"X-Version": "v2"})
        assert out["Outcome"] == "ok" and out["L7"] is True and out["Protocol"] == "http"
        route = out["Route"]
        assert route["Index"] == 0 and route["Default"] is False
        assert route["Match"]["HTTP"]["Header"][0]["Exact"] == "v2"
        assert out["Splits"] == [] and out["Target"] == V2
        [target] = out["Targets"]
        assert target["Filter"] == 'Service.Meta.version == "v2"'
        assert target["RequestTimeout"] == "7s" and target["RedirectedFrom"] is None
        assert addresses(target["Eligible"]) == ["127.0.0.1:31003"]
        assert target["Eligible"][0]["ServiceID"] == "api-3-proxy"
        assert out["Endpoint"] == "127.0.0.1:31003"
        assert out["TimeoutSeconds"] == 7.0  # the resolver's RequestTimeout
        assert out["Retry"]["NumRetries"] == 0
        intention = out["Intention"]
        assert intention["Allowed"] is False and intention["Evaluated"] == "L7"
        assert intention["Reason"].startswith("Matched L4 intention ")
        assert intention["Reason"].endswith("(Action: deny)") and intention["Permission"] is None


async def test_default_route_shows_the_split_buckets_and_the_pick(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await seed_mesh(api)
        out = await explain(api, Method="post", Path="/", Seed=7)
        assert out["Request"]["Method"] == "POST"
        assert out["Route"]["Index"] == 2 and out["Route"]["Default"] is True
        [step] = out["Splits"]
        assert [(b["NextNode"], b["Weight"]) for b in step["Buckets"]] == [(V1, 90.0), (V2, 10.0)]
        picked = step["Buckets"][step["Picked"]]["NextNode"]
        assert out["Target"] == picked
        again = await explain(api, Method="post", Path="/", Seed=7)
        assert again["Target"] == picked  # the same seed, the same draw


async def test_route_timeout_retries_and_reported_ejections(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await seed_mesh(api)
        now = time.time()
        ejection = {
            "Target": V1,
            "Address": "127.0.0.1:31001",
            "ServiceID": "api-1-proxy",
            "Node": "n2",
            "Reason": "consecutive_5xx",
            "LastStatus": 500,
            "EjectedAt": rfc3339(now - 2),
            "Until": rfc3339(now + 60),
            "TimesEjected": 1,
        }
        report = {"Upstreams": [{"DestinationName": "api", "Ejections": [ejection]}]}
        await ok(api, "PUT", "/v1/agent/connect/proxy-ejections/web-sidecar-proxy", report)
        out = await explain(api, Path="/slow/a", Query="q=1")
        assert out["Route"]["Index"] == 1 and out["Target"] == V1
        assert out["TimeoutSeconds"] == 3.0
        assert out["Retry"]["NumRetries"] == 2 and out["Retry"]["RetryOnStatusCodes"] == [503]
        assert addresses(out["Eligible"]) == ["127.0.0.1:31002"]
        [ej] = out["Ejected"]
        assert ej["Address"] == "127.0.0.1:31001" and ej["Reason"] == "consecutive_5xx"
        assert out["Endpoint"] == "127.0.0.1:31002"
        assert out["EjectionsReportedBy"] == ["web-sidecar-proxy"]
        # GET with query parameters says the same.
        r = await api.get(f"{PATH}?source=web&destination=api&path=/slow/a&header=x-a:%201")
        assert r.status == 200, r.text
        assert r.json()["Target"] == V1 and r.json()["Request"]["Headers"] == [["x-a", "1"]]


async def test_tcp_destination_is_l4_and_unknown_service_is_404(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await seed_mesh(api)
        await ok(
            api,
            "PUT",
            "/v1/catalog/register",
            {"Node": "n3", "Address": "10.0.0.3", "Service": {"Service": "db", "Port": 5432}},
        )
        out = await explain(api, Destination="db")
        assert out["L7"] is False and out["Route"] is None and out["Retry"] is None
        assert out["Target"] == "db.default.default.dc1" and out["Intention"]["Evaluated"] == "L4"
        r = await api.request("POST", PATH, {"Source": "web", "Destination": "nope"})
        assert r.status == 404 and 'unknown service "nope"' in r.text
        r = await api.request("POST", PATH, {"Source": "ghost", "Destination": "api"})
        assert r.status == 404 and "Source" in r.text


BAD = [
    ({"Destination": "api"}, "Source"),
    ({"Source": "web"}, "Destination"),
    ({"Source": "web", "Destination": "a b"}, "Destination"),
    ({"Source": "web", "Destination": "api", "Method": "FETCH"}, "Method"),
    ({"Source": "web", "Destination": "api", "Path": "x"}, "Path"),
    ({"Source": "web", "Destination": "api", "Headers": ["x"]}, "Headers"),
    ({"Source": "web", "Destination": "api", "Headers": {"a b": "1"}}, "Headers"),
    ({"Source": "web", "Destination": "api", "Seed": -1}, "Seed"),
    ({"Source": "web", "Destination": "api", "Bogus": 1}, "Bogus"),
]


async def test_bad_input_is_400_naming_the_field(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        for body, field in BAD:
            r = await api.request("POST", PATH, body)
            assert r.status == 400, (body, r.status, r.text)
            assert field in r.text, (body, r.text)
        r = await api.get(f"{PATH}?source=web&destination=api&header=nocolon")
        assert r.status == 400 and "header" in r.text
        r = await api.request("POST", PATH, raw=b"{not json")
        assert r.status == 400 and "decode" in r.text


L7_INTENTIONS = {
    "Kind": "service-intentions",
    "Name": "api",
    "Sources": [
        {
            "Name": "web",
            "Permissions": [
                {"Action": "deny", "HTTP": {"PathPrefix": "/admin"}},
                {"Action": "allow", "HTTP": {"PathPrefix": "/api/", "Methods": ["GET"]}},
            ],
        }
    ],
}


async def test_l7_intention_permissions_judge_the_described_request(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await seed_mesh(api)
        await ok(api, "DELETE", "/v1/connect/intentions/exact?source=web&destination=api")
        await ok(api, "PUT", "/v1/config", L7_INTENTIONS)
        got = (await explain(api, Path="/api/cart"))["Intention"]
        assert (got["Allowed"], got["Permission"], got["Evaluated"]) == (True, 1, "L7")
        assert got["Intention"] == "web => api" and "permission 1" in got["Reason"]
        got = (await explain(api, Method="DELETE", Path="/admin/x"))["Intention"]
        assert (got["Allowed"], got["Permission"]) == (False, 0)
        # An encoded path is judged normalised, as the proxy judges it.
        got = (await explain(api, Path="/api/%2e%2e/admin"))["Intention"]
        assert (got["Allowed"], got["Permission"]) == (False, 0)
        got = (await explain(api, Method="POST", Path="/api/cart"))["Intention"]
        assert got["Permission"] is None and "No permission" in got["Reason"]
