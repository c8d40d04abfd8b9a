"""Health checks as pure functions: queries from templates, verdicts from answers. No I/O."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from sprintops.api import ComparisonMetric, Metric

Outcome = Literal["pass", "fail", "noData", "error", "hold"]

# The comparison's results: one per metric ("<metric> vs <old cluster>"), then the score.
COMPARISON_CHECK = "comparison"
VERSUS = " vs "

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
PLACEHOLDERS = ("cluster", "namespace", "service", "interval")


@dataclass(frozen=True)
class CheckOutcome:
    """One metric's answer in one check round."""

    metric: str
    value: float | None
    threshold: str
    outcome: Outcome
    note: str = ""
    # False for a comparison metric that is not critical: it only feeds the round's score.
    counted: bool = True


def escape_label_value(value: str) -> str:
    """A PromQL double-quoted string's escapes, so a value cannot end its quotes early."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(template: str, values: dict[str, str]) -> str:
    """Fills {{ name }} placeholders. Label values are escaped; the range is a duration the
    API has already validated, and is not quoted in PromQL."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ValueError(
                f"unknown placeholder {{{{ {name} }}}} (known: {', '.join(PLACEHOLDERS)})"
            )
        return values[name] if name == "interval" else escape_label_value(values[name])

    return _PLACEHOLDER.sub(fill, template)


_SELECTOR = (
    'reporter="destination",destination_cluster="{{ cluster }}",'
    'destination_workload_namespace="{{ namespace }}",destination_workload="{{ service }}"'
)
BUILTIN_QUERIES = {
    # Percent of non-5xx responses on the new cluster (Flagger's definition).
    "request-success-rate": (
        f'sum(rate(istio_requests_total{{{_SELECTOR},response_code!~"5.."}}[{{{{ interval }}}}]))'
        f" / sum(rate(istio_requests_total{{{_SELECTOR}}}[{{{{ interval }}}}])) * 100"
    ),
    # p99 latency in milliseconds on the new cluster.
    "request-duration-p99": (
        "histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket"
        f"{{{_SELECTOR}}}[{{{{ interval }}}}])) by (le))"
    ),
}


# The traffic that arrived. The rate is the last two scrapes' (irate): the share must follow
# a step within a scrape or two, not over a whole window.
TRAFFIC_RATE = f"sum(irate(istio_requests_total{{{_SELECTOR}}}[{{{{ interval }}}}]))"
TRAFFIC_REQUESTS = f"sum(increase(istio_requests_total{{{_SELECTOR}}}[{{{{ interval }}}}]))"


@dataclass(frozen=True)
class TrafficSample:
    """Requests per second on the new and the old cluster now, and the requests the new one
    served in the window; None where Prometheus had no answer (`error` says why)."""

    new_rate: float | None
    old_rate: float | None
    new_requests: float | None
    error: str = ""
    # While a step waits for its traffic: when (epoch seconds) the share first came within
    # the band, read back over the step so far; None if it has not.
    reached_at: float | None = None

    def new_share(self) -> float | None:
        """Percent of the requests on the new cluster; None if unknown or no requests."""
        if self.new_rate is None or self.old_rate is None:
            return None
        return share(self.new_rate, self.old_rate)


def share(new_rate: float, old_rate: float) -> float | None:
    """Percent of the requests on the new cluster; None without requests."""
    total = new_rate + old_rate
    return None if total <= 0 or math.isnan(total) else 100 * new_rate / total


def in_band(observed: float | None, weight: float, tolerance: float) -> bool:
    """Whether a step's traffic has arrived: the share within `tolerance` points of it."""
    return observed is not None and abs(observed - weight) <= tolerance


def query_for(metric: Metric | ComparisonMetric, values: dict[str, str]) -> str:
    template = metric.query or BUILTIN_QUERIES[metric.name]
    return render(template, values)


# Which change of a built-in metric is a regression.
BUILTIN_DIRECTIONS: dict[str, Literal["increase", "decrease"]] = {
    "request-success-rate": "decrease",
    "request-duration-p99": "increase",
}


_SERIES = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\{[^}]*\}")


def looked_for(promql: str) -> str:
    """The series a query with no answer looked for (its first selector), so a label that
    names no series, such as a cluster under another name in the mesh, is there to see."""
    found = _SERIES.search(promql)
    if found is None:
        return f" for {promql[:200]}" if promql else ""
    return f" for {found.group(0)}"


def threshold(metric: Metric) -> str:
    parts = []
    if metric.min_ is not None:
        parts.append(f">= {metric.min_:g}")
    if metric.max_ is not None:
        parts.append(f"<= {metric.max_:g}")
    return " and ".join(parts)


def judge(metric: Metric, result: list[dict[str, Any]], promql: str = "") -> CheckOutcome:
    """A Prometheus instant-vector answer against the metric's thresholds."""
    limit = threshold(metric)
    if not result:
        return CheckOutcome(metric.name, None, limit, "noData", f"no samples{looked_for(promql)}")
    if len(result) > 1:
        return CheckOutcome(metric.name, None, limit, "noData", f"{len(result)} series, expected 1")
    value = float(result[0]["value"][1])
    if math.isnan(value):
        return CheckOutcome(metric.name, None, limit, "noData", "NaN (no traffic in the window)")
    too_low = metric.min_ is not None and value < metric.min_
    too_high = metric.max_ is not None and value > metric.max_
    return CheckOutcome(metric.name, value, limit, "fail" if too_low or too_high else "pass")
