from __future__ import annotations

from typing import Any

import pytest

from sprintops import manifests
from sprintops.api import ServiceSpec

SERVICE = ServiceSpec(
    name="document-service",
    namespace="documents",
    replicas=3,
    template={"metadata": {"labels": {"app": "document-service"}}, "spec": {"containers": []}},
)


def test_deployment_keeps_template_and_labels_sprint() -> None:
    dep = manifests.deployment(SERVICE, 42, "document-service-sprint-42")
    assert dep["metadata"]["labels"][manifests.LABEL_SPRINT] == "42"
    assert dep["metadata"]["labels"][manifests.LABEL_RELEASE] == "document-service-sprint-42"
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["app"] == "document-service"
    # The selector must match the pod labels, and stay the same from sprint to sprint.
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert manifests.deployment(SERVICE, 43, "x")["spec"]["selector"] == dep["spec"]["selector"]
    assert SERVICE.template["metadata"]["labels"] == {"app": "document-service"}  # not mutated


def _dep(
    generation: int, observed: int, updated: int, available: int, cond: str, replicas: int = 3
) -> dict[str, Any]:
    return {
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": updated,
            "availableReplicas": available,
            "conditions": [{"type": "Available", "status": cond}],
        },
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_dep(2, 2, 3, 3, "True"), True),
        (_dep(2, 1, 3, 3, "True"), False),  # controller has not seen the new spec
        (_dep(2, 2, 2, 3, "True"), False),  # rollout not finished
        (_dep(2, 2, 3, 2, "True"), False),
        (_dep(2, 2, 3, 3, "False"), False),
        ({"metadata": {}, "spec": {}}, False),
        (_dep(2, 2, 0, 0, "True", replicas=0), False),  # scaled to 0: no pod to serve
    ],
)
def test_is_available(body: dict[str, Any], expected: bool) -> None:
    assert manifests.is_available(body) is expected
