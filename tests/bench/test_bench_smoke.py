"""Every benchmark's ``--quick`` run prints its figure lines.

These start real meshd and etcd clusters, wrk and the C watcher client, so
they are slow and e2e; they check that each benchmark produced numbers for
meshd and for its baseline, never what the numbers are (habit 11).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from bench import (
    agent_start_bench,
    failover_bench,
    fuzz_bench,
    kv_bench,
    proxy_bench,
    watch_bench,
)

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

NUM = r"[\d,]+(?:\.\d+)?"


def run_quick(main: Callable[[list[str]], None], capsys: pytest.CaptureFixture[str]) -> str:
    main(["--quick"])
    return capsys.readouterr().out


def figure_row(out: str, label: str, numbers: int) -> list[str]:
    """The first ``numbers`` figures printed after ``label`` at the start of a line."""
    pattern = rf"^{re.escape(label)}\s+((?:{NUM}\s+){{{numbers - 1}}}{NUM})"
    match = re.search(pattern, out, re.MULTILINE)
    assert match, f"no figures for {label!r} in:\n{out}"
    return match.group(1).split()


def test_kv_bench_prints_puts_and_reads_for_meshd_and_etcd(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run_quick(kv_bench.main, capsys)
    for label in (
        "put, 1 conn -> leader",
        "put, 64 conns -> leader",
        "linearizable read, 64 conns -> leader",
    ):
        meshd_rate, _p50, _p99, _err, etcd_rate = figure_row(out, label, 5)
        assert float(meshd_rate.replace(",", "")) > 0
        assert float(etcd_rate.replace(",", "")) > 0
    assert re.search(r"put, 1 conn -> leader .* \d+\.\d+x\s+meshd >= etcd", out)


def test_watch_bench_prints_fanout_for_meshd_etcd_and_generator(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run_quick(watch_bench.main, capsys)
    for label in ("generator floor, 200 watchers", "etcd, 200 watchers", "meshd, 200 watchers"):
        answers, _missed, p50, p99, _max = figure_row(out, label, 5)
        assert int(answers) > 0
        assert float(p50) <= float(p99)
    assert re.search(r"meshd, 200 watchers .* \d+\.\d+x\s+p99 <= etcd", out)


def test_failover_bench_prints_kill_to_write_for_meshd_and_etcd(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run_quick(failover_bench.main, capsys)
    for label in ("meshd", "etcd"):
        median, trial = figure_row(out, label, 2)
        assert float(median) == float(trial) > 0  # one trial in --quick
    assert re.search(r"^meshd .* \d+\.\d+x\s+meshd <= etcd", out, re.MULTILINE)


def test_agent_start_bench_prints_dev_start_and_baselines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run_quick(agent_start_bench.main, capsys)
    for label in (
        "meshd agent --dev",
        "Agent.run -> started()",
        "etcd 3.4, 1 member",
        "python -c pass",
    ):
        median, _first, _second = figure_row(out, label, 3)
        assert 0 < float(median) < 60_000
    assert re.search(r"meshd agent --dev .* < 1000 ms\s+(met|MISSED)", out)


def test_proxy_bench_prints_figures_for_direct_meshd_and_envoy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run_quick(proxy_bench.main, capsys)
    for path in ("direct", "meshd", "envoy"):
        for conns in (16, 64):
            rate, p50, p99 = figure_row(out, f"{path} c{conns}", 3)
            assert float(rate.replace(",", "")) > 0
            assert float(p50) <= float(p99)
        (mbs,) = figure_row(out, f"bulk {path}", 1)
        assert float(mbs.replace(",", "")) > 0
    for path in ("meshd", "envoy"):
        c16, _c64 = figure_row(out, f"cpu {path}", 2)
        assert float(c16) > 0
        per_process, _total = figure_row(out, f"rss {path}", 2)
        assert float(per_process) > 0
    assert re.search(r"^meshd/envoy req/s c16\s+\d+\.\d+\s+>= 0\.50\s+(met|MISSED)", out, re.M)
    for path in ("meshd l7", "meshd l7 split", "envoy l7"):  # c16 only in --quick
        rate, p50, p99, errors = figure_row(out, f"{path} c16", 4)
        assert float(rate.replace(",", "")) > 0
        assert float(p50) <= float(p99)
        assert errors == "0", path  # no 5xx through the L7 pairs
        (c16,) = figure_row(out, f"cpu {path}", 1)
        assert float(c16) > 0
    assert re.search(
        r"^meshd l7/envoy l7 req/s c16\s+\d+\.\d+\s+>= 0\.60\s+(met|MISSED)", out, re.M
    )
    assert re.search(r"^90/10 split cost over plain l7 c16\s+-?\d+\.\d+\s+<= 0\.10", out, re.M)
    for path in ("meshd l7", "envoy l7"):  # the pairs' medians with their CPU per request
        _rate, _p50, _p99, cpu_us = figure_row(out, f"pair {path} c16", 4)
        assert float(cpu_us.replace(",", "")) > 0
    assert re.search(r"^meshd l7/envoy l7 req/s per CPU c16\s+\d+\.\d+\s+>= 0\.60", out, re.M)
    p50, p99, _max = figure_row(out, "config write -> applied, 5 writes", 3)
    assert 0 < float(p50) <= float(p99)
    mb, seconds = figure_row(out, "rss 10 routers", 2)
    assert float(mb) > 0 and float(seconds) > 0


def test_acl_bench_prints_figures_with_acls_off_and_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench import acl_bench  # here, so that this test is the file's only change

    out = run_quick(acl_bench.main, capsys)
    for path in ("/v1/catalog/services", "/v1/catalog/service/web-3"):
        for mode in ("off", "on", "mgmt"):
            rate, p50, p99, errors, cpu_us = figure_row(out, f"{path} {mode}", 5)
            assert float(rate.replace(",", "")) > 0
            assert float(p50) <= float(p99)
            assert int(errors) == 0  # a 403 would mean the 50-rule token reads nothing
            assert float(cpu_us.replace(",", "")) > 0
        assert re.search(
            rf"^acl on/off req/s {re.escape(path)}\s+\d+\.\d+\s+>= 0\.90\s+(met|MISSED)", out, re.M
        )
    (decision,) = figure_row(out, "service_read web-3 (exact rule)", 1)
    assert float(decision) > 0
    (resolve,) = figure_row(out, "ACLResolver.resolve, warm cache", 1)
    assert float(resolve) > 0


def test_http_bench_prints_meshd_rows_and_the_baseline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench import http_bench

    out = run_quick(http_bench.main, capsys)
    for label in (
        "baseline: bare trio + llhttp loop",
        "meshd GET /v1/status/leader",
        "meshd GET /v1/kv/<key>?consistent",
        "meshd PUT /v1/kv/<key>",
    ):
        rate, p50, p99, errors, cpu_us = figure_row(out, label, 5)
        assert float(rate.replace(",", "")) > 0
        assert float(p50) <= float(p99)
        assert int(errors) == 0
        assert float(cpu_us) > 0


def test_l7_cores_bench_prints_cost_per_decision_and_dict_baseline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from bench import l7_cores_bench

    out = run_quick(l7_cores_bench.main, capsys)
    for label in ("baseline: dict lookup", "match (20 routes)", "decide, 90/10 split"):
        [us] = figure_row(out, label, 1)
        assert float(us) > 0
    assert re.search(r"90/10 split over plain route: \d+\.\d+x", out)


def test_fuzz_bench_prints_bad_inputs_per_surface_and_no_failures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = run_quick(fuzz_bench.main, capsys)
    surfaces = (
        "PUT /v1/agent/service/register",
        "PUT /v1/agent/check/register",
        "PUT /v1/catalog/register",
        "PUT /v1/txn (service ops)",
        "any JSON on 7 write endpoints",
        "proxy: sidecars_from_services",
    )
    for label in surfaces:
        tried, bad, good, wrong, five, deaths = figure_row(out, label, 6)
        assert int(tried) > 0 and int(bad) + int(good) == int(tried), (label, out)
        assert (wrong, five, deaths) == ("0", "0", "0"), (label, out)
    assert re.search(r"^5xx \+ deaths \+ wrongly typed\s+0\s", out, re.MULTILINE), out
    rpc = re.search(r"no token (\d+): refused (\d+), .* answered with data (\d+)", out)
    assert rpc, out
    probed, refused, answered = map(int, rpc.groups())
    assert probed >= 30 and refused >= 25 and answered == 0, out
