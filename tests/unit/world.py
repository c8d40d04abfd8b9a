"""A model of the outside world for driving the pure plan the way the handler does:
observe, plan, write status, then run the actions. It checks the invariants at every write
and after every action."""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import yaml

from sprintops.api import TERMINAL_PHASES, Controls, SprintReleaseSpec, SprintReleaseStatus, Weights
from sprintops.health.checks import CheckOutcome, Outcome, threshold
from sprintops.plan import (
    Deploy,
    Emit,
    Observations,
    ScaleDown,
    SetWeights,
    TargetDeployment,
    checks_due,
    plan,
)
from tests.conftest import REPO

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
ORDER = ["Pending", "Deploying", "Progressing"]


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
class World:
    spec: SprintReleaseSpec
    now: dt.datetime = T0
    status: SprintReleaseStatus = field(default_factory=SprintReleaseStatus)
    route53: Weights | None = field(default_factory=lambda: Weights(even=0, odd=100))
    virtual_service: Weights = field(default_factory=lambda: Weights(even=0, odd=100))
    deployed_sprint: int | None = None
    deployed_at: dt.datetime | None = None
    available_after: float = 3.0
    ever_available: bool = False
    applied: Weights | None = None
    competitor: str | None = None
    blocker: str | None = None
    fail_next_set_weights: bool = False
    scaled_down: bool = False
    # What every metric answers in a check round, and whether the new Deployment stays up.
    health: Outcome = "pass"
    lost_availability: bool = False
    requests: Controls = field(default_factory=Controls)
    check_rounds: int = 0
    generation: int = 1
    action_error: str | None = None
    events: list[Emit] = field(default_factory=list)
    history: list[SprintReleaseStatus] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.initial = (self.route53, self.virtual_service)

    # --- what the handler would read
    def available(self) -> bool:
        if self.deployed_at is None:
            return False
        return (self.now - self.deployed_at).total_seconds() >= self.available_after

    def observe(self) -> Observations:
        target = None
        if self.deployed_sprint is not None:
            up = self.available() and not (self.lost_availability and self.ever_available)
            target = TargetDeployment(sprint=self.deployed_sprint, available=up)
            self.ever_available |= target.available
        checks = None
        if checks_due(self.spec, self.status, self.now):
            self.check_rounds += 1
            value = 50.0 if self.health in ("pass", "fail") else None
            checks = tuple(
                CheckOutcome(m.name, value, threshold(m), self.health)
                for m in self.spec.analysis.metrics
            )
        return Observations(
            generation=self.generation,
            checks=checks,
            requests=self.requests,
            now=self.now,
            live=self.route53,
            target=target,
            applied=self.applied,
            competitor=self.competitor,
            blocker=self.blocker or self._pop_action_error(),
            scaled_down=self.scaled_down,
        )

    def _pop_action_error(self) -> str | None:
        error, self.action_error = self.action_error, None
        return error

    # --- one reconcile
    def reconcile(self) -> float | None:
        result = plan(self.spec, self.status, self.observe())
        self._write(result.status)
        for action in result.actions:
            self._run(action)
            self.check()
        return result.requeue_after

    def run(self, limit: int = 500, max_wait: float = 3600.0) -> None:
        for _ in range(limit):
            wait = self.reconcile()
            if wait is None:
                return
            self.now += dt.timedelta(seconds=min(wait, max_wait))

    def crash(self) -> None:
        """An operator restart forgets everything but what is in status."""
        self.applied = None

    # --- effects
    def _write(self, status: SprintReleaseStatus) -> None:
        previous = self.status
        self.status = status
        self.history.append(status)
        retry = (status.observed_generation or 0) > (previous.observed_generation or 0)
        if previous.phase in TERMINAL_PHASES and status.phase != previous.phase and not retry:
            raise InvariantBroken(f"terminal phase {previous.phase} left for {status.phase}")
        if (
            not retry
            and previous.step_index is not None
            and (status.step_index or 0) < previous.step_index
        ):
            raise InvariantBroken(f"step went back {previous.step_index} -> {status.step_index}")
        if (status.step_index or 0) - (previous.step_index or 0) > 1:
            raise InvariantBroken("a step was skipped")
        ranks = [ORDER.index(p) if p in ORDER else -1 for p in (previous.phase, status.phase)]
        if min(ranks) >= 0 and ranks[1] < ranks[0]:
            raise InvariantBroken(f"phase went back {previous.phase} -> {status.phase}")
        self.check()

    def _run(self, action: Any) -> None:
        if isinstance(action, Emit):
            self.events.append(action)
        elif isinstance(action, Deploy):
            if self.deployed_sprint != self.spec.sprint:
                self.deployed_sprint, self.deployed_at = self.spec.sprint, self.now
        elif isinstance(action, SetWeights):
            if self.fail_next_set_weights:
                self.fail_next_set_weights = False
                self.action_error = "Route 53 said no"  # reported once, as the reconciler does
                return
            self.route53 = copy.copy(action.weights)
            self.virtual_service = copy.copy(action.weights)
            self.applied = action.weights
        elif isinstance(action, ScaleDown):
            self.scaled_down = True

    # --- the invariants
    def check(self) -> None:
        target = self.status.target_cluster or "even"
        steps = self.spec.traffic.steps
        for where, w in (("route53", self.route53), ("virtualService", self.virtual_service)):
            if w is None or w == self.initial[0 if where == "route53" else 1]:
                continue  # untouched by this release
            if w.even + w.odd != 100:
                raise InvariantBroken(f"{where} weights sum to {w.even + w.odd}")
            new = w.of(target)
            if self.status.phase in ("Failed", "Pending", None, "Deploying") and new > 0:
                raise InvariantBroken(f"{where}: {target} has {new} in {self.status.phase}")
            if self.status.step_index is not None and new > steps[self.status.step_index]:
                raise InvariantBroken(f"{where}: {new} > step {steps[self.status.step_index]}")
            if new > 0 and not self.ever_available:
                raise InvariantBroken(f"{where}: traffic before the Deployment was Available")
            if new > 0 and self.status.deployment_available_at is None:
                raise InvariantBroken(f"{where}: traffic but no deploymentAvailableAt in status")
