"""Health gates on the real Prometheus, fed by the traffic simulator; rollback; controls."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from sprintops import api, controls
from sprintops.api import SprintReleaseSpec, Weights
from sprintops.health.checks import render
from sprintops_dev import environment
from sprintops_dev.watcher import InvariantWatcher, Watched
from tests.integration.conftest import Env, Operator, first_step_started, wait_phase, wait_status

ReleaseOf = Callable[..., tuple[dict[str, Any], SprintReleaseSpec]]
NS = "releases"
ODD_LIVE = Weights(even=0, odd=100)


def _unhealthy(
    release_of: ReleaseOf, service: str, annotation: str, value: str, **changes: Any
) -> tuple[dict[str, Any], SprintReleaseSpec]:
    """A release whose new build the simulator makes unhealthy."""
    doc, _ = release_of(service, **changes)
    doc["spec"]["service"]["template"]["metadata"]["annotations"][annotation] = value
    return doc, SprintReleaseSpec.model_validate(doc["spec"])


@pytest.mark.parametrize(
    ("service", "annotation", "value", "metric"),
    [
        ("errors", "sim.sprintops.io/error-rate", "0.2", "request-success-rate"),
        ("slow", "sim.sprintops.io/latency-ms", "900", "request-duration-p99"),
    ],
)
def test_unhealthy_release_rolls_back_in_the_first_step(
    env: Env,
    operator: Operator,
    release_of: ReleaseOf,
    service: str,
    annotation: str,
    value: str,
    metric: str,
) -> None:
    doc, spec = _unhealthy(release_of, service, annotation, value)
    name = doc["metadata"]["name"]
    with InvariantWatcher(env.apis, [Watched(NS, name, spec)]) as watcher:
        env.create(doc)
        obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=90)
    status = obj["status"]
    assert status["phase"] == "RolledBack", status
    assert metric in status["message"] and "want" in status["message"], status["message"]
    assert not watcher.violations, watcher.violations
    # The new cluster never got more than the first step's weight, and got it back.
    assert watcher.tracks[f"{NS}/{name}"].max_target_weight == spec.traffic.steps[0]
    assert env.route53().read(spec.traffic.route53) == ODD_LIVE
    assert env.traffic(spec)[1] == {"even": ODD_LIVE, "odd": ODD_LIVE}
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and metric in degraded["message"]
    failed = [r for r in status["analysis"] if r["verdict"] == "fail"]
    assert {r["metric"] for r in failed} >= {metric}
    # The new Deployment is left in place for inspection.
    assert env.apps("even").read_namespaced_deployment(service, "documents").spec.replicas == 3


def test_prometheus_down_holds_then_resumes(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, _spec = release_of("prom-resume", analysis__bakeTime="4s", analysis__progressDeadline="5m")
    name = doc["metadata"]["name"]
    env.create(doc)
    # Down before the first step starts, so no check of step 1 can pass before the outage.
    environment.stop_prometheus(env.state)
    try:
        first_step_started(env, name)
        held = wait_status(
            env,
            name,
            lambda s: (
                sum(
                    r.get("verdict") == "hold" and "unreachable" in (r.get("note") or "")
                    for r in s.get("analysis", [])
                )
                >= 3
            ),
            timeout=30,
        )
        assert held["phase"] == "Progressing" and held["stepIndex"] == 0
        assert held["consecutiveFailures"] == 0  # unreachable is not a failure
        time.sleep(5)  # longer than the bake: still held on step 1
        assert env.status(name)["stepIndex"] == 0
    finally:
        environment.start_prometheus(env.layout, env.state)
    obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=90)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]


def test_hostile_label_value_cannot_escape_its_quotes(env: Env) -> None:
    template = 'sum(istio_requests_total{destination_workload="{{ service }}"})'
    hostile = 'x"}) or vector(42) or sum(istio_requests_total{destination_workload="y'
    # Pasted in as it is, the value closes the matcher and smuggles in `or vector(42)`...
    injected = template.replace("{{ service }}", hostile)
    assert [float(r["value"][1]) for r in env.promql(injected)] == [42.0]
    # ...escaped, it stays one label value that no series has.
    assert env.promql(render(template, {"service": hostile})) == []


@pytest.mark.parametrize(
    ("policy", "expected"), [("fail", "RolledBack"), ("pass", "Succeeded"), ("hold", "Progressing")]
)
def test_no_data_policies(
    env: Env, operator: Operator, release_of: ReleaseOf, policy: str, expected: str
) -> None:
    doc, _ = release_of(f"nodata-{policy}", analysis__noData=policy, analysis__bakeTime="4s")
    doc["spec"]["analysis"]["metrics"] = [
        {"name": "absent", "query": 'sum(no_such_metric{service="{{ service }}"})', "max": 1}
    ]
    name = doc["metadata"]["name"]
    env.create(doc)
    if expected == "Progressing":
        status = wait_status(
            env,
            name,
            lambda s: sum(r["metric"] == "absent" for r in s.get("analysis", [])) >= 4,
            timeout=40,
        )
        assert (
            status["phase"] == "Progressing"
            and status["stepIndex"] == 0
            and status["consecutiveFailures"] == 0
        )
    else:
        status = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=60)["status"]
        assert status["phase"] == expected, status
    absent = [r for r in status["analysis"] if r["metric"] == "absent"]
    assert absent and all(r["verdict"] == policy for r in absent)
    # The note names the series it looked for.
    service = doc["spec"]["service"]["name"]
    want = f'no data (no samples for no_such_metric{{service="{service}"}}): counted as {policy}'
    assert all(r["note"] == want for r in absent), absent


def test_pause_resume_promote(env: Env, operator: Operator, release_of: ReleaseOf) -> None:
    doc, _spec = release_of("controls", analysis__bakeTime="30s", analysis__progressDeadline="10m")
    name = doc["metadata"]["name"]
    env.create(doc)
    first_step_started(env, name)
    controls.request(env.apis["mgmt"], NS, name, "pause")
    paused = wait_status(env, name, lambda s: s.get("phase") == "Paused", timeout=15)
    assert paused["message"] == "paused by request"
    controls.request(env.apis["mgmt"], NS, name, "resume")
    wait_status(env, name, lambda s: s.get("phase") == "Progressing", timeout=15)
    started = time.monotonic()
    controls.request(env.apis["mgmt"], NS, name, "promote")
    obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=60)
    assert obj["status"]["phase"] == "Succeeded"
    assert time.monotonic() - started < 60  # three 30s bakes were skipped
    assert [s["weight"] for s in obj["status"]["steps"]] == [10, 50, 100]  # but no step
    assert obj["status"]["promotion"] == "skipBakes"


def test_abort_rolls_back_now(env: Env, operator: Operator, release_of: ReleaseOf) -> None:
    doc, spec = release_of("abort", analysis__bakeTime="30s", analysis__progressDeadline="10m")
    name = doc["metadata"]["name"]
    env.create(doc)
    first_step_started(env, name)
    token = controls.request(env.apis["mgmt"], NS, name, "abort")
    obj = wait_phase(env, name, {"RolledBack"}, timeout=20)
    assert obj["status"]["message"] == "aborted by request"
    assert obj["status"]["controls"]["abort"] == token
    assert env.route53().read(spec.traffic.route53) == ODD_LIVE


def test_failure_pauses_when_rollback_is_not_automatic(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = _unhealthy(
        release_of, "manual", "sim.sprintops.io/error-rate", "0.2", rollback__automatic=False
    )
    name = doc["metadata"]["name"]
    env.create(doc)
    status = wait_status(env, name, lambda s: s.get("phase") == "Paused", timeout=60)
    assert "request-success-rate" in status["message"]
    assert env.route53().read(spec.traffic.route53) == Weights(even=10, odd=90)  # held for a person
    controls.request(env.apis["mgmt"], NS, name, "abort")
    assert wait_phase(env, name, {"RolledBack"}, timeout=20)["status"]["phase"] == "RolledBack"
