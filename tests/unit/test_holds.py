"""Holds against the clock and against stale answers: found by an attack on the workflow,
each once a bug. A hold lasts only while it alone keeps a ready step back; an approval
counts only when set during the wait, whatever time its token claims."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sprintops.api import Controls, SprintReleaseStatus
from sprintops.clearance import to_ask
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
    world.frozen = None
    _for_hours(world, 3)
    assert world.status.phase in ("RollingBack", "RolledBack"), world.status.message
    assert "checks have not passed for 2m while held" in (world.status.message or "")


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
    assert world.asked["cab"] <= asked + 1  # checks not passing: the gate is not asked


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


def _frozen_for_two_hours(world: World, holds: Holds) -> None:
    world.frozen = "INC-7"
    _until(world, lambda s: holds(s) and _waits_for("freeze")(s))
    end = world.now + dt.timedelta(hours=2)
    while world.now < end:
        _step(world)


def test_a_blocker_after_a_long_freeze_is_not_past_the_deadline() -> None:
    world = World(canonical_spec())  # progressDeadline 10m
    _until(world, lambda s: s.step_index == 0 and bool(s.last_check_passed))
    _frozen_for_two_hours(world, lambda s: True)
    world.reachable["odd"] = False  # the old cluster's API, for one round
    _step(world)
    assert world.status.phase == "Progressing", world.status.message
    deploying = World(canonical_spec())
    _frozen_for_two_hours(deploying, lambda s: s.phase == "Deploying")
    deploying.reachable["even"] = False
    _step(deploying)
    assert deploying.status.phase == "Deploying", deploying.status.message


def test_checks_that_flap_during_a_freeze_keep_one_hold_and_never_roll_back() -> None:
    world = World(canonical_spec())
    _until(world, lambda s: s.step_index == 0 and bool(s.last_check_passed))
    world.frozen = "INC-1"
    _until(world, _waits_for("freeze"))
    events = len(world.events)
    for i in range(900):  # every other round passes, for half an hour and more
        world.health = "pass" if i % 2 else "error"
        _step(world)
    assert world.status.phase == "Progressing" and _waits_for("freeze")(world.status)
    assert [e.reason for e in world.events[events:]] == []
    assert [d.verdict for d in world.status.decisions] == ["held"]


def test_a_flaky_gate_never_pushes_who_approved_out_of_the_audit() -> None:
    world = World(
        canonical_spec(
            gates=[PERSON, {"name": "cab", "type": "confirm-promotion", "webhook": "cab"}]
        )
    )
    _until(world, _waits_for("approval"))
    _step(world)
    _approve(world, "alice")
    _until(world, lambda s: s.step_index == 0 and _waits_for("approval")(s))
    _step(world)
    _approve(world, "bob")
    _until(world, lambda s: s.step_index == 1 and _waits_for("gate")(s))
    events = len(world.events)
    for i in range(120):  # a change board behind a flaky balancer: 403, 503, 403...
        world.gate_verdicts["cab"] = "refused" if i % 2 else "unanswered"
        _step(world)
    approvals = [d.by for d in world.status.decisions if d.kind == "approval"]
    assert approvals == ["alice", "bob"]
    assert sum(e.reason.startswith("Gate") for e in world.events[events:]) == 2


def test_a_spec_edited_under_a_gate_hold_asks_no_gate_of_a_step_that_is_gone() -> None:
    world = World(
        canonical_spec(gates=[{"name": "cab", "type": "confirm-promotion", "webhook": "cab"}])
    )
    _until(world, lambda s: s.step_index == 1 and _waits_for("gate")(s))
    world.edit(traffic__steps=[50, 100])
    assert to_ask(world.spec, world.status) == []
    world.gate_verdicts["cab"] = "approved"
    world.run()
    assert world.status.phase == "Succeeded" and [s.weight for s in world.status.steps][-2:] == [
        50,
        100,
    ]
