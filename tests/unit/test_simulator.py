"""The simulator's exposition text, without a server."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sprintops_dev.simulator import BUCKETS, Backend, Traffic


def test_exposition_parses_and_counts_what_was_served() -> None:
    traffic = Traffic()
    traffic.add(("even-mesh", "shop", "api"), 90.0, Backend(True, 0.0, 10.0))
    traffic.add(("odd-mesh", "shop", "api"), 10.0, Backend(False, 0.0, 10.0))
    families = {f.name: f for f in text_string_to_metric_families(traffic.render().decode())}
    requests = {
        (s.labels["destination_cluster"], s.labels["response_code"]): s.value
        for s in families["istio_requests"].samples
    }
    assert requests[("even-mesh", "200")] == 90.0
    assert requests[("odd-mesh", "503")] == 10.0  # no Available Deployment there
    histogram = [s for s in families["istio_request_duration_milliseconds"].samples]
    even = [s for s in histogram if s.labels["destination_cluster"] == "even-mesh"]
    buckets = [s for s in even if s.name.endswith("_bucket")]
    assert len(buckets) == len(BUCKETS) + 1 and buckets[-1].labels["le"] == "+Inf"
    assert [s.value for s in buckets] == sorted(s.value for s in buckets)  # cumulative
    count = next(s for s in even if s.name.endswith("_count"))
    assert count.value == buckets[-1].value == 90.0
    assert even[0].labels["destination_service"] == "api.shop.svc.cluster.local"


def test_scrapes_serve_the_last_tick_stamped_with_its_time() -> None:
    traffic = Traffic()
    empty = traffic.exposition
    traffic.add(("even-mesh", "shop", "api"), 5.0, Backend(True, 0.0, 10.0))
    assert traffic.exposition == empty  # mid-tick: a scrape sees the last whole tick
    at = time.time() - 0.3  # the tick's start: its work took a while
    traffic.publish(at)
    samples = [
        s for f in text_string_to_metric_families(traffic.exposition.decode()) for s in f.samples
    ]
    assert samples and all(s.timestamp is not None for s in samples)
    # Two scrapes of one tick must be one sample in Prometheus, not two with no increase.
    stamps = {float(s.timestamp) for s in samples}  # type: ignore[arg-type]
    assert len(stamps) == 1
    # The tick's start, which the counts cover up to: stamped later, irate() swung 0.2-5x.
    assert stamps.pop() == pytest.approx(int(at * 1000) / 1000, abs=1e-6)
