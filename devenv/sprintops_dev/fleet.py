"""Releases of services of their own, derived from the canonical one: for tests, chaos, bench.

Each service gets its own record pair (`<service>.sprintops.test.`), VirtualService and
Deployments, reset to the baseline (sprint 41 live in odd), and joins the traffic simulator.
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from sprintops import api
from sprintops.api import Cluster, SprintReleaseSpec
from sprintops.kube import merge_patch, object_path
from sprintops_dev import environment, seed

ERROR_RATE = "sim.sprintops.io/error-rate"


def canonical_doc(repo: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((repo / "examples/sprintrelease.yaml").read_text())
    return doc


def release_doc(base: dict[str, Any], service: str, **changes: Any) -> dict[str, Any]:
    """`changes` are spec paths with `__` for dots, e.g. analysis__bakeTime="2s"."""
    doc = copy.deepcopy(base)
    doc["metadata"]["name"] = f"{service}-sprint-{doc['spec']['sprint']}"
    s = doc["spec"]
    s["service"]["name"] = service
    s["traffic"]["route53"]["recordName"] = f"{service}.sprintops.test."
    s["traffic"]["istio"]["virtualService"]["name"] = service
    for dest in s["traffic"]["istio"]["destinations"].values():
        dest["host"] = f"{service}.documents.svc.cluster.local"
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = s
        for p in parents:
            node = node[p]
        node[leaf] = value
    return doc


def prepare(
    layout: environment.Layout, apis: dict[str, client.ApiClient], doc: dict[str, Any]
) -> SprintReleaseSpec:
    """Resets the release's service to the baseline and has the simulator serve it."""
    return prepare_many(layout, apis, [doc])[0]


def prepare_many(
    layout: environment.Layout,
    apis: dict[str, client.ApiClient],
    docs: list[dict[str, Any]],
    parallel: int = 8,
) -> list[SprintReleaseSpec]:
    """`prepare` for many services: the baselines side by side, the simulator told once."""
    specs = [SprintReleaseSpec.model_validate(doc["spec"]) for doc in docs]
    workloads: dict[Cluster, client.ApiClient] = {"even": apis["even"], "odd": apis["odd"]}
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda spec: seed.service_baseline(workloads, spec, "odd"), specs))
    environment.simulate(layout, *specs)
    return specs


def remove(
    custom: client.CustomObjectsApi,
    name: str,
    namespace: str = "releases",
    *,
    wait: bool = True,
    lift_finalizer: bool = True,
    timeout: float = 30.0,
) -> None:
    """Deletes a release and waits until it is gone. `lift_finalizer` removes the operator's
    finalizer first, for when no operator runs; without it, the operator must remove it."""
    path = object_path(f"{api.GROUP}/{api.VERSION}", api.KIND, namespace, name)
    try:
        if lift_finalizer:
            merge_patch(custom.api_client, path, {"metadata": {"finalizers": None}})
        custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    deadline = time.monotonic() + timeout
    while wait:
        if time.monotonic() > deadline:
            raise TimeoutError(f"release {namespace}/{name} not deleted after {timeout:.0f}s")
        try:
            custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.1)
