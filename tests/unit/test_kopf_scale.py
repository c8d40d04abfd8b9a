"""kopf at thousands of releases: the body of a release without a daemon is forgotten, and
objects held until all are indexed are woken once, not once per object."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.structs import bodies, ephemera, patches, references
from kopf._core.engines import indexing
from kopf._core.intents import causes
from kopf._core.reactor import inventory, processing

from sprintops import kopf_scale

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

    kopf_scale.install()
    return asyncio.run(scenario()), seen


def test_a_release_without_a_daemon_keeps_no_body() -> None:
    kept, seen = _spawn(wanted=False)
    assert seen == []
    assert kept is None


def test_a_running_daemon_keeps_its_live_body() -> None:
    kept, seen = _spawn(wanted=True)
    assert len(seen) == 1
    assert kept is seen[0]


def _wake_ups(count: int) -> int:
    """`count` objects held until all are indexed, as kopf holds them at start-up: how often
    the waiters were woken to look again."""

    async def scenario() -> int:
        held = aiotoggles.ToggleSet(all)
        toggles = [await held.make_toggle(name=f"object {i}") for i in range(count)]
        looks = 0
        is_on = held.is_on

        def counted() -> bool:
            nonlocal looks
            looks += 1
            return is_on()

        held.is_on = counted  # type: ignore[method-assign]
        waiters = [asyncio.create_task(held.wait_for(True)) for _ in range(count)]
        await asyncio.sleep(0)
        for toggle in toggles[:-1]:
            await held.drop_toggle(toggle)
            await asyncio.sleep(0)
        assert not any(w.done() for w in waiters)  # one object is still not indexed
        await held.drop_toggle(toggles[-1])
        await asyncio.wait_for(asyncio.gather(*waiters), 5)
        return looks

    kopf_scale.install()
    return asyncio.run(scenario())


def test_objects_held_until_all_are_indexed_are_woken_once_not_once_per_object() -> None:
    # Each waiter looks when it starts and when the set turns on; each drop looks twice.
    assert _wake_ups(300) <= 4 * 300  # about 300 * 300 before


def test_a_toggle_set_still_wakes_waiters_whichever_way_it_turns() -> None:
    async def scenario() -> None:
        paused = aiotoggles.ToggleSet(any)
        off = asyncio.create_task(paused.wait_for(False))
        on = asyncio.create_task(paused.wait_for(True))
        await asyncio.sleep(0)
        assert off.done() and not on.done()
        flag = await paused.make_toggle(True, name="conflict")
        await asyncio.wait_for(on, 1)
        off = asyncio.create_task(paused.wait_for(False))
        await asyncio.sleep(0)
        await paused.drop_toggles([flag])
        await asyncio.wait_for(off, 1)

    kopf_scale.install()
    asyncio.run(scenario())
