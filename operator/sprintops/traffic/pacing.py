"""Sharing one API budget between threads: a request pacer and group commit.

Route 53 allows a handful of requests per second per account, and every release of a fleet
talks to it. Calls due at the same moment for the same hosted zone go out as one request
(group commit), and every request waits its turn (pacing), so the budget holds however
many releases move at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K")
T = TypeVar("T")
R = TypeVar("R")

# Gaps are measured here, the limit is counted where requests arrive: the slack absorbs the
# jitter between the two (0.02 s was not enough on a loaded 2-core machine).
SLACK_SECONDS = 0.05


class Pacer:
    """At most `rate` requests in any one-second window: one request per 1/rate seconds.

    A fixed gap rather than a burst bucket, because a burst followed by a refill can put twice
    the rate into one window. `rate` 0 turns pacing off."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.gap = 1.0 / rate + SLACK_SECONDS if rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> float:
        """Takes the next slot, sleeping until it comes; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + self.gap
        if at > now:
            self._sleep(at - now)
        return at - now

    def settle(self) -> float:
        """Sleeps until a slot is free without taking it, so that callers arriving
        meanwhile can still join the request that takes it; returns the seconds waited."""
        with self._lock:
            delay = self._next - self._clock()
        if delay > 0:
            self._sleep(delay)
        return max(delay, 0.0)


@dataclass(eq=False)
class _Item(Generic[T, R]):
    value: T
    lead: bool = False
    done: bool = False
    result: R | None = None
    error: Exception | None = None


class GroupCommit(Generic[K, T, R]):
    """Callers with the same key share calls: the first one in (the leader) sends one call
    for everyone queued, up to what `take` allows, and hands the lead to the next in line.

    `send(key, values)` returns one result or exception per value, in order. `take(values)`
    says how many from the front of the queue fit in one call (at least one is sent)."""

    def __init__(
        self,
        send: Callable[[K, list[T]], Sequence[R | Exception]],
        take: Callable[[list[T]], int] = len,
        settle: Callable[[], object] = lambda: None,
    ) -> None:
        self._send, self._take, self._settle = send, take, settle
        self._queues: dict[K, list[_Item[T, R]]] = {}
        self._cond = threading.Condition()

    def __call__(self, key: K, value: T) -> R:
        item: _Item[T, R] = _Item(value)
        with self._cond:
            queue = self._queues.setdefault(key, [])
            # A key with a queue has a leader (the queue outlives a leader only by a handover).
            item.lead = not queue
            queue.append(item)
            while not item.done:
                if item.lead:
                    self._cond.release()
                    try:
                        self._round(key)
                    finally:
                        self._cond.acquire()
                else:
                    self._cond.wait()
            if item.lead:
                self._hand_over(key)
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[return-value]

    def _round(self, key: K) -> None:
        self._settle()
        with self._cond:
            queue = self._queues[key]
            # The leader stays at the front until its own call is done.
            count = max(1, self._take([i.value for i in queue]))
            batch = queue[:count]
        results: Sequence[R | Exception]
        try:
            results = self._send(key, [i.value for i in batch])
        except Exception as exc:  # the call failed for everyone in it
            results = [exc] * len(batch)
        with self._cond:
            del self._queues[key][: len(batch)]
            for item, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    item.error = result
                else:
                    item.result = result
                item.done = True
            self._cond.notify_all()

    def _hand_over(self, key: K) -> None:
        queue = self._queues[key]
        if queue:
            queue[0].lead = True
            self._cond.notify_all()
        else:
            del self._queues[key]
