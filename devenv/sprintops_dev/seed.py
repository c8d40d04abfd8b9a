"""The seeded baseline: what the canonical release expects to find when it starts.

Sprint 41 is live in `odd` (Route 53 odd=100/even=0, both VirtualService copies 100 to odd),
and `even` is idle, waiting for sprint 42.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import boto3
import yaml
from kubernetes import client

from sprintops import crd, manifests
from sprintops.api import Cluster, ServiceSpec, SprintReleaseSpec, Weights
from sprintops.kube import apply
from sprintops.traffic.route53 import Route53Pairs
from sprintops_dev.controlplane import OPERATOR_USER

PREVIOUS_SPRINT = 41
NODE_NAME = "kwok-node-0"
ISTIO_GROUP = "networking.istio.io"
# The operator's own namespace (SPRINTOPS_NAMESPACE): the global freeze lives there.
OPERATOR_NAMESPACE = "sprintops"


def canonical(repo: Path) -> SprintReleaseSpec:
    doc = yaml.safe_load((repo / "examples/sprintrelease.yaml").read_text())
    return SprintReleaseSpec.model_validate(doc["spec"])


def wait_established(api: client.ApiClient, names: list[str], timeout: float = 60) -> None:
    ext = client.ApiextensionsV1Api(api)
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        for name in list(pending):
            conds = ext.read_custom_resource_definition(name).status.conditions or []
            if any(c.type == "Established" and c.status == "True" for c in conds):
                pending.discard(name)
        if pending and time.monotonic() > deadline:
            raise TimeoutError(f"CRDs not established: {sorted(pending)}")
        if pending:
            time.sleep(0.2)


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def apply_crd(api: client.ApiClient) -> None:
    definition = crd.crd()
    apply(api, definition)
    wait_established(api, [definition["metadata"]["name"]])


def seed_mgmt(
    api: client.ApiClient, secrets: dict[str, str], releases_ns: str = "releases"
) -> None:
    apply_crd(api)
    apply(api, namespace(releases_ns))
    apply(api, namespace(OPERATOR_NAMESPACE))  # where the global freeze ConfigMap lives
    for cluster, kubeconfig_text in secrets.items():
        apply(
            api,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"cluster-{cluster}", "namespace": releases_ns},
                "type": "Opaque",
                "data": {"kubeconfig": base64.b64encode(kubeconfig_text.encode()).decode()},
            },
        )


def istio_crds(path: Path) -> list[dict[str, Any]]:
    """The official CRDs of the networking group (the rest are not used here)."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    return [d for d in docs if d["spec"]["group"] == ISTIO_GROUP]


def operator_rbac() -> list[dict[str, Any]]:
    """What sprintops may do in a workload cluster, granted to its client certificate."""
    rules = [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments"],
            "verbs": ["get", "list", "watch", "create", "patch"],
        },
        {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "create", "patch"]},
        # Which cluster a kubeconfig really reaches (two Secrets must be two clusters).
        {
            "apiGroups": [""],
            "resources": ["namespaces"],
            "resourceNames": ["kube-system"],
            "verbs": ["get"],
        },
        {
            "apiGroups": [ISTIO_GROUP],
            "resources": ["virtualservices"],
            "verbs": ["get", "list", "watch", "update"],
        },
    ]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "sprintops-workload"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "sprintops-workload"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "sprintops-workload",
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": OPERATOR_USER}
            ],
        },
    ]


def fake_node(name: str = NODE_NAME) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": name},
        },
        "status": {
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
        },
    }


def virtual_service(spec: SprintReleaseSpec, live: str) -> dict[str, Any]:
    istio = spec.traffic.istio
    route = []
    for cluster in ("odd", "even"):
        dest = getattr(istio.destinations, cluster)
        destination = {"host": dest.host, **({"subset": dest.subset} if dest.subset else {})}
        route.append({"destination": destination, "weight": 100 if cluster == live else 0})
    return {
        "apiVersion": f"{ISTIO_GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {
            "name": istio.virtual_service.name,
            "namespace": istio.virtual_service.namespace,
        },
        "spec": {
            "hosts": [spec.traffic.route53.record_name.rstrip(".")],
            "http": [{"name": istio.route, "route": route}],
        },
    }


def seed_workload(api: client.ApiClient, spec: SprintReleaseSpec, istio_crd_file: Path) -> None:
    """What every workload cluster has: Istio CRDs, RBAC for sprintops, the fake node."""
    crds = istio_crds(istio_crd_file)
    for obj in crds:
        apply(api, obj)
    for obj in operator_rbac():
        apply(api, obj)
    apply(api, namespace(spec.service.namespace))
    apply(api, fake_node())
    wait_established(api, [c["metadata"]["name"] for c in crds])


def service_baseline(
    apis: dict[Cluster, client.ApiClient], spec: SprintReleaseSpec, live: Cluster
) -> None:
    """One service as the previous sprint left it: all traffic (Route 53 and every
    VirtualService copy) on `live`, its Deployment Available there, nothing in the other
    cluster. Re-running it resets the service to that state."""
    idle: Cluster = "even" if live == "odd" else "odd"
    for api in apis.values():
        apply(api, namespace(spec.service.namespace))
        apply(api, virtual_service(spec, live))
    seed_route53(spec, live)
    apps = client.AppsV1Api(apis[idle])
    try:
        apps.delete_namespaced_deployment(spec.service.name, spec.service.namespace)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    previous = previous_service(spec)
    release = f"{spec.service.name}-sprint-{PREVIOUS_SPRINT}"
    apply(apis[live], manifests.deployment(previous, PREVIOUS_SPRINT, release))
    apply(apis[live], manifests.service_object(previous, PREVIOUS_SPRINT, release))
    wait_available(apis[live], spec.service.name, spec.service.namespace)


def previous_service(spec: SprintReleaseSpec) -> ServiceSpec:
    """Sprint 41's build of the same service."""
    template = yaml.safe_load(yaml.safe_dump(spec.service.template))
    for container in template.get("spec", {}).get("containers", []):
        container["image"] = container["image"].replace(".42.", f".{PREVIOUS_SPRINT}.")
    return spec.service.model_copy(update={"template": template})


def seed_route53(spec: SprintReleaseSpec, live: Cluster) -> None:
    r53 = spec.traffic.route53
    boto = boto3.client("route53")
    name = r53.hosted_zone.name or ""
    zones = boto.list_hosted_zones_by_name(DNSName=name)["HostedZones"]
    if not any(z["Name"] == name for z in zones):
        boto.create_hosted_zone(Name=name, CallerReference=f"sprintops-{name}")
    pairs = Route53Pairs(boto)
    weights = Weights.split(live, 100)
    pairs.wait_insync(pairs.write(r53, weights))


def wait_available(api: client.ApiClient, name: str, ns: str, timeout: float = 60) -> None:
    apps = client.AppsV1Api(api)
    deadline = time.monotonic() + timeout
    while True:
        body = api.sanitize_for_serialization(apps.read_namespaced_deployment(name, ns))
        if manifests.is_available(body):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Deployment {ns}/{name} not Available after {timeout:.0f}s")
        time.sleep(0.2)
