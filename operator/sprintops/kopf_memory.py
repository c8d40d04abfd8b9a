"""Lets kopf forget the body of a release that runs no daemon.

kopf keeps the latest body of every object whose kind has a daemon handler, whether or not
a daemon runs for it (`process_spawning_cause` stores it, and only a daemon that ends for
good drops it). A finished release runs none (`handlers.needs_daemon`), so a fleet of them
cost a whole body each for nothing: about 30 KB, 300 MB at 10,000 releases. Here the body is
dropped after each event when no daemon runs; kopf stores a fresh one before it spawns one,
and a running daemon's body is never touched, so it still sees every change.

This patches kopf's private reactor (kopf is pinned; `test_kopf_memory` fails if the hook
moves)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from kopf._core.reactor import inventory, processing

_spawning = processing.process_spawning_cause


async def _spawning_then_forget(
    *, memory: inventory.ResourceMemory, **kwargs: Any
) -> Collection[float]:
    delays = await _spawning(memory=memory, **kwargs)
    if not memory.daemons_memory.running_daemons:
        memory.daemons_memory.live_fresh_body = None
    return delays


def install() -> None:
    processing.process_spawning_cause = _spawning_then_forget  # type: ignore[assignment]
