"""The local environment, started once per test session (or reused when already up).

An environment the tests started is stopped at the end; one that was running is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from sprintops import api
from sprintops.api import SprintReleaseSpec, Weights
from sprintops.kube import client_from_kubeconfig
from sprintops.traffic.route53 import Route53Pairs, make_client
from sprintops_dev import environment, fleet, traffic
from sprintops_dev.operator_process import OperatorProcess
from sprintops_dev.processes import free_port
from sprintops_dev.seed import OPERATOR_NAMESPACE
from tests.conftest import REPO


@dataclass
class Env:
    layout: environment.Layout
    state: environment.State
    apis: dict[str, client.ApiClient]

    def custom(self, cluster: str = "mgmt") -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.apis[cluster])

    def apps(self, cluster: str) -> client.AppsV1Api:
        return client.AppsV1Api(self.apis[cluster])

    def core(self, cluster: str) -> client.CoreV1Api:
        return client.CoreV1Api(self.apis[cluster])

    def route53(self) -> Route53Pairs:
        return Route53Pairs(make_client())

    def traffic(self, spec: SprintReleaseSpec) -> tuple[Weights | None, dict[str, Weights]]:
        """Route 53's pair, then every VirtualService copy's route weights."""
        return traffic.read(self.apis, spec, self.route53())

    def create(self, doc: dict[str, Any]) -> None:
        ns = doc["metadata"]["namespace"]
        self.custom().create_namespaced_custom_object(api.GROUP, api.VERSION, ns, api.PLURAL, doc)

    def status(self, name: str, namespace: str = "releases") -> dict[str, Any]:
        obj = self.custom().get_namespaced_custom_object(
            api.GROUP, api.VERSION, namespace, api.PLURAL, name
        )
        status: dict[str, Any] = obj.get("status") or {}
        return status

    def promql(self, query: str) -> list[dict[str, Any]]:
        url = f"{self.state.prometheus_url}/api/v1/query?" + urllib.parse.urlencode(
            {"query": query}
        )
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def _keep_logs(layout: environment.Layout) -> None:
    """After a failure the environment goes, but its logs stay, and CI shows their warnings."""
    suffix = "" if layout.root.name == "env" else f"-{layout.root.name}"  # an xdist worker's
    kept = layout.repo / ".sprintops" / f"failed-logs{suffix}"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(layout.root / "logs", kept)
    clusters = layout.kwok / "clusters"
    for cluster in clusters.iterdir() if clusters.is_dir() else ():
        shutil.copytree(cluster / "logs", kept / cluster.name)
    log = kept / "operator-tests.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    worth = [line for line in lines if " WARNING " in line or " ERROR " in line]
    sys.__stdout__.write(
        f"\n--- operator-tests.log, last warnings and errors (all logs kept in {kept}):\n"
        + "\n".join(worth[-40:])
        + "\n"
    )


def _worker_environment() -> None:
    """Under pytest-xdist each worker has an environment of its own: the first one the
    usual one (a running one is reused), the others beside it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    if worker != "gw0" and "SPRINTOPS_ENV_DIR" not in os.environ:
        os.environ["SPRINTOPS_ENV_DIR"] = str(REPO / ".sprintops" / f"env-{worker}")


@contextlib.contextmanager
def _one_at_a_time(name: str) -> Iterator[None]:
    """Environments start one after the other: free ports are picked, then bound."""
    lock = REPO / ".sprintops" / name
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    _worker_environment()
    layout = environment.Layout(REPO)
    reused = environment.is_running(layout)
    with _one_at_a_time("env-up.lock"):
        state = environment.up(layout)
    saved = dict(os.environ)
    os.environ.update(environment.environment_variables(layout, state))
    kubeconfig = layout.kubeconfig.read_text()
    apis = {c: client_from_kubeconfig(kubeconfig, c) for c in ("mgmt", "even", "odd")}
    try:
        yield Env(layout, state, apis)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if request.session.testsfailed and (layout.root / "logs").is_dir():
            _keep_logs(layout)
        if not reused:
            environment.down(layout)


Operator = OperatorProcess


# Loopback endpoints the workflow tests serve (test_workflow.py): a URL and a token that
# must never show in a log, an Event or a status.
HOOK_SECRET = "hook-path-secret-7f3a"  # noqa: S105 (a test value that must not leak)
HOOK_TOKEN = "bearer-secret-c91e"  # noqa: S105


@pytest.fixture(scope="session")
def hooks_port() -> int:
    return free_port()


def endpoints_file(root: Path, port: int) -> Path:
    base = f"http://127.0.0.1:{port}"
    config = {
        "gates": {
            "cab": {"url": f"{base}/gates/cab/{HOOK_SECRET}", "timeout": "2s"},
            "smoke": {"url": f"{base}/gates/smoke/{HOOK_SECRET}", "timeout": "2s"},
        },
        "receivers": {
            "recorder": {
                "type": "webhook",
                "url": f"{base}/hooks/{HOOK_SECRET}",
                "bearerToken": HOOK_TOKEN,
            },
            "chat": {"type": "slack", "url": f"{base}/slack/{HOOK_SECRET}"},
        },
    }
    path = root / "endpoints.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def operator(env: Env, hooks_port: int) -> Iterator[Operator]:
    variables = {
        **environment.environment_variables(env.layout, env.state),
        "SPRINTOPS_ENDPOINTS_FILE": str(endpoints_file(env.layout.root, hooks_port)),
        "SPRINTOPS_NAMESPACE": OPERATOR_NAMESPACE,
    }
    op = OperatorProcess(variables, env.layout.root / "logs" / "operator-tests.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def release_of(
    env: Env, canonical_doc: dict
) -> Iterator[Callable[..., tuple[dict, SprintReleaseSpec]]]:
    """A SprintRelease for a service of its own (own record pair, VirtualService and
    Deployments), reset to the baseline: sprint 41 live in odd."""
    created: list[str] = []

    def make(service: str, **spec_changes: Any) -> tuple[dict, SprintReleaseSpec]:
        doc = fleet.release_doc(canonical_doc, service, **spec_changes)
        delete_release(env, doc["metadata"]["name"])
        spec = fleet.prepare(env.layout, env.apis, doc)
        created.append(doc["metadata"]["name"])
        return doc, spec

    yield make
    for name in created:
        delete_release(env, name)


def delete_release(env: Env, name: str, namespace: str = "releases") -> None:
    """Deletes a release and waits until it is gone: the operator removes its finalizer."""
    fleet.remove(env.custom(), name, namespace, lift_finalizer=False)


def wait_phase(env: Env, name: str, phases: set[str], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    obj: dict = {}
    while time.monotonic() < deadline:
        obj = env.custom().get_namespaced_custom_object(
            api.GROUP, api.VERSION, "releases", api.PLURAL, name
        )
        if (obj.get("status") or {}).get("phase") in phases:
            return obj
        time.sleep(0.2)
    raise TimeoutError(f"{name} not in {phases} after {timeout}s: {obj.get('status')}")


def wait_status(
    env: Env, name: str, holds: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    """Polls the release's status until `holds` says yes."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = env.status(name)
        if holds(status):
            return status
        time.sleep(0.1)
    raise TimeoutError(f"{name}: condition not met in {timeout}s; status: {status}")


def first_step_started(env: Env, name: str, timeout: float = 60) -> dict[str, Any]:
    """Waits until the release's first step carries traffic (recorded in status)."""
    return wait_status(
        env, name, lambda s: s.get("stepIndex") == 0 and bool(s.get("stepStartedAt")), timeout
    )


def wait_events(
    env: Env,
    name: str,
    holds: Callable[[list[Any]], bool],
    timeout: float = 10,
    namespace: str = "releases",
) -> list[Any]:
    """Events of the release now called `name` (not of an earlier namesake), oldest first,
    once `holds` says yes. kopf posts Events after the status patch, in the background."""
    obj = env.custom().get_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, name
    )
    selector = f"involvedObject.uid={obj['metadata']['uid']}"
    deadline = time.monotonic() + timeout
    while True:
        items = env.core("mgmt").list_namespaced_event(namespace, field_selector=selector).items
        events = sorted(items, key=lambda e: e.event_time or e.metadata.creation_timestamp)
        if holds(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.2)
