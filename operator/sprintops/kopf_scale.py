"""kopf at thousands of releases: two fixes to its private reactor (kopf is pinned;
`test_kopf_scale` fails if either hook moves).

- Memory. kopf keeps the latest body of every object whose kind has a daemon handler, whether
  or not a daemon runs for it (`process_spawning_cause` stores it; only a daemon that ends for
  good drops it). A finished release runs none (`handlers.needs_daemon`), so each one kept a
  whole body for nothing. Here it is dropped after each event when no daemon runs; kopf
  stores a fresh one before it spawns one, and a running daemon's body is never touched.
- Start-up. With an index, kopf holds every object's handlers until all objects are indexed:
  a toggle per object in one `ToggleSet`, and each object's worker waits on the set's
  condition. Every toggle made or dropped woke every waiter, so a start with N releases cost
  N² wake-ups: 10,000 finished releases kept the operator at a full core for over ten
  minutes, and an in-flight release waited as long. Waiters of a set depend only on whether
  the whole set is on, so they are woken only when that changes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from kopf._cogs.aiokits import aiotoggles
from kopf._core.reactor import inventory, processing

_spawning = processing.process_spawning_cause


async def _spawning_then_forget(
    *, memory: inventory.ResourceMemory, **kwargs: Any
) -> Collection[float]:
    delays = await _spawning(memory=memory, **kwargs)
    if not memory.daemons_memory.running_daemons:
        memory.daemons_memory.live_fresh_body = None
    return delays


async def _make_toggle(
    self: aiotoggles.ToggleSet, __val: bool = False, *, name: str | None = None
) -> aiotoggles.Toggle:
    toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
    async with self._condition:
        before = self.is_on()
        self._toggles.add(toggle)
        if self.is_on() != before:
            self._condition.notify_all()
    return toggle


async def _drop_toggles(self: aiotoggles.ToggleSet, toggles: Iterable[aiotoggles.Toggle]) -> None:
    async with self._condition:
        before = self.is_on()
        self._toggles.difference_update(toggles)
        if self.is_on() != before:
            self._condition.notify_all()


async def _drop_toggle(self: aiotoggles.ToggleSet, toggle: aiotoggles.Toggle) -> None:
    await _drop_toggles(self, [toggle])


def install() -> None:
    # A kopf that moved these would otherwise take the patches silently, and do nothing.
    for owner, name in (
        (processing, "process_spawning_cause"),
        *((aiotoggles.ToggleSet, n) for n in ("make_toggle", "drop_toggle", "drop_toggles")),
    ):
        if not hasattr(owner, name):
            raise RuntimeError(f"kopf has no {name} any more: review sprintops.kopf_scale")
    processing.process_spawning_cause = _spawning_then_forget  # type: ignore[assignment]
    aiotoggles.ToggleSet.make_toggle = _make_toggle  # type: ignore[method-assign]
    aiotoggles.ToggleSet.drop_toggle = _drop_toggle  # type: ignore[method-assign]
    aiotoggles.ToggleSet.drop_toggles = _drop_toggles  # type: ignore[method-assign]
