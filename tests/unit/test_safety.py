"""The safety net on the worst day (issue #11): one scenario per hole the review found,
each driven through the world model. Every one of them failed on commit e34de9d."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from sprintops.api import SprintReleaseStatus, Weights
from sprintops.durations import timestamp
from sprintops.plan import Observations, ScaleDown, TargetDeployment, plan, rollout_hash
from tests.unit.world import World, canonical_spec

ODD_LIVE = Weights(even=0, odd=100)


def _until(world: World, holds: object, limit: int = 500) -> None:
    for _ in range(limit):
        if holds(world):  # type: ignore[operator]
            return
        wait = world.reconcile()
        world.now += dt.timedelta(seconds=wait if wait else 0.5)
    raise AssertionError(f"never reached; status: {world.status}")


def _at_step(world: World, index: int) -> None:
    _until(world, lambda w: w.status.step_index == index and w.status.step_started_at)


def _token(world: World, n: int = 0) -> str:
    return f"{timestamp(world.now)}/{n}"


@pytest.mark.parametrize("how", ["abort", "failing-gates"])
def test_rollback_with_the_target_cluster_gone_moves_route53_and_repairs_the_copy_later(
    how: str,
) -> None:
    world = World(canonical_spec())
    _at_step(world, 0)
    world.reachable["even"] = False
    if how == "abort":
        world.requests = world.requests.model_copy(update={"abort": _token(world)})
    else:
        world.health = "fail"
    _until(world, lambda w: w.status.pending_copies == ["even"])
    assert world.status.phase == "RollingBack"
    assert world.route53 == world.copies["odd"] == ODD_LIVE  # DNS moved without the target
    assert world.copies["even"] == Weights(even=10, odd=90)  # not reachable, pending
    assert "VirtualService copies pending in even" in (world.status.message or "")
    assert any(e.reason == "RollbackPending" for e in world.events)
    for _ in range(20):  # it stays RollingBack while the copy is pending
        world.now += dt.timedelta(seconds=world.reconcile() or 1)
    assert world.status.phase == "RollingBack"
    world.reachable["even"] = True
    _until(world, lambda w: w.status.phase == "RolledBack")
    assert world.copies["even"] == ODD_LIVE and world.status.pending_copies == []
    reason = "Aborted" if how == "abort" else "ChecksFailed"
    assert next(c for c in world.status.conditions if c.type == "Degraded").reason == reason


def test_a_blocked_release_whose_traffic_moved_rolls_back_past_the_deadline() -> None:
    world = World(canonical_spec(analysis__progressDeadline="2m"))
    _at_step(world, 0)
    world.blocker = "cannot read the VirtualService in cluster even: unreachable"
    _until(world, lambda w: w.status.phase != "Progressing", limit=200)
    assert world.status.phase == "RollingBack"
    assert world.status.message is not None
    assert "past progressDeadline 2m" in world.status.message
    assert "cannot read the VirtualService in cluster even" in world.status.message
    assert world.route53 == ODD_LIVE
    # Backed off while blocked: far fewer looks than one per 5 s.
    assert sum(1 for e in world.events if e.reason == "Blocked") == 1


def test_a_blocked_release_whose_traffic_never_moved_fails_past_the_deadline() -> None:
    world = World(canonical_spec(analysis__progressDeadline="1m"))
    _until(world, lambda w: w.status.phase == "Deploying")
    world.reachable["even"] = False
    _until(world, lambda w: w.status.phase == "Failed", limit=200)
    assert "traffic was not touched" in (world.status.message or "")
    assert world.route53 == ODD_LIVE


def _paused_by_checks_after_an_early_pause_and_resume() -> World:
    world = World(canonical_spec(rollback__automatic=False, analysis__bakeTime="30s"))
    _at_step(world, 0)
    world.requests = world.requests.model_copy(update={"pause": _token(world, 1)})
    _until(world, lambda w: w.status.phase == "Paused")
    world.requests = world.requests.model_copy(update={"resume": _token(world, 2)})
    _until(world, lambda w: w.status.phase == "Progressing")
    world.health = "fail"
    _until(world, lambda w: w.status.phase == "Paused")
    return world


def test_an_early_resume_never_lifts_a_later_pause() -> None:
    world = _paused_by_checks_after_an_early_pause_and_resume()
    assert world.status.pause_reason == "ChecksFailed" and world.status.paused_at
    resumed = sum(1 for e in world.events if e.reason == "Resumed")
    for _ in range(200):
        world.now += dt.timedelta(seconds=world.reconcile() or 1)
    assert world.status.phase == "Paused"
    assert sum(1 for e in world.events if e.reason == "Resumed") == resumed
    world.requests = world.requests.model_copy(update={"resume": _token(world, 3)})
    world.reconcile()
    assert world.status.phase == "Progressing" and world.status.paused_at is None


def test_a_pause_written_by_an_older_operator_still_resumes() -> None:
    world = World(canonical_spec(rollback__automatic=False))
    world.health = "fail"
    _until(world, lambda w: w.status.phase == "Paused")
    old = world.status.model_copy(update={"paused_at": None, "pause_reason": None})
    world.status = old
    world.requests = world.requests.model_copy(update={"resume": "9999"})
    world.reconcile()
    assert world.status.phase == "Progressing"


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize(
    "edit",
    [
        {"traffic__steps": [100]},
        {"traffic__steps": [5, 20, 30, 40, 50, 100]},
        {"service__template__metadata__labels__edited": "yes"},
    ],
)
def test_an_edit_in_flight_restarts_from_the_first_step(index: int, edit: dict) -> None:
    world = World(canonical_spec())
    _at_step(world, index)
    before = world.route53
    assert before is not None
    world.edit(**edit)
    seen = [before]
    for _ in range(500):
        wait = world.reconcile()  # never raises; invariants checked inside
        if not seen or seen[-1] != world.route53:
            seen.append(world.route53)
        if world.status.phase == "Succeeded":
            break
        world.now += dt.timedelta(seconds=wait if wait else 0.5)
    assert world.status.phase == "Succeeded"
    assert any(e.reason == "Restarting" for e in world.events)
    # Traffic went back to the previous cluster first, then rose step by step again.
    steps = world.spec.traffic.steps
    assert seen == [before, ODD_LIVE, *(Weights(even=s, odd=100 - s) for s in steps)]
    assert [s.weight for s in world.status.steps] == steps


def test_an_edit_while_deploying_applies_the_new_template_first() -> None:
    world = World(canonical_spec(), available_after=5)
    _until(world, lambda w: w.status.phase == "Deploying")
    world.now += dt.timedelta(seconds=4)
    world.edit(service__template__metadata__labels__edited="yes")
    deployed_at = world.deployed_at
    world.run()
    assert world.status.phase == "Succeeded"
    assert world.deployed_at is not None and deployed_at is not None
    assert world.deployed_at > deployed_at  # applied again, Available again before traffic


@pytest.mark.parametrize(
    "live", [Weights(even=0, odd=0), Weights(even=30, odd=70), Weights(even=100, odd=100)]
)
def test_a_pair_without_exactly_one_live_cluster_is_refused(live: Weights) -> None:
    world = World(canonical_spec(), route53=Weights.model_construct(even=live.even, odd=live.odd))
    world.run()
    assert world.status.phase == "Failed"
    assert "does not have exactly one live cluster" in (world.status.message or "")
    assert world.deployed_sprint is None
    assert any(e.reason == "PairNotLive" for e in world.events)


def _succeeded(scale_down_after: str = "1m") -> World:
    world = World(canonical_spec(idle__scaleDownAfter=scale_down_after))
    _until(world, lambda w: w.status.phase == "Succeeded")
    return world


def test_a_newer_release_cancels_the_scale_down() -> None:
    world = _succeeded()
    world.successor = "releases/document-service-sprint-43"
    world.run()
    assert not world.scaled_down
    assert "sprint-43" in (world.status.scale_down_skipped or "")
    assert any(e.reason == "ScaleDownCancelled" for e in world.events)


def test_a_cluster_with_traffic_is_never_scaled_down() -> None:
    world = _succeeded()
    world.route53 = Weights(even=90, odd=10)  # someone sent traffic back by hand
    world.run()
    assert not world.scaled_down
    assert "odd still gets traffic (10%)" in (world.status.scale_down_skipped or "")


def test_a_newer_sprint_deployed_in_the_previous_cluster_is_never_scaled_down() -> None:
    world = _succeeded()
    world.deployments["odd"].sprint = 43
    world.run()
    assert world.deployments["odd"].replicas == 3
    assert "belongs to sprint 43" in (world.status.scale_down_skipped or "")


def test_the_scale_down_names_the_sprint_it_expects() -> None:
    world = _succeeded()
    world.now += dt.timedelta(minutes=2)
    result = plan(world.spec, world.status, world.observe())
    assert result.actions == (ScaleDown("odd", 41),)
    world.deployments["odd"].sprint = 43  # a newer sprint deploys in between
    world._run(result.actions[0])
    assert world.deployments["odd"].replicas == 3  # the label precondition held it


def test_status_of_the_older_operator_continues_to_success() -> None:
    """Status written by e34de9d (no specHash, pausedAt, blockedSince, pendingCopies)."""
    world = World(canonical_spec())
    _at_step(world, 1)
    stored = world.status.model_dump(by_alias=True, exclude_none=True, mode="json")
    for new_field in ("specHash", "pausedAt", "pauseReason", "blockedSince", "pendingCopies"):
        stored.pop(new_field, None)
    world.status = SprintReleaseStatus.model_validate(stored)
    world.crash()
    world.run()
    assert world.status.phase == "Succeeded"
    assert [s.weight for s in world.status.steps] == [10, 50, 100]


def test_abort_is_taken_even_while_a_blocker_stands() -> None:
    world = World(canonical_spec())
    _at_step(world, 0)
    world.blocker = "cannot read the Deployment in cluster even: unreachable"
    world.reconcile()
    world.requests = world.requests.model_copy(update={"abort": _token(world)})
    world.reconcile()
    assert world.status.phase == "RollingBack"
    assert world.route53 == ODD_LIVE


def test_an_unreadable_target_holds_its_availability_check_instead_of_failing_it() -> None:
    world = World(canonical_spec())
    _at_step(world, 0)
    obs = Observations(
        now=world.now + dt.timedelta(seconds=10),
        applied=world.applied,
        checks=(),
        target_error="cluster even unreachable",
        target=TargetDeployment(42, False),
    )
    result = plan(world.spec, world.status, obs)
    available = [r for r in result.status.analysis if r.metric == "deployment-available"]
    assert available[-1].verdict == "hold" and result.status.consecutive_failures == 0


class DeniedUpdates(World):
    """A rise whose Route 53 batch lands but one VirtualService update keeps being refused
    (an RBAC change, an admission webhook): a holding error on every attempt."""

    denied = False

    def _rise(self, weights: Weights) -> None:
        if not self.denied:
            super()._rise(weights)
            return
        self.partial = None
        self.route53 = weights
        self.copies["odd"] = weights
        self.action_error = "cannot update the VirtualService in cluster even: HTTP 403"


def test_a_rise_that_keeps_failing_rolls_back_past_the_deadline() -> None:
    """Found by attack: the hold clock restarted on every other look, so traffic sat on an
    unchecked step for ever."""
    world = DeniedUpdates(canonical_spec(analysis__progressDeadline="2m"))
    _until(world, lambda w: w.status.phase == "Deploying")
    world.denied = True
    _until(world, lambda w: w.status.phase in ("RollingBack", "RolledBack"), limit=400)
    assert "past progressDeadline 2m" in (world.status.message or "")
    world.denied = False
    _until(world, lambda w: w.status.phase == "RolledBack")
    assert world.route53 == ODD_LIVE


def test_a_permanent_error_after_a_crash_at_the_first_step_still_brings_traffic_back() -> None:
    world = World(canonical_spec())
    _until(world, lambda w: w.status.phase == "Progressing" and w.applied is not None)
    assert world.route53 == Weights(even=10, odd=90) and not world.status.steps
    world.crash()
    result = plan(
        world.spec,
        world.status,
        Observations(now=world.now, fatal="Route 53 ChangeResourceRecordSets: AccessDenied"),
    )
    assert result.status.phase == "RollingBack"


def test_a_resume_older_than_a_pause_does_not_lift_it() -> None:
    world = World(canonical_spec(rollback__automatic=False), health="fail")
    _until(world, lambda w: w.status.phase == "Paused")
    world.requests = world.requests.model_copy(update={"resume": "2026-01-01T00:00:00.000Z"})
    world.reconcile()
    assert world.status.phase == "Paused"


def test_a_pause_by_an_older_operator_after_an_early_resume_holds() -> None:
    world = _paused_by_checks_after_an_early_pause_and_resume()
    world.status = world.status.model_copy(update={"paused_at": None, "pause_reason": None})
    world.reconcile()
    assert world.status.phase == "Paused"


def test_an_edit_during_a_rollback_is_retried_once_traffic_is_back() -> None:
    world = World(canonical_spec())
    _at_step(world, 0)
    world.reachable["even"] = False
    world.health = "fail"
    _until(world, lambda w: w.status.phase == "RollingBack" and w.status.pending_copies)
    world.edit(service__replicas=4)
    world.reachable["even"] = True
    world.health = "pass"
    _until(world, lambda w: w.status.phase == "Succeeded")
    assert any(e.reason == "Retrying" for e in world.events)


def test_an_edit_in_flight_seen_first_by_this_operator_restarts() -> None:
    world = World(canonical_spec())
    _at_step(world, 1)
    world.status = world.status.model_copy(update={"spec_hash": None})  # e34de9d's status
    world.edit(traffic__steps=[50, 100])
    world.run()
    assert world.status.phase == "Succeeded"
    assert world.route53 == Weights(even=100, odd=0)
    assert any(e.reason == "Restarting" for e in world.events)


def test_an_abort_on_a_finished_release_changes_nothing() -> None:
    world = World(canonical_spec(idle__scaleDownAfter="1m"))
    _until(world, lambda w: w.status.phase == "Succeeded")
    world.requests = world.requests.model_copy(update={"abort": _token(world)})
    world.run()
    assert world.scaled_down and world.status.scale_down_skipped is None


def test_an_abort_left_from_the_run_before_does_not_abort_the_retry() -> None:
    world = World(canonical_spec())
    _at_step(world, 0)
    world.health = "fail"
    _until(world, lambda w: w.status.phase == "RolledBack")
    world.requests = world.requests.model_copy(update={"abort": _token(world)})
    world.run(limit=5)
    world.health = "pass"
    world.edit(service__replicas=4)
    world.run()
    assert world.status.phase == "Succeeded", world.status.message


def test_an_edit_whose_deploy_failed_once_is_applied_before_traffic_moves() -> None:
    """Found by attack: the sprint label alone made the old template count as the new one."""
    world = World(canonical_spec(), available_after=2)
    _until(world, lambda w: w.status.phase == "Deploying")
    world.now += dt.timedelta(seconds=5)  # the first template is Available
    world.edit(service__template__metadata__labels__edited="yes")
    world.reachable["even"] = False  # the one re-apply fails
    world.reconcile()
    world.reachable["even"] = True
    _until(world, lambda w: w.status.phase == "Progressing")
    assert world.deployed_hash == rollout_hash(world.spec)


def test_a_refused_retreat_is_never_given_up() -> None:
    """Found by a second attack: a rise landed unrecorded (crash), then Route 53 refused
    both the re-assert and the retreat, and the release ended Failed with traffic split."""
    world = World(canonical_spec())
    _until(world, lambda w: w.status.phase == "Progressing" and w.applied is not None)
    world.crash()
    refused = "Route 53 ChangeResourceRecordSets: AccessDenied: no"
    for _ in range(2):
        result = plan(world.spec, world.status, replace(world.observe(), fatal=refused))
        world.status = result.status
    assert world.status.phase == "RollingBack"
    world.run()  # Route 53 takes writes again
    assert world.status.phase == "RolledBack" and world.route53 == ODD_LIVE


def test_a_hold_in_one_step_does_not_shorten_the_next_rise() -> None:
    world = World(
        canonical_spec(
            analysis__bakeTime="9m", analysis__progressDeadline="10m", analysis__interval="30s"
        )
    )
    _at_step(world, 0)
    world.blocker = "Route 53 unreachable (EndpointConnectionError)"  # a blip in step 1
    world.reconcile()
    world.blocker = None
    while world.status.step_index == 0:  # the rise to 50% is refused, for 9 minutes
        world.fail_next_set_weights = True
        world.now += dt.timedelta(seconds=min(world.reconcile() or 0.5, 30))
    held_from = world.now
    while world.now - held_from < dt.timedelta(minutes=9):
        world.fail_next_set_weights = True
        world.now += dt.timedelta(seconds=min(world.reconcile() or 0.5, 30))
    assert world.status.phase == "Progressing", world.status.message


def _edited_while_rolling_back() -> World:
    """Checks fail with the new cluster gone; a fix is pushed while traffic goes back."""
    world = World(canonical_spec())
    _at_step(world, 0)
    world.reachable["even"] = False
    world.health = "fail"
    _until(world, lambda w: w.status.phase == "RollingBack")
    world.edit(service__template__metadata__labels__rev="2")
    return world


def test_an_abort_during_a_rollback_cancels_the_retry_of_an_earlier_edit() -> None:
    world = _edited_while_rolling_back()
    world.reconcile()
    world.requests = world.requests.model_copy(update={"abort": _token(world)})
    world.reconcile()
    world.reachable["even"], world.health = True, "pass"
    for _ in range(300):  # looks keep coming (edits wake the daemon), whatever the plan asks
        world.now += dt.timedelta(seconds=world.reconcile() or 1)
    assert world.status.phase == "RolledBack" and world.route53 == ODD_LIVE
    assert not any(e.reason == "Retrying" for e in world.events)


def test_a_rollback_with_a_retry_pending_asks_for_another_look() -> None:
    world = _edited_while_rolling_back()
    world.reachable["even"], world.health = True, "pass"
    world.run()  # stops only when a plan asks for no further look
    assert world.status.phase == "Succeeded", world.status.message


# --- Found by the third attack round (edits in Deploying and RollingBack, pauses, tokens).


def _paused_before_the_first_step(world: World) -> None:
    world.requests = world.requests.model_copy(update={"pause": _token(world, 1)})
    _until(world, lambda w: "paused by request before the first step" in (w.status.message or ""))
    assert world.status.phase == "Deploying"


def test_a_long_pause_before_the_first_step_then_an_edit_gets_a_whole_deadline() -> None:
    world = World(canonical_spec())
    _paused_before_the_first_step(world)
    world.now += dt.timedelta(minutes=11)  # past progressDeadline 10m
    world.reconcile()
    world.edit(service__template__metadata__labels__rev="2")
    for _ in range(5):
        world.now += dt.timedelta(seconds=world.reconcile() or 0.5)
    assert world.status.phase == "Deploying", world.status.message
    assert world.deployed_hash == world.status.spec_hash  # the new template, waiting


def test_a_blip_while_paused_before_the_first_step_does_not_fail_the_release() -> None:
    world = World(canonical_spec())
    _paused_before_the_first_step(world)
    world.now += dt.timedelta(minutes=11)
    world.reachable["even"] = False
    world.blocker = "cannot read the Deployment in cluster even"
    world.now += dt.timedelta(seconds=world.reconcile() or 5)
    assert world.status.phase == "Deploying", world.status.message
    world.blocker, world.reachable["even"] = None, True
    world.requests = world.requests.model_copy(update={"resume": _token(world, 2)})
    world.run()
    assert world.status.phase == "Succeeded"


@pytest.mark.parametrize(
    "edit",
    [
        {"rollback__automatic": False},
        {"clusters__even__kubeconfigSecretRef__name": "cluster-even-v2"},
        {"service__template__metadata__labels__rev": "2"},
    ],
)
def test_any_edit_during_a_rollback_is_retried_after_it(edit: dict[str, object]) -> None:
    """An edit outside the rollout hash (the Secret of the cluster that broke, say) was
    dropped if it landed during the rollback, and retried if it landed just after."""
    world = World(canonical_spec())
    _at_step(world, 0)
    world.reachable["even"] = False
    world.health = "fail"
    _until(world, lambda w: w.status.pending_copies == ["even"])
    world.edit(**edit)
    for _ in range(3):
        world.now += dt.timedelta(seconds=world.reconcile() or 1)
    world.reachable["even"], world.health = True, "pass"
    world.run(limit=2000, max_wait=60)
    assert world.status.phase == "Succeeded"
    assert any(e.reason == "Retrying" for e in world.events)
    assert world.status.observed_generation == world.generation


def test_an_edit_after_success_still_scales_down() -> None:
    world = World(canonical_spec(idle__scaleDownAfter="2m"))
    _until(world, lambda w: w.status.phase == "Succeeded")
    assert not world.scaled_down
    world.edit(service__template__metadata__labels__rev="2")
    assert world.reconcile() is not None  # nothing pending would stop the daemon's clock
    world.now += dt.timedelta(minutes=3)
    world.run()
    assert world.scaled_down and world.status.scaled_down_at


def test_request_tokens_are_compared_as_times_whatever_their_offset() -> None:
    world = World(canonical_spec())
    _at_step(world, 0)
    berlin = dt.timezone(dt.timedelta(hours=1))
    world.requests = world.requests.model_copy(
        update={"pause": world.now.astimezone(berlin).isoformat(timespec="seconds")}
    )
    _until(world, lambda w: w.status.phase == "Paused")
    world.now += dt.timedelta(minutes=30)
    world.requests = world.requests.model_copy(update={"resume": timestamp(world.now)})
    _until(world, lambda w: w.status.phase == "Progressing")
    checks_failed = World(canonical_spec(rollback__automatic=False), health="fail")
    _until(checks_failed, lambda w: w.status.phase == "Paused")
    checks_failed.health = "pass"
    checks_failed.now += dt.timedelta(minutes=10)
    new_york = dt.timezone(dt.timedelta(hours=-5))
    resume = checks_failed.now.astimezone(new_york).isoformat(timespec="seconds")
    checks_failed.requests = checks_failed.requests.model_copy(update={"resume": resume})
    _until(checks_failed, lambda w: w.status.phase == "Progressing")
