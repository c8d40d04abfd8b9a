"""When to ask Route 53 whether a change batch is INSYNC, and about which.

Real Route 53 takes tens of seconds to propagate a change, and a fleet's steps make a change
batch every second or two. Asking about every change every second would spend the account's
request budget on GetChange, so:
- a hosted zone's changes propagate in the order they were made (Route 53 may refuse a change
  while an earlier one is in progress: PriorRequestNotComplete), so only the oldest change of
  a zone still PENDING is asked about; a waiter on a newer one asks about that one for it;
- the first question about a change comes when recent changes were last seen PENDING (the
  median of those times), and the ones after it every `poll` seconds, growing by a quarter
  of the time past that, so a steady Route 53 costs two questions a change and is seen
  within `poll` of going INSYNC, and an unusually slow change costs a few more. A change INSYNC at a
  first question asked on time counts as PENDING for three quarters of its age, so the wait
  shrinks when Route 53 speeds up (one asked late, behind an older change, says nothing).
  With nothing learned yet, the gaps grow with the whole age, so a slow first change costs a
  dozen questions and a fast one is seen at once.
Each change is still INSYNC only when Route 53 says so of it.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

INSYNC = "INSYNC"
LEARNED = 8  # how many recent changes the wait is learned from
REMEMBERED = 1000  # changes kept: only recent ones are waited for
GROWTH = 1.25  # past what was learned, each gap is a quarter of the time spent past it
SHRINK = 0.75  # what a change INSYNC at a first question asked on time teaches
ABANDONED = 300.0  # a change PENDING this long is a fault: it no longer holds newer ones back
MAX_GAP = 10.0  # seconds between questions at most: a slow change is seen soon after all
MAX_LEARNED = 60.0  # Route 53 propagates within 60 s: a slow spell never teaches a longer wait
MIN_POLL = 0.1


@dataclass
class _Change:
    zone: str
    submitted: float
    asked: float  # when Route 53 last said how it stands (the submission counts)
    status: str
    pending_for: float = 0.0  # the oldest age at which it was still PENDING
    aged: bool = True  # whether its submission was seen, so its age is known
    error: Exception | None = None  # for its own waiter, from a question another one asked
    holds: bool = True  # whether newer changes of its zone wait behind it


class Propagation:
    """What is known about recent changes; the caller supplies the time (monotonic)."""

    def __init__(self) -> None:
        self._changes: dict[str, _Change] = {}  # in the order they were submitted
        # For each recent change that went INSYNC, how long it was seen PENDING.
        self._pending_for: deque[float] = deque(maxlen=LEARNED)

    def submitted(self, change_id: str, zone: str, status: str, now: float) -> None:
        if len(self._changes) >= REMEMBERED:
            self._forget(now)
        self._changes.pop(change_id, None)  # an id seen again is a new change, the newest
        self._changes[change_id] = _Change(zone, now, now, status)

    def _forget(self, now: float) -> None:
        """Room for more: what nobody can still be waiting for goes first, changes in flight
        only if that is not enough (the oldest half), so a fleet's queue is kept."""
        done = [
            i
            for i, c in self._changes.items()
            if c.status == INSYNC or now - c.submitted >= ABANDONED
        ]
        for change_id in done or list(self._changes)[: REMEMBERED // 2]:
            del self._changes[change_id]

    def answered(self, change_id: str, status: str, now: float, sent: float) -> None:
        """What GetChange, asked at `sent`, said about a change."""
        change = self._changes.get(change_id)
        if change is None:  # submitted before a restart, or forgotten: its age is unknown
            change = self._changes[change_id] = _Change("", now, now, status, aged=False)
        if change.status == INSYNC or change.submitted > sent:
            return  # known already, or the answer is about an earlier change with this id
        age, learned = now - change.submitted, self.learned()
        change.asked, change.status = now, status
        if status != INSYNC:
            change.pending_for = age
        elif change.aged and change.pending_for:
            self._pending_for.append(change.pending_for)
        elif change.aged and (learned is None or age <= learned * GROWTH):
            self._pending_for.append(age * SHRINK)

    def failed(self, change_id: str, now: float, error: Exception | None = None) -> None:
        """The question about a change got no answer: the next one waits its turn, so an
        erroring Route 53 is not asked by every waiter in the zone at once. An `error` that
        no retry will fix (not a throttle) is kept for the change's own waiter, and the
        change no longer holds the zone: its waiters would otherwise only see it at 300 s."""
        change = self._changes.get(change_id)
        if change is not None:
            change.asked = now
            if error is not None:
                change.error, change.holds = error, False

    def take_error(self, change_id: str) -> Exception | None:
        """The error kept for this change's waiter, once."""
        change = self._changes.get(change_id)
        if change is None or change.error is None:
            return None
        error, change.error = change.error, None
        return error

    def learned(self) -> float | None:
        """How long recent changes were seen PENDING (the median), if any were."""
        if not self._pending_for:
            return None
        return min(MAX_LEARNED, statistics.median(self._pending_for))

    def insync(self, change_id: str) -> bool:
        change = self._changes.get(change_id)
        return change is not None and change.status == INSYNC

    def to_ask(self, change_id: str, poll: float, now: float) -> str | None:
        """Which change to ask Route 53 about now for a waiter on `change_id`, if any: the
        oldest change of its zone still PENDING (it goes INSYNC first), when due."""
        change = self._changes.get(change_id)
        if change is None:
            return change_id
        if change.status == INSYNC:
            return None
        ask = change_id
        if change.zone:
            ask = next(
                i
                for i, c in self._changes.items()
                if c is change
                or (
                    c.zone == change.zone
                    and c.status != INSYNC
                    and c.holds
                    and now - c.submitted < ABANDONED
                )
            )
        return ask if self._due(self._changes[ask], poll, now) else None

    def _due(self, change: _Change, poll: float, now: float) -> bool:
        age, asked = now - change.submitted, change.asked - change.submitted
        learned = self.learned() or 0.0
        if asked < learned:
            return age >= learned
        # Past what was learned (nothing, at first), the gaps grow by a quarter of the time
        # spent past it: a change slower than usual costs a few questions more, not one a second.
        gap = min(MAX_GAP, max(poll, MIN_POLL, (asked - learned) * (GROWTH - 1)))
        return age >= asked + gap
