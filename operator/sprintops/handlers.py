"""Thin kopf glue: one daemon per SprintRelease runs the reconcile loop.

kopf keeps no state of ours: its daemons store nothing, and everything the rollout knows is
in `.status`, so a restarted operator resumes exactly where the last one stopped.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, cast

import kopf

from sprintops import api, endpoints, kopf_scale, metrics
from sprintops.api import TERMINAL_PHASES
from sprintops.clusters import KubeconfigSecrets
from sprintops.config import Config
from sprintops.freeze import FreezeWatch
from sprintops.kube import mgmt_client
from sprintops.plan import Emit
from sprintops.reconcile import EXPLAINED_ERRORS, Reconciler, Runtime
from sprintops.traffic.route53 import Route53Pairs
from sprintops.webhooks import Notifier

log = logging.getLogger("sprintops")
ERROR_BACKOFF = 5.0
ERROR_BACKOFF_MAX = 300.0


@dataclass(frozen=True)
class Entry:
    """A release as the in-flight index keeps it."""

    created: str
    key: str
    phase: str | None


class NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf would keep the whole last spec in an annotation for change detection, which a
    large pod template pushes past the 256 KB limit. Nothing here diffs specs: the deletion
    handler is the only changing handler."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
async def startup(*, settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    config: Config = memo.config
    # Events are posted explicitly by the plan; kopf's log-to-event bridge would duplicate them.
    settings.posting.level = logging.CRITICAL
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.server_timeout = 300
    kopf_scale.install()
    settings.networking.request_timeout = 30
    # With several replicas, how soon a dead leader's peering record stops counting.
    settings.peering.lifetime = config.peering_lifetime
    # Blocking clients run in threads; the default pool (cores + 4) is too small for a fleet.
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(config.workers))
    mgmt = mgmt_client()
    loop = asyncio.get_running_loop()

    def wake_all() -> None:  # on the loop: every release looks again
        for event in list(memo.setdefault("wakes", {}).values()):
            event.set()

    # Told from the watch's thread.
    memo.freeze = FreezeWatch(mgmt, config.namespace, lambda: loop.call_soon_threadsafe(wake_all))
    memo.freeze.start()
    memo.runtime = Runtime(
        mgmt=mgmt,
        route53=Route53Pairs(
            max_rate=config.route53_max_rate,
            burst=config.route53_burst,
            write_spacing=config.route53_write_spacing,
            read_spacing=config.route53_read_spacing,
        ),
        secrets=KubeconfigSecrets(mgmt),
        prometheus_url=config.prometheus_url,
        min_query_range=config.min_query_range,
        notifier=Notifier(endpoints.load(config.endpoints_file)),
        frozen=lambda: memo.freeze.state,
    )
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    log.info(
        "sprintops started namespaces=%s metrics_port=%s gates=%s receivers=%s",
        ",".join(config.namespaces) or "*",
        config.metrics_port,
        ",".join(memo.runtime.notifier.endpoints.gates) or "-",
        ",".join(memo.runtime.notifier.endpoints.receivers) or "-",
    )


@kopf.on.cleanup()
async def cleanup(*, memo: Any, **_: Any) -> None:
    if memo.get("freeze") is not None:
        memo.freeze.stop()
    if memo.get("runtime") is not None:
        await memo.runtime.notifier.close()


def traffic_keys(spec: Any) -> list[tuple[str, ...]]:
    """What one release at a time may drive: its service, its Route 53 record and each
    VirtualService route it steps (a copy-pasted record is caught whatever the service)."""
    service = spec.get("service", {})
    traffic = spec.get("traffic", {})
    r53 = traffic.get("route53", {})
    zone = r53.get("hostedZone", {})
    istio = traffic.get("istio", {})
    vs = istio.get("virtualService", {})
    record = (r53.get("recordName") or "").lower().rstrip(".")
    # A zone named by id and the same zone named by name are not matched: that needs an API
    # call, and the record name alone would also match other zones' records.
    zone_key = (zone.get("id") or "").removeprefix("/hostedzone/") or (
        zone.get("name") or ""
    ).lower().rstrip(".")
    keys: list[tuple[str, ...]] = [
        ("service", service.get("namespace", ""), service.get("name", "")),
        ("record", zone_key, record, r53.get("recordType", "CNAME")),
    ]
    for cluster in istio.get("clusters", ["even", "odd"]):
        keys.append(
            ("route", cluster, vs.get("namespace", ""), vs.get("name", ""), istio.get("route", ""))
        )
    return keys


@kopf.index(api.GROUP, api.VERSION, api.PLURAL)
def releases_by_target(
    *,
    name: str,
    namespace: str | None,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    **_: Any,
) -> dict[tuple[str, ...], Entry]:
    entry = Entry(str(meta.get("creationTimestamp")), f"{namespace}/{name}", status.get("phase"))
    return {key: entry for key in traffic_keys(spec)}


def _others(
    index: kopf.Index[tuple[str, ...], Entry], body: kopf.Body
) -> tuple[Entry, list[Entry]]:
    mine = Entry(
        str(body.metadata.get("creationTimestamp")),
        f"{body.metadata.namespace}/{body.metadata.name}",
        None,
    )
    seen = {
        e.key: e
        for key in traffic_keys(body.get("spec", {}))
        for e in index.get(key, [])
        if e.key != mine.key
    }
    return mine, list(seen.values())


def competitor(index: kopf.Index[tuple[str, ...], Entry], body: kopf.Body) -> str | None:
    """Who holds the service or a traffic target this release needs: any release that has
    started (whatever its age: an older release retried must wait for a newer one in
    flight), else the oldest earlier one still waiting."""
    mine, others = _others(index, body)
    waiting = (None, "Pending")
    started = [e for e in others if e.phase not in TERMINAL_PHASES and e.phase not in waiting]
    earlier = [
        e for e in others if e.phase in waiting and (e.created, e.key) < (mine.created, mine.key)
    ]
    holders = started or earlier
    return min(holders, key=lambda e: (e.created, e.key)).key if holders else None


def successor(index: kopf.Index[tuple[str, ...], Entry], body: kopf.Body) -> str | None:
    """Another release of the same service or traffic target that is newer or still in
    flight: it may own the idle cluster now."""
    mine, others = _others(index, body)
    later = [
        e
        for e in others
        if (e.created, e.key) > (mine.created, mine.key) or e.phase not in TERMINAL_PHASES
    ]
    return min(later, key=lambda e: (e.created, e.key)).key if later else None


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def wake(*, body: kopf.Body, memo: Any, type: str | None, **_: Any) -> None:
    """Any change by someone else (spec, annotations) gets that release a look right away.

    An event handler, not create/update ones: those make kopf store the whole last spec in
    an annotation, which a large pod template would push past the 256 KB limit. Async, so
    the daemon's asyncio.Event is set from the event loop, never from a thread."""
    runtime: Runtime | None = memo.get("runtime")
    if type == "DELETED":
        metrics.forget(body.metadata.namespace or "", body.metadata.name or "")
        if runtime is not None:
            runtime.gone(body.metadata.uid or "")
        memo.get("wakes", {}).pop(body.metadata.uid, None)
        return
    if runtime is not None and runtime.last_written.get(body.metadata.uid) == body.metadata.get(
        "resourceVersion"
    ):
        return  # our own status write
    event: asyncio.Event | None = memo.get("wakes", {}).get(body.metadata.uid)
    if event is not None:
        event.set()


def post_event(obj: dict[str, Any], emit: Emit) -> None:
    kopf.event(
        kopf.Body(cast(kopf.RawBody, obj)), type=emit.type, reason=emit.reason, message=emit.message
    )


def needs_daemon(body: kopf.Body, **_: Any) -> bool:
    """Finished releases with nothing left to do get no daemon: a fleet of them costs
    nothing. A spec edit (generation ahead of status) or a pending scale-down revives one."""
    status = body.get("status") or {}
    if status.get("phase") not in TERMINAL_PHASES or status.get("outbox"):
        return True
    if (body.metadata.get("generation") or 0) > (status.get("observedGeneration") or 0):
        return True
    return (
        status.get("phase") == "Succeeded"
        and not status.get("scaledDownAt")
        and not status.get("scaleDownSkipped")
    )


# Without a backoff kopf cancels a daemon the moment it sees the final status, which can
# land between our status write and the Event that follows it. With one, it sets `stopped`
# and lets the reconcile in flight finish. Short: a deletion waits for it before the
# finalizer goes.
@kopf.daemon(
    api.GROUP,
    api.VERSION,
    api.PLURAL,
    cancellation_backoff=2,
    cancellation_timeout=5,
    when=needs_daemon,
)
async def rollout(
    *,
    name: str,
    namespace: str | None,
    body: kopf.Body,
    memo: Any,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    index: kopf.Index[tuple[str, ...], Entry] = kwargs["releases_by_target"]
    uid = body.metadata.uid or ""
    # One per release: a shared one was cleared by whichever daemon looped first.
    wake_event: asyncio.Event = memo.setdefault("wakes", {}).setdefault(uid, asyncio.Event())
    runtime: Runtime = memo.runtime
    reconciler = Reconciler(runtime, post_event)
    failures = 0
    while not stopped and uid not in runtime.deleting:
        wake_event.clear()
        try:
            async with runtime.lock(uid):
                if uid in runtime.deleting:
                    break
                with metrics.RECONCILE_SECONDS.time():
                    wait = await reconciler.once(
                        namespace or "", name, competitor(index, body), successor(index, body)
                    )
            failures = 0
        except Exception as exc:
            # Nothing ends in a silent loop: the error reaches status and an Event, redacted,
            # and the retries back off.
            failures += 1
            wait = min(ERROR_BACKOFF * 2 ** (failures - 1), ERROR_BACKOFF_MAX)
            if isinstance(exc, EXPLAINED_ERRORS):  # status and the Event say it all
                log.warning(
                    "reconcile failed release=%s/%s; retrying in %ss", namespace, name, wait
                )
            else:
                log.exception(
                    "reconcile failed release=%s/%s; retrying in %ss", namespace, name, wait
                )
            await reconciler.report(namespace or "", name, exc)
        if wait == 0:
            continue
        # Sleep until the plan's time, a change to the object, or the operator stopping.
        waiters = [asyncio.ensure_future(wake_event.wait()), asyncio.ensure_future(stopped.wait())]
        try:
            await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


def traffic_may_have_moved(body: kopf.Body, **_: Any) -> bool:
    """Only these releases need the deletion handler, and so a finalizer for it: a fleet of
    finished releases is never patched for a finalizer at start-up."""
    return (body.get("status") or {}).get("phase") in ("Progressing", "Paused", "RollingBack")


@kopf.on.delete(api.GROUP, api.VERSION, api.PLURAL, backoff=5, when=traffic_may_have_moved)
async def revert_on_delete(
    *, body: kopf.Body, memo: Any, namespace: str | None, name: str, **_: Any
) -> None:
    """Deleting a release whose traffic moved rolls it back first (a Git revert that Argo CD
    prunes is a rollback); the finalizer holds the object until Route 53 and every copy
    that answers carry all traffic on the previous cluster. A finished release is let go."""
    runtime: Runtime = memo.runtime
    uid = body.metadata.uid or ""
    async with runtime.lock(uid):
        runtime.deleting.add(uid)  # the daemon takes no further step
        # Read again under the lock: a reconcile that held it may have moved traffic since
        # kopf's copy of the object was taken.
        reconciler = Reconciler(runtime, post_event)
        fresh = await asyncio.to_thread(reconciler.get, namespace or "", name)
        await reconciler.revert(fresh if fresh is not None else dict(body))
    runtime.forget(uid)
