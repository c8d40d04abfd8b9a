"""The operator's own /metrics, scraped during and after a rollout."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from sprintops import controls
from sprintops.api import SprintReleaseSpec
from tests.integration.conftest import Env, Operator, first_step_started, wait_phase, wait_status

ReleaseOf = Callable[..., tuple[dict[str, Any], SprintReleaseSpec]]


def scrape(operator: Operator) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # The shared operator may have just been restarted by a test before (bench, chart,
    # faults...): its metrics are served once its start-up handler ran.
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5
            ) as r:
                text = r.read().decode()
            break
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def grew(
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    after: dict[tuple[str, tuple[tuple[str, str], ...]], float],
    name: str,
    **labels: str,
) -> float:
    """How much a series grew: counters are cumulative over every earlier test."""
    return value(after, name, **labels) - value(before, name, **labels)


def test_metrics_during_and_after_a_rollout(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, _ = release_of("metered", analysis__bakeTime="6s")
    name = doc["metadata"]["name"]
    before = scrape(operator)
    env.create(doc)
    first_step_started(env, name)
    during = scrape(operator)
    assert value(during, "sprintops_release_weight_percent", release=name, cluster="even") == 10
    assert value(during, "sprintops_release_weight_percent", release=name, cluster="odd") == 90
    assert grew(before, during, "sprintops_releases", phase="Progressing") >= 1
    wait_phase(env, name, {"Succeeded"}, timeout=90)
    after = scrape(operator)
    assert value(after, "sprintops_release_weight_percent", release=name, cluster="even") == 100
    assert grew(before, after, "sprintops_releases", phase="Succeeded") >= 1
    assert grew(before, after, "sprintops_step_duration_seconds_count") >= 3
    # Each step baked 6s, so the steps' total time is at least 18s and not absurdly more.
    assert 18 <= grew(before, after, "sprintops_step_duration_seconds_sum") < 600
    checks = "sprintops_check_results_total"
    assert grew(before, after, checks, metric="request-success-rate", verdict="pass") >= 3
    assert grew(before, after, checks, metric="deployment-available", verdict="pass") >= 3
    changes_sent = "sprintops_route53_requests_total"
    assert grew(before, after, changes_sent, operation="ChangeResourceRecordSets") >= 3
    # moto answers INSYNC at once, so no GetChange is needed. Every batch holds whole pairs
    # (more than one when other releases wrote at the same moment).
    batches = grew(before, after, "sprintops_route53_batch_changes_count")
    changes = grew(before, after, "sprintops_route53_batch_changes_sum")
    assert batches >= 3 and changes >= 2 * batches and changes % 2 == 0
    assert grew(before, after, "sprintops_reconcile_duration_seconds_count") > 0
    assert (
        0
        < grew(before, after, "sprintops_plan_duration_seconds_sum")
        < grew(before, after, "sprintops_reconcile_duration_seconds_sum")
    )
    # A rollback is counted with its reason.
    aborted, _ = release_of("metered-abort", analysis__bakeTime="30s")
    before = scrape(operator)
    env.create(aborted)
    wait_status(env, aborted["metadata"]["name"], lambda s: bool(s.get("stepStartedAt")), 60)
    controls.request(env.apis["mgmt"], "releases", aborted["metadata"]["name"], "abort")
    wait_phase(env, aborted["metadata"]["name"], {"RolledBack"}, timeout=30)
    assert grew(before, scrape(operator), "sprintops_rollbacks_total", reason="Aborted") == 1
