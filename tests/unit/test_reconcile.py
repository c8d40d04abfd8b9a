"""The reconciler's own bookkeeping, without a cluster: error texts, INSYNC waits, memory."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pytest
from kubernetes import client
from pydantic import ValidationError

from sprintops import metrics
from sprintops.api import SprintReleaseStatus, Weights
from sprintops.clusters import ClusterError, KubeconfigSecrets
from sprintops.durations import timestamp
from sprintops.plan import Observations
from sprintops.reconcile import Reconciler, Runtime, describe
from sprintops.traffic.route53 import Route53Pairs, ZoneNotFound
from tests.unit.world import World, canonical_spec


class SlowRoute53:
    """Every change is PENDING for `pending` seconds, like real Route 53."""

    def __init__(self, pending: float) -> None:
        self.pending = pending
        self.submitted: dict[str, float] = {}
        self.lock = threading.Lock()

    def insync(self, change_id: str, poll: float = 1.0) -> bool:
        with self.lock:
            started = self.submitted.setdefault(change_id, time.monotonic())
        return time.monotonic() - started >= self.pending


def _runtime(route53: object) -> Runtime:
    mgmt = client.ApiClient()
    return Runtime(
        mgmt=mgmt,
        route53=cast(Route53Pairs, route53),
        secrets=KubeconfigSecrets(mgmt),
        prometheus_url="http://prometheus.invalid",
    )


def test_insync_waits_hold_no_worker_thread() -> None:
    """Hole 9: a fleet's INSYNC waits once held a worker thread each for the whole wait, so
    with few threads they ran one after another. In the event loop they overlap."""
    reconciler = Reconciler(_runtime(SlowRoute53(pending=1.0)), lambda _o, _e: None)

    async def fleet() -> float:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(2))
        started = time.monotonic()
        await asyncio.gather(*(reconciler.insync(f"C{i}", poll=0.05) for i in range(20)))
        return time.monotonic() - started

    took = asyncio.run(fleet())
    assert took < 5, f"20 waits of 1 s on 2 threads took {took:.1f}s: they held the threads"


def test_error_texts_are_short_and_never_carry_what_they_do_not_own() -> None:
    assert describe(ZoneNotFound("hosted zone sprintopz.test. not found")) == (
        "hosted zone sprintopz.test. not found"
    )
    assert describe(TimeoutError("Route 53 change C1 not INSYNC after 300s")).startswith(
        "Route 53 change C1"
    )
    assert describe(ClusterError("Secret releases/x not found")) == "Secret releases/x not found"
    # Anything unexpected may quote a request or a kubeconfig: its type only.
    text = describe(RuntimeError("token: CANARY-7f3a"))
    assert "CANARY" not in text and "RuntimeError" in text
    with pytest.raises(ValidationError) as caught:
        SprintReleaseStatus.model_validate({"phase": "Sideways", "weights": {"even": 500}})
    stored = describe(caught.value)
    assert stored.startswith("stored object does not match the API (2 errors at phase")
    assert "Sideways" not in stored  # the values stay out, only where they are


def test_a_release_that_ends_or_goes_leaves_nothing_behind() -> None:
    """Hole 14: per-release memory was never pruned."""
    rt = _runtime(SlowRoute53(pending=0))
    uid = "u1"
    rt.applied[uid] = Weights(even=0, odd=100)
    rt.action_errors[uid] = "x"
    rt.fatal_errors[uid] = "x"
    rt.last_written[uid] = "1"
    rt.route53_verified[uid] = "t"
    rt.partial[uid] = (Weights(even=0, odd=100), ())
    rt.decide(uid)
    rt.deleting.add(uid)
    asyncio.run(_take(rt.lock(uid)))
    rt.gone(uid)
    memories: list[Any] = [
        rt.applied,
        rt.action_errors,
        rt.fatal_errors,
        rt.last_written,
        rt.route53_verified,
        rt.partial,
        rt.decisions,
        rt.deleting,
        rt.locks,
    ]
    assert all(uid not in m for m in memories)


async def _take(lock: asyncio.Lock) -> None:
    async with lock:
        pass


def test_a_write_for_a_superseded_decision_is_skipped() -> None:
    """Hole 14: a cancelled reconcile's thread could put a stale weight on top of a newer
    rollback; its VirtualService write now checks that its decision is still the latest."""
    rt = _runtime(SlowRoute53(pending=0))
    stale = rt.decide("u1")
    latest = rt.decide("u1")  # a retreat decided since
    reconciler = Reconciler(rt, lambda _o, _e: None)
    weights = Weights(even=50, odd=50)
    # The stale one returns before it reads a Secret; the latest goes on (and, with no spec
    # here, fails as soon as it looks for the cluster's Secret).
    assert reconciler._set_copy(None, "releases", "even", weights, ("u1", stale)) is None  # type: ignore[arg-type,func-returns-value]
    with pytest.raises(AttributeError):
        reconciler._set_copy(None, "releases", "even", weights, ("u1", latest))  # type: ignore[arg-type]


class _LosesTheFirstWrite(Reconciler):
    """The real `once` over one stored release, whose first status write loses a race (what
    `_write_status` returns for a 409); the cluster side is the world model's."""

    def __init__(self, world: World) -> None:
        super().__init__(_runtime(SlowRoute53(pending=0)), lambda _o, _e: None)
        self.world = world
        self.conflicts = 1
        self.stored: dict[str, Any] = {
            "metadata": {"namespace": "releases", "name": "r", "uid": "u1", "generation": 1},
            "spec": world.spec.model_dump(mode="json", by_alias=True, exclude_none=True),
            "status": world.status.model_dump(mode="json", by_alias=True, exclude_none=True),
        }

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.stored)

    async def _observe(self, *_: Any) -> Observations:
        return self.world.observe()

    def _write_status(
        self, obj: dict[str, Any], status: SprintReleaseStatus, stored: dict[str, Any]
    ) -> dict[str, Any] | None:
        if self.conflicts:
            self.conflicts -= 1
            return None
        self.stored["status"] = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        return copy.deepcopy(self.stored)

    async def _act(self, *_: Any) -> None:
        return None


def test_a_status_write_that_loses_a_race_counts_nothing() -> None:
    """Hole 14: metrics were recorded before the compare-and-set write, so a 409 and the
    retry that followed counted one rollback twice."""
    world = World(canonical_spec())
    for _ in range(500):
        if world.status.step_index == 0 and world.status.step_started_at:
            break
        world.now += dt.timedelta(seconds=world.reconcile() or 0.5)
    world.requests = world.requests.model_copy(update={"abort": f"{timestamp(world.now)}/0"})
    reconciler = _LosesTheFirstWrite(world)
    aborted = metrics.ROLLBACKS.labels("Aborted")
    before = aborted._value.get()
    assert asyncio.run(reconciler.once("releases", "r", None)) == 0  # lost: look again
    assert aborted._value.get() == before
    asyncio.run(reconciler.once("releases", "r", None))
    assert reconciler.stored["status"]["phase"] == "RollingBack"
    assert aborted._value.get() == before + 1


class _Route53Pair:
    """One weighted pair: reads, writes (counted) and INSYNC at once."""

    def __init__(self, weights: Weights) -> None:
        self.weights = weights
        self.writes = 0

    def read_at_once(self, _target: object) -> Weights:
        return self.weights

    def write(self, _target: object, weights: Weights) -> str:
        self.weights, self.writes = weights, self.writes + 1
        return f"C{self.writes}"

    async def write_async(self, target: object, weights: Weights) -> str:
        return self.write(target, weights)

    def insync(self, change_id: str, poll: float = 1.0) -> bool:
        return True


class _Copies(Reconciler):
    """The real retreat over VirtualService copies that fail as told."""

    def __init__(self, route53: _Route53Pair, failing: dict[str, BaseException]) -> None:
        super().__init__(_runtime(route53), lambda _o, _e: None)
        self.failing = failing
        self.copies: dict[str, Weights] = {}

    def _set_copy(  # type: ignore[override]
        self, spec: object, namespace: str, cluster: str, weights: Weights, decided: object
    ) -> None:
        if cluster in self.failing:
            raise self.failing[cluster]
        self.copies[cluster] = weights


def test_a_retreat_moves_route53_without_the_copy_that_does_not_answer() -> None:
    back = Weights(even=0, odd=100)
    route53 = _Route53Pair(Weights(even=50, odd=50))
    gone = ClusterError("cannot update the VirtualService in cluster even: timed out")
    reconciler = _Copies(route53, {"even": gone})
    spec = canonical_spec()
    pending = asyncio.run(reconciler.retreat(spec, "releases", "u1", back))
    assert route53.weights == back and route53.writes == 1  # DNS first, without even
    assert reconciler.copies == {"odd": back}
    assert pending == (("even", str(gone)),)
    assert reconciler.rt.applied.get("u1") is None  # not done while a copy is pending
    reconciler.failing.clear()  # even answers again: only its copy is written
    assert asyncio.run(reconciler.retreat(spec, "releases", "u1", back)) == ()
    assert route53.writes == 1 and reconciler.copies == {"odd": back, "even": back}
    assert reconciler.rt.applied["u1"] == back


def test_a_retreat_raises_what_it_cannot_classify() -> None:
    """A bug is not a cluster that does not answer: it is not parked as a pending copy."""
    reconciler = _Copies(_Route53Pair(Weights(even=50, odd=50)), {"odd": KeyError("bug")})
    with pytest.raises(KeyError):
        asyncio.run(reconciler.retreat(canonical_spec(), "releases", "u1", Weights(odd=100)))
    assert "u1" not in reconciler.rt.partial
