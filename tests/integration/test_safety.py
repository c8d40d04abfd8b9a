"""The safety net on the worst day (issue #11), against the local environment: a target
cluster that hangs, a Prometheus that hangs, deletion in flight, misconfiguration."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sprintops import api, controls
from sprintops.api import SprintReleaseSpec, Weights
from sprintops.durations import timestamp
from sprintops.kube import json_patch, merge_patch, object_path
from sprintops.traffic.route53 import upserts
from sprintops_dev import environment, traffic
from sprintops_dev.watcher import InvariantWatcher, Watched
from tests.integration.conftest import (
    Env,
    Operator,
    delete_release,
    first_step_started,
    wait_events,
    wait_phase,
    wait_status,
)

ReleaseOf = Callable[..., tuple[dict[str, Any], SprintReleaseSpec]]
NS = "releases"
ODD_LIVE = Weights(even=0, odd=100)


@contextmanager
def frozen(env: Env, process: str) -> Iterator[None]:
    environment.freeze(env.layout, env.state, process)
    try:
        yield
    finally:
        environment.thaw(env.layout, env.state, process)


def _copy(env: Env, spec: SprintReleaseSpec, cluster: str) -> Weights:
    return traffic.copy_weights(env.apis[cluster], spec, timeout=5)


def _failing_gates(doc: dict[str, Any]) -> None:
    """Prometheus judges the build bad on its own: the check needs nothing from a frozen
    cluster (the simulator's view of it stalls with it)."""
    doc["spec"]["analysis"]["metrics"].append(
        {"name": "always-bad", "query": "vector(1)", "max": 0}
    )
    doc["spec"]["analysis"]["failureLimit"] = 1
    # However few requests reached the frozen cluster: the verdict needs none of them.
    doc["spec"]["analysis"]["minRequests"] = 0


def _warning(env: Env, name: str, reason: str) -> list[Any]:
    events = wait_events(env, name, lambda es: any(e.reason == reason for e in es), timeout=30)
    return [e for e in events if e.reason == reason and e.type == "Warning"]


@pytest.mark.parametrize("how", ["abort", "failing-gates"])
def test_rollback_with_the_target_apiserver_frozen(
    env: Env, operator: Operator, release_of: ReleaseOf, how: str
) -> None:
    doc, spec = release_of(f"frozen-{how}", analysis__bakeTime="30s")
    if how == "failing-gates":
        _failing_gates(doc)
    name = doc["metadata"]["name"]
    env.create(doc)
    first_step_started(env, name)
    with frozen(env, "apiserver-even"):
        if how == "abort":
            controls.request(env.apis["mgmt"], NS, name, "abort")
        started = time.monotonic()
        deadline = started + 30
        while time.monotonic() < deadline:
            pair = env.route53().read(spec.traffic.route53)
            if pair == ODD_LIVE and _copy(env, spec, "odd") == ODD_LIVE:
                break
            time.sleep(0.2)
        took = time.monotonic() - started
        assert env.route53().read(spec.traffic.route53) == ODD_LIVE, f"after {took:.0f}s"
        assert _copy(env, spec, "odd") == ODD_LIVE
        pending = wait_status(env, name, lambda s: s.get("pendingCopies") == ["even"], 30)
        assert pending["phase"] == "RollingBack", pending
        assert "pending in even" in pending["message"]
    obj = wait_phase(env, name, {"RolledBack"}, timeout=60)
    assert _copy(env, spec, "even") == ODD_LIVE  # repaired when it came back
    assert obj["status"]["pendingCopies"] == [] if "pendingCopies" in obj["status"] else True
    reason = "Aborted" if how == "abort" else "ChecksFailed"
    degraded = next(c for c in obj["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == reason, degraded


def test_a_hung_prometheus_holds_then_rolls_back_past_the_deadline(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("prom-hung", analysis__bakeTime="4s", analysis__progressDeadline="20s")
    name = doc["metadata"]["name"]
    env.create(doc)
    first_step_started(env, name)
    with frozen(env, "prometheus"):
        held = wait_status(
            env, name, lambda s: any(r.get("verdict") == "hold" for r in s.get("analysis", [])), 30
        )
        assert held["phase"] == "Progressing" and held["stepIndex"] == 0, held
        obj = wait_phase(env, name, {"RollingBack", "RolledBack"}, timeout=60)
    assert obj["status"]["stepIndex"] == 0  # never moved on without a passing check
    assert obj["status"]["consecutiveFailures"] == 0  # held, never failed
    obj = wait_phase(env, name, {"RolledBack"}, timeout=30)
    assert "within 20s" in obj["status"]["message"], obj["status"]["message"]
    assert env.route53().read(spec.traffic.route53) == ODD_LIVE


def test_a_pause_holds_after_an_earlier_pause_and_resume(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, _ = release_of("pause-holds", analysis__bakeTime="30s", rollback__automatic=False)
    name = doc["metadata"]["name"]
    env.create(doc)
    first_step_started(env, name)
    mgmt = env.apis["mgmt"]
    controls.request(mgmt, NS, name, "pause")
    wait_phase(env, name, {"Paused"}, timeout=30)
    controls.request(mgmt, NS, name, "resume")
    wait_phase(env, name, {"Progressing"}, timeout=30)
    # The new build turns bad: failing checks pause it (automatic rollback is off).
    env.apps("even").patch_namespaced_deployment(
        "pause-holds",
        "documents",
        {
            "spec": {
                "template": {"metadata": {"annotations": {"sim.sprintops.io/error-rate": "0.5"}}}
            }
        },
    )
    paused = wait_phase(env, name, {"Paused"}, timeout=60)["status"]
    assert paused["pauseReason"] == "ChecksFailed" and paused["pausedAt"], paused
    time.sleep(15)  # the old resume must not lift the new pause
    still = env.status(name)
    assert still["phase"] == "Paused" and still["pausedAt"] == paused["pausedAt"], still


def test_back_to_back_sprints_never_scale_down_a_cluster_with_traffic(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc42, spec = release_of("b2b", analysis__bakeTime="2s", idle__scaleDownAfter="3s")
    doc43 = {
        **doc42,
        "metadata": {**doc42["metadata"], "name": "b2b-sprint-43"},
        "spec": {**doc42["spec"], "sprint": 43},
    }
    delete_release(env, "b2b-sprint-43")
    bad: list[str] = []
    samples = 0
    try:
        env.create(doc42)
        wait_phase(env, doc42["metadata"]["name"], {"Succeeded"}, timeout=90)
        env.create(doc43)  # at once: 42's scale-down of odd is still pending
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            pair = env.route53().read(spec.traffic.route53)
            for cluster in ("even", "odd"):
                dep = env.apps(cluster).read_namespaced_deployment("b2b", "documents")
                if pair is not None and pair.of(cluster) > 0 and dep.spec.replicas == 0:
                    bad.append(f"{cluster} has {pair.of(cluster)}% and 0 replicas")
            samples += 1
            if env.status("b2b-sprint-43").get("phase") in api.TERMINAL_PHASES:
                break
            time.sleep(1)
        assert env.status("b2b-sprint-43")["phase"] == "Succeeded"
        assert samples > 5 and not bad, bad
        skipped = wait_status(
            env, doc42["metadata"]["name"], lambda s: bool(s.get("scaleDownSkipped")), 30
        )
        assert "b2b-sprint-43" in skipped["scaleDownSkipped"], skipped
    finally:
        delete_release(env, "b2b-sprint-43")


@pytest.mark.parametrize("edit", ["grow", "shrink", "template"])
def test_a_spec_edit_in_flight_restarts_from_the_first_step(
    env: Env, operator: Operator, release_of: ReleaseOf, edit: str
) -> None:
    doc, spec = release_of(f"edit-{edit}", analysis__bakeTime="3s")
    name = doc["metadata"]["name"]
    with InvariantWatcher(env.apis, [Watched(NS, name, spec)]) as watcher:
        env.create(doc)
        wait_status(env, name, lambda s: s.get("stepIndex") == 1 and bool(s.get("stepStartedAt")))
        patch: dict[str, Any] = {
            "grow": {"traffic": {"steps": [10, 20, 50, 100]}},
            "shrink": {"traffic": {"steps": [100]}},
            "template": {"service": {"template": {"metadata": {"labels": {"rev": "2"}}}}},
        }[edit]
        env.custom().patch_namespaced_custom_object(
            api.GROUP, api.VERSION, NS, api.PLURAL, name, {"spec": patch}
        )
        obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=120)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    want = {"grow": [10, 20, 50, 100], "shrink": [100], "template": [10, 50, 100]}[edit]
    assert [s["weight"] for s in obj["status"]["steps"]] == want
    restarted = wait_events(env, name, lambda es: any(e.reason == "Restarting" for e in es))
    assert any(e.reason == "Restarting" for e in restarted)
    final = env.custom().get_namespaced_custom_object(api.GROUP, api.VERSION, NS, api.PLURAL, name)
    assert final["status"]["observedGeneration"] == final["metadata"]["generation"], final
    assert not watcher.violations, watcher.violations
    log = (env.layout.root / "logs" / "operator-tests.log").read_text()
    assert f"reconcile failed release={NS}/{name}" not in log


def test_a_zero_zero_pair_is_refused_and_nothing_is_deployed(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("zero-pair")
    pairs = env.route53()
    changes = upserts(spec.traffic.route53, ODD_LIVE)
    for change in changes:
        change["ResourceRecordSet"]["Weight"] = 0  # what Route 53 serves as an even split
    zone = pairs.zone_id(spec.traffic.route53)
    pairs.client.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={"Changes": changes},  # type: ignore[typeddict-item]
    )
    env.create(doc)
    obj = wait_phase(env, doc["metadata"]["name"], {"Failed"}, timeout=30)
    assert "does not have exactly one live cluster (even=0, odd=0)" in obj["status"]["message"]
    assert _warning(env, doc["metadata"]["name"], "PairNotLive")
    with pytest.raises(Exception, match="Not Found"):
        env.apps("even").read_namespaced_deployment("zero-pair", "documents")


@pytest.mark.parametrize("mistake", ["zone", "record", "secret"])
def test_a_misconfigured_release_says_why_within_30s(
    env: Env, operator: Operator, release_of: ReleaseOf, mistake: str
) -> None:
    doc, _ = release_of(f"mistake-{mistake}")  # seeded right; the mistake comes after
    spec = doc["spec"]
    unique = uuid.uuid4().hex[:8]  # nothing left by an earlier run may answer for it
    if mistake == "zone":
        spec["traffic"]["route53"]["hostedZone"] = {"name": f"sprintopz-{unique}.test."}
    elif mistake == "record":
        spec["traffic"]["route53"]["recordName"] = f"nothing-{unique}.sprintops.test."
    else:
        spec["clusters"]["even"]["kubeconfigSecretRef"]["name"] = "no-such-secret"
    name = doc["metadata"]["name"]
    started = time.monotonic()
    env.create(doc)
    expected = {
        "zone": f"hosted zone sprintopz-{unique}.test. not found",
        "record": f"nothing-{unique}.sprintops.test. CNAME with set identifiers",
        "secret": "Secret releases/no-such-secret not found",
    }[mistake]
    status = wait_status(env, name, lambda s: expected in (s.get("message") or ""), 30)
    reasons = {"zone": "Rejected", "record": "RecordsNotFound", "secret": "Blocked"}
    events = wait_events(env, name, lambda es: any(expected in (e.message or "") for e in es), 30)
    assert any(expected in (e.message or "") for e in events), [e.message for e in events]
    assert any(e.reason == reasons[mistake] for e in events)
    assert time.monotonic() - started < 30, status
    log = (env.layout.root / "logs" / "operator-tests.log").read_text()
    assert "Traceback" not in log.split(f"release={NS}/{name}", 1)[-1][:20000]


def test_two_releases_naming_one_record_take_turns(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    first, spec = release_of("record-a", analysis__bakeTime="20s")
    second, _ = release_of("record-b")
    second["spec"]["traffic"]["route53"] = first["spec"]["traffic"]["route53"]  # copy-paste
    env.create(first)
    first_step_started(env, first["metadata"]["name"])
    env.create(second)
    status = wait_status(env, second["metadata"]["name"], lambda s: s.get("phase") == "Pending", 30)
    assert f"waiting for {NS}/{first['metadata']['name']}" in status["message"], status
    time.sleep(3)
    assert env.status(second["metadata"]["name"])["phase"] == "Pending"
    assert env.route53().read(spec.traffic.route53) == Weights(even=10, odd=90)


def test_two_secrets_reaching_the_live_cluster_are_refused(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    odd_kubeconfig = env.core("mgmt").read_namespaced_secret("cluster-odd", NS).data
    env.core("mgmt").create_namespaced_secret(
        NS, {"metadata": {"name": "cluster-odd-copy"}, "data": odd_kubeconfig}
    )
    try:
        doc, spec = release_of(
            "same-cluster", clusters__even__kubeconfigSecretRef__name="cluster-odd-copy"
        )
        before = env.apps("odd").read_namespaced_deployment("same-cluster", "documents")
        traffic = env.traffic(spec)
        env.create(doc)
        obj = wait_phase(env, doc["metadata"]["name"], {"Failed"}, timeout=30)
        assert "reach the same cluster" in obj["status"]["message"], obj["status"]
        after = env.apps("odd").read_namespaced_deployment("same-cluster", "documents")
        assert after.metadata.labels == before.metadata.labels
        assert after.spec.template == before.spec.template
        assert env.traffic(spec) == traffic
    finally:
        env.core("mgmt").delete_namespaced_secret("cluster-odd-copy", NS)


def test_deleting_a_release_in_flight_rolls_it_back_first(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    # Long enough a bake to delete at 50%, short enough to get there quickly.
    doc, spec = release_of("delete-in-flight", analysis__bakeTime="8s")
    name = doc["metadata"]["name"]
    env.create(doc)
    wait_status(env, name, lambda s: s.get("stepIndex") == 1 and bool(s.get("stepStartedAt")))
    assert env.route53().read(spec.traffic.route53) == Weights(even=50, odd=50)
    uid = env.custom().get_namespaced_custom_object(api.GROUP, api.VERSION, NS, api.PLURAL, name)[
        "metadata"
    ]["uid"]
    delete_release(env, name)  # returns once the object is gone
    assert env.traffic(spec) == (ODD_LIVE, {"even": ODD_LIVE, "odd": ODD_LIVE})
    events = (
        env.core("mgmt").list_namespaced_event(NS, field_selector=f"involvedObject.uid={uid}").items
    )
    assert any(e.reason == "RolledBackOnDelete" for e in events), [e.reason for e in events]


def test_deleting_a_succeeded_release_leaves_the_traffic(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("delete-done", analysis__bakeTime="2s")
    name = doc["metadata"]["name"]
    env.create(doc)
    wait_phase(env, name, {"Succeeded"}, timeout=60)
    delete_release(env, name)
    even_live = Weights(even=100, odd=0)
    assert env.traffic(spec) == (even_live, {"even": even_live, "odd": even_live})


def test_a_paused_release_edited_starts_over_and_stays_paused_before_traffic_moves(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("edit-paused", analysis__bakeTime="3s")
    name = doc["metadata"]["name"]
    env.create(doc)
    first_step_started(env, name)
    controls.request(env.apis["mgmt"], NS, name, "pause")
    wait_phase(env, name, {"Paused"}, timeout=30)
    env.custom().patch_namespaced_custom_object(
        api.GROUP, api.VERSION, NS, api.PLURAL, name, {"spec": {"traffic": {"steps": [20, 100]}}}
    )
    held = wait_status(
        env, name, lambda s: "paused by request before the first step" in (s.get("message") or "")
    )
    assert held["phase"] == "Deploying", held
    time.sleep(3)
    assert env.traffic(spec) == (ODD_LIVE, {"even": ODD_LIVE, "odd": ODD_LIVE})
    controls.request(env.apis["mgmt"], NS, name, "resume")
    obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=60)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert [s["weight"] for s in obj["status"]["steps"]] == [20, 100]


def _paused_at_creation(doc: dict[str, Any]) -> None:
    """A standing pause holds a release in Deploying, before any traffic moves."""
    doc["metadata"].setdefault("annotations", {})[controls.annotation("pause")] = timestamp(
        dt.datetime.now(dt.UTC)
    )


def test_a_stored_object_the_api_no_longer_accepts_says_why(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    """Hole 7: the API server does not re-validate what it stored under an older, looser CRD,
    so the operator can read an object its model refuses. That failed in a silent loop."""
    doc, _ = release_of("stored-skew")
    _paused_at_creation(doc)
    name = doc["metadata"]["name"]
    crd = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{api.PLURAL}.{api.GROUP}"
    phase = (
        client.ApiextensionsV1Api(env.apis["mgmt"])
        .read_custom_resource_definition(f"{api.PLURAL}.{api.GROUP}")
        .spec.versions[0]
        .schema.open_apiv3_schema.properties["status"]
        .properties["phase"]
    )
    enum = "/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/phase/enum"
    env.create(doc)
    wait_status(env, name, lambda s: "before the first step" in (s.get("message") or ""))
    json_patch(env.apis["mgmt"], crd, [{"op": "remove", "path": enum}])
    try:
        deadline = time.monotonic() + 30
        while True:  # until the API server serves the looser schema
            try:
                merge_patch(
                    env.apis["mgmt"],
                    object_path(f"{api.GROUP}/{api.VERSION}", api.KIND, NS, name) + "/status",
                    {"status": {"phase": "Sideways"}},
                )
                break
            except ApiException as exc:
                if exc.status != 422 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        json_patch(env.apis["mgmt"], crd, [{"op": "add", "path": enum, "value": phase.enum}])
    expected = "stored object does not match the API (1 error at phase)"
    status = wait_status(env, name, lambda s: s.get("message") == expected, 30)
    assert status["phase"] == "Sideways", status  # the operator never guesses over it
    events = wait_events(env, name, lambda es: any(e.reason == "ReconcileError" for e in es), 30)
    assert any(e.message == expected and e.type == "Warning" for e in events)
    log = (env.layout.root / "logs" / "operator-tests.log").read_text()
    assert "Traceback" not in log.split(f"release={NS}/{name}", 1)[-1][:20000]
    delete_release(env, name)


def test_an_edit_while_deploying_is_applied_before_the_first_step(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("edit-deploying", analysis__bakeTime="2s")
    _paused_at_creation(doc)
    name = doc["metadata"]["name"]
    env.create(doc)
    wait_status(env, name, lambda s: "before the first step" in (s.get("message") or ""))
    env.custom().patch_namespaced_custom_object(
        api.GROUP,
        api.VERSION,
        NS,
        api.PLURAL,
        name,
        {"spec": {"service": {"template": {"metadata": {"labels": {"rev": "2"}}}}}},
    )
    applied = wait_events(env, name, lambda es: any(e.reason == "SpecChanged" for e in es))
    assert any("applying it" in (e.message or "") for e in applied)
    deployment = env.apps("even").read_namespaced_deployment("edit-deploying", "documents")
    assert deployment.spec.template.metadata.labels.get("rev") == "2"
    assert env.traffic(spec) == (ODD_LIVE, {"even": ODD_LIVE, "odd": ODD_LIVE})
    controls.request(env.apis["mgmt"], NS, name, "resume")
    obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=60)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert (
        obj["status"]["specHash"]
        == env.apps("even")
        .read_namespaced_deployment("edit-deploying", "documents")
        .metadata.annotations["sprintops.io/spec-hash"]
    )


@pytest.mark.parametrize("why", ["abort", "failing-gates"])
def test_an_edit_during_a_rollback_waits_for_it_and_an_abort_stands(
    env: Env, operator: Operator, release_of: ReleaseOf, why: str
) -> None:
    """The rollback finishes first. After failing gates the edit is a retry under the new
    spec; after an abort it is not: abort means stop."""
    doc, spec = release_of(f"edit-rolling-{why}", analysis__bakeTime="30s")
    if why == "failing-gates":
        _failing_gates(doc)
    name = doc["metadata"]["name"]
    env.create(doc)
    first_step_started(env, name)
    with frozen(env, "apiserver-even"):  # holds the release in RollingBack
        if why == "abort":
            controls.request(env.apis["mgmt"], NS, name, "abort")
        wait_status(env, name, lambda s: s.get("pendingCopies") == ["even"], 30)
        fixed = [m for m in doc["spec"]["analysis"]["metrics"] if m["name"] != "always-bad"]
        env.custom().patch_namespaced_custom_object(
            api.GROUP,
            api.VERSION,
            NS,
            api.PLURAL,
            name,
            {"spec": {"analysis": {"metrics": fixed, "bakeTime": "2s"}}},
        )
        time.sleep(2)
        assert env.status(name)["phase"] == "RollingBack"
    if why == "abort":
        obj = wait_phase(env, name, {"RolledBack"}, timeout=60)
        time.sleep(3)
        obj = env.custom().get_namespaced_custom_object(
            api.GROUP, api.VERSION, NS, api.PLURAL, name
        )
        assert obj["status"]["phase"] == "RolledBack", obj["status"]
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        assert env.traffic(spec) == (ODD_LIVE, {"even": ODD_LIVE, "odd": ODD_LIVE})
        return
    wait_phase(env, name, {"Succeeded"}, timeout=90)  # never, had the old checks stayed
    retried = wait_events(env, name, lambda es: any(e.reason == "Retrying" for e in es))
    assert any(e.reason == "RolledBack" for e in retried)
