"""The Prometheus HTTP API: instant queries for one check round."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from sprintops.api import SprintReleaseSpec
from sprintops.health.checks import CheckOutcome, judge, query_for, threshold

TIMEOUT = 5.0


class PrometheusError(Exception):
    pass


def instant_query(base_url: str, promql: str, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    url = f"{base_url.rstrip('/')}/api/v1/query"
    data = urllib.parse.urlencode({"query": promql}).encode()
    try:
        with urllib.request.urlopen(url, data=data, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:200]
        raise PrometheusError(f"HTTP {exc.code}: {detail}") from None
    except (OSError, ValueError) as exc:
        raise PrometheusError(f"unreachable ({type(exc).__name__}: {exc})") from None
    if body.get("status") != "success":
        raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
    if body["data"]["resultType"] != "vector":
        raise PrometheusError(f"expected an instant vector, got {body['data']['resultType']}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def run_checks(
    base_url: str, spec: SprintReleaseSpec, cluster: str, query_range: str
) -> list[CheckOutcome]:
    """One round: every metric of the release, on the new cluster."""
    values = {
        "cluster": cluster,
        "namespace": spec.service.namespace,
        "service": spec.service.name,
        "interval": query_range,
    }
    out = []
    for metric in spec.analysis.metrics:
        try:
            out.append(judge(metric, instant_query(base_url, query_for(metric, values))))
        except (PrometheusError, ValueError) as exc:
            out.append(CheckOutcome(metric.name, None, threshold(metric), "error", str(exc)))
    return out
