"""The rollout as a pure function: plan(spec, status, observations) -> Plan.

No I/O and no clock: the caller observes the world, calls `plan`, writes the returned status
(compare-and-set) and only then runs the returned actions. Because the status is written
first, it always records the step that traffic is moving to, never one behind it.

The phases, top to bottom:

    (new) / Pending --> Deploying --> Progressing (step 1..n) --> Succeeded
        |                   |              |   ^
        v                   v              v   | (spec edited in flight: restart)
      Failed              Failed        RollingBack --> RolledBack

A blocker (a cluster or Route 53 that does not answer) holds the release and says why; the
time it holds counts toward spec.analysis.progressDeadline. Past it, a release whose traffic
moved rolls back and one whose traffic never moved fails.

Invariants (tested with hypothesis in tests/unit/test_plan_properties.py):
- the pair's weights sum to 100;
- the new cluster's weight never exceeds the recorded step's weight;
- the new cluster gets weight > 0 only after its Deployment was observed Available;
- steps are taken in order, never skipped, never repeated;
- terminal phases are terminal.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Literal

from sprintops.api import (
    TERMINAL_PHASES,
    CheckResult,
    Cluster,
    Condition,
    Controls,
    ObservedTraffic,
    Phase,
    SprintReleaseSpec,
    SprintReleaseStatus,
    StepRecord,
    Weights,
    other,
    parity_cluster,
)
from sprintops.clearance import Clearance, GateAnswer, end_hold, evaluate, uncounted_hold
from sprintops.durations import parse_timestamp, seconds, timestamp
from sprintops.health.checks import (
    COMPARISON_CHECK,
    VERSUS,
    CheckOutcome,
    TrafficSample,
    in_band,
)

BLOCKED_RETRY = 5.0
BLOCKED_RETRY_MAX = 30.0
POLL = 1.0
PAUSED_POLL = 30.0
HISTORY = 60  # check results kept in status.analysis
AVAILABLE_CHECK = "deployment-available"
WAITING = "waiting for traffic: "
# A step's bake starting (or restarting): its checks count from zero.
_CHECKS_START_OVER: dict[str, object] = {
    "consecutive_failures": 0,
    "last_check_at": None,
    "last_check_passed": None,
    "bake_started_at": None,
}


@dataclass(frozen=True)
class TargetDeployment:
    """The new cluster's Deployment of the service, as last read."""

    sprint: int | None
    available: bool
    replicas: int | None = None
    # The spec it was applied from (rollout_hash); None when applied by an older operator.
    spec_hash: str | None = None


@dataclass(frozen=True)
class Observations:
    now: dt.datetime
    generation: int = 1
    # Route 53's weights, read while nothing has moved yet; None: the pair does not exist.
    live: Weights | None = None
    target: TargetDeployment | None = None
    # Weights this operator process has confirmed on Route 53 (INSYNC) and every VirtualService
    # copy. Memory only: after a restart it is None, so the recorded step is re-asserted.
    applied: Weights | None = None
    # An older release of the same service that is still in flight.
    competitor: str | None = None
    # Why the world could not be observed or changed (missing Secret, bad VirtualService...).
    blocker: str | None = None
    scaled_down: bool = False
    # Before a scale-down: the previous cluster's Deployment, the traffic Route 53 and the
    # VirtualService copies still send it (the highest), and a newer release of the service.
    previous: TargetDeployment | None = None
    previous_traffic: int | None = None
    successor: str | None = None
    # VirtualService copies that did not take the weights of a retreat, with why.
    pending: tuple[tuple[Cluster, str], ...] = ()
    # Why the new cluster's Deployment could not be read for a check round.
    target_error: str | None = None
    # One round of health checks, run because `checks_due` said so; None when not run.
    checks: tuple[CheckOutcome, ...] | None = None
    # The traffic that arrived, read with each round of checks.
    traffic: TrafficSample | None = None
    # Manual requests from the object's annotations.
    requests: Controls = field(default_factory=Controls)
    # A VirtualService copy found with other weights than the step's (someone edited it).
    drift: str | None = None
    # An error that retrying cannot fix (Route 53 rejected the change batch, say).
    fatal: str | None = None
    # Why a global freeze holds every increase (or why its state is unknown); None: none.
    frozen: str | None = None
    # The answers of the webhook gates a gate hold asked for (clearance.to_ask).
    gate_answers: tuple[GateAnswer, ...] = ()


@dataclass(frozen=True)
class Deploy:
    cluster: Cluster


@dataclass(frozen=True)
class SetWeights:
    weights: Weights
    # Traffic going back to the previous cluster: Route 53 first, then every copy that
    # answers; a copy that does not is retried, not waited for.
    retreat: bool = False


@dataclass(frozen=True)
class ScaleDown:
    cluster: Cluster
    # Precondition: the Deployment still carries this sprint label.
    sprint: int


@dataclass(frozen=True)
class Emit:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action = Deploy | SetWeights | ScaleDown | Emit


@dataclass(frozen=True)
class Plan:
    status: SprintReleaseStatus
    actions: tuple[Action, ...] = ()
    # Seconds until the plan wants to look again; 0 means right after the actions ran.
    requeue_after: float | None = None


def plan(spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations) -> Plan:
    result = _plan(spec, status, obs)
    noticed = [e for e in (_compared(status, result.status), _arrived(status, result.status)) if e]
    if not noticed:
        return result
    # What the round saw comes before what it decided: a TrafficArrived whose bake also
    # ended the release is told before its Succeeded.
    return Plan(result.status, (*noticed, *result.actions), result.requeue_after)


def _arrived(before: SprintReleaseStatus, after: SprintReleaseStatus) -> Emit | None:
    """An Event when a step's traffic arrived and its bake began, after a wait."""
    if after.bake_started_at in (None, before.bake_started_at) or before.bake_started_at:
        return None
    # Waited: an earlier round of this step saw the share short.
    seen, step = before.observed_traffic, after.step_started_at
    if seen is None or step is None or step != before.step_started_at:
        return None
    if parse_timestamp(seen.time) <= parse_timestamp(step):
        return None
    now = after.observed_traffic
    target = after.target_cluster or "even"
    share = getattr(now, target) if now is not None else None
    return Emit("Normal", "TrafficArrived", _arrival(after.step, share, after.target_weight or 0))


def _compared(before: SprintReleaseStatus, after: SprintReleaseStatus) -> Emit | None:
    """An Event when a round's comparison verdict differs from the last one's, with every
    judgment of that round: estimate, interval, classification and score."""
    if after.last_check_at is None or after.last_check_at == before.last_check_at:
        return None
    latest = [r for r in after.analysis if r.time == after.last_check_at]
    verdict = next((r for r in latest if r.metric == COMPARISON_CHECK), None)
    if verdict is None:
        return None
    previous = next((r for r in reversed(before.analysis) if r.metric == COMPARISON_CHECK), None)
    if previous is not None and previous.verdict == verdict.verdict:
        return None
    judged = "; ".join(r.note or r.metric for r in latest if VERSUS in r.metric)
    why = f"comparison {verdict.verdict}: {verdict.note or ''}; {judged}"[:1000]
    return Emit("Normal" if verdict.verdict == "pass" else "Warning", "Compared", why)


def _plan(spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations) -> Plan:
    if obs.fatal is not None and status.phase not in TERMINAL_PHASES:
        return _fatal(spec, status, obs, obs.fatal)
    if status.phase in TERMINAL_PHASES:
        if status.observed_generation is not None and obs.generation > status.observed_generation:
            return _spec_changed(spec, status, obs)
        if obs.blocker is not None:
            return _held(spec, status, obs)
        return _finished(spec, status, obs)
    status, abort = _take_requests(status, obs)
    if abort:
        return _abort(spec, status, obs)
    digest = rollout_hash(spec)
    if (
        status.spec_hash is None
        and status.phase in ("Progressing", "Paused")
        and obs.generation > (status.observed_generation or obs.generation)
    ):  # status of an older operator, and the spec was edited since it was written
        why = f"spec changed in flight (generation {obs.generation}): restarting"
        return _rollback(status, obs, why, "SpecChanged")
    if status.spec_hash != digest:
        if status.spec_hash is not None and status.phase == "Deploying":
            return _redeploy(spec, status, obs, digest)
        if status.spec_hash is not None and status.phase in ("Progressing", "Paused"):
            why = f"spec changed in flight (generation {obs.generation}): restarting"
            return _rollback(status, obs, why, "SpecChanged")
        if status.phase != "RollingBack":  # nothing moved yet, or status of an older operator
            status = status.model_copy(update={"spec_hash": digest})
    if obs.blocker is not None:
        if status.phase == "Progressing" and obs.checks is not None:
            status = _record_checks(spec, status, obs)
            failed = _checks_failed(spec, status, obs)
            if failed is not None:
                return failed
            if obs.traffic is not None:
                status = _record_traffic(spec, status, obs, obs.traffic)
        return _held(spec, status, obs)
    if status.phase in (None, "Pending"):
        return _start(spec, status, obs)
    if status.phase == "Deploying":
        return _deploying(spec, status, obs)
    if status.phase == "Progressing":
        return _progressing(spec, status, obs)
    if status.phase == "Paused":
        return _paused(spec, status, obs)
    return _rolling_back(spec, status, obs)


def rollout_hash(spec: SprintReleaseSpec) -> str:
    """What shapes the rollout: the service (template, replicas...), the traffic (steps and
    targets) and the checks. Clusters, rollback and idle settings can change in flight."""
    shaping = spec.model_dump(mode="json", include={"service", "traffic", "analysis"})
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def checks_due(spec: SprintReleaseSpec, status: SprintReleaseStatus, now: dt.datetime) -> bool:
    """Whether the caller should run a round of checks before planning."""
    if status.phase != "Progressing" or status.step_started_at is None:
        return False
    last = parse_timestamp(status.last_check_at or status.step_started_at)
    return (now - last).total_seconds() >= seconds(spec.analysis.interval)


def route53_readback_key(status: SprintReleaseStatus) -> str | None:
    """Which read-back of the step this is: one while it waits for its traffic (a share that
    never arrives may be Route 53 edited by hand), one after its bake."""
    if status.step_started_at is None:
        return None
    return f"{status.step_started_at} {'baked' if status.bake_started_at else 'waiting'}"


def route53_readback_due(
    spec: SprintReleaseSpec,
    status: SprintReleaseStatus,
    now: dt.datetime,
    verified: str | None,
) -> bool:
    """Whether the caller should read Route 53 back before planning: after the bake, before
    the gate can pass, and once earlier if the step has waited a whole bake for its traffic
    (`verified` is the key of the last read-back done). More traffic never moves on top of
    a hand edit, and the API budget holds: at most two reads a step."""
    key = route53_readback_key(status)
    since = status.bake_started_at or status.step_started_at
    return (
        status.phase == "Progressing"
        and status.weights is not None
        and key is not None
        and since is not None
        and verified != key
        and (now - parse_timestamp(since)).total_seconds() >= seconds(spec.analysis.bake_time)
    )


def paused_by_request(requests: Controls) -> bool:
    """Pause and resume are level-triggered: the newer of the two tokens wins."""
    return requests.pause is not None and not newer(requests.resume, requests.pause)


def newer(token: str | None, than: str | None) -> bool:
    """Whether a request token is newer than another token or time. Tokens are RFC 3339
    times (any offset), optionally with a suffix after "/" for requests in one instant;
    one that is not a time compares as text."""
    if token is None:
        return False
    if than is None:
        return True
    a, b = _token_time(token), _token_time(than)
    if a is None or b is None or a == b:
        return token > than
    return a > b


def _token_time(token: str) -> dt.datetime | None:
    try:
        moment = parse_timestamp(token.split("/", 1)[0])
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _take_requests(
    status: SprintReleaseStatus, obs: Observations
) -> tuple[SprintReleaseStatus, bool]:
    """Consumes new one-shot requests (abort, promote); returns whether to abort."""
    handled = status.controls or Controls()
    req = obs.requests
    update: dict[str, object] = {}
    abort = req.abort is not None and req.abort != handled.abort
    if req.promote is not None and req.promote != handled.promote:
        update["promotion"] = "force" if req.promote.startswith("force:") else "skipBakes"
    if abort or "promotion" in update:
        update["controls"] = handled.model_copy(update={"abort": req.abort, "promote": req.promote})
    return status.model_copy(update=update), abort


def _start(spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations) -> Plan:
    target = parity_cluster(spec.sprint)
    status = status.model_copy(
        update={
            "target_cluster": target,
            "previous_cluster": other(target),
            "observed_generation": obs.generation,
            "step": f"0/{len(spec.traffic.steps)}",
            "target_weight": 0,
        }
    )
    if obs.competitor is not None:
        why = f"waiting for {obs.competitor} (same service, still in flight) to finish"
        return _pending(status, obs, "WaitingForRelease", why)
    if obs.live is None:
        r53 = spec.traffic.route53
        why = (
            f"Route 53 records {r53.record_name} {r53.record_type} with set identifiers "
            f"{r53.records.even.set_identifier!r} and {r53.records.odd.set_identifier!r} not found"
        )
        return _pending(status, obs, "RecordsNotFound", why)
    if obs.live.live is None:
        r53 = spec.traffic.route53
        why = (
            f"Route 53 pair {r53.record_name} {r53.record_type} does not have exactly one live "
            f"cluster (even={obs.live.even}, odd={obs.live.odd}); one record must have weight 0 "
            "and the other all the traffic before a release can start"
        )
        failed = _transition(status, obs, "Failed", why, "PairNotLive")
        return Plan(failed, (Emit("Warning", "PairNotLive", why),))
    if obs.live.of(target) > 0:
        why = (
            f"target cluster {target} is live (Route 53 weights even={obs.live.even}, "
            f"odd={obs.live.odd}); sprint {spec.sprint} would deploy over live traffic"
        )
        failed = _transition(status, obs, "Failed", why, "TargetLive")
        return Plan(failed, (Emit("Warning", "TargetLive", why),))
    why = f"deploying sprint {spec.sprint} to {target}"
    deploying = _transition(status, obs, "Deploying", why, "Deploying").model_copy(
        update={"deploy_started_at": timestamp(obs.now), "spec_hash": rollout_hash(spec)}
    )
    return Plan(deploying, (Emit("Normal", "Deploying", why), Deploy(target)), POLL)


def _pending(status: SprintReleaseStatus, obs: Observations, reason: str, why: str) -> Plan:
    changed = status.message != why
    pending = _transition(status, obs, "Pending", why, reason)
    return Plan(pending, (Emit("Normal", reason, why),) if changed else (), BLOCKED_RETRY)


def _deploying(spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations) -> Plan:
    target = _target(status)
    paused = paused_by_request(obs.requests)
    if status.paused_at is not None and not paused:
        # The deadline's clock stood still while a person held the release: it starts again.
        status = status.model_copy(
            update={
                "paused_at": None,
                "pause_reason": None,
                "deploy_started_at": timestamp(obs.now),
                "held_seconds": 0,
            }
        )
    # This sprint, applied from this spec: an edit's template must be the one Available.
    ours = (
        obs.target is not None
        and obs.target.sprint == spec.sprint
        and obs.target.spec_hash == status.spec_hash
    )
    ready = ours and obs.target is not None and obs.target.available
    if not ready or paused:  # a hold lasts only while it alone keeps traffic from moving
        status = end_hold(status, obs.now)
    if ready:
        if paused:
            why = f"Deployment Available in {target}; paused by request before the first step"
            if status.message == why and status.paused_at is not None:
                return Plan(status, (), PAUSED_POLL)
            held = status.model_copy(
                update={
                    "message": why,
                    "paused_at": status.paused_at or timestamp(obs.now),
                    "pause_reason": "PausedByRequest",
                }
            )
            return Plan(held, (), PAUSED_POLL)
        cleared = _clearance(spec, status, obs, 0)
        if cleared.held is not None:
            held = cleared.status
            if _deploy_elapsed(held, obs) > seconds(spec.analysis.progress_deadline):
                why = (
                    f"{cleared.held}; past progressDeadline {spec.analysis.progress_deadline}; "
                    "traffic was not touched"
                )
                failed = _transition(held, obs, "Failed", why, "ProgressDeadlineExceeded")
                return Plan(failed, (Emit("Warning", "ProgressDeadlineExceeded", why),))
            return Plan(held, _notes(cleared), cleared.retry)
        status = cleared.status
        weights = Weights.split(target, spec.traffic.steps[0])
        why = f"Deployment Available in {target}; moving to step 1/{len(spec.traffic.steps)}"
        progressing = _transition(status, obs, "Progressing", why, "Stepping").model_copy(
            update={
                "deployment_available_at": timestamp(obs.now),
                "step_index": 0,
                "weights": weights,
                "step_started_at": None,
            }
        )
        event = Emit("Normal", "DeploymentAvailable", why)
        return Plan(progressing, (*_notes(cleared), event, SetWeights(weights)), 0)
    if _deploy_elapsed(status, obs) > seconds(spec.analysis.progress_deadline):
        why = (
            f"Deployment {spec.service.namespace}/{spec.service.name} in {target} not Available "
            f"within {spec.analysis.progress_deadline}; traffic was not touched"
        )
        failed = _transition(status, obs, "Failed", why, "ProgressDeadlineExceeded")
        return Plan(failed, (Emit("Warning", "ProgressDeadlineExceeded", why),))
    # Re-applied until the cluster shows this sprint: idempotent, and covers a restart.
    return Plan(status, () if ours else (Deploy(target),), POLL)


def _stalled(
    spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations
) -> Plan | None:
    """A held step whose checks stopped passing: the hold stays (a round that does not
    pass is no reason to start it over), but not past progressDeadline without passing."""
    hold = status.hold
    assert hold is not None
    last_ready = parse_timestamp(hold.ready_at or hold.since)
    if (obs.now - last_ready).total_seconds() <= seconds(spec.analysis.progress_deadline):
        return None
    index, steps = status.step_index or 0, spec.traffic.steps
    why = (
        f"step {index + 1}/{len(steps)}: checks have not passed for "
        f"{spec.analysis.progress_deadline} while held ({status.message})"
    )
    return _rollback(end_hold(status, obs.now), obs, why, "ProgressDeadlineExceeded")


def _deploy_elapsed(status: SprintReleaseStatus, obs: Observations) -> float:
    """Seconds the deployment has had toward the deadline: holds that do not count left out."""
    started = parse_timestamp(status.deploy_started_at or timestamp(obs.now))
    return (obs.now - started).total_seconds() - uncounted_hold(status, obs.now)


def _progressing(spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations) -> Plan:
    target = _target(status)
    steps = spec.traffic.steps
    index = status.step_index or 0
    want = status.weights or Weights.split(target, steps[index])
    if obs.drift is not None:
        # Restore the recorded step rather than adopt an edit nobody planned.
        why = f"{obs.drift}; restoring {_fmt(want)}"
        drifted = status.model_copy(update={"message": why})
        return Plan(drifted, (Emit("Warning", "DriftCorrected", why), SetWeights(want)), 0)
    if obs.applied != want:
        return Plan(status, (SetWeights(want),), 0)
    step_started = status.step_started_at
    if step_started is None:
        return _start_step(spec, status, obs, want)
    if paused_by_request(obs.requests):
        return _pause(status, obs, "paused by request", "PausedByRequest", "Normal")
    legacy = status.last_check_at and status.observed_traffic is None
    if status.bake_started_at is None and legacy:
        # Rounds ran but none observed traffic: the status of an operator from before the
        # wait, whose bake ran from the step's start. Keep that, or an upgrade mid-bake
        # would start it over while the deadline runs on.
        status = status.model_copy(update={"bake_started_at": step_started})
    if obs.checks is not None:
        status = _record_checks(spec, status, obs)
        failed = _checks_failed(spec, status, obs)
        if failed is not None:
            return failed
    if obs.traffic is not None:
        status = _record_traffic(spec, status, obs, obs.traffic)
    late = _past_deadline(spec, status, obs, step_started)
    if late is not None:
        return late
    baking = (
        (obs.now - parse_timestamp(status.bake_started_at)).total_seconds()
        if status.bake_started_at
        else -1.0
    )
    baked = baking >= seconds(spec.analysis.bake_time) or status.promotion is not None
    healthy = bool(status.last_check_passed) or status.promotion == "force"
    ready = baked and healthy
    notes: tuple[Emit, ...] = ()
    if not ready and status.hold is not None:
        stalled = _stalled(spec, status, obs)
        if stalled is not None:
            return stalled
    elif ready and index + 1 < len(steps):
        cleared = _clearance(spec, status, obs, index + 1)
        status, notes = cleared.status, _notes(cleared)
        if cleared.held is not None:
            return Plan(status, notes, cleared.retry)
    if not ready:
        last = parse_timestamp(status.last_check_at or step_started)
        next_check = seconds(spec.analysis.interval) - (obs.now - last).total_seconds()
        bake_left = seconds(spec.analysis.bake_time) - baking if baking >= 0 else 0
        waits = [w for w in (next_check, bake_left) if w > 0]
        return Plan(status, notes, min(waits, default=POLL))
    done = [
        *status.steps[:-1],
        status.steps[-1].model_copy(update={"completed_at": timestamp(obs.now)}),
    ]
    status = status.model_copy(update={"steps": done})
    if index + 1 == len(steps):
        why = f"sprint {spec.sprint} takes all traffic on {target}"
        succeeded = _transition(status, obs, "Succeeded", why, "Succeeded")
        due = obs.now + dt.timedelta(seconds=seconds(spec.idle.scale_down_after))
        succeeded = succeeded.model_copy(update={"scale_down_at": timestamp(due)})
        return Plan(
            succeeded,
            (*notes, Emit("Normal", "Succeeded", why)),
            seconds(spec.idle.scale_down_after),
        )
    weights = Weights.split(target, steps[index + 1])
    advanced = status.model_copy(
        update={
            "step_index": index + 1,
            "weights": weights,
            "step_started_at": None,
            "bake_started_at": None,
            "blocked_since": None,  # the next rise's hold counts from its own start
        }
    )
    return Plan(advanced, (*notes, SetWeights(weights)), 0)


def _past_deadline(
    spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations, step_started: str
) -> Plan | None:
    """A rollback when the step has taken longer than progressDeadline, leaving out the
    holds that do not count (a freeze, a window, a refusal, a person's wait)."""
    index, steps = status.step_index or 0, spec.traffic.steps
    elapsed = (obs.now - parse_timestamp(step_started)).total_seconds()
    elapsed -= uncounted_hold(status, obs.now)
    if elapsed <= seconds(spec.analysis.progress_deadline):
        return None
    arrived = "" if status.bake_started_at else " (its traffic never arrived)"
    why = (
        f"step {index + 1}/{len(steps)} did not pass its checks within "
        f"{spec.analysis.progress_deadline}{arrived}"
    )
    if status.hold is not None:  # a gate that does not answer
        why = (
            f"step {index + 1}/{len(steps)}: {status.message}, past progressDeadline "
            f"{spec.analysis.progress_deadline}"
        )
    return _rollback(status, obs, why, "ProgressDeadlineExceeded")


def _clearance(
    spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations, to_index: int
) -> Clearance:
    cleared = evaluate(
        spec,
        status,
        now=obs.now,
        to_index=to_index,
        frozen=obs.frozen,
        answers=obs.gate_answers,
        approval=obs.requests.approve,
        retry=seconds(spec.analysis.interval),
    )
    if cleared.held is None:
        return cleared
    conditions = _condition(
        cleared.status.conditions, obs, "Progressing", True, reason="Held", message=cleared.held
    )
    return replace(cleared, status=cleared.status.model_copy(update={"conditions": conditions}))


def _notes(cleared: Clearance) -> tuple[Emit, ...]:
    return tuple(Emit(kind, reason, why) for kind, reason, why in cleared.notes)


def _bake_at_once(spec: SprintReleaseSpec, weight: int, obs: Observations) -> str | None:
    """With the wait turned off (the tolerance reaches the weight), the bake starts with
    the step (or the resume): there is nothing to wait for."""
    return timestamp(obs.now) if weight <= spec.analysis.traffic_tolerance else None


def _arrival(step: str | None, share: float | None, weight: int) -> str:
    seen = f"{share:.1f}%" if share is not None else "?"
    return f"step {step or '?'}: {seen} of {weight}% observed; the bake starts"


def _record_traffic(
    spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations, seen: TrafficSample
) -> SprintReleaseStatus:
    """Records the share that arrived; the bake starts once it is within the tolerance of
    the step's weight. Until then the release says what it waits for."""
    target = _target(status)
    share = seen.new_share()
    observed = ObservedTraffic.model_validate(
        {
            target: share,
            other(target): None if share is None else 100 - share,
            "requests": seen.new_requests,
            "time": timestamp(obs.now),
        }
    )
    update: dict[str, object] = {"observed_traffic": observed}
    if status.bake_started_at is None:
        weight = status.target_weight or 0
        tolerance = spec.analysis.traffic_tolerance
        if in_band(share, weight, tolerance):
            # When it arrived, if Prometheus could say, else now (never before the step).
            arrived = obs.now
            if seen.reached_at is not None and status.step_started_at is not None:
                step_started = parse_timestamp(status.step_started_at)
                reached = dt.datetime.fromtimestamp(seen.reached_at, dt.UTC)
                arrived = min(obs.now, max(step_started, reached))
            now = timestamp(arrived)
            update["bake_started_at"] = now
            routine = _arrival(status.step, share, weight)
            if status.steps:
                update["steps"] = [
                    *status.steps[:-1],
                    status.steps[-1].model_copy(update={"baked_from": now}),
                ]
        else:
            seen_text = f"{share:.1f}%" if share is not None else "no requests"
            why = f" ({seen.error})" if seen.error else ""
            if share is not None and share > weight + tolerance:
                why = " (more than the step sends: are the old cluster's requests missing?)"
            routine = f"{WAITING}{seen_text} of {weight}% observed{why}"
        # A drift found this step stays to be read (its Event keeps it too).
        if not (status.message or "").startswith("drift"):
            update["message"] = routine
    return status.model_copy(update=update)


def _start_step(
    spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations, want: Weights
) -> Plan:
    target = _target(status)
    index, steps = status.step_index or 0, spec.traffic.steps
    why = f"step {index + 1}/{len(steps)}: {target}={want.of(target)}% ({_fmt(want)})"
    now = timestamp(obs.now)
    bake = _bake_at_once(spec, want.of(target), obs)
    started = status.model_copy(
        update={
            "step_started_at": timestamp(obs.now),
            "step": f"{index + 1}/{len(steps)}",
            "target_weight": want.of(target),
            "steps": [
                *status.steps,
                StepRecord(weight=want.of(target), started_at=now, baked_from=bake),
            ],
            "blocked_since": None,
            **_CHECKS_START_OVER,
            "hold": None,
            "held_seconds": 0,
            "bake_started_at": bake,
            "message": why,
            "conditions": _condition(
                status.conditions, obs, "Progressing", True, reason="Stepping", message=why
            ),
        }
    )
    first_check = seconds(spec.analysis.interval)
    return Plan(started, (Emit("Normal", "StepApplied", why),), first_check)


def _checks_failed(
    spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations
) -> Plan | None:
    if status.consecutive_failures < spec.analysis.failure_limit:
        return None
    index = status.step_index or 0
    why = f"{_failing(status, index)}: {status.consecutive_failures} failed checks in a row"
    if spec.rollback.automatic:
        return _rollback(status, obs, why, "ChecksFailed")
    return _pause(status, obs, why, "ChecksFailed", "Warning")


def _record_checks(
    spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations
) -> SprintReleaseStatus:
    """Adds one round to the history and updates the failure count: any fail fails the
    round; otherwise a hold (no data under `hold`, or Prometheus errors) holds it."""
    available = obs.target is not None and obs.target.available and obs.target.sprint == spec.sprint
    seen = CheckOutcome(
        AVAILABLE_CHECK, 1.0 if available else 0.0, ">= 1", "pass" if available else "fail"
    )
    if obs.target_error is not None:  # unknown is not unhealthy: it holds
        seen = CheckOutcome(AVAILABLE_CHECK, None, ">= 1", "error", obs.target_error)
    outcomes = [*_enough_traffic(spec, obs, obs.checks or ()), seen]
    results = [_result(spec, status, obs, o) for o in outcomes]
    # A comparison metric that is not critical only feeds the comparison's score.
    verdicts = {r.verdict for r, o in zip(results, outcomes, strict=True) if o.counted}
    update: dict[str, object] = {
        "analysis": [*status.analysis, *results][-HISTORY:],
        "last_check_at": timestamp(obs.now),
    }
    if "fail" in verdicts:
        update["consecutive_failures"] = status.consecutive_failures + 1
        update["last_check_passed"] = False
    elif verdicts <= {"pass"}:
        update["consecutive_failures"] = 0
        update["last_check_passed"] = True
    else:
        update["last_check_passed"] = False
    return status.model_copy(update=update)


def _enough_traffic(
    spec: SprintReleaseSpec, obs: Observations, checks: tuple[CheckOutcome, ...]
) -> tuple[CheckOutcome, ...]:
    """A round on fewer than minRequests requests judges noise: its checks are no data (a
    check that found no data keeps its own reason, which says more)."""
    served = obs.traffic.new_requests if obs.traffic is not None else None
    least = spec.analysis.min_requests
    if served is None or served >= least:
        return checks
    why = f"{served:.0f} requests in the window, fewer than minRequests {least}"
    return tuple(
        c if c.outcome == "noData" else replace(c, value=None, outcome="noData", note=why)
        for c in checks
    )


def _result(
    spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations, o: CheckOutcome
) -> CheckResult:
    verdict: Literal["pass", "fail", "hold"]
    if o.outcome == "noData":
        verdict = spec.analysis.no_data
    elif o.outcome == "pass" or o.outcome == "fail":  # noqa: PLR1714 - mypy narrows this form
        verdict = o.outcome
    else:
        verdict = "hold"  # Prometheus down, or a marginal comparison: neither good nor bad
    note = o.note or None
    if o.outcome == "noData":
        detail = f" ({o.note})" if o.note else ""
        note = f"no data{detail}: counted as {spec.analysis.no_data}"
    return CheckResult(
        metric=o.metric,
        value=o.value,
        threshold=o.threshold,
        passed=verdict == "pass",
        verdict=verdict,
        time=timestamp(obs.now),
        step_index=status.step_index,
        note=note,
    )


def _failing(status: SprintReleaseStatus, index: int) -> str:
    """The failed checks of the latest round, named with value and threshold."""
    latest = status.last_check_at
    failed = [r for r in status.analysis if r.time == latest and r.verdict == "fail"]
    parts = [
        f"{r.metric} = {'no data' if r.value is None else f'{r.value:.4g}'} (want {r.threshold})"
        + (f" [{r.note}]" if r.note else "")
        for r in failed
    ]
    return f"step {index + 1}: " + ", ".join(parts)


def _pause(
    status: SprintReleaseStatus,
    obs: Observations,
    why: str,
    reason: str,
    kind: Literal["Normal", "Warning"],
) -> Plan:
    """A pause holds until a resume newer than it: the resume token standing at the pause is
    recorded as handled, so an earlier resume never lifts a later pause."""
    handled = (status.controls or Controls()).model_copy(update={"resume": obs.requests.resume})
    paused = _transition(status, obs, "Paused", why, reason).model_copy(
        update={
            "paused_at": timestamp(obs.now),
            "pause_reason": reason,
            "controls": handled,
            "hold": None,
        }
    )
    return Plan(paused, (Emit(kind, reason, why),), PAUSED_POLL)


def _paused(spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations) -> Plan:
    progressing = next((c for c in status.conditions if c.type == "Progressing"), None)
    reason = status.pause_reason or (progressing.reason if progressing else "")
    resume_token = obs.requests.resume
    if reason == "PausedByRequest":
        resume = not paused_by_request(obs.requests)
    elif status.paused_at is None:  # paused by an operator that did not record the pause:
        # its failing round is the last check
        since = status.last_check_at or (progressing.last_transition_time if progressing else "")
        resume = newer(resume_token, since or None)
    else:  # a new token, and newer than the pause
        seen = (status.controls or Controls()).resume
        resume = resume_token is not None and resume_token != seen
        resume = resume and newer(resume_token, status.paused_at)
    if not resume:
        return Plan(status, (), PAUSED_POLL)
    step = f"{(status.step_index or 0) + 1}/{len(spec.traffic.steps)}"
    why = f"resumed at step {step}; the bake restarts"
    handled = (status.controls or Controls()).model_copy(update={"resume": resume_token})
    resumed = _transition(status, obs, "Progressing", why, "Resumed").model_copy(
        update={
            "step_started_at": timestamp(obs.now),
            "paused_at": None,
            "pause_reason": None,
            "controls": handled,
            **_CHECKS_START_OVER,
            "held_seconds": 0,
            "bake_started_at": _bake_at_once(spec, status.target_weight or 0, obs),
        }
    )
    return Plan(resumed, (Emit("Normal", "Resumed", why),), seconds(spec.analysis.interval))


def _fatal(
    spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations, why: str
) -> Plan:
    """Nothing to retry: before traffic may have moved the release fails where it stands;
    after, traffic goes back to the previous cluster, and a refused retreat keeps trying
    (the retreat writes nothing where the weights are already back)."""
    moved = status.steps or status.weights is not None
    if moved and status.phase in ("Progressing", "Paused"):
        return _rollback(status, obs, why, "Rejected")
    if status.phase == "RollingBack":  # never given up: a rise may have landed unrecorded
        return _held(spec, status, replace(obs, blocker=why))
    target = status.target_cluster or parity_cluster(spec.sprint)
    status = status.model_copy(update={"target_cluster": target, "previous_cluster": other(target)})
    failed = _transition(status, obs, "Failed", why, "Rejected")
    return Plan(failed, (Emit("Warning", "Rejected", why),))


def _abort(spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations) -> Plan:
    if status.phase == "RollingBack":  # already on its way back; it ends as an abort
        conditions = _condition(
            status.conditions, obs, "Degraded", True, reason="Aborted", message="aborted by request"
        )
        return _rolling_back(spec, status.model_copy(update={"conditions": conditions}), obs)
    if status.phase in ("Progressing", "Paused"):
        return _rollback(status, obs, "aborted by request", "Aborted")
    why = f"aborted by request before traffic moved (sprint {spec.sprint})"
    target = status.target_cluster or parity_cluster(spec.sprint)
    status = status.model_copy(update={"target_cluster": target, "previous_cluster": other(target)})
    failed = _transition(status, obs, "Failed", why, "Aborted")
    return Plan(failed, (Emit("Warning", "Aborted", why),))


def _rollback(status: SprintReleaseStatus, obs: Observations, why: str, reason: str) -> Plan:
    target = _target(status)
    previous = status.previous_cluster or other(target)
    weights = Weights.split(previous, 100)
    # Until the retreat is done the new cluster may still carry what was recorded last.
    leaving = max(status.target_weight or 0, status.weights.of(target) if status.weights else 0)
    rolling = _transition(status, obs, "RollingBack", why, reason)
    rolling = rolling.model_copy(
        update={
            "weights": weights,
            "target_weight": leaving,
            "paused_at": None,
            "pause_reason": None,
            "hold": None,
            "conditions": _condition(
                rolling.conditions, obs, "Degraded", True, reason=reason, message=why
            ),
        }
    )
    event = f"rolling back: {why}"
    return Plan(rolling, (Emit("Warning", reason, event), SetWeights(weights, retreat=True)), 0)


def _rolling_back(spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations) -> Plan:
    previous = status.previous_cluster or other(_target(status))
    want = Weights.split(previous, 100)
    if obs.applied != want:
        if not obs.pending:
            return Plan(status, (SetWeights(want, retreat=True),), 0)
        # Route 53 and every copy that answered are back; the rest are retried until repaired.
        names = [c for c, _ in obs.pending]
        why = (
            f"all traffic on {previous} in Route 53; VirtualService copies pending in "
            + ", ".join(f"{c} ({reason})" for c, reason in obs.pending)
            + "; repaired when their cluster answers"
        )
        held = status.model_copy(update={"pending_copies": names, "message": why})
        changed = held.pending_copies != status.pending_copies
        events = (Emit("Warning", "RollbackPending", why),) if changed else ()
        return Plan(held, (*events, SetWeights(want, retreat=True)), BLOCKED_RETRY)
    degraded = next((c for c in status.conditions if c.type == "Degraded"), None)
    reason = degraded.reason if degraded else "RolledBack"
    if reason == "SpecChanged":
        why = f"traffic back on {previous}; sprint {spec.sprint} starts over under the new spec"
        return _start_over(status, obs, "Restarting", why)
    why = (degraded.message if degraded else status.message) or "rolled back"
    done = _transition(status, obs, "RolledBack", why, reason).model_copy(
        update={"pending_copies": [], "target_weight": 0}
    )
    edited = obs.generation > (status.observed_generation or obs.generation) or (
        status.spec_hash not in (None, rollout_hash(spec))
    )
    if reason != "Aborted" and edited:
        # Edited during the rollback: the edit is a retry, taken once traffic is back (an
        # abort means stop: it cancels the retry).
        done = done.model_copy(update={"observed_generation": status.observed_generation})
        return Plan(done, (Emit("Warning", "RolledBack", _rolled_back_text(previous, why)),), 0)
    return Plan(done, (Emit("Warning", "RolledBack", _rolled_back_text(previous, why)),))


def _rolled_back_text(previous: Cluster, why: str) -> str:
    return f"all traffic back on {previous}; the new Deployment is left for inspection: {why}"


def _redeploy(
    spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations, digest: str
) -> Plan:
    """An edit before any traffic moved: the new template is applied, and the Deployment
    must become Available with it before the first step."""
    why = f"spec changed while deploying (generation {obs.generation}): applying it"
    changed = status.model_copy(  # the new template gets the whole deadline
        update={
            "spec_hash": digest,
            "message": why,
            "deploy_started_at": timestamp(obs.now),
            "held_seconds": 0,
            "hold": None,
        }
    )
    return Plan(changed, (Emit("Normal", "SpecChanged", why), Deploy(_target(status))), POLL)


def _spec_changed(spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations) -> Plan:
    """A spec edited after the end: a release that did not succeed starts over (traffic is
    all on the previous cluster again); a succeeded one only notes that it saw the edit."""
    if status.phase == "Succeeded":
        why = "spec changed after success; nothing to do (a new sprint is a new SprintRelease)"
        seen = status.model_copy(update={"observed_generation": obs.generation, "message": why})
        # Looked at again at once: a scale-down may still be due.
        return Plan(seen, (Emit("Normal", "SpecChangedAfterSuccess", why),), 0)
    why = f"spec changed (generation {obs.generation}): retrying sprint {spec.sprint}"
    return _start_over(status, obs, "Retrying", why)


def _start_over(status: SprintReleaseStatus, obs: Observations, reason: str, why: str) -> Plan:
    """A new run from the start; only the check history and handled requests carry over."""
    handled = (status.controls or Controls()).model_copy(
        update={
            "abort": obs.requests.abort,
            "promote": obs.requests.promote,
            "approve": obs.requests.approve,
        }
    )  # a request made for the run that ended is not one for the next
    fresh = SprintReleaseStatus(
        analysis=status.analysis,
        decisions=status.decisions,
        outbox=status.outbox,
        controls=handled,
        message=why,
        observed_generation=obs.generation,
    )
    return Plan(fresh, (Emit("Normal", reason, why),), 0)


def _finished(spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations) -> Plan:
    if (
        status.phase != "Succeeded"
        or status.scale_down_at is None
        or status.scaled_down_at
        or status.scale_down_skipped
    ):
        return Plan(status)
    previous = status.previous_cluster or other(_target(status))
    if obs.scaled_down:
        why = f"scaled {spec.service.namespace}/{spec.service.name} in {previous} to 0 (idle)"
        done = status.model_copy(update={"scaled_down_at": timestamp(obs.now), "message": why})
        return Plan(done, (Emit("Normal", "ScaledDown", why),))
    wait = (parse_timestamp(status.scale_down_at) - obs.now).total_seconds()
    if wait > 0:
        return Plan(status, (), wait)
    refused = _scale_down_refused(spec, previous, obs)
    if refused is not None:
        why = f"scale-down of {previous} cancelled: {refused}"
        kept = status.model_copy(update={"scale_down_skipped": refused, "message": why})
        return Plan(kept, (Emit("Normal", "ScaleDownCancelled", why),))
    assert obs.previous is not None and obs.previous.sprint is not None  # checked above
    return Plan(status, (ScaleDown(previous, obs.previous.sprint),), POLL)


def _scale_down_refused(
    spec: SprintReleaseSpec, previous: Cluster, obs: Observations
) -> str | None:
    """Why the previous cluster's Deployment must keep running, if it must."""
    if obs.successor is not None:
        return f"{obs.successor}, a newer release of the service, may be using {previous}"
    if obs.previous_traffic is None or obs.previous_traffic > 0:
        return f"{previous} still gets traffic ({obs.previous_traffic or 'unknown'}%)"
    if obs.previous is None or obs.previous.sprint is None:
        return f"the Deployment in {previous} carries no sprint label"
    if obs.previous.sprint >= spec.sprint:
        return f"the Deployment in {previous} belongs to sprint {obs.previous.sprint}"
    return None


def _held(spec: SprintReleaseSpec, status: SprintReleaseStatus, obs: Observations) -> Plan:
    """A blocker holds the release and says why. The hold counts toward progressDeadline:
    past it, traffic that moved goes back; traffic that never moved is left alone and the
    release fails. A rollback or a pause is never given up on."""
    why = obs.blocker or ""
    since = status.blocked_since or timestamp(obs.now)
    blocked_for = (obs.now - parse_timestamp(since)).total_seconds()
    # A blocked release is not held back by a freeze, a window or a person alone: the
    # time so far that did not count stays uncounted, and from now on it counts.
    status = end_hold(status, obs.now)
    phase = status.phase
    held_by_a_person = phase == "Deploying" and paused_by_request(obs.requests)
    if phase in (None, "Pending", "Deploying", "Progressing") and not held_by_a_person:
        start = since
        if phase == "Progressing":
            start = status.step_started_at or since
        elif phase == "Deploying":
            start = status.deploy_started_at or since
        elapsed = (obs.now - parse_timestamp(start)).total_seconds()
        if phase in ("Deploying", "Progressing"):
            elapsed -= status.held_seconds
        if elapsed > seconds(spec.analysis.progress_deadline):
            late = (
                f"blocked for {blocked_for:.0f}s, past progressDeadline "
                f"{spec.analysis.progress_deadline}: {why}"
            )
            if phase == "Progressing":
                return _rollback(status, obs, late, "ProgressDeadlineExceeded")
            target = status.target_cluster or parity_cluster(spec.sprint)
            status = status.model_copy(
                update={"target_cluster": target, "previous_cluster": other(target)}
            )
            failed = _transition(
                status,
                obs,
                "Failed",
                late + "; traffic was not touched",
                "ProgressDeadlineExceeded",
            )
            return Plan(failed, (Emit("Warning", "ProgressDeadlineExceeded", late),))
    # Backs off as the hold goes on: 5 s at first, at most 30 s.
    retry = min(max(BLOCKED_RETRY, blocked_for / 4), BLOCKED_RETRY_MAX)
    if status.message == why and status.blocked_since is not None:
        return Plan(status, (), retry)
    held = status.model_copy(
        update={
            "message": why,
            "blocked_since": since,
            "conditions": _condition(
                status.conditions, obs, "Progressing", False, reason="Blocked", message=why
            ),
        }
    )
    return Plan(held, (Emit("Warning", "Blocked", why),), retry)


def _transition(
    status: SprintReleaseStatus, obs: Observations, phase: Phase, why: str, reason: str
) -> SprintReleaseStatus:
    terminal = phase in TERMINAL_PHASES
    conditions = _condition(
        status.conditions, obs, "Progressing", not terminal, reason=reason, message=why
    )
    conditions = _condition(
        conditions, obs, "Ready", phase == "Succeeded", reason=reason, message=why
    )
    update: dict[str, object] = {
        "phase": phase,
        "message": why,
        "conditions": conditions,
        "observed_generation": obs.generation,
        "blocked_since": None,  # a hold counts until the release moves on
    }
    if terminal:
        update["completed_at"] = timestamp(obs.now)
        update["hold"] = None
    return status.model_copy(update=update)


def _condition(
    conditions: list[Condition],
    obs: Observations,
    kind: Literal["Ready", "Progressing", "Degraded"],
    holds: bool,
    *,
    reason: str,
    message: str,
) -> list[Condition]:
    """Sets one condition, keeping its transition time when its status did not change."""
    value: Literal["True", "False"] = "True" if holds else "False"
    old = next((c for c in conditions if c.type == kind), None)
    since = old.last_transition_time if old and old.status == value else timestamp(obs.now)
    new = Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=obs.generation,
    )
    return sorted([*(c for c in conditions if c.type != kind), new], key=lambda c: c.type)


def _target(status: SprintReleaseStatus) -> Cluster:
    if status.target_cluster is None:
        raise ValueError("status has no target cluster in a phase that needs one")
    return status.target_cluster


def _fmt(w: Weights) -> str:
    return f"even={w.even} odd={w.odd}"
