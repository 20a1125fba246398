"""Bad inputs tried and handled, per surface (issue 13).

A real ``meshd agent --dev`` process on free loopback ports takes hostile
registration bodies (the fuzz suite's generators, bench/fuzz_inputs.py,
drawn with a fixed seed) on each HTTP surface; whatever it accepted is read
back and checked for Consul's field types. The proxy's registration parser
(``connect.proxy.config``) takes hostile ``/v1/agent/services`` shapes
in-process. A second dev agent with ACLs on (default deny) and mTLS on its
RPC port is called on every RPC method with a client certificate and no
token.

Prints per surface: inputs tried, answered 4xx, answered 2xx (and of those,
stored with a wrong type), 5xx and process deaths (both must be 0); for
RPC, methods probed and refused. Run ``python -m bench.fuzz_bench
[--quick]``. Never asserts (habit 11): the suite in
tests/meshd/test_fuzz_api.py is what fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench import fuzz_inputs as fz
from bench.loadgen.dev_agent import DevAgent

HEADER = (
    f"{'surface':<34} {'tried':>6} {'4xx':>6} {'2xx':>6} {'badtyp':>6} {'5xx':>5} {'deaths':>6}"
)
SEED_NOTE = "fixed seed (hypothesis derandomize=True)"
ANY_BODY_PATHS = (
    "/v1/agent/service/register",
    "/v1/agent/check/register",
    "/v1/catalog/register",
    "/v1/catalog/deregister",
    "/v1/agent/check/update/c1",
    "/v1/txn",
    "/v1/kv/fuzz",
)


@dataclass
class Tally:
    """What one surface answered."""

    surface: str
    counts: Counter[str] = field(default_factory=Counter)

    def row(self) -> str:
        c = self.counts
        return (
            f"{self.surface:<34} {c['tried']:>6} {c['4xx']:>6} {c['2xx']:>6} "
            f"{c['wrong_type']:>6} {c['5xx']:>5} {c['deaths']:>6}"
        )


def _run(strategy: st.SearchStrategy[Any], examples: int, each: Callable[[Any], None]) -> None:
    """``each`` on ``examples`` values drawn from ``strategy`` with a fixed seed."""

    @settings(
        derandomize=True,
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def inner(value: Any) -> None:
        each(value)

    inner()


def _answer(agent: DevAgent, tally: Tally, method: str, path: str, body: Any) -> int:
    """Send one body; count its status class (0: no answer, the agent died)."""
    tally.counts["tried"] += 1
    try:
        status, _ = agent.request(method, path, body)
    except (OSError, http.client.HTTPException):
        status = 0
    if agent.proc.poll() is not None:
        tally.counts["deaths"] += 1
        raise RuntimeError(f"the agent died on {path}: {agent.log_path}")
    if status >= 500 or status == 0:
        tally.counts["5xx"] += 1
    elif status >= 400:
        tally.counts["4xx"] += 1
    else:
        tally.counts["2xx"] += 1
    return status


def _typed(check: Callable[[Any], None], value: Any) -> bool:
    try:
        check(value)
    except (AssertionError, KeyError, TypeError, ValueError):
        return False
    return True


def _service_surface(agent: DevAgent, examples: int) -> Tally:
    tally = Tally("PUT /v1/agent/service/register")

    def each(body: Any) -> None:
        if _answer(agent, tally, "PUT", "/v1/agent/service/register", body) != 200:
            return
        _, services = agent.request("GET", "/v1/agent/services")
        if not all(_typed(fz.check_service_json, s) for s in services.values()):
            tally.counts["wrong_type"] += 1
        for sid in services:
            agent.request("PUT", f"/v1/agent/service/deregister/{sid}")

    _run(fz.SERVICE, examples, each)
    return tally


def _check_surface(agent: DevAgent, examples: int) -> Tally:
    tally = Tally("PUT /v1/agent/check/register")

    def each(body: Any) -> None:
        if _answer(agent, tally, "PUT", "/v1/agent/check/register", body) != 200:
            return
        _, checks = agent.request("GET", "/v1/agent/checks")
        if not all(_typed(fz.check_check_json, c) for c in checks.values()):
            tally.counts["wrong_type"] += 1
        for cid in checks:
            agent.request("PUT", f"/v1/agent/check/deregister/{cid}")

    _run(fz.CHECK, examples, each)
    return tally


def _catalog_surface(agent: DevAgent, examples: int) -> Tally:
    tally = Tally("PUT /v1/catalog/register")

    def each(body: Any) -> None:
        if _answer(agent, tally, "PUT", "/v1/catalog/register", body) != 200:
            return
        node = body["Node"]
        _, found = agent.request("GET", f"/v1/catalog/node/{node}")
        _, checks = agent.request("GET", f"/v1/health/node/{node}")
        services = (found or {}).get("Services", {}).values()
        typed = all(_typed(fz.check_service_json, s) for s in services)
        if not typed or not all(_typed(fz.check_check_json, c) for c in checks or []):
            tally.counts["wrong_type"] += 1
        agent.request("PUT", "/v1/catalog/deregister", {"Node": node})

    _run(fz.CATALOG, examples, each)
    return tally


def _txn_surface(agent: DevAgent, examples: int) -> Tally:
    tally = Tally("PUT /v1/txn (service ops)")
    node = agent.name

    def each(service: Any) -> None:
        op = {"Verb": "set", "Node": node, "Service": service}
        if _answer(agent, tally, "PUT", "/v1/txn", [{"Service": op}]) != 200:
            return
        _, found = agent.request("GET", f"/v1/catalog/node-services/{node}")
        stored = [s for s in (found or {}).get("Services") or [] if s.get("ID") != "consul"]
        if not all(_typed(fz.check_service_json, s) for s in stored):
            tally.counts["wrong_type"] += 1
        for s in stored:
            agent.request("PUT", "/v1/catalog/deregister", {"Node": node, "ServiceID": s["ID"]})

    _run(fz.CATALOG_SERVICE, examples, each)
    return tally


def _any_body_surface(agent: DevAgent, examples: int) -> Tally:
    tally = Tally("any JSON on 7 write endpoints")

    def each(case: tuple[str, Any]) -> None:
        path, body = case
        _answer(agent, tally, "PUT", path, body)

    _run(st.tuples(st.sampled_from(ANY_BODY_PATHS), fz.HOSTILE), examples, each)
    return tally


def _proxy_surface(examples: int) -> Tally:
    """The proxy's parser of ``/v1/agent/services``: a sidecar it cannot use
    is skipped and logged (counted 4xx), one it can is kept (2xx); raising is
    a death."""
    from connect.proxy.config import desired_listeners, sidecars_from_services

    tally = Tally("proxy: sidecars_from_services")
    services = st.dictionaries(
        st.sampled_from(["a", "b", "web"]),
        st.fixed_dictionaries(
            {"Kind": fz.maybe(st.just("connect-proxy")), "Proxy": fz.PROXY},
            optional={"Port": fz.maybe(st.integers(21000, 21003))},
        ),
        min_size=1,
        max_size=3,
    )

    def each(value: dict[str, Any]) -> None:
        proxies = {k for k, v in value.items() if v.get("Kind") == "connect-proxy"}
        tally.counts["tried"] += len(proxies)
        try:
            sidecars, errors = sidecars_from_services(value)
            desired_listeners(sidecars)
        except Exception:
            tally.counts["deaths"] += 1
            return
        tally.counts["2xx"] += len(sidecars)
        tally.counts["4xx"] += len(errors)
        # a registered sidecar neither used nor refused (with a log line)
        tally.counts["wrong_type"] += len(proxies - set(sidecars) - set(errors))

    _run(services, examples, each)
    return tally


def _traceback_lines(agent: DevAgent) -> int:
    agent.log.flush()
    return agent.log_path.read_text(errors="replace").count("Traceback")


def http_surfaces(root: Path, examples: int) -> tuple[list[Tally], int]:
    """Every HTTP surface against one dev agent; the tallies and the
    tracebacks in its log."""
    agent = DevAgent(root / "fuzz", "fuzz-bench")
    try:
        agent.wait_leader()
        tallies: list[Tally] = []
        for surface in (
            _service_surface,
            _check_surface,
            _catalog_surface,
            _txn_surface,
            _any_body_surface,
        ):
            try:
                tallies.append(surface(agent, examples))
            except RuntimeError as exc:  # the agent died: say so, measure no more
                print(f"  {exc}")
                break
        return tallies, _traceback_lines(agent)
    finally:
        agent.stop()


def _rpc_agent(root: Path, management: str) -> tuple[DevAgent, tuple[str, str, str]]:
    """A dev agent with ACLs on (default deny) and mTLS on its RPC port;
    the files of a client certificate of its CA."""
    from meshd.agent_tls import create_ca, create_cert, write_pem

    root.mkdir(parents=True, exist_ok=True)
    ca = create_ca()
    write_pem(root / "ca.pem", ca[0])
    files: dict[str, tuple[str, str, str]] = {}

    def key_path(kind: str) -> Path:
        return root / f"{kind}-key.pem"

    for kind in ("server", "client"):
        cert, key = create_cert(ca[0], ca[1], kind=kind)
        write_pem(root / f"{kind}.pem", cert)
        write_pem(key_path(kind), key, private=True)
        files[kind] = (
            str(root / "ca.pem"),
            str(root / f"{kind}.pem"),
            str(root / f"{kind}-key.pem"),
        )
    ca_file, cert_file, key_file = files["server"]
    extra = {
        "acl": {
            "enabled": True,
            "default_policy": "deny",
            "tokens": {"initial_management": management, "agent": management},
        },
        "tls": {"internal_rpc": {"ca_file": ca_file, "cert_file": cert_file, "key_file": key_file}},
    }
    agent = DevAgent(root, "fuzz-rpc", extra)
    return agent, files["client"]


def _empty(answer: Any) -> bool:
    """Nothing readable: an empty list, or a dict whose lists are all empty
    (``{"events": [], "index": 0}``)."""
    if isinstance(answer, dict):
        return all(v in ([], {}, None) for v in answer.values() if not isinstance(v, int))
    return answer in ([], None)


def rpc_surface(root: Path) -> Counter[str]:
    """Every RPC method in meshd/agent/rpc_rules.py called with a client
    certificate and no token (empty arguments): refused, or public."""
    import trio

    from meshd.agent.rpc_rules import RULES
    from meshd.rpc import RPCClient, RPCError
    from raft.tls import client_context

    management = str(uuid.uuid4())
    agent, client_files = _rpc_agent(root, management)
    counts: Counter[str] = Counter()
    try:
        agent.wait_leader()
        agent.wait_for(
            "ACLs",
            lambda: agent.request("GET", "/v1/acl/token/self", token=management)[0] == 200,
        )
        fired = agent.request("PUT", "/v1/event/fire/deploy", token=management)[0]
        if fired != 200:  # something Event.List could leak
            raise RuntimeError(f"event fire answered {fired}")
        port = json.loads((root / "agent.json").read_text())["ports"]["server"]

        async def probe() -> None:
            async with trio.open_nursery() as nursery:
                client = RPCClient(
                    nursery,
                    client_context(*client_files),
                    server_name="server.dc1.consul",
                    local_id="fuzz-bench",
                )
                for method, rule in sorted(RULES.items()):
                    counts["probed"] += 1
                    try:
                        answer = await client.call(f"127.0.0.1:{port}", method, {}, timeout=20)
                    except RPCError as exc:
                        if rule.public:
                            counts["public"] += 1
                        elif exc.code == "PermissionDenied":
                            counts["refused"] += 1
                        else:
                            counts[f"refused ({exc.code})"] += 1
                            counts["refused"] += 1
                        continue
                    if rule.public:
                        counts["public"] += 1
                    elif rule.answer is not None and _empty(answer):
                        counts["filtered"] += 1  # Agent.Members, Event.List: nothing readable
                    else:
                        counts["answered"] += 1
                        print(f"  {method} answered without a token: {str(answer)[:200]}")
                nursery.cancel_scope.cancel()

        trio.run(probe)
    finally:
        agent.stop()
    return counts


def report(tallies: Sequence[Tally], tracebacks: int, rpc: Counter[str]) -> None:
    print(f"bad inputs per surface, {SEED_NOTE}; 2xx is checked for Consul's field types")
    print(
        f"{'surface':<34} {'tried':>6} {'4xx':>6} {'2xx':>6} {'badtyp':>6} {'5xx':>5} {'deaths':>6}"
    )
    for tally in tallies:
        print(tally.row())
    total = Counter[str]()
    for tally in tallies:
        total.update(tally.counts)
    print(Tally("total", total).row())
    print(f"tracebacks in the agent's log {tracebacks:>6}   (target 0)")
    bad = total["5xx"] + total["deaths"] + total["wrong_type"]
    print(f"5xx + deaths + wrongly typed  {bad:>6}   (target 0)")
    print(
        f"RPC methods probed with a client certificate and no token {rpc['probed']}: "
        f"refused {rpc['refused']}, filtered to nothing {rpc['filtered']}, "
        f"public {rpc['public']} (Status.*, ACL.Resolve/Bootstrap/Login/Logout), "
        f"answered with data {rpc['answered']} (target 0)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few dozen inputs per surface")
    parser.add_argument("--examples", type=int, default=0, help="inputs per surface")
    args = parser.parse_args(argv)
    examples = args.examples or (25 if args.quick else 400)
    with tempfile.TemporaryDirectory(prefix="fuzz-bench-") as tmp:
        root = Path(tmp)
        tallies, tracebacks = http_surfaces(root, examples)
        tallies.append(_proxy_surface(examples * 2))
        rpc = rpc_surface(root)
    report(tallies, tracebacks, rpc)


if __name__ == "__main__":
    main()
