"""Clients that find a service through DNS caches, so the traffic a cluster sees lags the
Route 53 weights as it does in the field.

A client keeps an answer (a cluster) until its resolver's cache entry expires, one TTL after
it was fetched, then asks again and gets each record with probability weight / total. Cache
ages are spread evenly, as across many resolvers, so after a change of weights the share
moves from the old split to the new one over one TTL. A share of clients hold keep-alive
connections and look again only every `keepalive_seconds`.

Clients are modelled as mass, not one by one: per cohort (plain and keep-alive), the share of
clients whose answer expires in each of `SLOTS` slots of its period. That makes a fleet of
services cheap and the lag exact. Pure: the caller passes the time, the weights and the TTL.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

SLOTS = 100


@dataclass
class _Cohort:
    """Clients that look again every `period` seconds."""

    period: float
    mass: float
    slots: deque[dict[str, float]] = field(default_factory=deque)
    totals: dict[str, float] = field(default_factory=dict)
    next_expiry: float = 0.0

    def start(self, now: float, split: dict[str, float]) -> None:
        per_slot = {c: self.mass * s / SLOTS for c, s in split.items()}
        self.slots = deque(dict(per_slot) for _ in range(SLOTS))
        self.totals = {c: self.mass * s for c, s in split.items()}
        self.next_expiry = now + self.period / SLOTS

    def advance(self, now: float, split: dict[str, float] | None) -> None:
        """Every slot that expired by `now` asks again; with no answer (`split` None) it
        keeps what it had."""
        width = self.period / SLOTS
        if now - self.next_expiry > self.period:  # asleep for a whole period: all asked
            self.next_expiry = now - self.period
        while self.next_expiry <= now:
            expired = self.slots.popleft()
            if split is not None:
                total = sum(expired.values())
                for cluster, mass in expired.items():
                    self.totals[cluster] -= mass
                expired = {c: total * s for c, s in split.items()}
                for cluster, mass in expired.items():
                    self.totals[cluster] = self.totals.get(cluster, 0.0) + mass
            self.slots.append(expired)
            self.next_expiry += width


@dataclass
class Resolvers:
    """The clients of one service."""

    keepalive_share: float = 0.0
    keepalive_seconds: float = 0.0
    _cohorts: list[_Cohort] = field(default_factory=list)
    _ttl: float = -1.0

    def shares(self, now: float, weights: dict[str, int], ttl: float) -> dict[str, float]:
        """Each cluster's share of the requests at `now` (seconds, any origin). With every
        weight 0 nothing moves: Route 53 has no answer to give."""
        total = sum(weights.values())
        split = {c: w / total for c, w in weights.items()} if total else None
        if not self._cohorts and split is None:  # no answer yet: nobody has a cluster
            return dict.fromkeys(weights, 0.0)
        if ttl != self._ttl:  # a new TTL (or the first call): clients already settled
            self._ttl = ttl
            settled = self._split() if self._cohorts else split or {}
            self._cohorts = [
                _Cohort(max(ttl, 1e-3), 1.0 - self.keepalive_share),
                _Cohort(max(ttl, self.keepalive_seconds, 1e-3), self.keepalive_share),
            ]
            for cohort in self._cohorts:
                cohort.start(now, settled)
        for cohort in self._cohorts:
            cohort.advance(now, split)
        return self._split()

    def _split(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for cohort in self._cohorts:
            for cluster, mass in cohort.totals.items():
                out[cluster] = out.get(cluster, 0.0) + mass
        total = sum(out.values()) or 1.0
        return {c: m / total for c, m in out.items()}
