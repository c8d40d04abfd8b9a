"""What a receiver is told, and in which words; pure.

A plan's transitions become Notices, written to status.outbox in the same write as the
transition. The outbox is emptied once every receiver took a notice or gave up, so an
operator that restarts in between delivers it again: at least once, each delivery with
the notice's idempotency key (duplicates are bounded by the outbox, 50 notices).

The JSON webhook payload, version sprintops.io/notification/v1:

    {"apiVersion": "sprintops.io/notification/v1", "idempotencyKey": "3f9c...",
     "event": "step.applied", "time": "2026-11-30T10:00:00.000Z",
     "release": {"namespace": "releases", "name": "checkout-s42", "uid": "...",
                 "sprint": 42, "service": "shop/checkout"},
     "targetCluster": "even", "previousCluster": "odd", "phase": "Progressing",
     "step": "2/3", "weights": {"even": 50, "odd": 50}, "verdict": "progressing",
     "failing": [], "message": "step 2/3: even=50% (even=50 odd=50)"}
"""

from __future__ import annotations

import hashlib
from typing import Any

from sprintops.api import Gate, Notice, SprintReleaseSpec, SprintReleaseStatus
from sprintops.plan import Emit, Plan

API_VERSION = "sprintops.io/notification/v1"
OUTBOX = 50
# Event reasons that notify, by the notification's event name.
_BY_REASON = {
    "Deploying": "release.started",
    "StepApplied": "step.applied",
    "Resumed": "release.resumed",
    "Held": "release.held",
    "RolledBack": "release.rolledBack",
    "Succeeded": "release.succeeded",
    "DriftCorrected": "drift.corrected",
    "GateApproved": "gate.answered",
    "GateRefused": "gate.answered",
    "GateUnanswered": "gate.answered",
    "Approved": "gate.answered",
}
_VERDICT = {
    "release.rolledBack": "rolledBack",
    "release.succeeded": "succeeded",
    "release.failed": "failed",
    "release.paused": "paused",
    "release.held": "held",
}


def notices(uid: str, before: SprintReleaseStatus, result: Plan, now: str) -> list[Notice]:
    """The notifications a plan's round makes, in order."""
    after = result.status
    found: list[tuple[str, str]] = []
    for action in result.actions:
        if isinstance(action, Emit) and action.reason in _BY_REASON:
            found.append((_BY_REASON[action.reason], action.message))
    if after.phase == "Paused" and before.phase != "Paused":
        found.append(("release.paused", after.message or ""))
    if after.phase == "Failed" and before.phase != "Failed":
        found.append(("release.failed", after.message or ""))
    return [
        _notice(uid, event, message, after, now=now, n=i)
        for i, (event, message) in enumerate(found)
    ]


def _notice(
    uid: str, event: str, message: str, status: SprintReleaseStatus, *, now: str, n: int
) -> Notice:
    key = hashlib.sha256(f"{uid} {event} {now} {n}".encode()).hexdigest()[:24]
    latest = status.last_check_at
    failing = sorted({r.metric for r in status.analysis if r.time == latest and not r.passed})
    return Notice(
        key=key,
        event=event,
        time=now,
        message=message[:1000],
        phase=status.phase,
        step=status.step,
        weights=status.weights,
        failing=failing,
    )


def _release(meta: dict[str, Any], spec: SprintReleaseSpec) -> dict[str, Any]:
    return {
        "namespace": meta.get("namespace"),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "sprint": spec.sprint,
        "service": f"{spec.service.namespace}/{spec.service.name}",
    }


def payload(
    notice: Notice,
    meta: dict[str, Any],
    spec: SprintReleaseSpec,
    status: SprintReleaseStatus,
) -> dict[str, Any]:
    """The versioned JSON body of a generic webhook (and of post-rollout gates)."""
    return {
        "apiVersion": API_VERSION,
        "idempotencyKey": notice.key,
        "event": notice.event,
        "time": notice.time,
        "release": _release(meta, spec),
        "targetCluster": status.target_cluster,
        "previousCluster": status.previous_cluster,
        "phase": notice.phase,
        "step": notice.step,
        "weights": notice.weights.model_dump() if notice.weights else None,
        "verdict": _VERDICT.get(notice.event, "progressing"),
        "failing": notice.failing,
        "message": notice.message,
    }


def slack(body: dict[str, Any]) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message from a payload: one readable line, the
    details after it."""
    release = body["release"]
    weights = body.get("weights") or {}
    icon = {"failed": ":x:", "rolledBack": ":rewind:", "succeeded": ":white_check_mark:"}.get(
        body["verdict"], ":arrows_counterclockwise:"
    )
    head = (
        f"{icon} {release['service']} sprint {release['sprint']}: {body['event']} "
        f"({body['verdict']})"
    )
    details = [
        f"cluster {body.get('targetCluster') or '?'} (from {body.get('previousCluster') or '?'})",
        f"step {body.get('step') or '-'}",
        f"weights even={weights.get('even', '?')} odd={weights.get('odd', '?')}",
    ]
    if body["failing"]:
        details.append("failing: " + ", ".join(body["failing"]))
    text = f"{head}\n{' · '.join(details)}\n{body['message']}"
    return {"text": text, "idempotencyKey": body["idempotencyKey"]}


def gate_request(
    gate: Gate,
    to_index: int,
    meta: dict[str, Any],
    spec: SprintReleaseSpec,
    status: SprintReleaseStatus,
) -> dict[str, Any]:
    """What a gate is asked (Flagger's webhook spirit: a 2xx answer means go)."""
    steps = spec.traffic.steps
    return {
        "apiVersion": API_VERSION,
        "gate": gate.name,
        "type": gate.type,
        "release": _release(meta, spec),
        "targetCluster": status.target_cluster,
        "previousCluster": status.previous_cluster,
        "phase": status.phase,
        "step": f"{to_index + 1}/{len(steps)}",
        "toWeight": steps[to_index],
        "weights": status.weights.model_dump() if status.weights else None,
    }
