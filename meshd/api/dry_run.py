"""/v1/internal/config/dry-run: how recent requests would fare under proposed entries.

meshd's own endpoints (``meshd config write --dry-run``):

* ``POST /v1/internal/config/dry-run`` with the entries ``meshd config
  write`` takes, as a JSON array. They are validated exactly as a write
  (``PUT /v1/config`` for one entry, ``PUT /v1/internal/config/batch`` for
  several): the same 400 texts naming the field, the same graph check;
  nothing is written. Then the recent request shapes the proxies recorded
  (this agent's and every other live member's, ``GET
  /v1/internal/config/samples``) are decided under the stored entries and
  under the stored entries with these applied (connect/l7/dryrun.py, over
  the proxy's own decision cores) and the answer reports per destination
  service the fraction that would move (route, split, redirect) and the
  requests newly denied or allowed by intentions, by method, plus summary
  lines::

    {"Samples": 1000, "Window": "2m10s",
     "Services": [{"Service": "api", "Requests": 1000, "Changes": [
        {"Kind": "split", "From": "v1", "To": "v2", "Requests": 31,
         "Percent": 3.1, "Method": "", "Detail": ""}]}],
     "Summary": ["3.1% of recent requests to api would move from v1 to v2"]}

  Only the destinations whose discovery chain the entries affect are read,
  or every destination when intentions or proxy-defaults change; of each
  destination the newest 2,000 samples across the agents are decided, in
  a worker thread (CPU-bound: every distinct request shape, twice).
  ACL: the rights writing every entry needs (it reveals traffic); samples
  of a service the token cannot ``service:read`` are left out.
* ``PUT /v1/internal/config/samples`` — a local proxy posts request shapes
  (``{"Samples": [...]}``, connect/proxy/l7_samples.py); needs service:write
  on each sample's source (what a sidecar's token holds).
* ``GET /v1/internal/config/samples[?destination=a,b][&local]`` — the
  samples kept (``{"Samples": [...]}``), of this agent and, without
  ``local``, of the other agents; samples whose source or destination the
  token cannot ``service:read`` are left out.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable
from typing import Any, Protocol

import trio

from connect.l7.chain_validate import validate_entries
from connect.l7.dryrun import Sample, dry_run, world_of
from connect.l7.entries import PROXY_DEFAULTS, SERVICE_INTENTIONS
from connect.l7.entries import ConfigEntry as TypedEntry
from connect.proxy.l7_samples import (
    SampleFormatError,
    sample_from_json,
    sample_to_json,
)

from ..acl import Permission
from ..http import BadRequest, Request, Response, decode_json_body
from ..peers import ask_peers
from ..values.request_samples import MAX_SAMPLES_PER_PUT, PER_DESTINATION
from . import ports
from .common import FILTERED_HEADER
from .config_entries import _batch_entries, entry_from_body
from .config_typed import TYPED_KINDS, check_graph, load_graph, parse_typed


class Ports(
    ports.Registry, ports.RawReads, ports.Configured, ports.Cluster, ports.MeshTelemetry, Protocol
):
    """What this module needs from the agent."""


SAMPLES_PATH = "/v1/internal/config/samples"
DRY_RUN_PATH = "/v1/internal/config/dry-run"


def proposed_entries(body: Any) -> list[TypedEntry]:
    """The typed entries of a dry-run body, refused as the real write refuses
    them: one entry as ``PUT /v1/config``, several as the batch write."""
    if isinstance(body, list) and len(body) == 1:
        entry = entry_from_body(body[0])
        if entry.kind not in TYPED_KINDS:
            return []
        return [parse_typed(entry.kind, body[0])]
    typed, _ = _batch_entries(body)
    return typed


def _readable(req: Request, services: Iterable[str]) -> bool:
    authz = getattr(req, "authz", None)
    return authz is None or all(authz.allowed(Permission.SERVICE_READ, s) for s in services)


def parse_samples(body: Any) -> list[Sample]:
    """The samples of a ``{"Samples": [...]}`` body; raises ``SampleFormatError``."""
    raw = body.get("Samples") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise SampleFormatError("Samples", "must be a list of samples")
    if len(raw) > MAX_SAMPLES_PER_PUT:
        raise SampleFormatError("Samples", f"at most {MAX_SAMPLES_PER_PUT} per request")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(sample_from_json(item))
        except SampleFormatError as exc:
            raise SampleFormatError(f"Samples[{i}].{exc.field}", exc.message) from None
    return out


def newest_per_destination(samples: Iterable[Sample], limit: int) -> list[Sample]:
    """At most ``limit`` samples per destination, the newest, gathered from
    every agent: the dry run's work stays bounded however many agents
    recorded traffic to one service."""
    by_dest: dict[str, list[Sample]] = {}
    for s in samples:
        by_dest.setdefault(s.destination, []).append(s)
    out: list[Sample] = []
    for group in by_dest.values():
        group.sort(key=lambda s: s.time)
        out.extend(group[-limit:])
    return out


def _peer_samples(answers: Iterable[Any]) -> list[Sample]:
    out = []
    for answer in answers:
        raw = answer.get("Samples") if isinstance(answer, dict) else None
        for item in raw if isinstance(raw, list) else []:
            try:
                out.append(sample_from_json(item))
            except SampleFormatError:
                continue  # a peer's odd sample is not worth failing the dry run
    return out


# ----------------------------------------------------------------------- handlers
# Module-level: each takes its ports and the request (rows of meshd/api/routes.py ROUTES).


def local_samples(
    p: Ports, req: Request, destinations: list[str] | None
) -> tuple[list[Sample], bool]:
    mine = p.request_samples.samples(destinations)
    kept = [s for s in mine if _readable(req, (s.source, s.destination))]
    return kept, len(kept) != len(mine)


async def all_samples(
    p: Ports, req: Request, destinations: list[str] | None
) -> tuple[list[Sample], bool]:
    mine, filtered = local_samples(p, req, destinations)
    if "local" in req.query:
        return mine, filtered
    query = {"destination": ",".join(destinations)} if destinations is not None else {}
    members = await p.members()
    port = p.config.ports.http
    answers = await ask_peers(members, p.node_name, port, SAMPLES_PATH, query, req.token)
    return mine + _peer_samples(answers), filtered


async def put_samples(p: Ports, req: Request) -> Response:
    try:
        samples = parse_samples(json.loads(req.body or b"null"))
    except ValueError as exc:
        field = exc.field if isinstance(exc, SampleFormatError) else "body"
        raise BadRequest(f"Request decode failed: {exc}", field) from None
    authz = getattr(req, "authz", None)
    if authz is not None:
        for service in sorted({s.source for s in samples}):
            authz.require(Permission.SERVICE_WRITE, service)
    return Response.json({"Accepted": p.request_samples.ingest(samples)})


async def get_samples(p: Ports, req: Request) -> Response:
    raw = req.query_value("destination")
    destinations = [d for d in raw.split(",") if d] if raw else None
    samples, filtered = await all_samples(p, req, destinations)
    resp = Response.json({"Samples": [sample_to_json(s) for s in samples]})
    if filtered:
        resp.set_header(FILTERED_HEADER, "true")
    return resp


async def post_dry_run(p: Ports, req: Request) -> Response:
    typed = proposed_entries(decode_json_body(req))
    graph, _ = await load_graph(p)
    check_graph(p, graph, typed)  # the write's own refusal, texts and all
    affected = validate_entries(graph, typed, datacenter=p.datacenter)
    everything = any(e.kind in (SERVICE_INTENTIONS, PROXY_DEFAULTS) for e in typed)
    samples, filtered = await all_samples(p, req, None if everything else affected)
    samples = newest_per_destination(samples, PER_DESTINATION)
    default_allow = p.config.connect.default_intention_policy == "allow"
    dc = p.datacenter
    before = world_of(graph, datacenter=dc, default_allow=default_allow)
    after = world_of(graph.with_changes(typed), datacenter=dc, default_allow=default_allow)
    listed = [s for s in affected if _readable(req, (s,))]
    # CPU-bound (every distinct request shape decided twice): off the
    # agent's event loop, so heartbeats and other requests keep going.
    run = functools.partial(dry_run, samples, before, after, services=listed, now=time.time())
    answer = await trio.to_thread.run_sync(run)
    resp = Response.json(answer, pretty="pretty" in req.query)
    if filtered or len(listed) != len(affected):
        resp.set_header(FILTERED_HEADER, "true")
    return resp
