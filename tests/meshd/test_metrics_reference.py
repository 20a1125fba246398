"""The README's metrics reference cannot drift: every metric the agent's and
the proxy's registries expose has a row (with its type and labels), and
every row names a metric that exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import trio
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families
from trio.testing import MockClock

from connect.proxy.metrics import ProxyMetrics
from connect.proxy.request_series import RequestSeries
from meshd.agent.live_metrics import agent_metrics
from tests.meshd.inproc import inproc_agent

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## Metrics reference and Prometheus"
ROW = re.compile(r"^\| `(meshd_\w+)` \| (\w+) \|([^|]*)\|")

Reference = dict[str, tuple[str, frozenset[str]]]


def readme_reference() -> Reference:
    text = README.read_text()
    assert SECTION in text, f"README lacks the section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    out: Reference = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            labels = frozenset(re.findall(r"`(\w+)`", m.group(3)))
            assert m.group(1) not in out, f"{m.group(1)} has two rows"
            out[m.group(1)] = (m.group(2), labels)
    return out


def exposed(text: str, objects: list[Any]) -> Reference:
    """Metric names (``_total`` on counters), types and label names in a
    Prometheus text, plus the label names of the metric objects given
    (labelled series appear in the text only once used)."""
    declared: dict[str, frozenset[str]] = {}
    for obj in objects:
        if isinstance(obj, Counter | Gauge | Histogram):
            declared[obj._name] = frozenset(obj._labelnames)
        elif isinstance(obj, RequestSeries):  # the proxy's per-request families
            declared.update((m.name, frozenset(obj.labelnames)) for m in obj.describe())
    out: Reference = {}
    for family in text_string_to_metric_families(text):
        seen = {k for s in family.samples for k in s.labels} - {"le"}
        labels = frozenset(seen) | declared.get(family.name, frozenset())
        name = f"{family.name}_total" if family.type == "counter" else family.name
        out[name] = (family.type, labels)
    return out


def compare(kind: str, have: Reference, documented: Reference) -> list[str]:
    problems = [f"{kind} metric {n} has no README row" for n in sorted(set(have) - set(documented))]
    for name, (typ, labels) in sorted(have.items()):
        if name in documented and documented[name] != (typ, labels):
            problems.append(f"{name}: registry {typ} {sorted(labels)}, README {documented[name]}")
    return problems


async def test_readme_rows_match_the_agent_and_proxy_registries(autojump_clock: MockClock) -> None:
    documented = readme_reference()
    async with inproc_agent() as (agent, api):
        with trio.fail_after(20):
            while True:  # the live Raft and catalog values appear once the server is up
                text = (await api.get("/v1/agent/metrics?format=prometheus")).text
                if "meshd_raft_last_contact_seconds" in text and "meshd_catalog_nodes" in text:
                    break
                await trio.sleep(0.1)
        metrics = agent_metrics(agent)
        agent_have = exposed(text, list(vars(metrics).values()))
    proxy = ProxyMetrics()
    objects = [*vars(proxy).values(), *vars(proxy.standard).values()]
    proxy_have = exposed(proxy.render().decode(), objects)
    assert "meshd_proxy_closed_before_handshake_total" in proxy_have
    assert "meshd_requests_total" in proxy_have
    problems = compare("agent", agent_have, documented) + compare("proxy", proxy_have, documented)
    stale = set(documented) - set(agent_have) - set(proxy_have)
    problems += [f"README row {n} names no metric" for n in sorted(stale)]
    assert not problems, "\n".join(problems)


def test_readme_reference_parses_rows_and_labels() -> None:
    ref = readme_reference()
    assert ref["meshd_proxy_connections_total"] == (
        "counter",
        frozenset({"direction", "source", "destination", "result"}),
    )
    assert ref["meshd_raft_term"] == ("gauge", frozenset())
    assert ref["meshd_faults_injected_total"] == (
        "counter",
        frozenset({"source_service", "destination_service", "kind"}),
    )
