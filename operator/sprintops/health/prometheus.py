"""The Prometheus HTTP API: a check round's instant queries and a comparison's range queries."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from sprintops.api import ComparisonMetric, Metric, SprintReleaseSpec
from sprintops.durations import seconds
from sprintops.health.checks import (
    BUILTIN_DIRECTIONS,
    COMPARISON_CHECK,
    TRAFFIC_RATE,
    TRAFFIC_REQUESTS,
    VERSUS,
    CheckOutcome,
    Outcome,
    TrafficSample,
    in_band,
    judge,
    looked_for,
    query_for,
    render,
    share,
    threshold,
)
from sprintops.health.judge import Classification, Direction, classify, score

TIMEOUT = 5.0
MAX_PARALLEL_QUERIES = 8
MAX_SAMPLES = 200
T = TypeVar("T")
R = TypeVar("R")
OUTCOMES: dict[Classification, Outcome] = {
    "Pass": "pass",
    "High": "fail",
    "Low": "fail",
    "NoData": "noData",
}


class PrometheusError(Exception):
    pass


@dataclass(frozen=True)
class Source:
    """Where one workload cluster's metrics are, and what the mesh calls the cluster there."""

    cluster: str
    """The key (even or odd)."""
    url: str
    label: str
    """Filled in for {{ cluster }}."""
    token: str | None = None

    def __repr__(self) -> str:  # never print the token
        return f"Source({self.cluster!r}, {self.url!r}, {self.label!r})"


def instant_query(source: Source, promql: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    return _query(source, "query", {"query": promql}, "vector", timeout)


def range_query(
    source: Source, promql: str, start: float, end: float, step: float, *, timeout: float = TIMEOUT
) -> list[dict[str, Any]]:
    """A range query: one series per label set, each a list of [time, "value"]."""
    params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    return _query(source, "query_range", params, "matrix", timeout)


def _query(
    source: Source, endpoint: str, params: dict[str, str], kind: str, timeout: float
) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"{source.url.rstrip('/')}/api/v1/{endpoint}",
        data=urllib.parse.urlencode(params).encode(),
        headers={"Authorization": f"Bearer {source.token}"} if source.token else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:200]
        raise PrometheusError(f"HTTP {exc.code}: {detail}") from None
    except OSError as exc:
        raise PrometheusError(f"unreachable ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:  # a bad answer, or a header the token broke: its type only,
        # as the text may quote the token
        raise PrometheusError(f"unusable request or answer ({type(exc).__name__})") from None
    if body.get("status") != "success":
        raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
    if body["data"]["resultType"] != kind:
        raise PrometheusError(f"expected a {kind}, got {body['data']['resultType']}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _values(spec: SprintReleaseSpec, source: Source, query_range: str) -> dict[str, str]:
    return {
        "cluster": source.label,
        "namespace": spec.service.namespace,
        "service": spec.service.name,
        "interval": query_range,
    }


def run_checks(source: Source, spec: SprintReleaseSpec, query_range: str) -> list[CheckOutcome]:
    """One round: every metric of the release, on the new cluster, queried side by side (a
    Prometheus that hangs costs one timeout per round, not one per metric)."""
    values = _values(spec, source, query_range)

    def check(metric: Metric) -> CheckOutcome:
        try:
            promql = query_for(metric, values)
            return judge(metric, instant_query(source, promql), promql)
        except (PrometheusError, ValueError) as exc:
            return CheckOutcome(metric.name, None, threshold(metric), "error", str(exc))

    return _side_by_side(check, spec.analysis.metrics)


@dataclass(frozen=True)
class Waiting:
    """A step waiting for its traffic: since when, for what weight, within what band."""

    since: float
    weight: float
    tolerance: float


def observe_traffic(
    sources: tuple[Source, Source],
    spec: SprintReleaseSpec,
    query_range: str,
    waiting: Waiting | None = None,
    now: float | None = None,
) -> TrafficSample:
    """What really arrived: each cluster's request rate, and the new one's requests in the
    window, queried side by side. While a step waits, also when its share first came within
    the band, read back over the step so far: the bake then starts when the traffic
    arrived, not at the round that happened to see it."""

    def fetch(query: tuple[Source, str, bool]) -> float | dict[float, float] | str:
        source, template, over_time = query
        promql = render(template, _values(spec, source, query_range))
        try:
            if over_time and waiting is not None and now is not None:
                step = max(0.5, (now - waiting.since) / MAX_SAMPLES)
                found = range_query(source, promql, waiting.since, now, step)
                return {float(t): float(v) for t, v in found[0]["values"]} if found else {}
            result = instant_query(source, promql)
        except PrometheusError as exc:
            return f"{source.cluster}: {exc}"
        # No series: nothing was ever served there under that name, which is no traffic.
        return float(result[0]["value"][1]) if len(result) == 1 else 0.0

    queries = [
        (sources[0], TRAFFIC_RATE, False),
        (sources[1], TRAFFIC_RATE, False),
        (sources[0], TRAFFIC_REQUESTS, False),
    ]
    if waiting is not None:
        queries += [(sources[0], TRAFFIC_RATE, True), (sources[1], TRAFFIC_RATE, True)]
    answers = _side_by_side(fetch, queries)
    values = [a if isinstance(a, float) else None for a in answers[:3]]
    errors = sorted({a for a in answers if isinstance(a, str)})
    reached = None
    if waiting is not None and isinstance(answers[3], dict) and isinstance(answers[4], dict):
        new, old = answers[3], answers[4]
        reached = next(
            (
                t
                for t in sorted(new.keys() & old.keys())
                if in_band(share(new[t], old[t]), waiting.weight, waiting.tolerance)
            ),
            None,
        )
    return TrafficSample(values[0], values[1], values[2], "; ".join(errors), reached)


def _side_by_side(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """`work` on every item at once: a Prometheus that hangs costs one timeout, not one
    per query."""
    if len(items) <= 1:
        return [work(i) for i in items]
    with ThreadPoolExecutor(min(len(items), MAX_PARALLEL_QUERIES)) as pool:
        return list(pool.map(work, items))


@dataclass(frozen=True)
class Series:
    """One cluster's samples by time, or why there are none."""

    samples: dict[float, float]
    problem: str = ""


def _series(promql: str, result: list[dict[str, Any]]) -> Series:
    """Several series (a query that does not aggregate) or none give nothing to compare."""
    if not result:
        return Series({}, f"no samples{looked_for(promql)}")
    if len(result) > 1:
        return Series({}, f"{len(result)} series, expected 1, for {promql[:200]}")
    return Series({float(t): float(v) for t, v in result[0]["values"]})


def run_comparison(
    sources: tuple[Source, Source],
    spec: SprintReleaseSpec,
    query_range: str,
    window: tuple[float, float],
) -> list[CheckOutcome]:
    """The new cluster (first) against the old one over `window` (the step so far): per
    metric, the two series at the same times, judged; then the round's score. Empty without
    a comparison in the spec."""
    comparison = spec.analysis.comparison
    if comparison is None:
        return []
    old = sources[1].cluster
    start, end = window
    # Two samples per check interval (a one-minute step at 10 s gives a dozen per cluster),
    # at most MAX_SAMPLES over a long step: the judge's work grows with their square.
    step = max(1.0, seconds(spec.analysis.interval) / 2, (end - start) / MAX_SAMPLES)

    def fetch(query: tuple[ComparisonMetric, Source]) -> Series | Exception:
        metric, source = query
        try:
            promql = query_for(metric, _values(spec, source, query_range))
            return _series(promql, range_query(source, promql, start, end, step))
        except (PrometheusError, ValueError) as exc:
            return exc

    fetched = iter(_side_by_side(fetch, [(m, s) for m in comparison.metrics for s in sources]))
    judgments, out = [], []
    for metric in comparison.metrics:
        direction: Direction = metric.direction or BUILTIN_DIRECTIONS.get(metric.name) or "either"
        limit = f"no significant {direction} beyond x{_allowed(metric, direction)}"
        ours, theirs = next(fetched), next(fetched)
        if isinstance(ours, Exception) or isinstance(theirs, Exception):
            failed = ours if isinstance(ours, Exception) else theirs
            out.append(
                CheckOutcome(f"{metric.name}{VERSUS}{old}", None, limit, "error", str(failed))
            )
            continue
        times = sorted(ours.samples.keys() & theirs.samples.keys())
        judged = classify(
            metric.name,
            [ours.samples[t] for t in times],
            [theirs.samples[t] for t in times],
            direction=direction,
            allowed_increase=metric.effect_size.allowed_increase,
            allowed_decrease=metric.effect_size.allowed_decrease,
            critical=metric.critical,
            confidence=comparison.confidence,
            nan_strategy=comparison.nan_strategy,
            remove_outliers=comparison.remove_outliers,
        )
        judgments.append(judged)
        out.append(
            CheckOutcome(
                f"{metric.name}{VERSUS}{old}",
                judged.ratio,
                limit,
                OUTCOMES[judged.classification],
                _why_not(sources, ours, theirs) or judged.describe(comparison.confidence),
                counted=metric.critical,
            )
        )
    if len(judgments) == len(comparison.metrics):  # a Prometheus error holds the round
        verdict = score(judgments, comparison.pass_, comparison.marginal)
        want = f"score >= {comparison.pass_} (hold >= {comparison.marginal})"
        out.append(
            CheckOutcome(COMPARISON_CHECK, verdict.score, want, verdict.outcome, verdict.reason)
        )
    return out


def _why_not(sources: tuple[Source, Source], *series: Series) -> str:
    """Why a side gave nothing to compare, naming the cluster and what was asked."""
    return "; ".join(
        f"{source.cluster}: {found.problem}"
        for source, found in zip(sources, series, strict=True)
        if found.problem
    )


def _allowed(metric: ComparisonMetric, direction: str) -> str:
    size = metric.effect_size
    if direction == "increase":
        return f"{size.allowed_increase:g}"
    if direction == "decrease":
        return f"{size.allowed_decrease:g}"
    return f"{size.allowed_decrease:g}..{size.allowed_increase:g}"
