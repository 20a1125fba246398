"""/v1/agent/connect/proxy-ejections in-process: a proxy's report is kept,
listed, expires (TTL, Until) and goes with the proxy's deregistration."""

from __future__ import annotations

import time
from typing import Any

import trio

from meshd.values.ejections import TTL, rfc3339
from tests.meshd.inproc import InprocClient, inproc_agent

BASE = "/v1/agent/connect/proxy-ejections"
WEB = {"Name": "web", "Port": 8080, "Connect": {"SidecarService": {}}}
TARGET = "api.default.default.dc1"


def ejection(until_in: float = 120.0, **over: Any) -> dict[str, Any]:
    now = time.time()
    return {
        "Target": TARGET,
        "Address": "127.0.0.1:31001",
        "ServiceID": "api-sidecar-proxy",
        "Node": "dev-node",
        "Reason": "consecutive_5xx",
        "LastStatus": 500,
        "EjectedAt": rfc3339(now - 1),
        "Until": rfc3339(now + until_in),
        "TimesEjected": 1,
        **over,
    }


def report(*ejections: dict[str, Any]) -> dict[str, Any]:
    return {"Upstreams": [{"DestinationName": "api", "Ejections": list(ejections)}]}


async def registered(api: InprocClient) -> None:
    r = await api.put("/v1/agent/service/register", WEB)
    assert r.status == 200, r.text


async def test_report_is_listed_per_proxy_and_in_the_list(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await registered(api)
        before = (await api.get(BASE)).json()
        assert before == [
            {"ProxyID": "web-sidecar-proxy", "Service": "web", "ReportedAt": None, "Upstreams": []}
        ]
        r = await api.put(f"{BASE}/web-sidecar-proxy", report(ejection()))
        assert (r.status, r.json()) == (200, True)
        one = (await api.get(f"{BASE}/web-sidecar-proxy")).json()
        assert one["Service"] == "web" and one["ReportedAt"]
        [up] = one["Upstreams"]
        assert up["DestinationName"] == "api"
        [ej] = up["Ejections"]
        assert (ej["Target"], ej["Address"], ej["Reason"], ej["LastStatus"]) == (
            TARGET,
            "127.0.0.1:31001",
            "consecutive_5xx",
            500,
        )
        assert ej["TimesEjected"] == 1 and ej["Until"] > ej["EjectedAt"]
        assert (await api.get(BASE)).json() == [one]


async def test_report_dropped_after_ttl_and_on_deregistration(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await registered(api)
        await api.put(f"{BASE}/web-sidecar-proxy", report(ejection()))
        await trio.sleep(TTL + 1)  # no refresh: forgotten
        assert (await api.get(f"{BASE}/web-sidecar-proxy")).json()["Upstreams"] == []
        await api.put(f"{BASE}/web-sidecar-proxy", report(ejection()))
        assert (await api.get(f"{BASE}/web-sidecar-proxy")).json()["Upstreams"]
        r = await api.put("/v1/agent/service/deregister/web-sidecar-proxy")
        assert r.status == 200, r.text
        r = await api.get(f"{BASE}/web-sidecar-proxy")
        assert r.status == 404 and "Unknown proxy service ID" in r.text
        assert (await api.get(BASE)).json() == []
        assert _agent.proxy_ejections.all(trio.current_time()) == []


async def test_expired_ejection_left_out(autojump_clock: Any) -> None:
    async with inproc_agent() as (_agent, api):
        await registered(api)
        await api.put(f"{BASE}/web-sidecar-proxy", report(ejection(until_in=-1)))
        [up] = (await api.get(f"{BASE}/web-sidecar-proxy")).json()["Upstreams"]
        assert up["Ejections"] == []


async def test_bad_reports_are_400_naming_the_field_and_store_nothing(
    autojump_clock: Any,
) -> None:
    async with inproc_agent() as (_agent, api):
        await registered(api)
        cases = [
            ({"Upstreams": "x"}, "Upstreams"),
            ({"Upstreams": [{"Ejections": []}]}, "Upstreams[0].DestinationName"),
            (report(ejection(Until="tomorrow")), "Upstreams[0].Ejections[0].Until"),
            (report(ejection(TimesEjected=-1)), "Upstreams[0].Ejections[0].TimesEjected"),
            (report(ejection(Bogus=1)), "Upstreams[0].Ejections[0].Bogus"),
            ({"Nope": 1}, "Nope"),
        ]
        for body, field in cases:
            r = await api.put(f"{BASE}/web-sidecar-proxy", body)
            assert r.status == 400, (body, r.status, r.text)
            assert field in r.text, (field, r.text)
        assert (await api.get(f"{BASE}/web-sidecar-proxy")).json()["ReportedAt"] is None
        r = await api.put(f"{BASE}/web", report(ejection()))  # not a proxy
        assert r.status == 404 and "Unknown proxy service ID: web" in r.text
