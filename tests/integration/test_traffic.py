"""Gates that see the traffic that really arrived (issue #13, parts 0-2): each cluster's own
Prometheus under its mesh name, the bake waiting for DNS caches to move clients, and rounds
on too few requests counted as no data."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from sprintops import api, controls
from sprintops.api import SprintReleaseSpec
from sprintops.durations import parse_timestamp
from sprintops_dev import environment
from tests.integration.conftest import Env, Operator, wait_events, wait_phase, wait_status

ReleaseOf = Callable[..., tuple[dict[str, Any], SprintReleaseSpec]]
PACE = {"analysis__bakeTime": "4s", "analysis__interval": "2s"}


def _own_sources(env: Env, doc: dict[str, Any], *, mesh_names: bool) -> None:
    for cluster in api.CLUSTERS:
        entry = doc["spec"]["clusters"][cluster]
        entry["prometheus"] = {"address": env.state.cluster_prometheus[cluster]}
        if mesh_names:
            entry["meshCluster"] = environment.MESH[cluster]


def test_checks_follow_the_metrics_to_each_clusters_prometheus(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    """Each cluster's Prometheus holds only its own series, under the mesh's name for it."""
    doc, _ = release_of("own-prometheus", **PACE)
    _own_sources(env, doc, mesh_names=True)
    doc["spec"]["analysis"]["comparison"] = {
        "metrics": [{"name": "request-success-rate", "effectSize": {"allowedDecrease": 0.99}}]
    }
    name = doc["metadata"]["name"]
    env.create(doc)
    status = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=120)["status"]
    assert status["phase"] == "Succeeded", status["message"]
    measured = {r["metric"] for r in status["analysis"] if r.get("value") is not None}
    assert {"request-success-rate", "request-duration-p99", "comparison"} <= measured, measured
    assert "request-success-rate vs odd" in measured
    assert status["observedTraffic"]["even"] > 95, status["observedTraffic"]


def test_a_cluster_under_the_wrong_name_holds_and_names_the_series(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, _ = release_of("wrong-mesh-name", **PACE)
    _own_sources(env, doc, mesh_names=False)  # the keys: no such series in either
    name = doc["metadata"]["name"]
    env.create(doc)
    status = wait_status(env, name, lambda s: len(s.get("analysis", [])) >= 8, timeout=60)
    assert status["phase"] == "Progressing" and status["stepIndex"] == 0, status
    assert status.get("bakeStartedAt") is None
    assert status["message"] == "waiting for traffic: no requests of 10% observed"
    rates = [r for r in status["analysis"] if r["metric"] == "request-success-rate"]
    assert rates and all(r["verdict"] == "hold" for r in rates), rates
    looked_for = 'istio_requests_total{reporter="destination",destination_cluster="even"'
    assert f"no samples for {looked_for}" in rates[-1]["note"], rates[-1]


def test_too_little_traffic_is_no_data(env: Env, operator: Operator, release_of: ReleaseOf) -> None:
    """100 requests a second, 10% of them on the new cluster, in a 10 s window: about 100,
    fewer than the 1000 this release asks for."""
    # Room for a round or two before the first scrape (no samples at all) on a busy machine.
    doc, _ = release_of(
        "too-little",
        **PACE,
        analysis__minRequests=1000,
        analysis__noData="fail",
        analysis__failureLimit=4,
    )
    # One check whose series exist from the first request (a 5xx query may find none yet).
    doc["spec"]["analysis"]["metrics"] = [{"name": "request-success-rate", "min": 99}]
    name = doc["metadata"]["name"]
    env.create(doc)
    status = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=60)["status"]
    assert status["phase"] == "RolledBack", status["message"]
    failed = [r["note"] for r in status["analysis"] if r["verdict"] == "fail"]
    why = "requests in the window, fewer than minRequests 1000): counted as fail"
    assert any(why in note for note in failed), failed
    assert status["steps"][0]["weight"] == 10 and len(status["steps"]) == 1
    assert status["observedTraffic"]["requests"] < 1000, status["observedTraffic"]


def _share_crossed(env: Env, service: str, floor: float, start: float, end: float) -> float:
    """When the new cluster's share of requests first reached `floor` percent, by a query of
    our own on the default Prometheus (a sample every half second)."""
    sel = f'reporter="destination",destination_workload="{service}"'
    promql = (
        f'100 * sum(irate(istio_requests_total{{{sel},destination_cluster="even"}}[10s]))'
        f" / sum(irate(istio_requests_total{{{sel}}}[10s]))"
    )
    query = urllib.parse.urlencode(
        {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "0.5"}
    )
    with urllib.request.urlopen(f"{env.state.prometheus_url}/api/v1/query_range?{query}") as r:
        (series,) = json.load(r)["data"]["result"]
    return next(float(t) for t, v in series["values"] if float(v) >= floor)


def test_the_bake_waits_for_the_traffic_with_ttl_60_unscaled(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    """Clients resolve through caches that keep an answer for the record's 60 s TTL, and a
    tenth hold keep-alive connections for 90 s: the first step's share rises over about a
    minute, and the bake starts only once it is within the band (5 points) of 10%."""
    # A band of 5 points: the wait is about 30 s, not 50, and still a minute's TTL unscaled.
    doc, spec = release_of("dns-ttl-60", **PACE, analysis__trafficTolerance=5)
    assert spec.traffic.route53.ttl == 60
    clients = environment.Dns(time_scale=1, keepalive_share=0.1, keepalive_seconds=90)
    environment.simulate(env.layout, spec, dns=clients)
    name = doc["metadata"]["name"]
    env.create(doc)
    seen: list[float] = []
    deadline = time.monotonic() + 150
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = env.status(name)
        share = ((status.get("observedTraffic") or {}).get("even")) or 0.0
        if status.get("stepIndex") == 0 and (not seen or share != seen[-1]):
            seen.append(share)
        if status.get("bakeStartedAt"):
            break
        time.sleep(0.5)
    assert status.get("bakeStartedAt"), status
    started = parse_timestamp(status["stepStartedAt"])
    baked = parse_timestamp(status["bakeStartedAt"])
    # Gradual: many readings between nothing and the band, rising (each reading is the
    # last two scrapes' rate, so it jitters around the rise).
    rising = [s for s in seen if 0.5 < s < 5]
    assert len(rising) >= 5 and rising[-1] - rising[0] > 2.5, seen
    # Rising on the whole, not one jump: the later half of the readings sits clearly above
    # the earlier (a point, not 2: a busy machine's first reading may come late in the rise).
    half = len(rising) // 2
    assert sum(rising[half:]) / (len(rising) - half) > sum(rising[:half]) / half + 1, seen
    assert (baked - started).total_seconds() > 20, (started, baked)
    # Our own reading of Prometheus: the share reached the band, then the bake began.
    crossed = _share_crossed(
        env, spec.service.name, 5.0, started.timestamp(), baked.timestamp() + 2
    )
    assert started.timestamp() < crossed <= baked.timestamp() + 0.5, (started, crossed, baked)
    events = wait_events(env, name, lambda es: any(e.reason == "TrafficArrived" for e in es))
    arrived = [e.message for e in events if e.reason == "TrafficArrived"]
    assert arrived[0].startswith("step 1/3: ") and "of 10% observed; the bake starts" in arrived[0]
    # Enough: the next steps would wait as long again.
    controls.request(env.apis["mgmt"], "releases", name, "abort")
    assert wait_phase(env, name, {"RolledBack"}, timeout=60)
