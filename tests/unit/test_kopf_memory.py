"""kopf forgets the body of a release that runs no daemon, and keeps a running daemon's."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kopf._cogs.structs import bodies, ephemera, patches, references
from kopf._core.engines import indexing
from kopf._core.intents import causes
from kopf._core.reactor import inventory, processing

from sprintops import kopf_memory

RESOURCE = references.Resource("example.com", "v1", "things")


def _spawn(wanted: bool) -> tuple[bodies.Body | None, list[bodies.Body]]:
    """One event for an object through kopf's real spawning step: the body kopf keeps for
    the object after it, and what the daemon was given."""
    registry = kopf.OperatorRegistry()
    seen: list[bodies.Body] = []

    @kopf.daemon("example.com", "v1", "things", registry=registry, when=lambda **_: wanted)
    async def daemon(body: kopf.Body, stopped: kopf.DaemonStopped, **_: Any) -> None:
        seen.append(body)
        await stopped.wait()

    async def scenario() -> bodies.Body | None:
        memory = inventory.ResourceMemory()
        raw: bodies.RawBody = {"metadata": {"name": "a", "uid": "u1"}, "spec": {"n": 1}}
        body = bodies.Body(raw)
        cause = causes.SpawningCause(
            resource=RESOURCE,
            indices=indexing.OperatorIndexers().indices,
            logger=logging.getLogger("test"),
            patch=patches.Patch(body=body),
            body=body,
            memo=ephemera.AnyMemo(ephemera.Memo()),
            reset=True,
        )
        settings = kopf.OperatorSettings()
        kwargs = dict(registry=registry, settings=settings, memory=memory, cause=cause)
        await processing.process_spawning_cause(**kwargs, operator_paused=None)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)  # the daemon starts
        kept = memory.daemons_memory.live_fresh_body
        for running in list(memory.daemons_memory.running_daemons.values()):
            running.stopper.set(reason=kopf.DaemonStoppingReason.OPERATOR_EXITING)
            await running.task
        return kept

    kopf_memory.install()
    return asyncio.run(scenario()), seen


def test_a_release_without_a_daemon_keeps_no_body() -> None:
    kept, seen = _spawn(wanted=False)
    assert seen == []
    assert kept is None


def test_a_running_daemon_keeps_its_live_body() -> None:
    kept, seen = _spawn(wanted=True)
    assert len(seen) == 1
    assert kept is seen[0]
