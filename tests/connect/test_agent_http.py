"""connect.agent_http: the one answer type of the proxy's and the CLI's agent
clients, and how each edge words an answer that is not JSON."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from connect.agent_http import InvalidJSONError, Response, error_text, query_string
from connect.proxy.agent_client import answer_json
from connect.proxy.errors import AgentUnavailableError
from meshd.cli import cli
from meshd.cli.client import AgentClient


def test_an_answer_reads_as_json_with_its_index() -> None:
    resp = Response(200, {"x-consul-index": "7"}, b'{"a": 1}')
    assert (resp.json(), resp.index, resp.text) == ({"a": 1}, 7, '{"a": 1}')
    assert Response(200, {"x-consul-index": "x"}, b"").index == 0
    with pytest.raises(InvalidJSONError):
        Response(200, {}, b"<html>").json()


def test_query_and_error_text() -> None:
    assert query_string({"recurse": True, "skip": None, "tag": ["a", "b"], "dc": "dc1"}) == (
        "?recurse&tag=a&tag=b&dc=dc1"
    )
    assert query_string({}) == ""
    assert error_text(b"  bad\n  request ") == "bad request"
    assert len(error_text(b"x " * 1000)) == 500


def test_the_proxy_calls_a_bad_body_an_unavailable_agent() -> None:
    with pytest.raises(AgentUnavailableError, match="malformed JSON from agent"):
        answer_json(Response(200, {}, b"<html>"))


def test_the_cli_calls_a_bad_body_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def exchange(self: AgentClient, *args: Any, **kwargs: Any) -> Response:
        return Response(200, {}, b"<html>")

    monkeypatch.setattr(AgentClient, "exchange", exchange)
    result = CliRunner().invoke(cli, ["members"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: the agent sent invalid JSON: Expecting value")
    assert len(result.output.splitlines()) == 1
