"""Pure templating of the workload objects applied to a cluster: no I/O."""

from __future__ import annotations

import copy
from typing import Any

from sprintops.api import ServiceSpec

LABEL_SPRINT = "sprintops.io/sprint"
ANNOTATION_SPEC_HASH = "sprintops.io/spec-hash"
LABEL_RELEASE = "sprintops.io/release"
LABEL_MANAGED = "app.kubernetes.io/managed-by"


def labels(service: ServiceSpec, sprint: int, release: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": service.name,
        LABEL_MANAGED: "sprintops",
        LABEL_SPRINT: str(sprint),
        LABEL_RELEASE: release,
    }


def selector(service: ServiceSpec) -> dict[str, str]:
    # Stable across sprints: a Deployment's selector is immutable.
    return {"app.kubernetes.io/name": service.name}


def deployment(
    service: ServiceSpec, sprint: int, release: str, spec_hash: str | None = None
) -> dict[str, Any]:
    """`spec_hash` marks which spec the Deployment was applied from: a template applied
    before an edit must not count as the edited one becoming Available."""
    template = copy.deepcopy(service.template)
    meta = template.setdefault("metadata", {})
    meta["labels"] = {**meta.get("labels", {}), **selector(service), LABEL_SPRINT: str(sprint)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": service.name,
            "namespace": service.namespace,
            "labels": labels(service, sprint, release),
            **({"annotations": {ANNOTATION_SPEC_HASH: spec_hash}} if spec_hash else {}),
        },
        "spec": {
            "replicas": service.replicas,
            "selector": {"matchLabels": selector(service)},
            "template": template,
        },
    }


def service_object(service: ServiceSpec, sprint: int, release: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service.name,
            "namespace": service.namespace,
            "labels": labels(service, sprint, release),
        },
        "spec": {
            "selector": selector(service),
            "ports": [{"name": "http", "port": service.port, "targetPort": service.port}],
        },
    }


def is_available(deployment_obj: dict[str, Any]) -> bool:
    """Available as `kubectl rollout status` means it: the controller saw this generation,
    every replica is updated, and all of them are available. Unlike kubectl, a Deployment
    scaled to 0 is not: it has no pod to take the traffic that Available lets in."""
    meta = deployment_obj.get("metadata", {})
    spec = deployment_obj.get("spec", {})
    status = deployment_obj.get("status") or {}
    want = spec.get("replicas", 1)
    if status.get("observedGeneration", 0) < meta.get("generation", 1):
        return False
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return (
        want >= 1
        and conditions.get("Available") == "True"
        and status.get("updatedReplicas", 0) >= want
        and status.get("availableReplicas", 0) >= want
        and status.get("replicas", 0) <= want
    )
