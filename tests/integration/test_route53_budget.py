"""Many pairs at once against moto behind a proxy that enforces 5 requests/s: coalesced, paced,
never throttled, and one bad pair fails alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from sprintops.api import Route53, Weights
from sprintops.traffic.route53 import Route53Pairs, make_client
from sprintops_dev import seed
from sprintops_dev.faultproxy import FaultProxy, Faults
from tests.integration.conftest import Env

RATE = 5


@pytest.fixture
def limited(env: Env, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FaultProxy, Route53Pairs]]:
    with FaultProxy(env.state.route53_url, Faults(max_rate=RATE)) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_ROUTE_53", proxy.url)
        yield proxy, Route53Pairs(make_client(), max_rate=RATE)


def _pairs(env: Env, count: int) -> list[Route53]:
    spec = seed.canonical(env.layout.repo).traffic.route53
    run = uuid.uuid4().hex[:6]
    return [
        spec.model_copy(update={"record_name": f"b{run}-{i}.sprintops.test."}) for i in range(count)
    ]


def test_concurrent_writes_are_coalesced_and_paced(
    env: Env, limited: tuple[FaultProxy, Route53Pairs]
) -> None:
    proxy, pairs = limited
    specs = _pairs(env, 30)
    pairs.zone_id(specs[0])  # looked up once, before the stampede

    def step(spec: Route53) -> None:
        pairs.wait_insync(pairs.write(spec, Weights(even=10, odd=90)))

    with ThreadPoolExecutor(30) as pool:
        list(pool.map(step, specs))
    assert pairs.read_many(specs) == [Weights(even=10, odd=90)] * len(specs)
    changes = proxy.stats.by_operation["ChangeResourceRecordSets"]
    assert changes <= 10, proxy.stats  # 30 writers, a handful of batches
    assert proxy.stats.injected["Throttling"] == 0, proxy.stats
    assert proxy.stats.peak_rate() <= RATE, proxy.stats


def test_concurrent_reads_share_a_zone_listing(
    env: Env, limited: tuple[FaultProxy, Route53Pairs]
) -> None:
    proxy, pairs = limited
    specs = _pairs(env, 30)
    pairs.zone_id(specs[0])
    with ThreadPoolExecutor(30) as pool:
        found = list(pool.map(pairs.read, specs))
    assert found == [None] * 30  # never written
    assert proxy.stats.by_operation["ListResourceRecordSets"] <= 10, proxy.stats
    assert proxy.stats.injected["Throttling"] == 0, proxy.stats


def test_a_bad_pair_fails_alone(env: Env, limited: tuple[FaultProxy, Route53Pairs]) -> None:
    _, pairs = limited
    specs = _pairs(env, 12)
    # A name outside the hosted zone: Route 53 rejects the whole batch it is in.
    specs[5] = specs[5].model_copy(update={"record_name": "elsewhere.example.org."})
    pairs.zone_id(specs[0])

    def step(spec: Route53) -> str:
        try:
            pairs.wait_insync(pairs.write(spec, Weights(even=50, odd=50)))
        except ClientError as exc:
            return str(exc.response["Error"]["Code"])
        return "ok"

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(step, specs))
    assert outcomes == ["ok"] * 5 + ["InvalidChangeBatch"] + ["ok"] * 6
    good = specs[:5] + specs[6:]
    assert pairs.read_many(good) == [Weights(even=50, odd=50)] * len(good)


def test_requests_one_after_another_are_paced(
    env: Env, limited: tuple[FaultProxy, Route53Pairs]
) -> None:
    proxy, pairs = limited
    specs = _pairs(env, 12)
    for spec in specs:  # nothing to coalesce: twelve reads in a row
        assert pairs.read(spec) is None
    assert proxy.stats.by_operation["ListResourceRecordSets"] == 12, proxy.stats
    assert proxy.stats.injected["Throttling"] == 0, proxy.stats
    assert proxy.stats.peak_rate() <= RATE, proxy.stats
