"""The meshd mirroring extension (``Destination.Mirror`` on a service-router
route) through /v1/config, in-process: stored as written, bad fields
refused with 400 naming them, graph errors with Consul's texts, and
nothing stored on refusal."""

from __future__ import annotations

from typing import Any

import pytest

from tests.meshd.inproc import inproc_agent

API_HTTP = {"Kind": "service-defaults", "Name": "api", "Protocol": "http"}
RESOLVER = {
    "Kind": "service-resolver",
    "Name": "api",
    "Subsets": {"v1": {"Filter": "Service.Meta.version == v1"}},
}


def _router(mirror: Any) -> dict[str, Any]:
    route = {"Match": {"HTTP": {"PathPrefix": "/m"}}, "Destination": {"Mirror": mirror}}
    return {"Kind": "service-router", "Name": "api", "Routes": [route]}


@pytest.mark.parametrize(
    ("mirror", "text"),
    [
        (
            {"Percent": 5},
            'Route[0] Mirror.Service is required (field "Routes[0].Destination.Mirror.Service")',
        ),
        (
            {"Service": "api", "Percent": 101},
            "Route[0] Mirror.Percent must be between 0 and 100 "
            '(field "Routes[0].Destination.Mirror.Percent")',
        ),
        ({"Service": "api", "Percent": "all"}, "Routes[0].Destination.Mirror.Percent must be a"),
        (
            {"Service": "api", "Datacenter": "dc2"},
            'invalid config key "Datacenter" (field "Routes[0].Destination.Mirror.Datacenter")',
        ),
        ("api", "Routes[0].Destination.Mirror must be a JSON object"),
        (
            {"Service": "api", "ServiceSubset": "v9"},
            'service "api" does not have a subset named "v9"',
        ),
        (
            {"Service": "legacy"},
            'discovery chain "api" uses inconsistent protocols; '
            'service "legacy" has "tcp" which is not "http"',
        ),
    ],
)
async def test_a_bad_mirror_is_refused_naming_the_field(
    autojump_clock: Any, mirror: Any, text: str
) -> None:
    async with inproc_agent() as (_agent, api):
        for entry in (API_HTTP, RESOLVER):
            assert (await api.put("/v1/config", entry)).status == 200
        r = await api.put("/v1/config", _router(mirror))
        assert r.status == 400, r.text
        assert text in r.text
        assert (await api.get("/v1/config/service-router/api")).status == 404


async def test_a_mirror_is_stored_and_compiled_into_the_chain(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        for entry in (API_HTTP, RESOLVER):
            assert (await api.put("/v1/config", entry)).status == 200
        mirror = {"service": "api", "service_subset": "v1", "percent": 12.5}
        assert (await api.put("/v1/config", _router(mirror))).text == "true"
        got = (await api.get("/v1/config/service-router/api")).json()
        assert got["Routes"][0]["Destination"]["Mirror"] == {
            "Service": "api",
            "ServiceSubset": "v1",
            "Percent": 12.5,
        }
        chain = (await api.get("/v1/discovery-chain/api")).json()["Chain"]
        route = chain["Nodes"]["router:api.default.default"]["Routes"][0]
        assert route["MirrorTarget"] == "v1.api.default.default.dc1"
        assert "v1.api.default.default.dc1" in chain["Targets"]
