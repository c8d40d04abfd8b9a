"""Fault injection: a throttling, slow Route 53; rejected batches; hand edits; garbage Secrets."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from sprintops import api
from sprintops.api import SprintReleaseSpec, Weights
from sprintops.kube import apply
from sprintops.traffic.istio import GROUP, PLURAL, VERSION, weights_of, with_weights
from sprintops_dev import environment, seed
from sprintops_dev.faultproxy import FaultProxy
from sprintops_dev.operator_process import OperatorProcess
from sprintops_dev.watcher import InvariantWatcher, Watched
from tests.conftest import REPO
from tests.integration.conftest import (
    Env,
    Operator,
    first_step_started,
    wait_events,
    wait_phase,
    wait_status,
)

ReleaseOf = Callable[..., tuple[dict[str, Any], SprintReleaseSpec]]
ODD_LIVE = Weights(even=0, odd=100)


@pytest.fixture
def proxy(env: Env, operator: Operator) -> Iterator[FaultProxy]:
    """An operator whose Route 53 is the fault proxy; the shared operator steps aside."""
    with FaultProxy(env.state.route53_url) as fp:
        variables = {
            **environment.environment_variables(env.layout, env.state),
            "AWS_ENDPOINT_URL_ROUTE_53": fp.url,
        }
        proxied = OperatorProcess(variables, env.layout.root / "logs" / "operator-faults.log")
        operator.stop()
        proxied.start()
        try:
            yield fp
        finally:
            proxied.stop()
            operator.start()


def test_throttling_and_pending_changes_are_ridden_out(
    env: Env, proxy: FaultProxy, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("throttled", analysis__bakeTime="4s")
    name = doc["metadata"]["name"]
    proxy.faults.error_ratio = 0.5
    proxy.faults.errors_until = time.monotonic() + 30
    proxy.faults.pending_seconds = 10
    with InvariantWatcher(env.apis, [Watched("releases", name, spec)]) as watcher:
        env.create(doc)
        obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=240)
    status = obj["status"]
    assert status["phase"] == "Succeeded", status
    assert [s["weight"] for s in status["steps"]] == [10, 50, 100]  # each step once, in order
    assert not watcher.violations, watcher.violations
    assert proxy.stats.injected["Throttling"] > 0, proxy.stats
    assert proxy.stats.injected["PENDING"] >= 3, proxy.stats  # every step waited for INSYNC
    # Bounded retries: each change batch went out a handful of times, not hundreds.
    assert proxy.stats.by_operation["ChangeResourceRecordSets"] < 3 * 9, proxy.stats


def test_rejected_change_batch_fails_clearly_and_leaves_traffic(
    env: Env, proxy: FaultProxy, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("rejected")
    proxy.faults.reject_changes = "InvalidChangeBatch"
    before = env.traffic(spec)
    env.create(doc)
    obj = wait_phase(env, doc["metadata"]["name"], set(api.TERMINAL_PHASES), timeout=60)
    # Its first step was recorded, so it rolled back; nothing had moved, nothing was written.
    assert obj["status"]["phase"] == "RolledBack", obj["status"]
    assert "InvalidChangeBatch" in obj["status"]["message"]
    assert env.traffic(spec) == before == (ODD_LIVE, {"even": ODD_LIVE, "odd": ODD_LIVE})


def test_hand_edited_virtual_service_is_restored(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("drift", analysis__bakeTime="30s")
    name = doc["metadata"]["name"]
    env.create(doc)
    first_step_started(env, name)
    ref = spec.traffic.istio.virtual_service
    custom = env.custom("odd")
    vs = custom.get_namespaced_custom_object(GROUP, VERSION, ref.namespace, PLURAL, ref.name)
    custom.replace_namespaced_custom_object(
        GROUP,
        VERSION,
        ref.namespace,
        PLURAL,
        ref.name,
        with_weights(vs, spec.traffic.istio, ODD_LIVE),
    )
    status = wait_status(env, name, lambda s: "drift" in (s.get("message") or ""), 20)
    assert "VirtualService in odd had even=0 odd=100" in status["message"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        vs = custom.get_namespaced_custom_object(GROUP, VERSION, ref.namespace, PLURAL, ref.name)
        if weights_of(vs, spec.traffic.istio) == Weights(even=10, odd=90):
            break
        time.sleep(0.2)
    assert weights_of(vs, spec.traffic.istio) == Weights(even=10, odd=90)
    assert env.status(name)["stepIndex"] == 0  # restored the step, did not move on


def test_hand_edited_route53_is_restored_before_the_gate_passes(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("r53-drift", analysis__bakeTime="8s")
    name = doc["metadata"]["name"]
    pairs = env.route53()
    pairs.read(spec.traffic.route53)  # client and zone id ready: the edit must land mid-bake
    env.create(doc)
    # In the last step, so nothing but the restore can put the weights back.
    wait_status(env, name, lambda s: s.get("stepIndex") == 2 and bool(s.get("stepStartedAt")))
    pairs.wait_insync(pairs.write(spec.traffic.route53, Weights(even=50, odd=50)))
    obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=30)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    # The drift message lives in status only until the restore; the Event keeps it.
    events = wait_events(env, name, lambda es: any(e.reason == "DriftCorrected" for e in es))
    drift = [e.message for e in events if e.reason == "DriftCorrected"]
    assert any(
        m.startswith("drift: Route 53 had even=50 odd=50, not the step's even=100 odd=0")
        for m in drift
    ), drift
    # Nothing after the last step writes Route 53 but the restore.
    assert pairs.read(spec.traffic.route53) == Weights(even=100, odd=0)
    assert [s["weight"] for s in obj["status"]["steps"]] == [10, 50, 100]


def test_garbage_kubeconfig_is_reported_and_never_leaked(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    canary = "CANARY-do-not-log-7f3a9c"
    garbage = (
        "apiVersion: v1\n"
        f"clusters: [{{name: x, cluster: {{server: '{canary}', token: {canary}}}}}]\n"
        f"users: {canary}\n"
    )
    env.core("mgmt").create_namespaced_secret(
        "releases",
        {
            "metadata": {"name": "cluster-garbage"},
            "data": {"kubeconfig": base64.b64encode(garbage.encode()).decode()},
        },
    )
    try:
        doc, spec = release_of(
            "garbage", clusters__even__kubeconfigSecretRef__name="cluster-garbage"
        )
        before = env.traffic(spec)
        env.create(doc)
        name = doc["metadata"]["name"]
        status = wait_status(
            env, name, lambda s: "usable kubeconfig" in (s.get("message") or ""), 30
        )
        assert status["message"].startswith(
            "Secret releases/cluster-garbage key 'kubeconfig' does not hold a usable kubeconfig"
        )
        # Once the Blocked Event is out (the end of the reconcile that held), no write may
        # have moved traffic and no Event in the namespace may hold the Secret's content.
        blocked = wait_events(env, name, lambda es: any(e.reason == "Blocked" for e in es))
        assert any(e.reason == "Blocked" for e in blocked), blocked
        assert env.traffic(spec) == before
        events = env.core("mgmt").list_namespaced_event("releases").items
        assert not any(canary in (e.message or "") for e in events)
        assert canary not in str(env.status(name))
        log = (env.layout.root / "logs" / "operator-tests.log").read_text()
        assert "cluster-garbage" in log  # the failure is logged...
        assert canary not in log  # ...without the Secret's content
    finally:
        env.core("mgmt").delete_namespaced_secret("cluster-garbage", "releases")


def test_oversized_template_is_refused_by_the_cluster_and_the_operator_lives(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("big-template")
    # Fits the mgmt apiserver, but no cluster accepts 300 KB of pod annotations.
    doc["spec"]["service"]["template"]["metadata"]["annotations"]["blob"] = "x" * 300_000
    before = env.traffic(spec)
    env.create(doc)
    status = wait_status(
        env, doc["metadata"]["name"], lambda s: "HTTP 422" in (s.get("message") or ""), 30
    )
    assert status["message"].startswith("cannot apply the Deployment in cluster even: HTTP 422")
    assert env.traffic(spec) == before
    assert operator.proc is not None and operator.proc.poll() is None  # still running
    small, _ = release_of("after-big", analysis__bakeTime="2s")
    env.create(small)
    assert wait_phase(env, small["metadata"]["name"], {"Succeeded"}, timeout=60)


def test_target_apiserver_down_for_30s_holds_then_continues(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("apiserver-down", analysis__bakeTime="6s")
    name = doc["metadata"]["name"]
    with InvariantWatcher(env.apis, [Watched("releases", name, spec)]) as watcher:
        env.create(doc)
        first_step_started(env, name)
        environment.stop_apiserver(env.layout, env.state, "even")
        try:
            held = wait_status(env, name, lambda s: "cluster even" in (s.get("message") or ""), 30)
            before = dict(watcher.source_samples)
            time.sleep(30 - 1)  # the outage itself: 30 s with one cluster gone
            # The watcher kept checking what still answers while one cluster did not.
            assert watcher.source_samples["route53"] - before.get("route53", 0) > 10
            assert watcher.source_samples["vs/odd"] - before.get("vs/odd", 0) > 10
            assert watcher.source_errors["vs/even"] > 0
            during = env.status(name)
            assert during["stepIndex"] == 0 and during["phase"] == "Progressing", during
            assert env.route53().read(spec.traffic.route53) == Weights(even=10, odd=90)
        finally:
            environment.start_apiserver(env.layout, env.state, "even")
        obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=120)
    assert "unreachable" in held["message"] or "cannot" in held["message"], held["message"]
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert not watcher.violations, watcher.violations


def test_mgmt_apiserver_restart_is_survived(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, _ = release_of("mgmt-restart", analysis__bakeTime="6s")
    name = doc["metadata"]["name"]
    env.create(doc)
    first_step_started(env, name)
    environment.stop_apiserver(env.layout, env.state, "mgmt")
    time.sleep(5)  # the outage itself
    environment.start_apiserver(env.layout, env.state, "mgmt")
    obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=120)
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert [s["weight"] for s in obj["status"]["steps"]] == [10, 50, 100]
    assert operator.proc is not None and operator.proc.poll() is None  # reconnected, not restarted


def test_two_replicas_only_one_acts_and_failover_continues(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    peering = REPO / "charts/sprintops/crds/kopf-peering.yaml"
    for crd in yaml.safe_load_all(peering.read_text()):
        apply(env.apis["mgmt"], crd)
    seed.wait_established(
        env.apis["mgmt"], ["clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"]
    )
    if not _exists(env):
        env.custom().create_cluster_custom_object(
            "kopf.dev",
            "v1",
            "clusterkopfpeerings",
            {
                "apiVersion": "kopf.dev/v1",
                "kind": "ClusterKopfPeering",
                "metadata": {"name": "sprintops-ha"},
            },
        )
    variables = {
        **environment.environment_variables(env.layout, env.state),
        "SPRINTOPS_PEERING_LIFETIME": "8",
    }
    logs = env.layout.root / "logs"
    leader = OperatorProcess(
        variables, logs / "operator-leader.log", "--peering", "sprintops-ha", "--priority", "200"
    )
    standby = OperatorProcess(
        variables, logs / "operator-standby.log", "--peering", "sprintops-ha", "--priority", "100"
    )
    doc, spec = release_of("peered", analysis__bakeTime="6s")
    name = doc["metadata"]["name"]
    operator.stop()
    for peer in (leader, standby):
        peer.log.unlink(missing_ok=True)  # an earlier run's lines would answer for this one
        peer.start()
    try:
        _wait_peers(env, "sprintops-ha", {100, 200})
        time.sleep(1)  # the standby reads the leader's record and pauses
        with InvariantWatcher(env.apis, [Watched("releases", name, spec)]) as watcher:
            env.create(doc)
            first_step_started(env, name)
            acted = f"release=releases/{name}"
            assert acted in leader.log.read_text()
            assert acted not in standby.log.read_text()  # the standby only watched
            leader.kill()
            obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=120)
        assert obj["status"]["phase"] == "Succeeded", obj["status"]
        assert acted in standby.log.read_text()  # the standby took over
        assert not watcher.violations, watcher.violations
    finally:
        leader.stop()
        standby.stop()
        operator.start()


def _wait_peers(env: Env, peering: str, priorities: set[int], timeout: float = 60) -> None:
    """Until every priority is announced in the peering (kopf keeps peers in its status)."""
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    while time.monotonic() < deadline:
        obj = env.custom().get_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", peering
        )
        seen = {int(p.get("priority", 0)) for p in (obj.get("status") or {}).values()}
        if priorities <= seen:
            return
        time.sleep(0.2)
    raise TimeoutError(f"peering {peering}: priorities {seen}, not {priorities}")


def _exists(env: Env) -> bool:
    try:
        env.custom().get_cluster_custom_object(
            "kopf.dev", "v1", "clusterkopfpeerings", "sprintops-ha"
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True
