"""Property tests: random specs and random sequences of what the world does."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sprintops.api import TERMINAL_PHASES, Weights
from sprintops.durations import timestamp
from tests.unit.world import World, canonical_spec

steps_strategy = st.lists(st.integers(1, 99), max_size=9, unique=True).map(
    lambda xs: [*sorted(xs), 100]
)
durations = st.sampled_from(["1s", "2s", "5s", "30s", "1m"])

# What can happen between two reconciles.
events = st.lists(
    st.sampled_from(
        [
            "tick",
            "tick",
            "tick",
            "crash",
            "block",
            "unblock",
            "fail-set-weights",
            "jump",
            "competitor",
            "no-competitor",
            "health-fail",
            "health-pass",
            "health-pass",
            "health-error",
            "health-nodata",
            "lose-availability",
            "pause",
            "resume",
            "abort",
            "promote",
            "promote-force",
        ]
    ),
    max_size=60,
)


inputs = {
    "steps": steps_strategy,
    "sprint": st.integers(0, 1000),
    "bake": durations,
    "available_after": st.floats(0, 120),
    "history": events,
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**inputs)
def test_invariants_hold_under_any_sequence(
    steps: list[int], sprint: int, bake: str, available_after: float, history: list[str]
) -> None:
    check_sequence(steps, sprint, bake, available_after, history)


def check_sequence(
    steps: list[int], sprint: int, bake: str, available_after: float, history: list[str]
) -> None:
    spec = canonical_spec(
        sprint=sprint,
        traffic__steps=steps,
        analysis__interval="1s",
        analysis__bakeTime=bake,
        analysis__progressDeadline="10m",
        idle__scaleDownAfter="5m",
    )
    previous = "odd" if sprint % 2 == 0 else "even"
    live = Weights.split(previous, 100)
    world = World(spec, route53=live, virtual_service=live, available_after=available_after)

    def token(i: int) -> str:
        return f"{timestamp(world.now)}/{i:04d}"

    for i, event in enumerate(history):
        if event.startswith("health-"):
            world.health = {"fail": "fail", "pass": "pass", "error": "error", "nodata": "noData"}[
                event.removeprefix("health-")
            ]
        elif event == "lose-availability":
            world.lost_availability = True
        elif event in ("pause", "resume", "abort"):
            world.requests = world.requests.model_copy(update={event: token(i)})
        elif event.startswith("promote"):
            prefix = "force:" if event == "promote-force" else ""
            world.requests = world.requests.model_copy(update={"promote": prefix + token(i)})
        elif event == "crash":
            world.crash()
        elif event == "block":
            world.blocker = "cluster unreachable"
        elif event == "unblock":
            world.blocker = None
        elif event == "fail-set-weights":
            world.fail_next_set_weights = True
        elif event == "competitor":
            world.competitor = "releases/other"
        elif event == "no-competitor":
            world.competitor = None
        elif event == "jump":
            world.now += dt.timedelta(minutes=3)
        wait = world.reconcile()  # invariants are checked inside, at every write and action
        world.now += dt.timedelta(seconds=min(wait if wait is not None else 1.0, 30.0))
    # Then the world calms down: the release must end, where its history says it may.
    world.blocker, world.competitor, world.fail_next_set_weights = None, None, False
    world.health = "pass"
    world.requests = world.requests.model_copy(update={"resume": token(len(history))})
    world.run(limit=3000, max_wait=30.0)
    assert world.status.phase in TERMINAL_PHASES
    target = world.status.target_cluster
    assert target is not None
    previous = "odd" if target == "even" else "even"
    if world.status.phase == "Succeeded":
        assert world.route53 == world.virtual_service == Weights.split(target, 100)
        assert [s.weight for s in world.status.steps] == steps
    elif world.status.phase == "RolledBack":
        assert world.route53 == world.virtual_service == Weights.split(previous, 100)
        assert next(c for c in world.status.conditions if c.type == "Degraded").status == "True"
    else:  # Failed: refused, deploy deadline or aborted before traffic moved
        assert world.route53 == world.virtual_service == Weights.split(previous, 100)
