"""/v1/internal/canary in-process (issue 19): start with validation (400
naming the field, nothing stored), 409 while one runs, pause/resume/abort,
blocking reads, and the leader's controller stepping a canary in fake time
with a fake figures source (the real one is the e2e's)."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from meshd.agent.agent import Agent
from tests.meshd.inproc import InprocClient, inproc_agent

PATH = "/v1/internal/canary"
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
    },
]


@dataclass(frozen=True)
class Figures:
    requests: int
    errors: int
    p99_ms: float | None
    rps: float
    error_rate: float


class FakeStats:
    """v2 answers ``requests`` per window with ``errors`` failures."""

    def __init__(self, requests: int = 100, errors: int = 0, failures: int = 0) -> None:
        self.requests, self.errors = requests, errors
        self.failures = failures  # the first calls raise (a peer down, a bug)
        self.asked: list[tuple[str, str, float]] = []

    async def subset_stats(self, service: str, subset: str, window: float) -> Figures:
        self.asked.append((service, subset, window))
        if len(self.asked) <= self.failures:
            raise (OSError if len(self.asked) % 2 else RuntimeError)("figures unavailable")
        rate = self.errors / self.requests if self.requests else 0.0
        return Figures(self.requests, self.errors, 5.0, self.requests / window, rate)


async def ok(api: InprocClient, method: str, path: str, body: Any = None) -> Any:
    r = await api.request(method, path, body)
    assert r.status == 200, (method, path, r.status, r.text)
    return r.json()


async def seed(api: InprocClient, name: str = "api") -> None:
    """service-defaults (http) and the v1/v2 resolver of ``name``. Each test
    uses its own service: the API's shared blocking-answer cache is keyed by
    read and index, not by agent, and every test's agent counts from 1."""
    for entry in ENTRIES:
        assert await ok(api, "PUT", "/v1/config", {**entry, "Name": name}) is True


def splits(api_result: Any) -> list[tuple[str, float]]:
    return [(s["ServiceSubset"], s["Weight"]) for s in api_result["Splits"]]


async def wait_state(api: InprocClient, name: str, state: str, limit: float = 60) -> Any:
    """Block on the canary of ``name`` until it reaches ``state`` (fake time)."""
    index = 0
    with trio.fail_after(limit):
        while True:
            r = await api.get(f"{PATH}/{name}?index={index}&wait=30s")
            assert r.status == 200, r.text
            if r.json()["State"] == state:
                return r.json()
            index = r.index


async def test_start_stores_the_canary_and_its_splitter_in_one_write(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        await seed(api)
        body = {"To": "v2", "Steps": [10, 50, 100], "Interval": "1h", "MinRequests": 5}
        out = await ok(api, "POST", f"{PATH}/api", body)
        assert (out["From"], out["To"], out["Step"], out["Weight"]) == ("v1", "v2", 0, 10)
        assert (out["State"], out["Interval"], out["MaxP99"], out["MaxErrorRate"]) == (
            "running",
            "1h0m0s",
            "300ms",
            0.01,
        )
        assert [(h["Step"], h["Event"]) for h in out["History"]] == [(0, "step")]
        assert out["Last"] == {"Requests": 0, "Errors": 0, "ErrorRate": 0.0, "P99Ms": None}
        splitter = await ok(api, "GET", "/v1/config/service-splitter/api")
        assert splits(splitter) == [("v1", 90), ("v2", 10)]
        assert splitter["ModifyIndex"] == out["ModifyIndex"] == out["CreateIndex"]
        again = await api.request("POST", f"{PATH}/api", body)
        assert again.status == 409 and "already running" in again.text
        listed = await ok(api, "GET", PATH)
        assert [c["Service"] for c in listed] == ["api"]


async def test_bad_input_is_a_400_naming_the_field_and_nothing_is_stored(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (_agent, api):
        await seed(api)
        await ok(api, "PUT", "/v1/config", {**ENTRIES[1], "Name": "tcpsvc"})
        cases = [
            ("api", {}, "To"),
            ("api", {"To": "v3"}, 'service "api" does not have a subset named "v3"'),
            ("api", {"To": "v2", "From": "v9"}, "From"),
            ("api", {"To": "v1"}, "From"),
            ("api", {"To": "v2", "Steps": [50, 10, 100]}, "Steps"),
            ("api", {"To": "v2", "Steps": [10, 50]}, "Steps"),
            ("api", {"To": "v2", "Steps": [0, 100]}, "Steps"),
            ("api", {"To": "v2", "Interval": "soon"}, "Interval"),
            ("api", {"To": "v2", "Interval": "10ms"}, "Interval"),
            ("api", {"To": "v2", "MaxErrorRate": 5}, "MaxErrorRate"),
            ("api", {"To": "v2", "MaxP99": 300}, "MaxP99"),
            ("api", {"To": "v2", "MinRequests": -1}, "MinRequests"),
            ("api", {"To": "v2", "Speed": 1}, "Speed"),
            ("other", {"To": "v2"}, "does not have a subset"),
            ("tcpsvc", {"To": "v2"}, "does not permit advanced routing or splitting"),
        ]
        for service, body, text in cases:
            r = await api.request("POST", f"{PATH}/{service}", body)
            assert r.status == 400 and text in r.text, (body, r.status, r.text)
        assert (await api.get(f"{PATH}/api")).status == 404
        assert (await api.get("/v1/config/service-splitter/api")).status == 404
        assert await ok(api, "GET", PATH) == []


async def test_pause_resume_abort_and_blocking_read(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (_agent, api):
        await seed(api, "papi")
        assert (await api.request("PUT", f"{PATH}/papi/pause")).status == 404
        missing = await api.get(f"{PATH}/papi")
        assert missing.status == 404 and missing.text == 'no canary for service "papi"'
        created: dict[str, Any] = {}

        async def start_later() -> None:
            await trio.sleep(2)
            created.update(await ok(api, "POST", f"{PATH}/papi", {"To": "v2", "Interval": "1h"}))

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            # A client blocked on a canary that does not exist yet wakes when it starts.
            nursery.start_soon(start_later)
            r = await api.get(f"{PATH}/papi?index={missing.index}&wait=30s")
            assert abs(trio.current_time() - start - 2.0) < 1e-6
        assert r.status == 200 and r.index == created["ModifyIndex"] == r.json()["ModifyIndex"]
        start = trio.current_time()
        async with trio.open_nursery() as nursery:

            async def pause_later() -> None:
                await trio.sleep(5)
                await ok(api, "PUT", f"{PATH}/papi/pause")

            nursery.start_soon(pause_later)
            r = await api.get(f"{PATH}/papi?index={created['ModifyIndex']}")
            assert abs(trio.current_time() - start - 5.0) < 1e-6
            assert r.json()["State"] == "paused" and r.index > created["ModifyIndex"]
        assert (await api.request("PUT", f"{PATH}/papi/pause")).status == 409
        resumed = await ok(api, "PUT", f"{PATH}/papi/resume")
        assert resumed["State"] == "running"
        aborted = await ok(api, "PUT", f"{PATH}/papi/abort")
        assert (aborted["State"], aborted["Weight"]) == ("aborted", 0)
        assert [h["Event"] for h in aborted["History"]] == ["step", "pause", "resume", "abort"]
        splitter = await ok(api, "GET", "/v1/config/service-splitter/papi")
        assert splits(splitter) == [("v1", 100), ("v2", 0)]
        assert (await api.request("PUT", f"{PATH}/papi/abort")).status == 409
        # A finished canary may be followed by a new one.
        assert (await ok(api, "POST", f"{PATH}/papi", {"To": "v2"}))["State"] == "running"


def _controller(agent: Agent, stats: FakeStats) -> None:
    assert agent.canaries is not None
    agent.canaries.stats = stats


async def test_healthy_canary_steps_through_every_step_to_promoted(
    autojump_clock: MockClock,
) -> None:
    async with inproc_agent() as (agent, api):
        await seed(api, "hapi")
        stats = FakeStats()
        _controller(agent, stats)
        start = trio.current_time()
        body = {"To": "v2", "Steps": [10, 50, 100], "Interval": "2s", "MinRequests": 20}
        await ok(api, "POST", f"{PATH}/hapi", body)
        done = await wait_state(api, "hapi", "promoted")
        # Two intervals: 10 -> 50, then 50 -> 100 (promoted).
        assert 4.0 <= trio.current_time() - start <= 5.0
        assert [(h["Step"], h["Weight"], h["Event"]) for h in done["History"]] == [
            (0, 10, "step"),
            (1, 50, "step"),
            (2, 100, "promote"),
        ]
        assert done["Weight"] == 100 and done["Last"]["Requests"] == 100
        splitter = await ok(api, "GET", "/v1/config/service-splitter/hapi")
        assert splits(splitter) == [("v1", 0), ("v2", 100)]
        assert {s[:2] for s in stats.asked} == {("hapi", "v2")}
        events = await ok(api, "GET", "/v1/event/list?name=meshd-canary")
        payloads = [json.loads(base64.b64decode(e["Payload"])) for e in events]
        assert [p["Event"] for p in payloads] == ["step", "step", "promote"]


async def test_erroring_canary_rolls_back_within_the_interval(autojump_clock: MockClock) -> None:
    async with inproc_agent() as (agent, api):
        await seed(api, "eapi")
        _controller(agent, FakeStats(requests=100, errors=20))
        start = trio.current_time()
        body = {"To": "v2", "Steps": [10, 50, 100], "Interval": "10s", "MinRequests": 20}
        await ok(api, "POST", f"{PATH}/eapi", body)
        done = await wait_state(api, "eapi", "rolled_back")
        assert trio.current_time() - start < 10
        assert done["Reason"].startswith("MaxErrorRate exceeded: error rate 20.00% > 1.00%")
        assert (done["Weight"], done["History"][-1]["Event"]) == (0, "rollback")
        splitter = await ok(api, "GET", "/v1/config/service-splitter/eapi")
        assert splits(splitter) == [("v1", 100), ("v2", 0)]


async def test_too_few_requests_keep_the_canary_on_its_step(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "meshd.canary")
    async with inproc_agent() as (agent, api):
        await seed(api, "fapi")
        stats = FakeStats(requests=3, errors=3)
        _controller(agent, stats)
        body = {"To": "v2", "Steps": [10, 100], "Interval": "2s", "MinRequests": 20}
        created = await ok(api, "POST", f"{PATH}/fapi", body)
        await trio.sleep(7)
        now = await ok(api, "GET", f"{PATH}/fapi")
        assert (now["State"], now["Step"], now["ModifyIndex"]) == (
            "running",
            0,
            created["ModifyIndex"],
        )
        # The longer window is asked for once the step outlasts its interval.
        assert max(w for _, _, w in stats.asked) >= 6
        # Logged once per interval held (at 2 s, 4 s and 6 s), naming the reason.
        holds = [r.getMessage() for r in caplog.records if "event=canary_hold" in r.getMessage()]
        assert len(holds) == 3, holds
        assert 'reason="too few requests: 3 < MinRequests 20"' in holds[0]


async def test_a_failing_figures_source_is_retried_and_never_fatal(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with inproc_agent() as (agent, api):
        await seed(api, "xapi")
        _controller(agent, FakeStats(failures=4))
        body = {"To": "v2", "Steps": [50, 100], "Interval": "2s", "MinRequests": 1}
        await ok(api, "POST", f"{PATH}/xapi", body)
        done = await wait_state(api, "xapi", "promoted")
        assert [h["Event"] for h in done["History"]] == ["step", "promote"]
        messages = [r.getMessage() for r in caplog.records]
        assert any("event=canary_tend_failed service=xapi" in m for m in messages)
        assert any("event=canary_tend_crashed service=xapi" in m for m in messages)
