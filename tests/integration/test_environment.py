"""The local environment is made of real parts that really work."""

from __future__ import annotations

import time
import uuid

from sprintops import manifests
from sprintops.api import Weights
from sprintops.kube import apply
from sprintops_dev import seed
from tests.integration.conftest import Env


def test_deployment_becomes_available_through_real_controllers(env: Env) -> None:
    spec = seed.canonical(env.layout.repo)
    name = f"probe-{uuid.uuid4().hex[:6]}"
    service = spec.service.model_copy(update={"name": name, "replicas": 2})
    apply(env.apis["even"], manifests.deployment(service, 42, name))
    try:
        seed.wait_available(env.apis["even"], name, service.namespace, timeout=60)
        dep = env.apps("even").read_namespaced_deployment(name, service.namespace)
        assert dep.status.available_replicas == 2
        pods = env.core("even").list_namespaced_pod(
            service.namespace, label_selector=f"app.kubernetes.io/name={name}"
        )
        assert {p.spec.node_name for p in pods.items} == {seed.NODE_NAME}
    finally:
        env.apps("even").delete_namespaced_deployment(name, service.namespace)


def test_seeded_baseline(env: Env) -> None:
    spec = seed.canonical(env.layout.repo)
    weights = env.route53().read(spec.traffic.route53)
    assert weights == Weights(even=0, odd=100)
    for cluster in ("even", "odd"):
        vs = env.custom(cluster).get_namespaced_custom_object(
            "networking.istio.io", "v1", "documents", "virtualservices", "document-service"
        )
        route = next(r for r in vs["spec"]["http"] if r["name"] == "primary")
        by_subset = {d["destination"]["subset"]: d["weight"] for d in route["route"]}
        assert by_subset == {"odd": 100, "even": 0}
    dep = env.apps("odd").read_namespaced_deployment("document-service", "documents")
    assert dep.metadata.labels[manifests.LABEL_SPRINT] == "41"
    assert dep.status.available_replicas == 3
    secrets = {s.metadata.name for s in env.core("mgmt").list_namespaced_secret("releases").items}
    assert {"cluster-even", "cluster-odd"} <= secrets


def test_weighted_pair_written_and_read_back_from_moto(env: Env) -> None:
    spec = seed.canonical(env.layout.repo).traffic.route53
    probe = spec.model_copy(update={"record_name": f"probe-{uuid.uuid4().hex[:6]}.sprintops.test."})
    pairs = env.route53()
    assert pairs.read(probe) is None
    pairs.wait_insync(pairs.write(probe, Weights(even=10, odd=90)))
    assert pairs.read(probe) == Weights(even=10, odd=90)
    raw = pairs.client.list_resource_record_sets(
        HostedZoneId=pairs.zone_id(probe),
        StartRecordName=probe.record_name,
        StartRecordType="CNAME",
    )["ResourceRecordSets"]
    mine = [r for r in raw if r["Name"] == probe.record_name]
    assert {r["SetIdentifier"]: r["Weight"] for r in mine} == {"even": 10, "odd": 90}
    assert {r["TTL"] for r in mine} == {spec.ttl}


def test_simulator_metric_through_real_prometheus(env: Env) -> None:
    # Sprint 41 is live in odd: the simulator sends it all traffic, Prometheus scrapes it.
    query = (
        'sum(rate(istio_requests_total{reporter="destination",destination_cluster="odd",'
        'destination_workload="document-service",destination_workload_namespace="documents"}[5s]))'
    )
    # The simulator sends ~100 requests/s to the live cluster; allow the rate window to fill.
    deadline = time.monotonic() + 30
    rates: list[float] = []
    while time.monotonic() < deadline:
        result = env.promql(query)
        rates.append(float(result[0]["value"][1]) if result else 0.0)
        if 80 < rates[-1] < 120:
            break
        time.sleep(1)
    assert 80 < rates[-1] < 120, rates
    idle = env.promql(query.replace('"odd"', '"even"'))
    assert not idle or float(idle[0]["value"][1]) == 0.0
