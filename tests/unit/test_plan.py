"""Scenarios of the pure plan, driven through the world model."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from sprintops.api import Controls, SprintReleaseStatus, Weights
from sprintops.durations import timestamp
from sprintops.health.checks import CheckOutcome
from sprintops.plan import (
    Deploy,
    Emit,
    Observations,
    Plan,
    SetWeights,
    plan,
    route53_readback_due,
    route53_readback_key,
)
from tests.unit.world import T0, World, canonical_spec


def test_canonical_release_steps_10_50_100_then_succeeds() -> None:
    world = World(canonical_spec(idle__scaleDownAfter="1h"))
    seen: list[Weights] = []
    for _ in range(200):
        wait = world.reconcile()
        if not seen or seen[-1] != world.route53:
            seen.append(world.route53)  # type: ignore[arg-type]
        if world.status.phase == "Succeeded":
            break
        world.now += dt.timedelta(seconds=wait or 0)
    assert world.status.phase == "Succeeded"
    assert seen == [
        Weights(even=0, odd=100),
        Weights(even=10, odd=90),
        Weights(even=50, odd=50),
        Weights(even=100, odd=0),
    ]
    assert world.status.step == "3/3" and world.status.target_weight == 100
    assert [s.weight for s in world.status.steps] == [10, 50, 100]
    assert all(s.completed_at for s in world.status.steps)
    ready = {c.type: c.status for c in world.status.conditions}
    assert ready == {"Ready": "True", "Progressing": "False"}
    reasons = [e.reason for e in world.events]
    assert reasons == [
        "Deploying",
        "DeploymentAvailable",
        "StepApplied",
        "StepApplied",
        "StepApplied",
        "Succeeded",
    ]


def test_each_step_bakes_for_bake_time_from_when_its_traffic_arrived() -> None:
    world = World(canonical_spec(analysis__bakeTime="6s"))
    world.run()

    def seconds(since: str | None, until: str | None) -> float:
        return dt.datetime.fromisoformat(until or "") - dt.datetime.fromisoformat(since or "")

    steps = world.status.steps
    # The share is first seen at the first round (interval 2s), in the band at once.
    assert [seconds(s.started_at, s.baked_from).total_seconds() for s in steps] == [2.0] * 3
    assert [seconds(s.baked_from, s.completed_at).total_seconds() for s in steps] == [6.0] * 3
    # No wait worth an Event.
    assert not [e for e in world.events if e.reason == "TrafficArrived"]


def test_the_bake_waits_for_the_traffic_and_the_wait_counts_toward_the_deadline() -> None:
    world = World(canonical_spec(analysis__bakeTime="6s", analysis__progressDeadline="1m"))
    world.arrived = 3.0  # the new cluster sees 3% whatever the step
    world.run()
    assert world.status.phase == "RolledBack"
    assert "did not pass its checks within 1m (its traffic never arrived)" in (
        world.status.message or ""
    )
    assert any(s.message == "waiting for traffic: 3.0% of 10% observed" for s in world.history), [
        s.message for s in world.history
    ]
    assert all(s.bake_started_at is None for s in world.history if s.step == "1/3")
    # Within the tolerance (2 points): the bake starts, with an Event after the wait.
    world = World(canonical_spec(analysis__bakeTime="6s"))
    world.arrived = 3.0
    for _ in range(8):
        world.now += dt.timedelta(seconds=world.reconcile() or 0)
    world.arrived = 8.0
    while world.status.bake_started_at is None:
        world.now += dt.timedelta(seconds=world.reconcile() or 0)
    world.arrived = None
    world.run()
    assert world.status.phase == "Succeeded"
    arrived = [e for e in world.events if e.reason == "TrafficArrived"]
    assert [e.message for e in arrived] == ["step 1/3: 8.0% of 10% observed; the bake starts"]
    first = world.status.steps[0]
    assert first.baked_from is not None and first.baked_from > first.started_at


def test_a_tolerance_of_100_turns_the_wait_off() -> None:
    world = World(canonical_spec(analysis__bakeTime="6s", analysis__trafficTolerance=100))
    world.arrived = 0.0
    world.run()
    assert world.status.phase == "Succeeded"
    assert all(s.baked_from == s.started_at for s in world.status.steps)


def test_too_few_requests_make_a_round_no_data() -> None:
    world = World(canonical_spec(analysis__noData="fail", analysis__minRequests=100))
    world.served = 99
    world.run()
    assert world.status.phase == "RolledBack"
    notes = {r.note for r in world.status.analysis if r.metric == "request-success-rate"}
    assert notes == {
        "no data (99 requests in the window, fewer than minRequests 100): counted as fail"
    }
    world = World(canonical_spec(analysis__noData="fail", analysis__minRequests=100))
    world.served = 100
    world.run()
    assert world.status.phase == "Succeeded"


def test_target_is_the_sprint_parity() -> None:
    for sprint, target in ((42, "even"), (43, "odd")):
        live = Weights.split("odd" if target == "even" else "even", 100)
        world = World(canonical_spec(sprint=sprint), route53=live, virtual_service=live)
        world.reconcile()
        assert world.status.target_cluster == target
        assert world.status.previous_cluster != target


def test_live_target_is_refused_without_touching_traffic() -> None:
    live = Weights(even=100, odd=0)
    world = World(canonical_spec(), route53=live, virtual_service=live)
    world.run()
    assert world.status.phase == "Failed"
    assert "target cluster even is live" in (world.status.message or "")
    assert world.route53 == live and world.deployed_sprint is None
    assert [e.reason for e in world.events] == ["TargetLive"]


def test_competing_release_waits_in_pending() -> None:
    world = World(canonical_spec(), competitor="releases/document-service-sprint-41")
    for _ in range(3):
        world.now += dt.timedelta(seconds=world.reconcile() or 0)
    assert world.status.phase == "Pending"
    assert "document-service-sprint-41" in (world.status.message or "")
    assert [e.reason for e in world.events] == ["WaitingForRelease"]  # once, not every retry
    world.competitor = None
    world.run()
    assert world.status.phase == "Succeeded"


def test_missing_records_wait_in_pending() -> None:
    world = World(canonical_spec(), route53=None)
    world.reconcile()
    assert world.status.phase == "Pending"
    assert "not found" in (world.status.message or "")


def test_deployment_never_available_fails_without_traffic() -> None:
    world = World(canonical_spec(analysis__progressDeadline="30s"), available_after=10_000)
    world.run()
    assert world.status.phase == "Failed"
    assert "not Available within 30s" in (world.status.message or "")
    assert world.route53 == Weights(even=0, odd=100)


def test_blocker_holds_and_says_why_once() -> None:
    world = World(canonical_spec())
    world.blocker = "Secret releases/cluster-even not found"
    for _ in range(3):
        world.now += dt.timedelta(seconds=world.reconcile() or 0)
    assert world.status.phase is None or world.status.phase == "Pending" or world.status.message
    assert world.status.message == "Secret releases/cluster-even not found"
    assert [e.reason for e in world.events] == ["Blocked"]
    assert world.route53 == Weights(even=0, odd=100)
    world.blocker = None
    world.run()
    assert world.status.phase == "Succeeded"


def test_restart_reasserts_the_recorded_step_and_never_jumps() -> None:
    world = World(canonical_spec())
    while world.status.step_index != 1 or world.status.step_started_at is None:
        world.now += dt.timedelta(seconds=world.reconcile() or 0)
    world.crash()
    world.route53 = Weights(even=10, odd=90)  # as if the step-2 write never landed
    result = plan(world.spec, world.status, world.observe())
    assert result.actions == (SetWeights(Weights(even=50, odd=50)),)
    assert result.status.step_index == 1


def test_status_is_the_step_being_applied_before_weights_move() -> None:
    status = SprintReleaseStatus()
    world = World(canonical_spec())
    for _ in range(100):
        result = plan(world.spec, world.status, world.observe())
        for action in result.actions:
            if isinstance(action, SetWeights):
                # The written status already names the step whose weights are being applied.
                assert result.status.weights == action.weights
            if isinstance(action, Deploy):
                assert result.status.phase == "Deploying"
        world._write(result.status)
        for action in result.actions:
            world._run(action)
        world.now += dt.timedelta(seconds=result.requeue_after or 0)
        status = world.status
        if status.phase == "Succeeded":
            break
    assert status.phase == "Succeeded"


def test_idle_cluster_scaled_down_after_the_delay() -> None:
    world = World(canonical_spec(idle__scaleDownAfter="10m"))
    world.run()
    assert world.status.phase == "Succeeded" and world.scaled_down
    done = dt.datetime.fromisoformat(world.status.completed_at or "")
    scaled = dt.datetime.fromisoformat(world.status.scaled_down_at or "")
    assert 600 <= (scaled - done).total_seconds() <= 602
    assert world.events[-1].reason == "ScaledDown"


def test_scale_down_that_keeps_failing_holds_instead_of_spinning() -> None:
    world = World(canonical_spec(idle__scaleDownAfter="1s"))
    world.run()
    assert world.status.phase == "Succeeded" and world.scaled_down
    failing = world.status.model_copy(update={"scaled_down_at": None})
    obs = Observations(
        now=T0 + dt.timedelta(hours=1), blocker="cannot read the Deployment: HTTP 403"
    )
    result = plan(world.spec, failing, obs)
    assert result.actions[0] == Emit("Warning", "Blocked", "cannot read the Deployment: HTTP 403")
    assert (result.requeue_after or 0) >= 5
    assert result.status.phase == "Succeeded"


def test_terminal_phase_is_terminal() -> None:
    failed = SprintReleaseStatus(phase="Failed", target_cluster="even", message="x")
    result = plan(canonical_spec(), failed, Observations(now=T0, live=Weights(even=0, odd=100)))
    assert result.status == failed and result.actions == ()


# --- health gates


def _run_until(world: World, phases: set[str], limit: int = 500) -> None:
    for _ in range(limit):
        if world.status.phase in phases:
            return
        wait = world.reconcile()
        if world.status.phase in phases:
            return
        world.now += dt.timedelta(seconds=wait if wait is not None else 1.0)
    raise AssertionError(f"never reached {phases}: {world.status.phase} {world.status.message}")


def test_failing_checks_roll_back_during_the_first_step() -> None:
    world = World(canonical_spec(), health="fail")
    _run_until(world, {"RolledBack"})
    assert world.route53 == world.virtual_service == Weights(even=0, odd=100)
    assert [s.weight for s in world.status.steps] == [10]  # never past the first step
    message = world.status.message or ""
    assert "request-success-rate = 50 (want >= 99)" in message
    assert "2 failed checks in a row" in message
    degraded = next(c for c in world.status.conditions if c.type == "Degraded")
    assert degraded.status == "True" and degraded.reason == "ChecksFailed"
    assert [e.reason for e in world.events][-2:] == ["ChecksFailed", "RolledBack"]


def test_a_pass_resets_the_consecutive_failure_count() -> None:
    world = World(canonical_spec(analysis__failureLimit=2, analysis__bakeTime="20s"))
    _run_until(world, {"Progressing"})
    outcomes = ["fail", "pass", "fail", "pass", "fail", "pass"]
    while outcomes and world.status.phase == "Progressing":
        rounds = world.check_rounds
        world.health = outcomes[0]  # type: ignore[assignment]
        world.now += dt.timedelta(seconds=world.reconcile() or 0)
        if world.check_rounds > rounds:
            outcomes.pop(0)
    assert world.status.phase == "Progressing"
    assert world.status.consecutive_failures == 0


def test_unavailable_deployment_fails_the_check() -> None:
    world = World(canonical_spec(), lost_availability=True)
    _run_until(world, {"RolledBack"})
    failed = {r.metric for r in world.status.analysis if r.verdict == "fail"}
    assert failed == {"deployment-available"}


def test_prometheus_errors_hold_until_the_deadline_then_roll_back() -> None:
    world = World(canonical_spec(analysis__progressDeadline="1m"), health="error")
    _run_until(world, {"Progressing"})
    while world.status.phase == "Progressing" and world.now < world.deployed_at + dt.timedelta(
        seconds=50
    ):  # type: ignore[operator]
        world.now += dt.timedelta(seconds=world.reconcile() or 0)
    assert world.status.phase == "Progressing"
    assert world.status.consecutive_failures == 0  # errors never count as failures
    assert {r.verdict for r in world.status.analysis if r.metric != "deployment-available"} == {
        "hold"
    }
    _run_until(world, {"RolledBack"})
    assert "did not pass its checks within 1m" in (world.status.message or "")


def test_prometheus_errors_hold_then_the_release_resumes_when_it_returns() -> None:
    world = World(canonical_spec(), health="error")
    _run_until(world, {"Progressing"})
    for _ in range(20):
        world.now += dt.timedelta(seconds=world.reconcile() or 0)
    assert world.status.phase == "Progressing" and world.status.step == "1/3"
    world.health = "pass"
    _run_until(world, {"Succeeded"})


def test_no_data_policies() -> None:
    for policy, expected in (
        ("hold", "Progressing"),
        ("fail", "RolledBack"),
        ("pass", "Succeeded"),
    ):
        world = World(
            canonical_spec(analysis__noData=policy, analysis__progressDeadline="5m"),
            health="noData",
        )
        for _ in range(60):
            world.now += dt.timedelta(seconds=world.reconcile() or 1)
            if world.status.phase in ("RolledBack", "Succeeded"):
                break
        assert world.status.phase == expected, policy
        result = next(r for r in world.status.analysis if r.metric == "request-success-rate")
        assert result.note == f"no data: counted as {policy}", result.note
        assert result.verdict == policy


def test_manual_rollback_off_pauses_and_resume_continues() -> None:
    world = World(canonical_spec(rollback__automatic=False), health="fail")
    _run_until(world, {"Paused"})
    assert world.route53 == Weights(even=10, odd=90)  # held, not rolled back
    world.health = "pass"
    for _ in range(5):
        world.now += dt.timedelta(seconds=world.reconcile() or 1)
    assert world.status.phase == "Paused"  # waits for a person
    world.requests = world.requests.model_copy(update={"resume": timestamp(world.now)})
    _run_until(world, {"Succeeded"})


def test_pause_and_resume_by_request() -> None:
    world = World(canonical_spec())
    _run_until(world, {"Progressing"})
    world.now += dt.timedelta(seconds=1)
    world.requests = world.requests.model_copy(update={"pause": "2026-11-25T12:00:10.000Z"})
    _run_until(world, {"Paused"})
    step = world.status.step
    for _ in range(10):
        world.now += dt.timedelta(seconds=world.reconcile() or 1)
    assert world.status.phase == "Paused" and world.status.step == step
    world.requests = world.requests.model_copy(update={"resume": "2026-11-25T12:05:00.000Z"})
    _run_until(world, {"Succeeded"})
    assert [e.reason for e in world.events].count("Resumed") == 1


def test_abort_rolls_back_now() -> None:
    world = World(canonical_spec())
    while world.status.step != "2/3":
        world.now += dt.timedelta(seconds=world.reconcile() or 0)
    world.requests = Controls(abort="2026-11-25T12:01:00.000Z")
    _run_until(world, {"RolledBack"})
    assert world.route53 == Weights(even=0, odd=100)
    assert world.status.message == "aborted by request"
    assert world.status.controls and world.status.controls.abort == "2026-11-25T12:01:00.000Z"


def test_promote_skips_bakes_but_not_failing_checks() -> None:
    spec = canonical_spec(analysis__bakeTime="10m", analysis__progressDeadline="1h")
    world = World(spec)
    _run_until(world, {"Progressing"})
    started = world.now
    world.requests = Controls(promote="2026-11-25T12:00:05.000Z")
    _run_until(world, {"Succeeded"})
    assert (world.now - started).total_seconds() < 60  # three 10m bakes skipped
    # A failing check still stops a normal promotion...
    world = World(spec, health="fail")
    _run_until(world, {"Progressing"})
    world.requests = Controls(promote="2026-11-25T12:00:05.000Z")
    _run_until(world, {"RolledBack"})
    # ...but not a forced one.
    world = World(spec, health="fail")
    _run_until(world, {"Progressing"})
    world.requests = Controls(promote="force:2026-11-25T12:00:05.000Z")
    _run_until(world, {"Succeeded"})
    assert [s.weight for s in world.status.steps] == [10, 50, 100]  # no step skipped


def test_spec_change_after_rollback_retries() -> None:
    world = World(canonical_spec(), health="fail")
    _run_until(world, {"RolledBack"})
    world.health = "pass"
    world.generation = 2
    world.deployed_sprint = None  # the fixed build is applied again
    _run_until(world, {"Succeeded"})
    assert world.status.observed_generation == 2
    assert "Retrying" in [e.reason for e in world.events]


def test_spec_change_after_success_is_only_acknowledged() -> None:
    world = World(canonical_spec())
    _run_until(world, {"Succeeded"})
    world.generation = 2
    result = plan(world.spec, world.status, world.observe())
    assert result.status.phase == "Succeeded" and result.status.observed_generation == 2
    assert not any(isinstance(a, (SetWeights, Deploy)) for a in result.actions)


def test_drifted_virtual_service_is_restored_and_said() -> None:
    world = World(canonical_spec())
    _run_until(world, {"Progressing"})
    world.now += dt.timedelta(seconds=1)
    world.reconcile()
    obs = replace(world.observe(), drift="drift: VirtualService in odd had even=0 odd=100")
    result = plan(world.spec, world.status, obs)
    assert result.actions[-1] == SetWeights(world.status.weights)  # type: ignore[arg-type]
    assert result.actions[0].reason == "DriftCorrected"  # type: ignore[union-attr]
    assert "restoring even=10 odd=90" in (result.status.message or "")


def test_rejected_change_batch_fails_before_traffic_moves_and_rolls_back_after() -> None:
    world = World(canonical_spec())
    _run_until(world, {"Progressing"})
    rejected = "Route 53 ChangeResourceRecordSets: InvalidChangeBatch: bad"
    # The first step's weights are recorded: traffic may have moved, so it goes back first;
    # a refused retreat is never given up on (the reconciler writes nothing where Route 53
    # is already back, so a rise that never landed ends RolledBack).
    first = plan(
        world.spec,
        world.status.model_copy(update={"steps": []}),
        replace(world.observe(), fatal=rejected),
    )
    assert first.status.phase == "RollingBack"
    assert first.actions[-1] == SetWeights(Weights(even=0, odd=100), retreat=True)
    again = plan(world.spec, first.status, replace(world.observe(), fatal=rejected))
    assert again.status.phase == "RollingBack" and again.status.message == rejected
    while world.status.step != "2/3":
        world.now += dt.timedelta(seconds=world.reconcile() or 0)
    later = plan(world.spec, world.status, replace(world.observe(), fatal=rejected))
    assert later.status.phase == "RollingBack"
    assert later.actions[-1] == SetWeights(Weights(even=0, odd=100), retreat=True)


def test_route53_is_read_back_once_per_step_after_its_bake() -> None:
    spec = canonical_spec(analysis__bakeTime="60s")
    started = timestamp(T0)
    status = SprintReleaseStatus(
        phase="Progressing",
        weights=Weights(even=10, odd=90),
        step_index=0,
        step_started_at=started,
        bake_started_at=started,
    )
    baking, baked = T0 + dt.timedelta(seconds=59), T0 + dt.timedelta(seconds=60)
    assert not route53_readback_due(spec, status, baking, None)
    assert route53_readback_due(spec, status, baked, None)
    assert not route53_readback_due(
        spec, status, baked, route53_readback_key(status)
    )  # this step was verified
    assert route53_readback_due(spec, status, baked, timestamp(T0 - dt.timedelta(minutes=5)))
    paused = status.model_copy(update={"phase": "Paused"})
    assert not route53_readback_due(spec, paused, baked, None)


def test_a_comparison_metric_feeds_the_score_and_the_score_decides_the_round() -> None:
    world = World(canonical_spec())
    while not (world.status.step_index == 0 and world.status.step_started_at):
        world.now += dt.timedelta(seconds=world.reconcile() or 0.5)
    world.now += dt.timedelta(seconds=20)
    high = CheckOutcome("request-duration-p99 vs odd", 1.6, "x", "fail", "High", counted=False)

    def round_with(*outcomes: CheckOutcome) -> SprintReleaseStatus:
        return plan(world.spec, world.status, replace(world.observe(), checks=outcomes)).status

    scored = round_with(high, CheckOutcome("comparison", 100.0, ">= 95", "pass"))
    assert scored.consecutive_failures == 0 and scored.last_check_passed
    assert any(r.verdict == "fail" for r in scored.analysis)  # the judgment stays on record
    failed = round_with(high, CheckOutcome("comparison", 0.0, ">= 95", "fail", "score 0 < 75"))
    assert failed.consecutive_failures == 1
    marginal = round_with(CheckOutcome("comparison", 80.0, ">= 95", "hold", "marginal"))
    assert marginal.consecutive_failures == 0 and not marginal.last_check_passed
    critical = round_with(
        CheckOutcome("request-duration-p99 vs odd", 1.6, "x", "fail", "High"),  # counted
        CheckOutcome("comparison", None, ">= 95", "fail", "critical metric failed"),
    )
    assert critical.consecutive_failures == 1


def test_a_change_of_the_comparison_verdict_is_an_event_naming_every_judgment() -> None:
    world = World(canonical_spec())
    while not (world.status.step_index == 0 and world.status.step_started_at):
        world.now += dt.timedelta(seconds=world.reconcile() or 0.5)
    judged = "request-duration-p99: High: shift +150 [+140, +160] at 98%, mean ratio 2.47"

    def round_with(verdict: str, note: str) -> Plan:
        world.now += dt.timedelta(seconds=10)
        outcomes = (
            CheckOutcome("request-duration-p99 vs odd", 2.47, "x", "fail", judged, counted=False),
            CheckOutcome("comparison", 0.0, ">= 95", verdict, note),  # type: ignore[arg-type]
        )
        result = plan(world.spec, world.status, replace(world.observe(), checks=outcomes))
        world.status = result.status
        return result

    first = round_with("hold", "score 80 is marginal")
    events = [a for a in first.actions if isinstance(a, Emit) and a.reason == "Compared"]
    assert len(events) == 1 and events[0].type == "Warning"
    assert "comparison hold: score 80 is marginal" in events[0].message
    assert judged in events[0].message
    same = round_with("hold", "score 80 is marginal")
    assert not [a for a in same.actions if isinstance(a, Emit) and a.reason == "Compared"]
    worse = round_with("fail", "score 0 < 75")
    assert [a.message for a in worse.actions if isinstance(a, Emit) and a.reason == "Compared"]


def _until(world: World, done: object) -> None:
    for _ in range(200):
        if callable(done) and done():
            return
        world.now += dt.timedelta(seconds=world.reconcile() or 0)
    raise AssertionError("never happened")


def test_the_bake_starts_when_prometheus_says_the_traffic_arrived() -> None:
    """Not at the round that saw it: a round comes only every interval."""
    world = World(canonical_spec(analysis__bakeTime="6s", analysis__interval="2s"))
    _until(world, lambda: world.status.step_started_at is not None)
    started = dt.datetime.fromisoformat(world.status.step_started_at or "")
    world.reached = started + dt.timedelta(seconds=0.7)
    _until(world, lambda: world.status.bake_started_at is not None)
    assert world.status.bake_started_at == timestamp(started + dt.timedelta(seconds=0.7))
    # Never before the step, never after the round.
    world = World(canonical_spec(analysis__bakeTime="6s", analysis__interval="2s"))
    world.reached = T0 - dt.timedelta(hours=1)
    _until(world, lambda: world.status.bake_started_at is not None)
    assert world.status.bake_started_at == world.status.step_started_at


def test_a_share_far_above_the_step_waits_and_says_why() -> None:
    world = World(canonical_spec(analysis__bakeTime="6s", analysis__progressDeadline="30s"))
    world.observed_share = 100.0  # the old cluster's requests unseen
    world.run()
    assert world.status.phase == "RolledBack"
    assert any(
        (s.message or "").startswith("waiting for traffic: 100.0% of 10% observed (more than")
        for s in world.history
    )


def test_the_wait_stays_off_after_a_resume() -> None:
    world = World(canonical_spec(analysis__trafficTolerance=100, analysis__bakeTime="6s"))
    world.arrived = 0.0
    _until(world, lambda: world.status.step_started_at is not None)
    world.requests = world.requests.model_copy(update={"pause": timestamp(world.now)})
    _until(world, lambda: world.status.phase == "Paused")
    world.now += dt.timedelta(seconds=5)
    world.requests = world.requests.model_copy(update={"resume": timestamp(world.now)})
    world.run()
    assert world.status.phase == "Succeeded"


def test_traffic_arrived_is_told_after_a_blocker_in_the_wait() -> None:
    world = World(canonical_spec(analysis__bakeTime="6s"))
    world.arrived = 3.0
    _until(world, lambda: (world.status.message or "").startswith("waiting for traffic"))
    world.blocker = "cluster odd unreachable"
    for _ in range(2):
        world.now += dt.timedelta(seconds=world.reconcile() or 0)
    world.blocker, world.arrived = None, None
    world.run()
    assert [e.reason for e in world.events].count("TrafficArrived") == 1


def test_route53_is_read_back_after_the_bake_and_once_in_a_long_wait() -> None:
    """A share that never arrives may be Route 53 edited by hand: read it back once the
    wait has lasted a bake; then again after the bake itself, before the gate."""
    spec = canonical_spec(analysis__bakeTime="6s")
    world = World(spec)
    world.arrived = 3.0
    _until(world, lambda: (world.status.message or "").startswith("waiting for traffic"))
    waiting = world.status
    started = dt.datetime.fromisoformat(waiting.step_started_at or "")
    assert not route53_readback_due(spec, waiting, started + dt.timedelta(seconds=5), None)
    assert route53_readback_due(spec, waiting, started + dt.timedelta(seconds=6), None)
    done = route53_readback_key(waiting)
    assert not route53_readback_due(spec, waiting, started + dt.timedelta(seconds=60), done)
    baking = waiting.model_copy(
        update={"bake_started_at": timestamp(started + dt.timedelta(seconds=9))}
    )
    assert not route53_readback_due(spec, baking, started + dt.timedelta(seconds=14), done)
    assert route53_readback_due(spec, baking, started + dt.timedelta(seconds=15), done)
    assert not route53_readback_due(
        spec, baking, started + dt.timedelta(seconds=15), route53_readback_key(baking)
    )


def test_an_older_operators_status_keeps_its_bake_through_an_upgrade() -> None:
    """Its rounds recorded no traffic: its bake ran from the step's start."""
    world = World(
        canonical_spec(
            analysis__interval="30s", analysis__bakeTime="8m", analysis__progressDeadline="10m"
        )
    )
    _until(world, lambda: world.status.bake_started_at is not None)
    started = dt.datetime.fromisoformat(world.status.step_started_at or "")
    world.now = started + dt.timedelta(minutes=7, seconds=30)
    steps = [s.model_copy(update={"baked_from": None}) for s in world.status.steps]
    world.status = world.status.model_copy(
        update={"bake_started_at": None, "observed_traffic": None, "steps": steps}
    )
    world.crash()
    world.run()
    assert world.status.phase == "Succeeded", world.status.message
