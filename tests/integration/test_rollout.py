"""The rollout engine against the local environment, with the operator as a real process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from sprintops import api
from sprintops.api import SprintReleaseSpec, Weights
from sprintops.localenv import seed
from sprintops.localenv.invariants import InvariantWatcher, Watched
from sprintops.traffic.istio import GROUP, PLURAL, VERSION, weights_of
from tests.integration.conftest import Env, Operator, delete_release, wait_phase

ReleaseOf = Callable[..., tuple[dict[str, Any], SprintReleaseSpec]]
NS = "releases"


def _create(env: Env, doc: dict[str, Any]) -> None:
    env.custom().create_namespaced_custom_object(api.GROUP, api.VERSION, NS, api.PLURAL, doc)


def _traffic(env: Env, spec: SprintReleaseSpec) -> tuple[Weights | None, dict[str, Weights]]:
    ref = spec.traffic.istio.virtual_service
    copies = {
        c: weights_of(
            env.custom(c).get_namespaced_custom_object(
                GROUP, VERSION, ref.namespace, PLURAL, ref.name
            ),
            spec.traffic.istio,
        )
        for c in ("even", "odd")
    }
    return env.route53().read(spec.traffic.route53), copies


def _events(env: Env, name: str) -> list[str]:
    """Reasons of the Events of the release now called `name` (not of an earlier namesake)."""
    obj = env.custom().get_namespaced_custom_object(api.GROUP, api.VERSION, NS, api.PLURAL, name)
    selector = f"involvedObject.uid={obj['metadata']['uid']}"
    items = env.core("mgmt").list_namespaced_event(NS, field_selector=selector).items
    return [
        e.reason for e in sorted(items, key=lambda e: e.event_time or e.metadata.creation_timestamp)
    ]


def test_canonical_release_rolls_out_to_success(
    env: Env, operator: Operator, canonical_doc: dict
) -> None:
    name = canonical_doc["metadata"]["name"]
    spec = SprintReleaseSpec.model_validate(canonical_doc["spec"])
    delete_release(env, name)
    seed.service_baseline({c: env.apis[c] for c in ("even", "odd")}, spec, "odd")
    seen: list[tuple[Weights | None, dict[str, Weights]]] = []
    with InvariantWatcher(env.apis, [Watched(NS, name, spec)]) as watcher:
        _create(env, canonical_doc)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            traffic = _traffic(env, spec)
            if not seen or seen[-1] != traffic:
                seen.append(traffic)
            status = env.custom().get_namespaced_custom_object(
                api.GROUP, api.VERSION, NS, api.PLURAL, name
            )
            if (status.get("status") or {}).get("phase") in api.TERMINAL_PHASES:
                break
            time.sleep(0.1)
    assert status["status"]["phase"] == "Succeeded", status["status"]
    assert not watcher.violations, watcher.violations
    assert watcher.samples > 50
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
    st = status["status"]
    assert st["weights"] == {"even": 100, "odd": 0}
    assert [s["weight"] for s in st["steps"]] == [10, 50, 100]
    assert {c["type"]: c["status"] for c in st["conditions"]}["Ready"] == "True"
    reasons = _events(env, name)
    assert reasons[:2] == ["Deploying", "DeploymentAvailable"]
    assert reasons.count("StepApplied") == 3 and reasons[-1] == "Succeeded"


def test_live_target_is_refused_without_touching_traffic(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("live-target")
    seed.service_baseline({c: env.apis[c] for c in ("even", "odd")}, spec, "even")  # even is live
    before = _traffic(env, spec)
    _create(env, doc)
    obj = wait_phase(env, doc["metadata"]["name"], {"Failed"}, timeout=30)
    assert "target cluster even is live" in obj["status"]["message"]
    assert _traffic(env, spec) == before
    assert "TargetLive" in _events(env, doc["metadata"]["name"])


def test_missing_kubeconfig_secret_is_reported_and_traffic_untouched(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("no-secret", clusters__even__kubeconfigSecretRef__name="cluster-missing")
    before = _traffic(env, spec)
    _create(env, doc)
    name = doc["metadata"]["name"]
    deadline = time.monotonic() + 30
    message = ""
    while time.monotonic() < deadline and "cluster-missing" not in message:
        obj = env.custom().get_namespaced_custom_object(
            api.GROUP, api.VERSION, NS, api.PLURAL, name
        )
        message = (obj.get("status") or {}).get("message") or ""
        time.sleep(0.2)
    assert message == "Secret releases/cluster-missing not found", message
    time.sleep(2)
    assert _traffic(env, spec) == before
    assert "Blocked" in _events(env, name)


def test_virtual_service_without_the_route_blocks_before_route53_moves(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("no-route")
    doc["spec"]["traffic"]["istio"]["route"] = "canary"  # the VirtualService only has "primary"
    _create(env, doc)
    name = doc["metadata"]["name"]
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = (
            env.custom()
            .get_namespaced_custom_object(api.GROUP, api.VERSION, NS, api.PLURAL, name)
            .get("status")
            or {}
        )
        if "no http route" in (status.get("message") or ""):
            break
        time.sleep(0.2)
    assert (
        status.get("message")
        == "VirtualService documents/no-route has no http route named 'canary'"
    )
    # The step was recorded, but Route 53 was never changed for it.
    assert status["phase"] == "Progressing" and status["stepIndex"] == 0
    assert env.route53().read(spec.traffic.route53) == Weights(even=0, odd=100)
    assert "Blocked" in _events(env, name)


def test_operator_killed_mid_rollout_finishes_the_release(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("crash-resume", analysis__bakeTime="4s", idle__scaleDownAfter="2s")
    name = doc["metadata"]["name"]
    with InvariantWatcher(env.apis, [Watched(NS, name, spec)]) as watcher:
        _create(env, doc)
        kills = 0
        for step_index in (0, 1):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = (
                    env.custom()
                    .get_namespaced_custom_object(api.GROUP, api.VERSION, NS, api.PLURAL, name)
                    .get("status")
                    or {}
                )
                if status.get("stepIndex") == step_index:
                    break
                time.sleep(0.05)
            operator.kill()
            kills += 1
            time.sleep(1)
            operator.start()
        obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=90)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert kills == 2
    assert not watcher.violations, watcher.violations
    assert [s["weight"] for s in obj["status"]["steps"]] == [10, 50, 100]
    # After idle.scaleDownAfter the previous cluster's Deployment is scaled to 0, and recorded.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not obj["status"].get("scaledDownAt"):
        time.sleep(0.5)
        obj = env.custom().get_namespaced_custom_object(
            api.GROUP, api.VERSION, NS, api.PLURAL, name
        )
    assert obj["status"].get("scaledDownAt"), obj["status"]
    previous = env.apps("odd").read_namespaced_deployment("crash-resume", "documents")
    assert previous.spec.replicas == 0
    assert _traffic(env, spec) == (
        Weights(even=100, odd=0),
        {"even": Weights(even=100, odd=0), "odd": Weights(even=100, odd=0)},
    )
