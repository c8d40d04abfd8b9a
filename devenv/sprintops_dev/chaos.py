"""`make chaos`: many releases, the operator SIGKILLed at seeded random moments, the target
cluster's apiserver frozen (SIGSTOP) for seconds at a time, specs edited in flight, and an
independent watcher asserting the invariants at every sample.

Healthy releases must end Succeeded with all traffic on the new cluster; unhealthy ones
(error rate 0.2 in the simulator) RolledBack with all traffic on the previous one.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from sprintops import api
from sprintops.api import SprintReleaseStatus, Weights
from sprintops.kube import client_from_kubeconfig
from sprintops.traffic.route53 import Route53Pairs
from sprintops_dev import environment, fleet
from sprintops_dev.operator_process import OperatorProcess
from sprintops_dev.watcher import InvariantWatcher, Watched

NS = "releases"


@dataclass
class Report:
    seed: int
    releases: int
    kills: int = 0
    freezes: int = 0
    edits: int = 0
    samples: int = 0
    sample_errors: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.violations or self.stuck or self.wrong)

    def summary(self) -> str:
        return (
            f"chaos seed={self.seed} releases={self.releases} kills={self.kills} "
            f"freezes={self.freezes} edits={self.edits} "
            f"samples={self.samples} sample_errors={sum(self.sample_errors.values())} "
            f"violations={len(self.violations)} stuck={len(self.stuck)} "
            f"wrong_outcome={len(self.wrong)} seconds={self.seconds:.0f}"
        )


def run(
    layout: environment.Layout,
    *,
    seed: int,
    releases: int = 20,
    kills: int = 30,
    unhealthy_every: int = 3,
    timeout: float = 600.0,
    prefix: str = "chaos",
) -> Report:
    rng = random.Random(seed)  # noqa: S311 - reproducible chaos, not crypto
    state = environment.up(layout, say=lambda _m: None)
    variables = environment.environment_variables(layout, state)
    apis = {
        c: client_from_kubeconfig(layout.kubeconfig.read_text(), c) for c in ("mgmt", "even", "odd")
    }
    custom = client.CustomObjectsApi(apis["mgmt"])
    base = fleet.canonical_doc(layout.repo)
    docs, watched, unhealthy = [], [], set()
    for i in range(releases):
        service = f"{prefix}-{seed}-{i}"
        doc = fleet.release_doc(
            base,
            service,
            analysis__interval="1s",
            analysis__bakeTime="4s",
            idle__scaleDownAfter="1h",
        )
        if i % unhealthy_every == unhealthy_every - 1:
            doc["spec"]["service"]["template"]["metadata"]["annotations"][fleet.ERROR_RATE] = "0.2"
            unhealthy.add(doc["metadata"]["name"])
        fleet.remove(custom, doc["metadata"]["name"])
        docs.append(doc)
    for doc, spec in zip(docs, fleet.prepare_many(layout, apis, docs), strict=True):
        watched.append(Watched(NS, doc["metadata"]["name"], spec))
    report = Report(seed=seed, releases=releases)
    operator = OperatorProcess(variables, layout.root / "logs" / f"operator-chaos-{seed}.log")
    started = time.monotonic()
    operator.start()
    try:
        with InvariantWatcher(apis, watched, period=0.2) as watcher:
            for doc in docs:
                custom.create_namespaced_custom_object(api.GROUP, api.VERSION, NS, api.PLURAL, doc)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                time.sleep(rng.uniform(0.3, 2.5))
                done = _terminal(custom, docs)
                if len(done) == len(docs):
                    break
                _fault(
                    rng,
                    report,
                    kills=kills,
                    layout=layout,
                    state=state,
                    operator=operator,
                    custom=custom,
                    docs=docs,
                    done=done,
                )
            report.samples = watcher.samples
            report.sample_errors = dict(watcher.source_errors)
            report.violations = list(watcher.violations)
        statuses = _terminal(custom, docs)
        for doc in docs:
            name = doc["metadata"]["name"]
            if name not in statuses:
                report.stuck.append(name)
                continue
            _judge(report, name, statuses[name], name in unhealthy, watched)
    finally:
        operator.stop()
        report.seconds = time.monotonic() - started
        for doc in docs:
            fleet.remove(custom, doc["metadata"]["name"], wait=False)
    return report


def _fault(
    rng: random.Random,
    report: Report,
    *,
    kills: int,
    layout: environment.Layout,
    state: environment.State,
    operator: OperatorProcess,
    custom: client.CustomObjectsApi,
    docs: list[dict[str, Any]],
    done: dict[str, SprintReleaseStatus],
) -> None:
    """One seeded fault: mostly an operator SIGKILL, sometimes a frozen target cluster or a
    spec edited in flight."""
    fault = rng.random()
    if fault < 0.15:
        _freeze_target(layout, state, rng)
        report.freezes += 1
    elif fault < 0.25 and _edit_one(custom, docs, done, rng):
        report.edits += 1
    elif report.kills < kills:
        operator.kill()
        report.kills += 1
        time.sleep(rng.uniform(0.0, 1.0))
        operator.start()


def _freeze_target(
    layout: environment.Layout, state: environment.State, rng: random.Random
) -> None:
    """The new cluster's apiserver hangs (accepts connections, answers nothing) a while."""
    environment.freeze(layout, state, "apiserver-even")
    try:
        time.sleep(rng.uniform(1.0, 6.0))
    finally:
        environment.thaw(layout, state, "apiserver-even")


def _edit_one(
    custom: client.CustomObjectsApi,
    docs: list[dict[str, Any]],
    done: dict[str, SprintReleaseStatus],
    rng: random.Random,
) -> bool:
    """A person edits the steps of a release in flight: it must start over, never break."""
    moving = [d["metadata"]["name"] for d in docs if d["metadata"]["name"] not in done]
    if not moving:
        return False
    steps = rng.choice([[20, 100], [10, 30, 60, 100], [100]])
    custom.patch_namespaced_custom_object(
        api.GROUP,
        api.VERSION,
        NS,
        api.PLURAL,
        rng.choice(moving),
        {"spec": {"traffic": {"steps": steps}}},
    )
    return True


def _judge(
    report: Report,
    name: str,
    status: SprintReleaseStatus,
    unhealthy: bool,
    watched: list[Watched],
) -> None:
    spec = next(w.spec for w in watched if w.name == name)
    want_phase, want = ("RolledBack", Weights.split("odd", 100))
    if not unhealthy:
        want_phase, want = "Succeeded", Weights.split("even", 100)
    actual = Route53Pairs().read(spec.traffic.route53)
    if status.phase != want_phase or actual != want:
        report.wrong.append(
            f"{name}: {status.phase} with Route 53 {actual}, want {want_phase} with {want}"
        )


def _terminal(
    custom: client.CustomObjectsApi, docs: list[dict[str, Any]]
) -> dict[str, SprintReleaseStatus]:
    items = custom.list_namespaced_custom_object(api.GROUP, api.VERSION, NS, api.PLURAL)["items"]
    names = {d["metadata"]["name"] for d in docs}
    out = {}
    for obj in items:
        status = SprintReleaseStatus.model_validate(obj.get("status") or {})
        if obj["metadata"]["name"] in names and status.phase in api.TERMINAL_PHASES:
            out[obj["metadata"]["name"]] = status
    return out
