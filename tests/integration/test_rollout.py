"""The rollout engine against the local environment, with the operator as a real process."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sprintops import api
from sprintops.api import SprintReleaseSpec, Weights
from sprintops_dev import seed
from sprintops_dev.watcher import InvariantWatcher, Watched
from tests.integration.conftest import (
    Env,
    Operator,
    delete_release,
    wait_events,
    wait_phase,
    wait_status,
)

ReleaseOf = Callable[..., tuple[dict[str, Any], SprintReleaseSpec]]
NS = "releases"


def _reasons(env: Env, name: str, *wanted: str) -> list[str]:
    """Reasons of the release's Events, once every one of `wanted` is among them (or 10 s on)."""
    events = wait_events(env, name, lambda es: set(wanted) <= {e.reason for e in es})
    return [e.reason for e in events]


def test_canonical_release_rolls_out_to_success(
    env: Env, operator: Operator, canonical_doc: dict, request: pytest.FixtureRequest
) -> None:
    name = canonical_doc["metadata"]["name"]
    spec = SprintReleaseSpec.model_validate(canonical_doc["spec"])
    delete_release(env, name)
    workloads = {c: env.apis[c] for c in ("even", "odd")}
    seed.service_baseline(workloads, spec, "odd")
    # Leave the canonical service as `make env-up` seeds it, for whoever runs next.
    request.addfinalizer(lambda: seed.service_baseline(workloads, spec, "odd"))
    request.addfinalizer(lambda: delete_release(env, name))
    seen: list[tuple[Weights | None, dict[str, Weights]]] = []
    with InvariantWatcher(env.apis, [Watched(NS, name, spec)]) as watcher:
        env.create(canonical_doc)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            traffic = env.traffic(spec)
            if not seen or seen[-1] != traffic:
                seen.append(traffic)
            status = env.status(name)
            if status.get("phase") in api.TERMINAL_PHASES:
                break
            time.sleep(0.1)
    assert status["phase"] == "Succeeded", status
    assert not watcher.violations, watcher.violations
    # The watcher kept up: it saw the new cluster reach full weight, not just the ends.
    assert watcher.samples > 10 and watcher.tracks[f"{NS}/{name}"].max_target_weight == 100
    # Route 53 and both VirtualService copies moved together through every step, in order.
    splits = [
        Weights(even=0, odd=100),
        Weights(even=10, odd=90),
        Weights(even=50, odd=50),
        Weights(even=100, odd=0),
    ]
    r53_path = [w for i, (w, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != w]
    assert r53_path == splits
    for cluster in ("even", "odd"):
        vs_path = [
            c[cluster]
            for i, (_, c) in enumerate(seen)
            if i == 0 or seen[i - 1][1][cluster] != c[cluster]
        ]
        assert vs_path == splits, cluster
    dep = env.apps("even").read_namespaced_deployment("document-service", "documents")
    assert dep.status.available_replicas == 3
    assert dep.metadata.labels["sprintops.io/sprint"] == "42"
    st = status
    assert st["weights"] == {"even": 100, "odd": 0}
    assert [s["weight"] for s in st["steps"]] == [10, 50, 100]
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    reasons = _reasons(env, name, "Succeeded")
    assert reasons[:2] == ["Deploying", "DeploymentAvailable"]
    assert reasons.count("StepApplied") == 3 and reasons[-1] == "Succeeded"


def test_live_target_is_refused_without_touching_traffic(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("live-target")
    seed.service_baseline({c: env.apis[c] for c in ("even", "odd")}, spec, "even")  # even is live
    before = env.traffic(spec)
    env.create(doc)
    obj = wait_phase(env, doc["metadata"]["name"], {"Failed"}, timeout=30)
    assert "target cluster even is live" in obj["status"]["message"]
    assert env.traffic(spec) == before
    assert "TargetLive" in _reasons(env, doc["metadata"]["name"], "TargetLive")


def test_the_event_of_a_final_transition_is_never_lost(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    """kopf stops a release's daemon as soon as its watch shows the final status; the Event
    posted right after that status write must still go out (it once did not, 1 time in 13)."""
    made = [release_of(f"final-event-{i}") for i in range(8)]
    workloads = {c: env.apis[c] for c in ("even", "odd")}
    with ThreadPoolExecutor(8) as pool:  # even is live for every one: all fail at once
        list(pool.map(lambda m: seed.service_baseline(workloads, m[1], "even"), made))
    for doc, _ in made:
        env.create(doc)
    for doc, _ in made:
        wait_phase(env, doc["metadata"]["name"], {"Failed"}, timeout=30)
    missing = [
        doc["metadata"]["name"]
        for doc, _ in made
        if "TargetLive" not in _reasons(env, doc["metadata"]["name"], "TargetLive")
    ]
    assert not missing, missing


def test_missing_kubeconfig_secret_is_reported_and_traffic_untouched(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("no-secret", clusters__even__kubeconfigSecretRef__name="cluster-missing")
    before = env.traffic(spec)
    env.create(doc)
    name = doc["metadata"]["name"]
    status = wait_status(env, name, lambda s: "cluster-missing" in (s.get("message") or ""), 30)
    assert status["message"] == "Secret releases/cluster-missing not found", status
    # The Event is posted at the end of the reconcile that decided to hold: any write that
    # reconcile made is visible by then.
    assert "Blocked" in _reasons(env, name, "Blocked")
    assert env.traffic(spec) == before


def test_virtual_service_without_the_route_blocks_before_route53_moves(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("no-route")
    doc["spec"]["traffic"]["istio"]["route"] = "canary"  # the VirtualService only has "primary"
    env.create(doc)
    name = doc["metadata"]["name"]
    status = wait_status(env, name, lambda s: "no http route" in (s.get("message") or ""), 30)
    assert (
        status.get("message")
        == "VirtualService documents/no-route has no http route named 'canary'"
    )
    # The step was recorded, but Route 53 was never changed for it.
    assert status["phase"] == "Progressing" and status["stepIndex"] == 0
    assert env.route53().read(spec.traffic.route53) == Weights(even=0, odd=100)
    assert "Blocked" in _reasons(env, name, "Blocked")


def test_operator_killed_mid_rollout_finishes_the_release(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("crash-resume", analysis__bakeTime="4s", idle__scaleDownAfter="2s")
    name = doc["metadata"]["name"]
    with InvariantWatcher(env.apis, [Watched(NS, name, spec)]) as watcher:
        env.create(doc)
        for step_index in (0, 1):
            wait_status(env, name, lambda s, i=step_index: s.get("stepIndex") == i, 60)
            operator.kill()
            time.sleep(1)  # an outage, not an instant restart
            operator.start()
        obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=90)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert not watcher.violations, watcher.violations
    assert [s["weight"] for s in obj["status"]["steps"]] == [10, 50, 100]
    # After idle.scaleDownAfter the previous cluster's Deployment is scaled to 0, and recorded.
    assert wait_status(env, name, lambda s: bool(s.get("scaledDownAt")), 30)
    previous = env.apps("odd").read_namespaced_deployment("crash-resume", "documents")
    assert previous.spec.replicas == 0
    assert env.traffic(spec) == (
        Weights(even=100, odd=0),
        {"even": Weights(even=100, odd=0), "odd": Weights(even=100, odd=0)},
    )
