"""Fuzzing the registration endpoints and the proxy's registration handling
(issue 13: no process dies, no 5xx, nothing wrongly typed stored).

* Volume runs in-process: a dev agent runs in its own thread (its own trio
  loop) and each example goes through the full ``App.handle`` (routing,
  ACL hook, handler, error mapping), then reads back what was stored.
* A real ``meshd agent --dev`` process then takes a few hundred examples
  over HTTP and must still be alive and syncing afterwards.
* The proxy's parser gets the agent's ``/v1/agent/services`` shape with
  hostile sidecar definitions and must never raise.

Every pass uses a fixed seed (``derandomize=True``); one more pass per
surface uses a random seed, named in any failure (``MESHD_FUZZ_SEED``).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.lowlevel
from hypothesis import HealthCheck, currently_in_test_context, event, given, seed, settings
from hypothesis import strategies as st

from bench import fuzz_inputs as fz
from connect.proxy.config import desired_listeners, only_sidecars_for, sidecars_from_services
from meshd.api.routes import build_app
from meshd.http import Request
from tests.meshd.harness import dev_agent, free_port

pytestmark = pytest.mark.e2e

FIXED = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


def _fixed(n: int) -> settings:
    return settings(FIXED, max_examples=n)


def _random(n: int) -> settings:
    return settings(FIXED, derandomize=False, max_examples=n)


def _event(text: str) -> None:
    """Count answers in hypothesis' statistics (a no-op outside a given test)."""
    if currently_in_test_context():
        event(text)


class ThreadAgent:
    """A dev agent on a trio loop of its own thread; ``call`` sends one
    request through its ``App.handle`` and returns (status, body)."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()
        if not self._ready.wait(60) or self._token is None:
            raise RuntimeError(f"dev agent did not start: {self.error!r}")

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with dev_agent() as (agent, _):
            assert agent.sync is not None
            agent.sync.batch_delay = 0.0  # thousands of writes: no batching pause
            self.agent, self.app = agent, build_app(agent)
            self._stop = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            self._ready.set()
            await self._stop.wait()

    async def _handle(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        resp = await self.app.handle(Request.build(method, path, body=body))
        raw = bytes(resp.body)
        return resp.status, (json.loads(raw) if raw and resp.status == 200 else raw)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = b"" if body is None else json.dumps(body).encode()
        assert self._thread.is_alive(), f"agent thread died: {self.error!r}"
        return trio.from_thread.run(self._handle, method, path, data, trio_token=self._token)

    def close(self) -> None:
        if self._stop is not None and self._token is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(30)


@pytest.fixture(scope="module")
def inproc() -> Iterator[ThreadAgent]:
    agent = ThreadAgent()
    yield agent
    alive = agent._thread.is_alive()
    agent.close()
    assert alive and agent.error is None, f"the agent died: {agent.error!r}"


def _register_service(a: ThreadAgent, body: Any) -> None:
    status, answer = a.call("PUT", "/v1/agent/service/register", body)
    _event(f"answer {status}")
    assert status in (200, 400, 403), (status, answer)
    if status != 200:
        assert isinstance(answer, bytes) and len(answer) < 2000
        return
    status, services = a.call("GET", "/v1/agent/services")
    assert status == 200
    for svc in services.values():
        fz.check_service_json(svc)
    status, checks = a.call("GET", "/v1/agent/checks")
    assert status == 200
    for check in checks.values():
        fz.check_check_json(check)
    sidecars, _ = sidecars_from_services(services)  # the proxy's view: never raises
    desired_listeners(sidecars)
    for sid in services:
        if sid in a.agent.local.services:
            a.call("PUT", f"/v1/agent/service/deregister/{sid}")


def _register_check(a: ThreadAgent, body: Any) -> None:
    status, answer = a.call("PUT", "/v1/agent/check/register", body)
    _event(f"answer {status}")
    assert status in (200, 400, 403), (status, answer)
    if status != 200:
        return
    status, checks = a.call("GET", "/v1/agent/checks")
    for cid, check in checks.items():
        fz.check_check_json(check)
        a.call("PUT", f"/v1/agent/check/deregister/{cid}")


def _register_catalog(a: ThreadAgent, body: Any) -> None:
    status, answer = a.call("PUT", "/v1/catalog/register", body)
    _event(f"answer {status}")
    assert status in (200, 400, 403), (status, answer)
    if status != 200:
        return
    node = body["Node"]
    status, found = a.call("GET", f"/v1/catalog/node/{node}")
    assert status == 200
    for svc in (found or {}).get("Services", {}).values():
        fz.check_service_json(svc)
    status, checks = a.call("GET", f"/v1/health/node/{node}")
    for check in checks or []:
        fz.check_check_json(check)
    a.call("PUT", "/v1/catalog/deregister", {"Node": node})


@_fixed(1000)
@given(fz.SERVICE)
def test_fuzz_agent_service_register(inproc: ThreadAgent, body: Any) -> None:
    _register_service(inproc, body)


@_fixed(400)
@given(fz.CHECK)
def test_fuzz_agent_check_register(inproc: ThreadAgent, body: Any) -> None:
    _register_check(inproc, body)


@_fixed(400)
@given(fz.CATALOG)
def test_fuzz_catalog_register(inproc: ThreadAgent, body: Any) -> None:
    _register_catalog(inproc, body)


def _txn_service(a: ThreadAgent, service: Any) -> None:
    """A txn service op: the registration field rules apply here too."""
    node = a.agent.node_name
    op = {"Service": {"Verb": "set", "Node": node, "Service": service}}
    status, answer = a.call("PUT", "/v1/txn", [op])
    _event(f"answer {status}")
    assert status in (200, 400, 403, 409), (status, answer)
    if status != 200:
        assert isinstance(answer, bytes) and len(answer) < 2000
        return
    status, found = a.call("GET", f"/v1/catalog/node-services/{node}")
    assert status == 200
    for svc in found["Services"]:
        if svc["ID"] != "consul":
            fz.check_service_json(svc)
            a.call("PUT", "/v1/catalog/deregister", {"Node": node, "ServiceID": svc["ID"]})


@_fixed(400)
@given(fz.CATALOG_SERVICE)
def test_fuzz_txn_service_ops(inproc: ThreadAgent, service: Any) -> None:
    _txn_service(inproc, service)


@_random(200)
@seed(fz.RANDOM_SEED)
@given(st.one_of(fz.SERVICE.map(lambda b: ("s", b)), fz.CATALOG.map(lambda b: ("c", b))))
@fz.with_seed_note
def test_fuzz_registrations_random_seed(inproc: ThreadAgent, case: tuple[str, Any]) -> None:
    kind, body = case
    (_register_service if kind == "s" else _register_catalog)(inproc, body)


_ANY_BODY_PATHS = st.sampled_from(
    [
        "/v1/agent/service/register",
        "/v1/agent/check/register",
        "/v1/catalog/register",
        "/v1/catalog/deregister",
        "/v1/agent/check/update/c1",
        "/v1/agent/service/deregister/s1",
        "/v1/agent/check/deregister/c1",
    ]
)


@_fixed(300)
@given(_ANY_BODY_PATHS, fz.HOSTILE)
def test_fuzz_any_json_body_on_registration_endpoints(
    inproc: ThreadAgent, path: str, body: Any
) -> None:
    status, answer = inproc.call("PUT", path, body)
    _event(f"answer {status}")
    assert status in (200, 400, 403, 404), (path, status, answer)


@pytest.mark.parametrize(
    "path,template",
    [
        ("/v1/agent/service/register", fz.FULL_SERVICE),
        ("/v1/agent/service/register", fz.FULL_PROXY),
        ("/v1/agent/check/register", fz.FULL_SERVICE["Checks"][0]),
        ("/v1/catalog/register", fz.FULL_CATALOG),
    ],
)
def test_every_field_with_every_hostile_value(
    inproc: ThreadAgent, path: str, template: dict[str, Any]
) -> None:
    """Exhaustive, next to the random search: each field of a complete,
    valid definition (nested ones too) replaced by each hostile value."""
    assert inproc.call("PUT", path, template)[0] == 200  # the template itself is valid
    _clean_up(inproc)
    register = {
        "/v1/agent/service/register": _register_service,
        "/v1/agent/check/register": _register_check,
        "/v1/catalog/register": _register_catalog,
    }[path]
    cases, fields = 0, fz.field_paths(template)
    assert len(fields) >= 8
    for field in fields:
        for value in fz.HOSTILE_VALUES:
            body = fz.replaced(template, field, value)
            try:
                register(inproc, body)
            except AssertionError as exc:
                exc.add_note(f"field {field!r} = {str(value)[:60]!r}")
                raise
            _clean_up(inproc)
            cases += 1
    assert cases == len(fields) * len(fz.HOSTILE_VALUES)


def _clean_up(a: ThreadAgent) -> None:
    for sid in list(a.agent.local.services):
        a.call("PUT", f"/v1/agent/service/deregister/{sid}")
    for cid in list(a.agent.local.checks):
        a.call("PUT", f"/v1/agent/check/deregister/{cid}")
    a.call("PUT", "/v1/catalog/deregister", {"Node": "full-node"})


def test_the_in_process_agent_still_syncs_after_the_fuzzing(inproc: ThreadAgent) -> None:
    body = {"Name": "after-fuzz", "Port": 1}
    assert inproc.call("PUT", "/v1/agent/service/register", body)[0] == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, found = inproc.call("GET", "/v1/catalog/service/after-fuzz")
        if status == 200 and found:
            return
        time.sleep(0.05)
    raise AssertionError("a registration after the fuzzing never reached the catalog")


# ------------------------------------------------------- a real process


class ProcessAgent:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        cfg = tmp / "agent.json"
        ports = {"http": self.port, "dns": free_port(), "server": free_port()}
        cfg.write_text(json.dumps({"node_name": "fuzz-node", "ports": ports}))
        self.log = tmp / "agent.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "meshd", "agent", "--dev", "--config-file", str(cfg)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data)
            resp = conn.getresponse()
            raw = resp.read()
            return resp.status, (json.loads(raw) if raw and resp.status == 200 else raw)
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if self.call("GET", "/v1/status/leader")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("the agent did not start:\n" + self.log.read_text()[-3000:])


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessAgent]:
    agent = ProcessAgent(tmp_path_factory.mktemp("fuzz-agent"))
    try:
        agent.wait_ready()
        yield agent
    finally:
        if agent.proc.poll() is None:
            agent.proc.terminate()
            try:
                agent.proc.wait(15)
            except subprocess.TimeoutExpired:
                agent.proc.kill()
                agent.proc.wait(5)


def _over_http(agent: ProcessAgent, path: str, body: Any) -> None:
    status, answer = agent.call("PUT", path, body)
    _event(f"answer {status}")
    assert status < 500, (path, status, answer)
    assert agent.proc.poll() is None, agent.log.read_text()[-3000:]
    if status == 200 and path == "/v1/agent/service/register":
        _, services = agent.call("GET", "/v1/agent/services")
        for sid, svc in services.items():
            fz.check_service_json(svc)
            agent.call("PUT", f"/v1/agent/service/deregister/{sid}")


_PATHS = st.sampled_from(
    ["/v1/agent/service/register", "/v1/agent/check/register", "/v1/catalog/register"]
)


@_fixed(250)
@given(_PATHS, st.one_of(fz.SERVICE, fz.CHECK, fz.CATALOG))
def test_fuzz_a_real_agent_process(process: ProcessAgent, path: str, body: Any) -> None:
    _over_http(process, path, body)


def test_the_real_agent_is_alive_and_syncing_after_the_fuzzing(process: ProcessAgent) -> None:
    assert process.proc.poll() is None
    assert process.call("PUT", "/v1/agent/service/register", {"Name": "after", "Port": 1})[0] == 200
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, found = process.call("GET", "/v1/catalog/service/after")
        if status == 200 and found:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("a registration after the fuzzing never reached the catalog")
    assert "Traceback" not in process.log.read_text()


# ------------------------------------------------ the proxy's parser

_SIDECAR_BODY = st.fixed_dictionaries(
    {"Kind": fz.maybe(st.just("connect-proxy")), "Proxy": fz.maybe(fz.PROXY)},
    optional={"Port": fz.maybe(st.integers(21000, 21003)), "Address": fz.maybe(st.just(""))},
)
_CLEAN_SIDECAR_BODY = st.fixed_dictionaries(
    {
        "Kind": st.just("connect-proxy"),
        "Port": st.integers(21000, 21003),
        "Address": st.just("127.0.0.1"),
        "Proxy": st.fixed_dictionaries(
            {
                "DestinationServiceName": fz.NAMES,
                "DestinationServiceID": fz.NAMES,
                "LocalServicePort": st.integers(1, 65535),
                "Upstreams": st.lists(
                    st.fixed_dictionaries(
                        {"DestinationName": fz.NAMES, "LocalBindPort": st.integers(9000, 9003)}
                    ),
                    max_size=2,
                ),
            }
        ),
    }
)
_SERVICES = st.dictionaries(
    st.sampled_from(["a", "b", "web", "z"]),
    st.one_of(_SIDECAR_BODY, _CLEAN_SIDECAR_BODY, fz.one_fault(_CLEAN_SIDECAR_BODY)),
    max_size=4,
)


def _parse_all(services: dict[str, Any]) -> None:
    sidecars, errors = sidecars_from_services(services)
    kept = only_sidecars_for(sidecars, services, frozenset({"web", "a"}))
    assert set(kept) <= set(sidecars)
    assert set(sidecars).isdisjoint(errors)
    assert set(sidecars) | set(errors) <= set(services)
    wanted, _ = desired_listeners(sidecars)
    again, _ = desired_listeners(sidecars, wanted)
    assert again == wanted  # what runs stays as it is
    for spec in wanted.values():
        assert isinstance(spec.port, int) and 0 <= spec.port <= 65535
        # A running listener keeps its owner whatever else is registered.
        assert again[spec.key].proxy_id == spec.proxy_id


@_fixed(1000)
@given(_SERVICES)
def test_fuzz_proxy_registration_handling_never_raises(services: dict[str, Any]) -> None:
    _parse_all(services)


@_random(300)
@seed(fz.RANDOM_SEED)
@given(_SERVICES)
@fz.with_seed_note
def test_fuzz_proxy_registration_handling_random_seed(services: dict[str, Any]) -> None:
    _parse_all(services)
