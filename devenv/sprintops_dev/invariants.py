"""The rollout's invariants, over what anyone can observe: the traffic and the status.

Pure, and the one definition: the unit world checks it at every step of the model, the
chaos watcher and the bench check it against the real clusters. Traffic is read before the
status: the operator records a rise before it makes it, and makes a retreat before it
records the end of one, so a status read after the traffic bounds what that traffic may be.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sprintops.api import TERMINAL_PHASES, Cluster, SprintReleaseStatus, Weights


@dataclass
class Track:
    """What a sampler remembers of one release between samples."""

    run: str | None = None  # deployStartedAt: a retry or a restart begins a new run
    step_index: int = -1
    phase: str | None = None
    ever_available: bool = False
    max_target_weight: int = 0
    generation: int = 0


def allowed_weight(status: SprintReleaseStatus, target: Cluster, track: Track) -> int:
    """The most the new cluster may get: the weights status records (a rise is recorded
    before it is made); in a rollback, no more than it had: the rollback keeps the weight it
    leaves in targetWeight until the retreat is done."""
    planned = status.weights.of(target) if status.weights is not None else 0
    if status.phase in ("RollingBack", "RolledBack"):
        # What this run had: seen by the sampler, or recorded as a step it took.
        taken = max((s.weight for s in status.steps), default=0)
        return max(planned, track.max_target_weight, taken, status.target_weight or 0)
    return planned


def violations(
    target: Cluster,
    status: SprintReleaseStatus,
    traffic: Mapping[str, Weights | None],
    available: bool,
    track: Track,
) -> list[str]:
    """Every invariant the sample breaks; updates `track`."""
    out: list[str] = []
    track.ever_available |= available
    # A new run (a restart or a retry) began since the last sample: the traffic read before
    # this status may still be the old run's, so its weights cannot be judged by this one.
    stale = track.run is not None and status.deploy_started_at != track.run
    # A release refused before it moved anything owns none of the traffic it sees.
    owns = not (status.phase in (None, "Pending", "Failed") and status.step_index is None)
    if status.deploy_started_at != track.run:
        track.max_target_weight = 0
    allowed = allowed_weight(status, target, track)
    for where, w in traffic.items():
        if w is None or stale:
            continue
        if w.even + w.odd != 100:
            out.append(f"{where} weights sum to {w.even + w.odd} (even={w.even} odd={w.odd})")
        new = w.of(target)
        if not owns or new == 0:
            continue
        if new > allowed:
            out.append(f"{where} gives {target} {new}%, more than status allows ({allowed}%)")
        if status.deployment_available_at is None:
            out.append(
                f"{where} gives {target} {new}% before the Deployment was recorded Available"
            )
        if not track.ever_available:
            out.append(f"{where} gives {target} {new}% before its Deployment was ever Available")
        track.max_target_weight = max(track.max_target_weight, new)
    index = -1 if status.step_index is None else status.step_index
    # A spec edit may start a release over; nothing else may.
    retried = (status.observed_generation or 0) > track.generation
    if status.deploy_started_at == track.run and not retried:
        if index < track.step_index:
            out.append(f"stepIndex went back {track.step_index} -> {index}")
        if index - track.step_index > 1 and track.step_index >= 0:
            out.append(f"a step was skipped: {track.step_index} -> {index}")
        if track.phase in TERMINAL_PHASES and status.phase != track.phase:
            out.append(f"terminal phase {track.phase} left for {status.phase}")
    track.run, track.step_index, track.phase = status.deploy_started_at, index, status.phase
    track.generation = status.observed_generation or 0
    return out
