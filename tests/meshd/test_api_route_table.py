"""The route table (meshd/api/routes.py ``ROUTES``) and its module-level handlers.

Handlers take their ports (meshd/api/ports.py) and the request, so they run
here on a few-line fake with no agent, sockets or clock; each route's ACL rule
lives in exactly one place (its row, or ``acl_rules.RULES`` for a module still
registered the old way).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
import trio

from meshd.api import catalog, intentions
from meshd.api.acl_rules import RULES
from meshd.api.routes import ROUTES, Endpoint, build_router
from meshd.http import BadRequest, Request
from meshd.wire import ReadOptions, ReadResult, WriteResult


class FakeRegistry:
    """The ``Registry`` port: records writes, answers no reads."""

    datacenter = "dc9"
    node_name = "n1"

    def __init__(self) -> None:
        self.writes: list[Any] = []

    async def read(self, name: str, args: Mapping[str, Any], opts: ReadOptions) -> ReadResult:
        raise AssertionError(f"unexpected read {name}")

    async def write(self, cmd: Any) -> WriteResult:
        self.writes.append(cmd)
        return WriteResult(ok=True)


def test_a_handler_runs_on_a_fake_port() -> None:
    reg = FakeRegistry()
    body = json.dumps({"Node": "web-1", "Address": "10.0.0.7"}).encode()
    req = Request.build("PUT", "/v1/catalog/register", body=body)
    resp = trio.run(catalog.register, reg, req)
    assert (resp.status, resp.body) == (200, b"true")
    assert [(w.node, w.address, w.datacenter) for w in reg.writes] == [("web-1", "10.0.0.7", "dc9")]

    bad = Request.build("PUT", "/v1/catalog/register?dc=other", body=body)
    with pytest.raises(BadRequest, match="No path to datacenter"):
        trio.run(catalog.register, reg, bad)
    assert len(reg.writes) == 1


def test_an_intention_handler_refuses_a_bad_body_before_writing() -> None:
    reg = FakeRegistry()
    body = json.dumps({"SourceName": "web", "DestinationName": "db", "ID": "x"}).encode()
    req = Request.build("POST", "/v1/connect/intentions", body=body)
    with pytest.raises(BadRequest, match="ID must be empty") as err:
        trio.run(intentions.create, reg, req)
    assert err.value.field == "ID"
    assert reg.writes == []


def test_each_route_has_its_acl_rule_in_one_place() -> None:
    rows = [r for r in ROUTES if isinstance(r, Endpoint)]
    assert {r.name.split(".")[0] for r in rows} >= {"acl", "catalog", "intentions"}
    assert [(r.name, r.method) for r in rows if (r.name, r.method) in RULES] == []

    class _A:  # what building the router reads of the agent
        proxy_ejections = None

        class acl:
            enabled = False

        class config:
            class ui_config:
                enabled = True

    router = build_router(_A())  # type: ignore[arg-type]
    built = {(m, r.pattern, r.name) for r in router.routes() for m in r.methods}
    assert {(r.method, r.path, r.name) for r in rows} <= built


@pytest.mark.parametrize("ui_enabled", [True, False])
def test_the_ui_rows_exist_only_with_the_ui_enabled(ui_enabled: bool) -> None:
    """The web UI's routes are rows of ROUTES; ``ui_config.enabled`` decides
    when the router is built whether they exist (GET / is then a 404)."""

    class _A:
        proxy_ejections = None

        class acl:
            enabled = False

        class config:
            class ui_config:
                enabled = ui_enabled

    ui_rows = {r.name for r in ROUTES if isinstance(r, Endpoint) and r.name.startswith("ui.")}
    assert ui_rows == {"ui.index", "ui.redirect", "ui.static"}
    router = build_router(_A())  # type: ignore[arg-type]
    built = {r.name for r in router.routes()}
    assert (ui_rows <= built) is ui_enabled and (ui_rows & built == set()) is not ui_enabled
