"""A model of the outside world for driving the pure plan the way the reconciler does:
observe, plan, write status, then run the actions. It models what the real world does to
the reconciler: clusters that stop answering (reads fail, writes do not land), a retreat
that writes Route 53 first and leaves unreachable copies pending, a scale-down guarded by
the sprint label. The shared invariants are checked at every write and after every action.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import yaml

from sprintops.api import (
    CLUSTERS,
    TERMINAL_PHASES,
    Cluster,
    Controls,
    SprintReleaseSpec,
    SprintReleaseStatus,
    Weights,
    other,
    parity_cluster,
)
from sprintops.clearance import GateAnswer, Verdict, to_ask
from sprintops.health.checks import CheckOutcome, Outcome, TrafficSample, threshold
from sprintops.plan import (
    Deploy,
    Emit,
    Observations,
    Plan,
    ScaleDown,
    SetWeights,
    TargetDeployment,
    checks_due,
    plan,
    rollout_hash,
)
from sprintops_dev.invariants import Track, violations
from tests.conftest import REPO

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def canonical_spec(**changes: Any) -> SprintReleaseSpec:
    doc = yaml.safe_load((REPO / "examples/sprintrelease.yaml").read_text())["spec"]
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = doc
        for p in parents:
            node = node[p]
        node[leaf] = value
    return SprintReleaseSpec.model_validate(doc)


class InvariantBroken(AssertionError):
    pass


@dataclass
class Deployment:
    sprint: int
    replicas: int
    deployed_at: dt.datetime


@dataclass
class World:
    spec: SprintReleaseSpec
    now: dt.datetime = T0
    status: SprintReleaseStatus = field(default_factory=SprintReleaseStatus)
    route53: Weights | None = field(default_factory=lambda: Weights(even=0, odd=100))
    virtual_service: Weights | None = None  # both copies at first; see `copies`
    deployed_sprint: int | None = None
    deployed_at: dt.datetime | None = None
    available_after: float = 3.0
    ever_available: bool = False
    applied: Weights | None = None
    competitor: str | None = None
    successor: str | None = None
    blocker: str | None = None
    fail_next_set_weights: bool = False
    # What every metric answers in a check round, and whether the new Deployment stays up.
    health: Outcome = "pass"
    lost_availability: bool = False
    # The share of requests the new cluster gets (None: what Route 53 says, at once) and the
    # requests it served in a round's window.
    arrived: float | None = None
    served: float = 1000.0
    # When Prometheus says the share came within the band, if it reads that back.
    reached: dt.datetime | None = None
    # What Prometheus reports whatever arrived (a cluster whose series are missing).
    observed_share: float | None = None
    requests: Controls = field(default_factory=Controls)
    check_rounds: int = 0
    generation: int = 1
    action_error: str | None = None
    events: list[Emit] = field(default_factory=list)
    history: list[SprintReleaseStatus] = field(default_factory=list)
    # Which clusters answer; an unreachable one fails reads and takes no writes.
    reachable: dict[Cluster, bool] = field(default_factory=lambda: {c: True for c in CLUSTERS})
    partial: tuple[Weights, tuple[tuple[Cluster, str], ...]] | None = None
    track: Track = field(default_factory=Track)
    deployed_hash: str | None = None
    # The global freeze as the operator sees it, and each webhook gate's answer (a gate
    # not listed does not answer). `asked` counts the asks per gate.
    frozen: str | None = None
    gate_verdicts: dict[str, Verdict] = field(default_factory=dict)
    asked: dict[str, int] = field(default_factory=dict)
    last: Plan | None = None  # the latest reconcile's plan

    def __post_init__(self) -> None:
        live = self.virtual_service or self.route53 or Weights(even=0, odd=100)
        self.copies: dict[Cluster, Weights] = {c: live for c in CLUSTERS}
        previous = other(parity_cluster(self.spec.sprint))
        # The live cluster runs the sprint before, as the seeded environment does.
        self.deployments: dict[Cluster, Deployment] = {
            previous: Deployment(self.spec.sprint - 1, 3, T0 - dt.timedelta(days=14))
        }
        self.initial = (self.route53, dict(self.copies))
        self.virtual_service = live

    # --- what the reconciler would read
    @property
    def scaled_down(self) -> bool:
        previous = other(parity_cluster(self.spec.sprint))
        dep = self.deployments.get(previous)
        return dep is None or dep.replicas == 0

    def available(self) -> bool:
        if self.deployed_at is None:
            return False
        return (self.now - self.deployed_at).total_seconds() >= self.available_after

    def _target_seen(self) -> TargetDeployment | None:
        if self.deployed_sprint is None:
            return None
        up = self.available() and not (self.lost_availability and self.ever_available)
        self.ever_available |= up
        return TargetDeployment(
            sprint=self.deployed_sprint, available=up, replicas=3, spec_hash=self.deployed_hash
        )

    def observe(self) -> Observations:
        obs: dict[str, Any] = {
            "generation": self.generation,
            "requests": self.requests,
            "now": self.now,
            "applied": self.applied,
            "blocker": self.blocker or self._pop_action_error(),
            "pending": self.partial[1]
            if self.partial and self.partial[0] == self.status.weights
            else (),
            "frozen": self.frozen,
        }
        handled = self.status.controls or Controls()
        if (
            self.requests.abort is not None
            and self.requests.abort != handled.abort
            and self.status.phase not in TERMINAL_PHASES
        ):
            return Observations(**obs)  # as the reconciler: nothing read before a rollback
        answers = []
        for gate in to_ask(self.spec, self.status):
            self.asked[gate.name] = self.asked.get(gate.name, 0) + 1
            verdict = self.gate_verdicts.get(gate.name, "unanswered")
            detail = {"approved": "HTTP 200", "refused": "HTTP 403"}.get(verdict, "no answer")
            answers.append(GateAnswer(gate.name, verdict, detail))
        obs["gate_answers"] = tuple(answers)
        phase, target = self.status.phase, self.status.target_cluster
        if phase in (None, "Pending"):
            obs["competitor"] = self.competitor
            obs["live"] = self.route53
        elif phase == "Deploying" and target is not None:
            if self.reachable[target]:
                obs["target"] = self._target_seen()
            else:
                obs["blocker"] = f"cannot read the Deployment in cluster {target}"
        elif target is not None and checks_due(self.spec, self.status, self.now):
            self.check_rounds += 1
            value = 50.0 if self.health in ("pass", "fail") else None
            obs["checks"] = tuple(
                CheckOutcome(m.name, value, threshold(m), self.health)
                for m in self.spec.analysis.metrics
            )
            live = (self.route53 or Weights(even=0, odd=100)).of(target)
            share = live if self.arrived is None else min(self.arrived, live)
            if self.observed_share is not None:
                share = self.observed_share
            reached = self.reached.timestamp() if self.reached else None
            obs["traffic"] = TrafficSample(share, 100 - share, self.served, reached_at=reached)
            down = [c for c in self.spec.traffic.istio.clusters if not self.reachable[c]]
            if down:
                obs["blocker"] = "; ".join(f"cluster {c} unreachable" for c in down)
            if self.reachable[target]:
                obs["target"] = self._target_seen()
            else:
                obs["target_error"] = f"cluster {target} unreachable"
            for c in self.spec.traffic.istio.clusters:
                if (
                    self.reachable[c]
                    and self.status.weights
                    and self.copies[c] != self.status.weights
                ):
                    obs["drift"] = f"drift: VirtualService in {c}"
        elif phase == "Succeeded" and self.status.scale_down_at is not None:
            previous = self.status.previous_cluster or "odd"
            if not self.reachable[previous]:
                obs["blocker"] = f"cluster {previous} unreachable"
            else:
                dep = self.deployments.get(previous)
                obs["scaled_down"] = self.scaled_down
                obs["previous"] = (
                    TargetDeployment(dep.sprint, True, dep.replicas) if dep is not None else None
                )
                weights = [w.of(previous) for w in (self.route53, *self.copies.values()) if w]
                obs["previous_traffic"] = max(weights) if self.route53 is not None else None
                obs["successor"] = self.successor
        return Observations(**obs)

    def _pop_action_error(self) -> str | None:
        error, self.action_error = self.action_error, None
        return error

    # --- one reconcile
    def reconcile(self) -> float | None:
        result = plan(self.spec, self.status, self.observe())
        self.last = result
        if result.status != self.status:
            self._write(result.status)
        for action in result.actions:
            self._run(action)
            self.check()
        if result.requeue_after is None:
            self._nothing_pending()
        return result.requeue_after

    def _nothing_pending(self) -> None:
        """None means the daemon sleeps until the object changes: nothing may be left to do."""
        s = self.status
        if s.phase not in TERMINAL_PHASES:
            raise InvariantBroken(f"nothing pending in phase {s.phase}")
        if (s.observed_generation or 0) < self.generation:
            raise InvariantBroken(f"an edit (generation {self.generation}) left unobserved")
        if (
            s.phase == "Succeeded"
            and s.scale_down_at
            and not (s.scaled_down_at or s.scale_down_skipped)
        ):
            raise InvariantBroken(f"nothing pending with a scale-down due at {s.scale_down_at}")

    def run(self, limit: int = 500, max_wait: float = 3600.0) -> None:
        for _ in range(limit):
            wait = self.reconcile()
            if wait is None:
                return
            self.now += dt.timedelta(seconds=min(wait, max_wait))

    def crash(self) -> None:
        """An operator restart forgets everything but what is in status."""
        self.applied = None
        self.partial = None

    def edit(self, **changes: Any) -> None:
        """A spec edit, as `kubectl apply` makes one: the generation moves on."""
        doc = self.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        for dotted, value in changes.items():
            *parents, leaf = dotted.split("__")
            node = doc
            for p in parents:
                node = node[p]
            node[leaf] = value
        self.spec = SprintReleaseSpec.model_validate(doc)
        self.generation += 1

    # --- effects
    def _write(self, status: SprintReleaseStatus) -> None:
        self.status = status
        self.history.append(status)
        self.check()

    def _run(self, action: Any) -> None:
        if isinstance(action, Emit):
            self.events.append(action)
        elif isinstance(action, Deploy):
            if not self.reachable[action.cluster]:
                self.action_error = f"cannot apply the Deployment in cluster {action.cluster}"
            elif (self.deployed_sprint, self.deployed_hash) != (
                self.spec.sprint,
                rollout_hash(self.spec),
            ):  # a new template rolls out: Available again only after `available_after`
                self.deployed_sprint, self.deployed_at = self.spec.sprint, self.now
                self.deployed_hash = rollout_hash(self.spec)
                self.deployments[action.cluster] = Deployment(self.spec.sprint, 3, self.now)
        elif isinstance(action, SetWeights):
            if self.fail_next_set_weights:
                self.fail_next_set_weights = False
                self.action_error = "Route 53 said no"  # reported once, as the reconciler does
            elif action.retreat:
                self._retreat(action.weights)
            else:
                self._rise(action.weights)
        elif isinstance(action, ScaleDown):
            dep = self.deployments.get(action.cluster)
            if not self.reachable[action.cluster]:
                self.action_error = f"cannot scale the Deployment in cluster {action.cluster}"
            elif dep is not None and dep.sprint == action.sprint:  # the label precondition
                dep.replicas = 0
        self.virtual_service = self.copies[self.spec.traffic.istio.clusters[0]]

    def _rise(self, weights: Weights) -> None:
        # As the reconciler: a rise forgets a pending retreat (it may write Route 53), and
        # checks every copy before it writes anything.
        self.partial = None
        if not all(self.reachable[c] for c in self.spec.traffic.istio.clusters):
            self.action_error = "cannot read the VirtualService: cluster unreachable"
            return
        self.route53 = weights
        for c in self.spec.traffic.istio.clusters:
            self.copies[c] = weights
        self.applied = weights

    def _retreat(self, weights: Weights) -> None:
        if self.partial is not None and self.partial[0] == weights:
            todo = [c for c, _ in self.partial[1]]
        else:
            self.route53 = weights
            todo = list(self.spec.traffic.istio.clusters)
        pending = []
        for c in todo:
            if self.reachable[c]:
                self.copies[c] = weights
            else:
                pending.append((c, f"cluster {c} unreachable"))
        if pending:
            self.partial = (weights, tuple(pending))
        else:
            self.partial, self.applied = None, weights

    # --- the invariants
    def check(self) -> None:
        target = self.status.target_cluster or parity_cluster(self.spec.sprint)
        traffic: dict[str, Weights | None] = {"route53": self.route53}
        traffic.update({f"vs/{c}": w for c, w in self.copies.items()})
        if self.route53 == self.initial[0]:
            traffic.pop("route53")  # untouched by this release
        for c, w in self.initial[1].items():
            if self.copies[c] == w:
                traffic.pop(f"vs/{c}")
        broken = violations(target, self.status, traffic, self.ever_available, self.track)
        live = [self.route53, *self.copies.values()]
        if self.status.phase in ("Pending", "Deploying", None) and any(
            w is not None and w.of(target) > 0 and w not in self.initial for w in live
        ):
            broken.append(f"traffic on {target} in {self.status.phase}")
        for cluster, dep in self.deployments.items():
            serving = [w.of(cluster) for w in live if w is not None]
            if dep.replicas == 0 and any(serving) and self.route53 and self.route53.of(cluster):
                broken.append(f"{cluster} scaled to 0 while Route 53 sends it traffic")
        if broken:
            raise InvariantBroken("; ".join(broken))
