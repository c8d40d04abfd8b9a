"""Holds against the clock and against stale answers: found by an attack on the workflow,
each once a bug. A hold lasts only while it alone keeps a ready step back; an approval
counts only when set during the wait, whatever time its token claims."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sprintops.api import Controls, SprintReleaseStatus
from sprintops.durations import timestamp
from tests.unit.world import T0, World, canonical_spec

Holds = Callable[[SprintReleaseStatus], bool]
PERSON = {"name": "rm", "type": "confirm-step", "manual": True}
PROMOTION = {"name": "rm", "type": "confirm-promotion", "manual": True}


def _step(world: World, n: int = 1) -> None:
    for _ in range(n):
        world.now += dt.timedelta(seconds=world.reconcile() or 1)


def _until(world: World, holds: Holds, limit: int = 3000) -> None:
    for _ in range(limit):
        if holds(world.status):
            return
        _step(world)
    raise AssertionError(world.status.message)


def _for_hours(world: World, hours: float) -> None:
    end = world.now + dt.timedelta(hours=hours)
    while world.now < end and world.status.phase == "Progressing":
        _step(world)


def _waits_for(reason: str) -> Holds:
    return lambda s: s.hold is not None and s.hold.reason == reason


def _approve(world: World, by: str) -> None:
    world.requests = Controls(approve=timestamp(world.now) + f"/by:{by}")
    world.now += dt.timedelta(seconds=1)


def _first_step_approved(world: World) -> None:
    _until(world, _waits_for("approval"))
    _step(world)
    _approve(world, "bob")
    _until(world, lambda s: s.step_index == 0 and bool(s.last_check_passed))


def test_checks_that_stall_after_an_approval_still_reach_the_deadline() -> None:
    world = World(canonical_spec(gates=[PERSON], analysis__progressDeadline="2m"))
    _first_step_approved(world)
    _until(world, _waits_for("approval"))
    world.health = "error"  # Prometheus down: no round passes any more
    _step(world, 3)
    _approve(world, "alice")
    _for_hours(world, 3)
    assert world.status.phase in ("RollingBack", "RolledBack"), world.status.message


def test_a_freeze_lifted_while_the_step_is_not_ready_leaves_no_hold_behind() -> None:
    world = World(canonical_spec(gates=[PERSON], analysis__progressDeadline="2m"))
    _first_step_approved(world)
    world.frozen = "INC-1"
    _until(world, _waits_for("freeze"))
    world.health = "error"
    _step(world, 3)
    assert world.status.hold is None  # not ready: nothing holds but the checks
    world.frozen = None
    _for_hours(world, 3)
    assert world.status.phase in ("RollingBack", "RolledBack"), world.status.message


def test_a_gate_that_refused_then_said_yes_leaves_stalled_checks_to_the_deadline() -> None:
    world = World(
        canonical_spec(
            gates=[{"name": "cab", "type": "confirm-step", "webhook": "cab"}],
            analysis__progressDeadline="2m",
        )
    )
    world.gate_verdicts["cab"] = "approved"
    _until(world, lambda s: s.step_index == 0 and s.hold is None and bool(s.last_check_passed))
    world.gate_verdicts["cab"] = "refused"
    _until(world, lambda s: s.hold is not None and "refused" in (s.message or ""))
    world.health = "error"
    _step(world, 2)
    asked = world.asked["cab"]
    world.gate_verdicts["cab"] = "approved"
    _for_hours(world, 3)
    assert world.status.phase in ("RollingBack", "RolledBack"), world.status.message
    assert world.asked["cab"] == asked  # not ready: the gate is not asked


def test_a_freeze_in_deploying_never_counts_when_availability_flickers() -> None:
    world = World(canonical_spec())  # progressDeadline 10m
    world.frozen = "INC-42 quarter-end freeze"
    _step(world, 50)
    assert world.status.phase == "Deploying" and world.status.hold is not None
    world.now += dt.timedelta(hours=2)
    world.reconcile()
    world.lost_availability = True  # one pod rescheduled
    world.now += dt.timedelta(seconds=5)
    world.reconcile()
    assert world.status.phase == "Deploying", world.status.message


def test_an_approval_written_before_the_wait_never_counts_whatever_its_time() -> None:
    world = World(canonical_spec(gates=[PROMOTION]))
    world.requests = Controls(approve="2099-01-01T00:00:00.000Z/by:release-manager")
    _until(world, lambda s: s.step_index == 1 and _waits_for("approval")(s))
    _step(world, 100)
    assert world.status.phase == "Progressing" and world.now - T0 > dt.timedelta(minutes=3)


def test_an_early_approval_from_a_clock_ahead_never_counts() -> None:
    world = World(canonical_spec(gates=[PROMOTION], analysis__bakeTime="30s"))
    _until(world, lambda s: s.step_index == 1)  # step 2 bakes: nothing waits yet
    ahead = timestamp(world.now + dt.timedelta(seconds=60))
    world.requests = Controls(approve=ahead + "/by:alice")
    _until(world, _waits_for("approval"))
    _step(world, 100)
    assert world.status.phase == "Progressing"


def test_an_approval_during_the_wait_survives_a_freeze() -> None:
    world = World(canonical_spec(gates=[PROMOTION]))
    _until(world, lambda s: s.step_index == 1 and _waits_for("approval")(s))
    _step(world, 2)
    _approve(world, "alice")
    world.frozen = "INC-9"
    _step(world, 3)
    assert _waits_for("freeze")(world.status)
    world.frozen = None
    _until(world, lambda s: s.phase == "Succeeded", limit=200)
    [approval] = [d for d in world.status.decisions if d.kind == "approval"]
    assert approval.by == "alice"


def test_a_failed_release_keeps_no_hold_and_asks_no_gate() -> None:
    world = World(
        canonical_spec(
            gates=[{"name": "ticket", "type": "pre-rollout", "webhook": "cab"}],
            analysis__progressDeadline="2m",
        )
    )
    world.gate_verdicts["ticket"] = "refused"
    world.run()
    assert world.status.phase == "Failed"
    asked = world.asked["ticket"]
    _step(world, 5)  # the daemon's rounds while notices wait
    assert world.status.hold is None and world.asked["ticket"] == asked
