"""The proxy's request-shape samples: what is kept of a request (no trace
ids, no credentials' values, cut lengths), and the queue's bound."""

from __future__ import annotations

import json
import random

import trio

from connect.proxy.l7_samples import (
    MAX_HEADERS,
    MAX_TARGET,
    RequestSamples,
    encode_samples,
    sample_from_json,
    sample_to_json,
)


def test_a_sample_keeps_the_shape_and_drops_secrets_and_trace_ids() -> None:
    samples = RequestSamples(None, clock=lambda: 12.5)
    headers = [
        (b"Host", b"api"),
        (b"X-Version", b"2"),
        (b"Authorization", b"Bearer secret"),
        (b"traceparent", b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"),
        (b"x-request-id", b"r1"),
        (b"user-agent", b"x" * 1000),
    ]
    samples.record("web", "api", b"GET", b"/a/b?q=1&r=2", headers)
    [s] = samples.take()
    assert (s.source, s.destination, s.method, s.path, s.query) == (
        "web",
        "api",
        "GET",
        "/a/b",
        "q=1&r=2",
    )
    assert s.headers == (("x-version", "2"), ("authorization", ""), ("user-agent", "x" * 256))
    assert s.time == 12.5
    assert sample_from_json(sample_to_json(s)) == s


def test_the_queue_and_each_sample_are_bounded() -> None:
    samples = RequestSamples(None, max_pending=3)
    many = [(f"x-h{i}".encode(), b"v") for i in range(40)]
    for i in range(5):
        samples.record("web", "api", b"GET", b"/" + b"p" * 5000 + str(i).encode(), many)
    assert len(samples.pending) == 3 and samples.dropped == 2
    kept = samples.take()
    assert len(kept[0].path) == MAX_TARGET and len(kept[0].headers) == MAX_HEADERS


def test_a_busy_interval_posts_a_uniform_reservoir_oldest_first() -> None:
    ticks = iter(range(1_000_000))
    samples = RequestSamples(
        None, clock=lambda: float(next(ticks)), max_pending=200, rng=random.Random(7)
    )
    for i in range(20_000):
        samples.record("web", "api", b"GET", f"/{i}".encode(), [(b"host", b"api")])
    assert len(samples.pending) == 200 and samples.dropped == 19_800
    kept = samples.take()
    idx = [int(s.path[1:]) for s in kept]
    assert len(idx) == 200 and idx == sorted(idx) and len(set(idx)) == 200
    # uniform over the interval, not its first or last requests
    assert 8_000 < sum(idx) / len(idx) < 12_000
    assert sum(i < 10_000 for i in idx) in range(70, 131)
    # the next interval starts empty and keeps everything until it is full
    assert samples.pending == [] and samples.seen == 0
    samples.record("web", "api", b"GET", b"/next", [])
    assert [s.path for s in samples.take()] == ["/next"]


def test_the_batch_is_encoded_in_chunks_as_one_json_body() -> None:
    samples = RequestSamples(None, clock=lambda: 1.0)
    for i in range(250):
        samples.record("web", "api", b"GET", f"/{i}?q".encode(), [(b"x-v", b"2")])
    batch = samples.take()
    body = json.loads(trio.run(encode_samples, batch))
    assert body == {"Samples": [sample_to_json(s) for s in batch]}
    assert [sample_from_json(raw).path for raw in body["Samples"]][-1] == "/249"
    assert json.loads(trio.run(encode_samples, [])) == {"Samples": []}
