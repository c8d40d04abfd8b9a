"""A hypothesis state machine over the world model: partial writes, clusters that go away
and come back, spec edits in every phase, pause/resume/abort/promote in any order, a newer
release of the service, and pairs that are not one live cluster. The invariants are checked
inside the world at every write and action; the machine adds that a calmed world always
ends, where the history says it may.

Profiles: `ci` (the default, in `make test`) is short; `deep` (HYPOTHESIS_PROFILE=deep, in
`make chaos`) runs many more and longer histories."""

from __future__ import annotations

import datetime as dt
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from sprintops.api import CLUSTERS, TERMINAL_PHASES, Cluster, Weights
from sprintops.clearance import Verdict
from sprintops.durations import timestamp
from sprintops.plan import plan, rollout_hash
from tests.unit.world import World, canonical_spec

settings.register_profile(
    "ci",
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "deep",
    max_examples=1000,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")

steps_strategy = st.lists(st.integers(1, 99), max_size=5, unique=True).map(
    lambda xs: [*sorted(xs), 100]
)


# Gates answered by a system, a person, or before any traffic moves.
GATES: dict[str, list[dict[str, object]]] = {
    "none": [],
    "webhook": [{"name": "cab", "type": "confirm-step", "webhook": "cab"}],
    "manual": [{"name": "rm", "type": "confirm-promotion", "manual": True}],
    "pre": [{"name": "ticket", "type": "pre-rollout", "webhook": "cab"}],
}


class Release(RuleBasedStateMachine):
    world: World

    @initialize(
        steps=steps_strategy,
        sprint=st.integers(1, 1000),
        bake=st.sampled_from(["1s", "5s", "30s"]),
        available_after=st.floats(0, 60),
        pair=st.sampled_from(["live", "live", "live", "zero", "split", "missing"]),
        gates=st.sampled_from(list(GATES)),
    )
    def start(
        self,
        steps: list[int],
        sprint: int,
        bake: str,
        available_after: float,
        pair: str,
        gates: str,
    ) -> None:
        spec = canonical_spec(
            gates=GATES[gates],
            sprint=sprint,
            traffic__steps=steps,
            analysis__interval="1s",
            analysis__bakeTime=bake,
            analysis__progressDeadline="5m",
            idle__scaleDownAfter="2m",
        )
        previous: Cluster = "odd" if sprint % 2 == 0 else "even"
        live: Weights | None = {
            "live": Weights.split(previous, 100),
            "zero": Weights.model_construct(even=0, odd=0),
            "split": Weights(even=40, odd=60),
            "missing": None,
        }[pair]
        self.pair = pair
        self.world = World(
            spec,
            route53=live,
            virtual_service=Weights.split(previous, 100),
            available_after=available_after,
        )
        self.tokens = 0

    def _step(self, seconds: float | None = None) -> None:
        wait = self.world.reconcile()
        pause = seconds if seconds is not None else min(wait if wait else 0.5, 30.0)
        self.world.now += dt.timedelta(seconds=pause)

    def _token(self) -> str:
        self.tokens += 1
        return f"{timestamp(self.world.now)}/{self.tokens:04d}"

    @rule()
    def tick(self) -> None:
        self._step()

    @rule(minutes=st.integers(1, 8))
    def time_passes(self, minutes: int) -> None:
        self._step(minutes * 60.0)

    @rule()
    def crash(self) -> None:
        self.world.crash()
        self._step()

    @rule(cluster=st.sampled_from(CLUSTERS))
    def cluster_goes_away(self, cluster: Cluster) -> None:
        self.world.reachable[cluster] = False
        self._step()

    @rule(cluster=st.sampled_from(CLUSTERS))
    def cluster_comes_back(self, cluster: Cluster) -> None:
        self.world.reachable[cluster] = True
        self._step()

    @rule()
    def route53_says_no_once(self) -> None:
        self.world.fail_next_set_weights = True
        self._step()

    @rule(health=st.sampled_from(["pass", "pass", "fail", "error", "noData"]))
    def health_changes(self, health: str) -> None:
        self.world.health = health  # type: ignore[assignment]
        self._step()

    @rule(
        arrived=st.sampled_from([None, None, 0.0, 3.0, 9.0, 60.0]),
        served=st.sampled_from([1000.0, 1000.0, 10.0]),
    )
    def traffic_lags(self, arrived: float | None, served: float) -> None:
        """DNS caches hold clients back (the share seen is capped), or few requests come."""
        self.world.arrived, self.world.served = arrived, served
        self._step()

    @rule(seen=st.sampled_from([None, 100.0, 50.0]))
    def prometheus_misreads_the_share(self, seen: float | None) -> None:
        """An old cluster whose series are missing: the share reads far above the weight."""
        self.world.observed_share = seen
        self._step()

    @rule()
    def deployment_goes_unavailable(self) -> None:
        self.world.lost_availability = True
        self._step()

    @rule(verb=st.sampled_from(["pause", "resume", "abort", "promote", "force"]))
    def person_asks(self, verb: str) -> None:
        token = self._token()
        if verb == "force":
            verb, token = "promote", "force:" + token
        self.world.requests = self.world.requests.model_copy(update={verb: token})
        self._step()

    @rule(
        edit=st.sampled_from(["grow", "shrink", "template", "checks"]),
        extra=st.integers(1, 99),
    )
    def spec_is_edited(self, edit: str, extra: int) -> None:
        steps = self.world.spec.traffic.steps
        if edit == "grow":
            self.world.edit(traffic__steps=sorted({*steps, extra})[-10:])
        elif edit == "shrink":
            self.world.edit(traffic__steps=steps[-1:])
        elif edit == "template":
            self.world.edit(service__template__metadata__labels__rev=str(self.tokens))
            self.tokens += 1
        else:
            self.world.edit(analysis__failureLimit=1 + extra % 5)
        self._step()

    @rule(what=st.sampled_from(["automatic", "idle", "secret", "revert"]))
    def spec_is_edited_outside_the_rollout(self, what: str) -> None:
        """Fields the rollout hash leaves out; an edit and its revert is still an edit."""
        world = self.world
        if what == "automatic":
            world.edit(rollback__automatic=not world.spec.rollback.automatic)
        elif what == "idle":
            world.edit(idle__scaleDownAfter="3m")
        elif what == "secret":
            world.edit(clusters__even__kubeconfigSecretRef__name=f"cluster-even-{self.tokens}")
            self.tokens += 1
        else:
            world.edit(service__template__metadata__labels__rev="r")
            world.edit(service__template__metadata__labels__rev="0")
        self._step()

    @rule(verb=st.sampled_from(["pause", "resume", "abort", "promote"]))
    def edit_and_request_in_one_look(self, verb: str) -> None:
        self.world.edit(service__template__metadata__labels__rev=str(self.tokens))
        self.world.requests = self.world.requests.model_copy(update={verb: self._token()})
        self._step()

    @rule(done=st.integers(0, 3))
    def crash_between_actions(self, done: int) -> None:
        """Status written, some of its actions taken, then the operator dies."""
        world = self.world
        result = plan(world.spec, world.status, world.observe())
        if result.status != world.status:
            world._write(result.status)
        for action in result.actions[:done]:
            world._run(action)
            world.check()
        world.crash()
        self._step()

    @rule(on=st.booleans())
    def freeze(self, on: bool) -> None:
        self.world.frozen = "incident (by on-call)" if on else None
        self._step()

    @rule(verdict=st.sampled_from(["approved", "refused", "unanswered"]))
    def gates_answer(self, verdict: Verdict) -> None:
        self.world.gate_verdicts = {g.name: verdict for g in self.world.spec.gates}
        self._step()

    @rule()
    def person_approves(self) -> None:
        token = f"{timestamp(self.world.now)}/by:alice{self._token()[-4:]}"
        self.world.requests = self.world.requests.model_copy(update={"approve": token})
        self._step()

    @rule()
    def newer_release_appears(self) -> None:
        self.world.successor = "releases/next-sprint"
        self._step()

    def teardown(self) -> None:
        world = getattr(self, "world", None)
        if world is None:
            return
        # The world calms down: the release must end, where its history says it may.
        world.reachable = {c: True for c in CLUSTERS}
        world.blocker, world.fail_next_set_weights, world.health = None, False, "pass"
        world.lost_availability = False
        world.arrived, world.served, world.observed_share = None, 1000.0, None
        world.requests = world.requests.model_copy(update={"resume": self._token()})
        world.frozen = None
        world.gate_verdicts = {g.name: "approved" for g in world.spec.gates}
        for _ in range(1000):
            hold = world.status.hold
            if hold is not None and hold.reason == "approval":  # a person comes by
                world.now += dt.timedelta(seconds=1)
                token = f"{timestamp(world.now)}/by:alice"
                world.requests = world.requests.model_copy(update={"approve": token})
            wait = world.reconcile()
            if wait is None:
                break
            world.now += dt.timedelta(seconds=min(wait, 60.0))
        status = world.status
        if self.pair != "live":  # refused, or waiting for the records to appear
            assert status.phase in {"Failed", "Pending"}, status
            assert world.deployed_sprint is None
            return
        assert status.phase in TERMINAL_PHASES, status
        assert (status.observed_generation or 0) == world.generation, status
        target = status.target_cluster
        assert target is not None
        previous: Cluster = "odd" if target == "even" else "even"
        if status.phase == "Succeeded":
            assert world.route53 == Weights.split(target, 100)
            assert all(w == Weights.split(target, 100) for w in world.copies.values())
            weights = [s.weight for s in status.steps]
            assert weights == sorted(set(weights)) and weights[-1] == 100, weights
            if status.spec_hash == rollout_hash(world.spec):  # not edited after success
                assert weights == world.spec.traffic.steps
        else:  # RolledBack, or Failed before traffic moved
            assert world.route53 == Weights.split(previous, 100), status
            assert all(w == Weights.split(previous, 100) for w in world.copies.values())
            assert status.pending_copies == []


Release.TestCase.settings = settings.get_profile(PROFILE)
test_release_state_machine = Release.TestCase
