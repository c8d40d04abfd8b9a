"""Argo Rollouts, the peer `make bench-peers` measures sprintops against.

Its controller is built from a pinned version (hack/testenv/build-rollouts.sh) and runs out
of cluster against the even cluster, as its own e2e tests run it, under a ServiceAccount of
its own so the apiserver counts its requests (apicount). A release here is what a user of
Argo would write for the same job: a Rollout with `setWeight` steps and timed pauses, Istio
traffic routing on a VirtualService in the same cluster, and a background analysis with the
Prometheus provider.
"""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, watch

from sprintops.kube import apply
from sprintops_dev import apicount, seed
from sprintops_dev.processes import free_port, terminate, wait_for

GROUP, VERSION = "argoproj.io", "v1alpha1"
NAMESPACE = "argo-bench"  # the Rollouts, their Services and VirtualServices
ACCOUNT = ("argo-rollouts", "argo-rollouts-bench")  # the controller's own identity
FLOW_SCHEMA = "argo-rollouts-bench"
TEMPLATE = "success-rate"
ROUTE = "primary"
RUN_ANNOTATION = "bench.sprintops.io/run"
RUNNING = b"Controller is running."  # logged once it holds the leader lease
LEASE = "argo-rollouts-controller-lock"
VERSION_ANNOTATION = "bench.sprintops.io/rollouts-version"


def build(repo: Path) -> Path:
    """The directory holding rollouts-controller and crds/, built once and cached."""
    out = subprocess.run(
        ["bash", str(repo / "hack/testenv/build-rollouts.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return Path(out.strip().splitlines()[-1])


def version(built: Path) -> str:
    return built.name.removeprefix("argo-rollouts-")


def install(api: client.ApiClient, built: Path, admin_kubeconfig: Path, out: Path) -> Path:
    """Its CRDs (from the same module version), its namespaces and identity; returns the
    kubeconfig the controller runs with."""
    crds = [yaml.safe_load(p.read_text()) for p in sorted((built / "crds").glob("*.yaml"))]
    ext = client.ApiextensionsV1Api(api)
    installed = {
        c.metadata.name: (c.metadata.annotations or {}).get(VERSION_ANNOTATION)
        for c in ext.list_custom_resource_definition().items
    }
    for crd in crds:
        # Half a megabyte each: applied again only when the version changed.
        if installed.get(crd["metadata"]["name"]) != version(built):
            crd["metadata"].setdefault("annotations", {})[VERSION_ANNOTATION] = version(built)
            apply(api, crd)
    seed.wait_established(api, [c["metadata"]["name"] for c in crds])
    apply(api, seed.namespace(NAMESPACE))
    return apicount.install_service_account(
        api, admin_kubeconfig, out, cluster="even", account=ACCOUNT, flow_schema=FLOW_SCHEMA
    )


def analysis_template(prometheus_url: str, query: str, interval: str) -> dict[str, Any]:
    """The success-rate gate: the same query and threshold as sprintops' built-in check."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AnalysisTemplate",
        "metadata": {"name": TEMPLATE, "namespace": NAMESPACE},
        "spec": {
            "metrics": [
                {
                    "name": TEMPLATE,
                    "interval": interval,
                    "failureLimit": 2,
                    "successCondition": "result[0] >= 99",
                    "provider": {"prometheus": {"address": prometheus_url, "query": query}},
                }
            ]
        },
    }


def canary_host(name: str) -> str:
    return f"{name}-canary"


def service_objects(name: str, port: int) -> list[dict[str, Any]]:
    """The stable and canary Services and the VirtualService whose route Argo weights."""
    services = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{name}-{role}", "namespace": NAMESPACE},
            # Headless: a fleet's Services would use up a small cluster's address range, and
            # the mesh here routes by host name.
            "spec": {
                "clusterIP": "None",
                "selector": {"app": name},
                "ports": [{"port": port, "targetPort": port}],
            },
        }
        for role in ("stable", "canary")
    ]
    route = [
        {"destination": {"host": f"{name}-stable"}, "weight": 100},
        {"destination": {"host": canary_host(name)}, "weight": 0},
    ]
    vs = {
        "apiVersion": f"{seed.ISTIO_GROUP}/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"hosts": [name], "http": [{"name": ROUTE, "route": route}]},
    }
    return [*services, vs]


def rollout(
    name: str,
    template: dict[str, Any],
    replicas: int,
    steps: Iterable[int],
    hold: str,
    *,
    routed: bool = True,
) -> dict[str, Any]:
    """A canary Rollout: each weight, then a pause of `hold`; `routed` adds the Istio traffic
    routing and the background analysis (an idle fleet's finished Rollouts need neither)."""
    pod = copy.deepcopy(template)
    pod.setdefault("metadata", {})["labels"] = {"app": name}
    canary: dict[str, Any] = {
        "steps": [s for w in steps for s in ({"setWeight": w}, {"pause": {"duration": hold}})]
    }
    if routed:
        canary |= {
            "canaryService": canary_host(name),
            "stableService": f"{name}-stable",
            "trafficRouting": {"istio": {"virtualService": {"name": name, "routes": [ROUTE]}}},
            "analysis": {"templates": [{"templateName": TEMPLATE}]},
        }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": pod,
            "strategy": {"canary": canary},
        },
    }


def create(api: client.ApiClient, obj: dict[str, Any]) -> None:
    """Creates one of the objects above, or brings an existing one to it."""
    if obj["kind"] in ("Service", "VirtualService"):
        apply(api, obj)
        return
    custom = client.CustomObjectsApi(api)
    plural = {"Rollout": "rollouts", "AnalysisTemplate": "analysistemplates"}[obj["kind"]]
    try:
        custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, obj)
    except client.ApiException as exc:
        if exc.status != 409:
            raise
        name = obj["metadata"]["name"]
        custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, name, obj)


def release(api: client.ApiClient, name: str, run: str) -> None:
    """A new revision of the pod template: what starts a canary."""
    body = {"spec": {"template": {"metadata": {"annotations": {RUN_ANNOTATION: run}}}}}
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "rollouts", name, body
    )


def done(obj: dict[str, Any]) -> bool:
    """Healthy, on the current spec, with the newest revision promoted to stable."""
    status = obj.get("status") or {}
    return (
        status.get("phase") == "Healthy"
        and str(status.get("observedGeneration")) == str(obj["metadata"]["generation"])
        and bool(status.get("stableRS"))
        and status.get("stableRS") == status.get("currentPodHash")
    )


def failed(obj: dict[str, Any]) -> bool:
    status = obj.get("status") or {}
    return bool(status.get("abort")) or status.get("phase") == "Degraded"


def wait_done(api: client.ApiClient, names: set[str], timeout: float = 600) -> dict[str, float]:
    """When (this process's wall clock) each Rollout was first seen done: a watch, so the
    times are the watcher's own and a fleet is not polled."""
    custom = client.CustomObjectsApi(api)
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for obj in custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "rollouts")[
            "items"
        ]:
            _note(obj, names, seen)
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NAMESPACE,
            "rollouts",
            timeout_seconds=max(1, min(60, int(deadline - time.monotonic()))),
        )
        if len(seen) == len(names):
            return seen
        for event in stream:
            _note(event["object"], names, seen)
            if len(seen) == len(names):
                return seen
    raise TimeoutError(f"{len(names) - len(seen)} Rollouts not done after {timeout:.0f}s")


def _note(obj: dict[str, Any], names: set[str], seen: dict[str, float]) -> None:
    name = obj["metadata"]["name"]
    if name not in names or name in seen:
        return
    if failed(obj):
        raise RuntimeError(f"Rollout {name} failed: {(obj.get('status') or {}).get('message')}")
    if done(obj):
        seen[name] = time.time()


def delete_all(api: client.ApiClient) -> None:
    """Every Rollout, Service and VirtualService of the bench namespace (the ReplicaSets and
    AnalysisRuns go with their owners)."""
    custom = client.CustomObjectsApi(api)
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "rollouts")
    custom.delete_collection_namespaced_custom_object(
        seed.ISTIO_GROUP, "v1", NAMESPACE, "virtualservices"
    )
    core = client.CoreV1Api(api)
    for svc in core.list_namespaced_service(NAMESPACE).items:
        core.delete_namespaced_service(svc.metadata.name, NAMESPACE)


class Controller:
    """rollouts-controller as a child process. Defaults are Argo's own; a fleet passes the
    worker threads, QPS and burst that Argo's docs say to raise at scale."""

    def __init__(
        self,
        api: client.ApiClient,
        built: Path,
        kubeconfig: Path,
        log: Path,
        *,
        rollout_threads: int = 10,
        qps: float = 40,
        burst: int = 80,
    ) -> None:
        self.argv = [
            str(built / "rollouts-controller"),
            f"--kubeconfig={kubeconfig}",
            f"--rollout-threads={rollout_threads}",
            f"--qps={qps:g}",
            f"--burst={burst}",
            f"--metricsPort={free_port()}",
            f"--healthzPort={free_port()}",
            "--loglevel=warn",
        ]
        self.api, self.log = api, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> int:
        """Starts it and waits until it leads. A stopped controller leaves its leader lease
        behind, which the next one would wait out (15 s) before doing anything: the bench
        runs one at a time, so the lease goes first."""
        with contextlib.suppress(client.ApiException):
            client.CoordinationV1Api(self.api).delete_namespaced_lease(LEASE, ACCOUNT[0])
        self.log.parent.mkdir(parents=True, exist_ok=True)
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Where it keeps its leader-election lease, as its Deployment would say.
                env={**os.environ, "POD_NAMESPACE": ACCOUNT[0]},
            )
        wait_for(
            "rollouts-controller",
            lambda: RUNNING in self.log.read_bytes()[offset:],
            timeout,
            pid=self.proc.pid,
            log=self.log,
        )
        return self.proc.pid

    def stop(self) -> None:
        terminate(self.proc)

    def __enter__(self) -> Controller:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
