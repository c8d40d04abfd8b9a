"""Whether the next increase may go: a global freeze, change windows, gates answered by
outside systems and approvals by people. Pure: the caller asks the gates and reads the
freeze, and passes their answers in.

The order is fixed: a freeze, then the windows, then the systems, then the people, so that
nobody is asked while the answer could not matter. A hold never rolls anything back; only
a gate that does not answer counts toward spec.analysis.progressDeadline.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from sprintops.api import (
    TERMINAL_PHASES,
    ApprovalWait,
    Controls,
    Decision,
    Gate,
    Hold,
    SprintReleaseSpec,
    SprintReleaseStatus,
)
from sprintops.durations import parse_timestamp, timestamp
from sprintops.schedule import closed

DECISIONS = 50  # kept in status.decisions
Verdict = Literal["approved", "refused", "unanswered"]
Note = tuple[Literal["Normal", "Warning"], str, str]  # an Event: type, reason, message


@dataclass(frozen=True)
class GateAnswer:
    """One gate's answer to one ask."""

    name: str
    verdict: Verdict
    detail: str  # "HTTP 403", "no answer within 5s": never a URL


@dataclass(frozen=True)
class Clearance:
    status: SprintReleaseStatus
    # Why the increase waits; None: it may go.
    held: str | None
    notes: tuple[Note, ...]
    # Seconds until it is worth another look.
    retry: float


def required(spec: SprintReleaseSpec, to_index: int) -> list[Gate]:
    """The gates that must say go before the release moves to step `to_index`."""
    final = spec.traffic.steps[to_index] == 100
    wanted = {"confirm-step"} | ({"pre-rollout"} if to_index == 0 else set())
    wanted |= {"confirm-promotion"} if final else set()
    return [g for g in spec.gates if g.type in wanted]


def to_ask(spec: SprintReleaseSpec, status: SprintReleaseStatus) -> list[Gate]:
    """The webhook gates to ask in this round: those of a gate hold not yet approved."""
    hold = status.hold
    if hold is None or hold.reason != "gate" or status.phase in TERMINAL_PHASES:
        return []
    failing = status.last_check_passed is False and status.promotion != "force"
    if hold.step >= len(spec.traffic.steps) or (status.phase == "Progressing" and failing):
        return []  # an edited spec (the plan restarts first), or checks not passing
    return [g for g in required(spec, hold.step) if g.webhook and g.name not in hold.approved]


def end_hold(status: SprintReleaseStatus, now: dt.datetime) -> SprintReleaseStatus:
    """The hold is over (its step is not ready, or it ended): time that did not count
    stays uncounted, and the time from now on counts again."""
    if status.hold is None:
        return status
    return status.model_copy(update={"hold": None, "held_seconds": uncounted_hold(status, now)})


def uncounted_hold(status: SprintReleaseStatus, now: dt.datetime) -> float:
    """Seconds of this step spent in holds that do not count toward the deadline."""
    ongoing = 0.0
    if status.hold is not None and not status.hold.counts:
        ongoing = (now - parse_timestamp(status.hold.since)).total_seconds()
    return status.held_seconds + ongoing


def evaluate(
    spec: SprintReleaseSpec,
    status: SprintReleaseStatus,
    *,
    now: dt.datetime,
    to_index: int,
    frozen: str | None,
    answers: tuple[GateAnswer, ...],
    approval: str | None,
    retry: float,
) -> Clearance:
    """Whether the move to step `to_index` may go now; updates the hold and the audit."""
    return _Evaluation(spec, status, now, to_index, retry).run(frozen, answers, approval)


class _Evaluation:
    def __init__(
        self,
        spec: SprintReleaseSpec,
        status: SprintReleaseStatus,
        now: dt.datetime,
        to_index: int,
        retry: float,
    ) -> None:
        self.spec, self.status, self.now, self.to_index = spec, status, now, to_index
        self.retry = retry
        hold = status.hold
        self.old = hold if hold is not None and hold.step == to_index else None
        self.approved = list(self.old.approved) if self.old else []
        self.heard = list(self.old.heard) if self.old else []
        self.decisions: list[Decision] = []
        self.notes: list[Note] = []
        self.controls = status.controls or Controls()
        wait = status.approval_wait
        self.approval_wait = wait if wait is not None and wait.step == to_index else None

    def run(
        self, frozen: str | None, answers: tuple[GateAnswer, ...], approval: str | None
    ) -> Clearance:
        if frozen is not None:
            return self._hold("freeze", f"held by a global freeze: {frozen}", counts=False)
        shut = closed(self.spec.schedule.windows, self.now)
        if shut is not None:
            wait = shut.opens_in if shut.opens_in is not None else self.retry
            return self._hold("window", shut.message, counts=False, retry=min(wait, 60.0))
        gates = required(self.spec, self.to_index)
        webhooks = [g for g in gates if g.webhook and g.name not in self.approved]
        if webhooks:
            held = self._systems(webhooks, answers)
            if held is not None:
                return held
        people = [g for g in gates if g.manual and g.name not in self.approved]
        if people:
            held = self._people(people, approval)
            if held is not None:
                return held
        return self._clear()

    def _systems(self, gates: list[Gate], answers: tuple[GateAnswer, ...]) -> Clearance | None:
        names = ", ".join(g.name for g in gates)
        if self.old is None or self.old.reason != "gate":
            # Asked in the very next round, by the caller, which reads this hold.
            return self._hold("gate", f"asking gate {names}", counts=True, retry=0)
        by_name = {a.name: a for a in answers}
        waiting: list[tuple[Gate, GateAnswer | None]] = []
        for gate in gates:
            answer = by_name.get(gate.name)
            if answer is not None:
                self._record_answer(gate, answer)
            if answer is not None and answer.verdict == "approved":
                self.approved.append(gate.name)
            else:
                waiting.append((gate, answer))
        if not waiting:
            return None
        why = "; ".join(
            f"gate {g.name} ({g.type}) {a.verdict if a else 'not asked yet'}"
            + (f": {a.detail}" if a and a.detail else "")
            for g, a in waiting
        )
        # A refusal is an answer: the gate's owner holds the release on purpose, as a person
        # would. Silence counts: past the deadline traffic goes back. Before any traffic has
        # moved, every failing pre-rollout gate counts: the release then fails untouched.
        counts = any(
            a is None or a.verdict == "unanswered" or g.type == "pre-rollout" for g, a in waiting
        )
        return self._hold("gate", f"waiting for {why}", counts=counts)

    def _record_answer(self, gate: Gate, answer: GateAnswer) -> None:
        heard = f"{gate.name}:{answer.verdict}"
        if heard in self.heard:
            return  # this answer again in this hold: audited once, however a gate alternates
        self.heard.append(heard)
        self.decisions.append(
            Decision(
                time=timestamp(self.now),
                kind="gate",
                name=gate.name,
                step=self.to_index + 1,
                verdict=answer.verdict,
                by=gate.webhook,
                message=answer.detail,
            )
        )
        kind: Literal["Normal", "Warning"] = (
            "Normal" if answer.verdict != "unanswered" else "Warning"
        )
        reason = {"approved": "GateApproved", "refused": "GateRefused"}.get(
            answer.verdict, "GateUnanswered"
        )
        step = f"{self.to_index + 1}/{len(self.spec.traffic.steps)}"
        detail = f": {answer.detail}" if answer.detail else ""
        self.notes.append(
            (kind, reason, f"gate {gate.name} ({gate.type}) {answer.verdict} step {step}{detail}")
        )

    def _people(self, gates: list[Gate], approval: str | None) -> Clearance | None:
        names = ", ".join(g.name for g in gates)
        if self.approval_wait is None:
            # What stands now is from before the wait: it never lets this step through
            # unseen, whatever time it claims.
            self.approval_wait = ApprovalWait(
                step=self.to_index, standing=approval, since=timestamp(self.now)
            )
        fresh = approval not in (None, self.approval_wait.standing, self.controls.approve)
        if approval is not None and fresh:
            moment, _, by = approval.partition("/")
            by = by.removeprefix("by:") or "unknown"
            self.controls = self.controls.model_copy(update={"approve": approval})
            self.approval_wait = None
            self.approved.extend(g.name for g in gates)
            step = f"{self.to_index + 1}/{len(self.spec.traffic.steps)}"
            self.decisions.append(
                Decision(
                    time=timestamp(self.now),
                    kind="approval",
                    name=names,
                    step=self.to_index + 1,
                    verdict="approved",
                    by=by[:253],
                    message=f"approval {moment[:40]} seen",
                )
            )
            self.notes.append(("Normal", "Approved", f"{names} approved by {by} for step {step}"))
            return None
        return self._hold(
            "approval",
            f"waiting for approval ({names}) of step {self.to_index + 1}/"
            f"{len(self.spec.traffic.steps)}: kubectl sprint approve",
            counts=False,
        )

    def _hold(
        self,
        reason: Literal["freeze", "window", "gate", "approval"],
        why: str,
        *,
        counts: bool,
        retry: float | None = None,
    ) -> Clearance:
        old = self.old
        same = old is not None and old.reason == reason and old.counts == counts
        held_seconds = self.status.held_seconds
        if same and old is not None:
            hold = old.model_copy(
                update={
                    "approved": self.approved,
                    "heard": self.heard,
                    "ready_at": timestamp(self.now),
                }
            )
        else:
            held_seconds += self._ended(old)
            hold = Hold(
                reason=reason,
                step=self.to_index,
                since=timestamp(self.now),
                counts=counts,
                approved=self.approved,
                ready_at=timestamp(self.now),
                heard=self.heard if reason == "gate" else [],
            )
            if old is None or old.reason != reason:
                self.notes.append(("Normal", "Held", why))
                if reason in ("freeze", "window"):
                    self._audit(reason, "held", why)
        update: dict[str, object] = {
            "hold": hold,
            "held_seconds": held_seconds,
            "message": why,
            "decisions": _bounded([*self.status.decisions, *self.decisions]),
            "controls": self.controls,
            "approval_wait": self.approval_wait,
        }
        status = self.status.model_copy(update=update)
        return Clearance(status, why, tuple(self.notes), self.retry if retry is None else retry)

    def _clear(self) -> Clearance:
        old = self.old
        if old is not None and old.reason in ("freeze", "window"):
            self._audit(old.reason, "cleared", f"{old.reason} no longer holds")
        update: dict[str, object] = {
            "hold": None,
            "held_seconds": self.status.held_seconds + self._ended(old),
            "decisions": _bounded([*self.status.decisions, *self.decisions]),
            "controls": self.controls,
            "approval_wait": self.approval_wait,
        }
        return Clearance(self.status.model_copy(update=update), None, tuple(self.notes), 0)

    def _ended(self, old: Hold | None) -> float:
        """Seconds of a hold that ends now, if they do not count toward the deadline."""
        if old is None or old.counts:
            return 0.0
        return max(0.0, (self.now - parse_timestamp(old.since)).total_seconds())

    def _audit(
        self, kind: Literal["freeze", "window"], verdict: Literal["held", "cleared"], why: str
    ) -> None:
        self.decisions.append(
            Decision(
                time=timestamp(self.now),
                kind=kind,
                name=kind,
                step=self.to_index + 1,
                verdict=verdict,
                message=why[:300],
            )
        )


def _bounded(decisions: list[Decision]) -> list[Decision]:
    """The newest DECISIONS, a gate's answers dropped first: who approved, and the freezes
    and windows that held, outlast any gate's chatter."""
    extra = len(decisions) - DECISIONS
    if extra <= 0:
        return decisions
    gates = [i for i, d in enumerate(decisions) if d.kind == "gate"][:extra]
    kept = [d for i, d in enumerate(decisions) if i not in set(gates)]
    return kept[-DECISIONS:]
