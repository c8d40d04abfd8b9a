"""Sharing one API budget between threads: a request pacer and group commit.

Route 53 allows a handful of requests per second per account, and every release of a fleet
talks to it. Calls due at the same moment for the same hosted zone go out as one request
(group commit), a zone's calls are spaced so that a fleet stepping together shares a few
requests (coalescing), and every request waits its turn (pacing), so the budget holds however
many releases move at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Generic, TypeVar

K = TypeVar("K")
T = TypeVar("T")
R = TypeVar("R")

# Send times are taken here, the limit is counted where requests arrive: the slack absorbs
# the jitter between the two on a loaded machine.
SLACK_SECONDS = 0.25


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Pacer:
    """A token bucket, as the server counts requests.

    `burst` 0 is the old per-account limit: at most `rate` requests in any one-second window
    (a bucket of `rate` tokens, each back one second after it was spent). Up to `rate`
    requests go at once (a read and the write right after it do not wait for each other),
    and no window of 1 s + slack ever holds more.

    `burst` above 0 is Route 53's newer quota: `burst` tokens refilled at `rate` per second,
    so a quiet account may send `burst` at once, then `rate` per second; the slack is kept off
    the bucket, so a request that arrives up to that much early still finds a token.

    `rate` 0 turns pacing off."""

    def __init__(
        self,
        rate: float,
        burst: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if burst < 0:
            raise ValueError(f"burst must be 0 or more, not {burst}")
        self.count = max(1, int(rate)) if rate > 0 else 0
        self.burst = burst if rate > 0 else 0
        self.window = self.count / rate + SLACK_SECONDS if rate > 0 else 0.0
        # How far ahead of the steady rate a request may go (GCRA's tolerance), the slack
        # kept off it. A bucket too small to hold the slack spaces requests wider instead:
        # the slack is never dropped.
        ahead = (self.burst - 1) / rate - SLACK_SECONDS if rate > 0 else 0.0
        self.tolerance = max(0.0, ahead)
        self.interval = 1 / rate - min(0.0, ahead) if rate > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._sent: deque[float] = deque(maxlen=max(1, self.count))
        self._theoretical = 0.0  # when the bucket would be full again, were nothing sent
        self._lock = threading.Lock()

    def _free_at(self, now: float) -> float:
        if not self.count:
            return now
        if self.burst:
            return max(now, self._theoretical - self.tolerance)
        if len(self._sent) < self.count:
            return now
        return max(now, self._sent[0] + self.window)

    def wait(self) -> float:
        """Takes the next token, sleeping until it comes; returns the seconds waited."""
        if not self.count:
            return 0.0
        with self._lock:
            now = self._clock()
            at = self._free_at(now)
            if self.burst:
                self._theoretical = max(self._theoretical, at) + self.interval
            else:
                self._sent.append(at)
        if at > now:
            self._sleep(at - now)
        return at - now

    def settle(self) -> float:
        """Sleeps until a token is free without taking it, so that callers arriving
        meanwhile can still join the request that takes it; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            delay = self._free_at(now) - now
        if delay > 0:
            self._sleep(delay)
        return delay


@dataclass(eq=False)
class _Item(Generic[T, R]):
    value: T
    lead: bool = False
    done: bool = False
    result: R | None = None
    error: Exception | None = None
    # A coroutine's: how a round tells it that it is answered or leads; called in the lock.
    wake: Callable[[], object] | None = None
    leading: bool = False  # a coroutine's round is under way (in a thread of its own)


class GroupCommit(Generic[K, T, R]):
    """Callers with the same key share calls: the first one in (the leader) sends one call
    for everyone queued, up to what `take` allows, and hands the lead to the next in line.

    `send(key, values)` returns one result or exception per value, in order. `take(values)`
    says how many from the front of the queue fit in one call (at least one is sent).
    `spacing` seconds at least between a key's calls: a caller that comes soon after a call
    waits for the next one with whoever else comes meanwhile, while a lone caller, long after
    the last call, goes at once."""

    def __init__(
        self,
        send: Callable[[K, list[T]], Sequence[R | Exception]],
        take: Callable[[list[T]], int] = len,
        settle: Callable[[], object] = lambda: None,
        *,
        spacing: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._send, self._take, self._settle = send, take, settle
        self._spacing, self._clock, self._sleep = spacing, clock, sleep
        self._queues: dict[K, list[_Item[T, R]]] = {}
        self._last: dict[K, float] = {}  # when each key's last call went out
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
                        self._round(key, item)
                    finally:
                        self._cond.acquire()
                else:
                    self._cond.wait()
        return self._answer(item)

    async def call_async(self, key: K, value: T) -> R:
        """`__call__` for a coroutine: waiting for another's round holds no thread, and its
        own round, when it leads, runs in a thread of its own. So a fleet queued behind one
        zone's spaced call holds no worker each, and a waiter that goes away (cancelled, or
        its event loop closed before the lead reached it) never strands the key: its round
        runs to the end, or the lead it never took passes on. A loop closed with its tasks
        still pending, which neither asyncio.run nor kopf does, is not provided for."""
        loop = asyncio.get_running_loop()
        item: _Item[T, R] = _Item(value)
        with self._cond:
            queue = self._queues.setdefault(key, [])
            item.lead = not queue
            queue.append(item)
        try:
            while True:
                woken: asyncio.Future[None] = loop.create_future()
                with self._cond:
                    if item.done:
                        break
                    item.wake = partial(loop.call_soon_threadsafe, _resolve, woken)
                    start = item.lead and not item.leading
                    item.leading = item.leading or start
                if start:
                    try:
                        threading.Thread(target=self._round, args=(key, item), daemon=True).start()
                    except RuntimeError:  # no thread started: the lead is free to pass on
                        with self._cond:
                            item.leading = False
                        raise
                await woken
        except BaseException:  # cancelled, a thread refused, or the loop dropped the task
            self._abandon(key, item)
            raise
        return self._answer(item)

    def _abandon(self, key: K, item: _Item[T, R]) -> None:
        """A departed coroutine's item leaves the queue, unless it is answered or its round
        is under way; if it had been handed the lead, the next in line takes it."""
        with self._cond:
            queue = self._queues.get(key, [])
            if item.done or item.leading or item not in queue:
                return
            queue.remove(item)
            if item.lead:
                self._lead_next(key)
            elif not queue:
                self._queues.pop(key, None)

    @staticmethod
    def _answer(item: _Item[T, R]) -> R:
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[return-value]

    @staticmethod
    def _tell(item: _Item[T, R]) -> bool:
        """Wakes a coroutine's item to look again; False if its event loop is closed, so
        nobody waits for it any more. (In the lock.)"""
        if item.wake is None:
            return True
        try:
            item.wake()
        except RuntimeError:
            return False
        return True

    def _lead_next(self, key: K) -> None:
        """The front of the queue leads; one whose caller is gone is dropped. (In the lock.)"""
        queue = self._queues.get(key, [])
        while queue:
            queue[0].lead = True
            if self._tell(queue[0]):
                break
            queue.pop(0)
        if not queue:
            self._queues.pop(key, None)
        self._cond.notify_all()

    def _round(self, key: K, leader: _Item[T, R]) -> None:
        """One call for the front of the queue. Whatever fails, the items taken (at least the
        leader's) are answered and leave the queue: a failed round fails its items, never
        the key, or every later caller would wait for ever."""
        batch = [leader]
        results: Sequence[R | Exception]
        try:
            with self._cond:
                last = self._last.get(key)
                due = 0.0 if last is None else last + self._spacing - self._clock()
            if due > 0:
                self._sleep(due)
            self._settle()
            with self._cond:
                queue = self._queues[key]
                # The leader stays at the front until its own call is done.
                batch = queue[: max(1, self._take([i.value for i in queue]))]
            try:
                results = self._send(key, [i.value for i in batch])
            finally:  # spaced from when it went out, a wait for the pacer inside included
                with self._cond:
                    self._last[key] = self._clock()
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for {len(batch)} calls")
        except Exception as exc:  # the call failed for everyone in it
            results = [exc] * len(batch)
        with self._cond:
            taken = {id(i) for i in batch}
            left = [i for i in self._queues.get(key, []) if id(i) not in taken]
            for item, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    item.error = result
                else:
                    item.result = result
                item.done = True
            # The lead passes on in the same critical section: a caller arriving in between
            # would otherwise find no queue, lead a second one, and race this one's clean-up.
            for item in batch:
                self._tell(item)
            self._queues[key] = left
            self._lead_next(key)
