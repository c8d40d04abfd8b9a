"""The operator's own metrics (prometheus-client), served on /metrics."""

from __future__ import annotations

import contextlib
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sprintops.api import CLUSTERS, SprintReleaseStatus
from sprintops.durations import parse_timestamp

REGISTRY = CollectorRegistry()

WEIGHT = Gauge(
    "sprintops_release_weight_percent",
    "Traffic percent per release and cluster, as last applied",
    ["namespace", "release", "cluster"],
    registry=REGISTRY,
)
OBSERVED = Gauge(
    "sprintops_traffic_observed_percent",
    "Share of requests per release and cluster that really arrived, from Prometheus",
    ["namespace", "release", "cluster"],
    registry=REGISTRY,
)
STEP_SECONDS = Histogram(
    "sprintops_step_duration_seconds",
    "Time from a step's weights being applied to its gate passing",
    buckets=(1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
CHECKS = Counter(
    "sprintops_check_results_total",
    "Health check results by metric and verdict",
    ["metric", "verdict"],
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "sprintops_rollbacks_total", "Rollbacks started, by reason", ["reason"], registry=REGISTRY
)
ROUTE53_REQUESTS = Counter(
    "sprintops_route53_requests_total",
    "Route 53 API requests sent (every attempt, retries included)",
    ["operation"],
    registry=REGISTRY,
)
ROUTE53_ERRORS = Counter(
    "sprintops_route53_errors_total",
    "Route 53 API error answers, by code",
    ["operation", "code"],
    registry=REGISTRY,
)
ROUTE53_PACING_SECONDS = Counter(
    "sprintops_route53_pacing_seconds_total",
    "Seconds Route 53 requests waited for their turn under the request rate budget",
    registry=REGISTRY,
)
ROUTE53_BATCH_CHANGES = Histogram(
    "sprintops_route53_batch_changes",
    "Changes per ChangeResourceRecordSets call (two per release written together)",
    buckets=(2, 4, 10, 20, 50, 100, 200, 500, 1000),
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "sprintops_reconcile_duration_seconds",
    "One reconcile: observe, plan, write status, act",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
PLAN_SECONDS = Histogram(
    "sprintops_plan_duration_seconds",
    "The pure plan function alone",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01),
    registry=REGISTRY,
)

_phases: dict[str, str] = {}


class _ReleasesByPhase(Collector):
    """`sprintops_releases{phase}`, counted when scraped: nothing to clear and refill on
    every transition."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "sprintops_releases", "SprintReleases by phase", labels=["phase"]
        )
        # tuple() copies in one step under the GIL, while the event loop may write.
        for phase, count in sorted(Tally(tuple(_phases.values())).items()):
            family.add_metric([phase], count)
        yield family


REGISTRY.register(_ReleasesByPhase())


def serve(port: int) -> None:
    start_http_server(port, registry=REGISTRY)


def record(key: tuple[str, str], old: SprintReleaseStatus, new: SprintReleaseStatus) -> None:
    """Updates the metrics from one status transition of one release."""
    namespace, name = key
    if new.phase is not None:
        _phases[f"{namespace}/{name}"] = new.phase
    if new.weights is not None:
        for cluster in CLUSTERS:
            WEIGHT.labels(namespace, name, cluster).set(new.weights.of(cluster))
    seen = new.observed_traffic
    if seen is not None and seen != old.observed_traffic:
        for cluster in CLUSTERS:
            share = getattr(seen, cluster)
            if share is not None:
                OBSERVED.labels(namespace, name, cluster).set(share)
            else:  # unknown now: absent, not the last value
                with contextlib.suppress(KeyError):
                    OBSERVED.remove(namespace, name, cluster)
    if new.phase == "RollingBack" and old.phase != "RollingBack":
        reason = next((c.reason for c in new.conditions if c.type == "Degraded"), "Unknown")
        ROLLBACKS.labels(reason).inc()
    # A round's results share one time; the history is bounded, so compare times, not lengths.
    last = old.analysis[-1].time if old.analysis else ""
    for result in new.analysis:
        if result.time > last:
            CHECKS.labels(result.metric, result.verdict).inc()
    for before, after in zip(old.steps, new.steps, strict=False):
        if after.completed_at and not before.completed_at:
            baked = parse_timestamp(after.completed_at) - parse_timestamp(after.started_at)
            STEP_SECONDS.observe(baked.total_seconds())


def forget(namespace: str, name: str) -> None:
    """A deleted release leaves the metrics."""
    _phases.pop(f"{namespace}/{name}", None)
    for cluster in CLUSTERS:
        for gauge in (WEIGHT, OBSERVED):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name, cluster)
