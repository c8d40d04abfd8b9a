"""One reconcile of one SprintRelease: observe, plan, write status (compare-and-set), act.

The adapters are blocking clients; each call runs in a worker thread so the event loop
never waits on the network.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, assert_never

from botocore.exceptions import BotoCoreError, ClientError
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from sprintops import api, clearance, controls, metrics, notifications
from sprintops.api import Cluster, Controls, SprintReleaseSpec, SprintReleaseStatus, Weights
from sprintops.clearance import GateAnswer
from sprintops.clusters import (
    ClusterError,
    KubeconfigSecrets,
    SameClusterError,
    Workload,
    translated,
)
from sprintops.durations import parse_timestamp, seconds, timestamp
from sprintops.endpoints import Endpoints
from sprintops.health.prometheus import (
    Source,
    Waiting,
    observe_traffic,
    run_checks,
    run_comparison,
)
from sprintops.kube import merge_patch, object_path
from sprintops.plan import (
    Action,
    Deploy,
    Emit,
    Observations,
    Plan,
    ScaleDown,
    SetWeights,
    TargetDeployment,
    checks_due,
    plan,
    rollout_hash,
    route53_readback_due,
    route53_readback_key,
)
from sprintops.traffic.istio import IstioError, VirtualServices
from sprintops.traffic.route53 import (
    INSYNC_TIMEOUT,
    PERMANENT_CODES,
    Route53Pairs,
    WeightError,
    ZoneNotFound,
    error_code,
)
from sprintops.webhooks import Delivery, Notifier, ask

log = logging.getLogger("sprintops.rollout")

# Failures of the outside world that hold a release (and say why) instead of crashing it.
HOLDING_ERRORS = (
    ClusterError,
    IstioError,
    WeightError,
    BotoCoreError,
    ClientError,
    ApiException,
    TimeoutError,
)
# Failures no retry can fix: the spec names something that does not exist.
PERMANENT_ERRORS = (ZoneNotFound, SameClusterError)
# What `describe` can explain in full; anything else is a bug worth a traceback in the log.
EXPLAINED_ERRORS = (ValidationError, *HOLDING_ERRORS, *PERMANENT_ERRORS)
EmitFn = Callable[[dict[str, Any], Emit], None]
# While notices wait in the outbox, how soon the release looks again to empty it.
OUTBOX_POLL = 2.0


@dataclass
class Runtime:
    """What one operator process shares between releases. Nothing here is the truth:
    `applied` only spares a re-assert of weights this process already confirmed."""

    mgmt: client.ApiClient
    route53: Route53Pairs
    secrets: KubeconfigSecrets
    prometheus_url: str
    min_query_range: float = 10.0
    notifier: Notifier = field(default_factory=lambda: Notifier(Endpoints()))
    # Why a global freeze holds every increase, as last seen; None: no freeze.
    frozen: Callable[[], str | None] = lambda: None
    applied: dict[str, Weights] = field(default_factory=dict)
    action_errors: dict[str, str] = field(default_factory=dict)
    fatal_errors: dict[str, str] = field(default_factory=dict)
    last_written: dict[str, str] = field(default_factory=dict)
    # uid -> the step (its start time) whose Route 53 weights were read back after its bake.
    route53_verified: dict[str, str] = field(default_factory=dict)
    # uid -> a retreat that Route 53 took but some VirtualService copies did not: the
    # weights, and each pending copy with why.
    partial: dict[str, tuple[Weights, tuple[tuple[Cluster, str], ...]]] = field(
        default_factory=dict
    )

    # uid -> the latest decision to move its traffic. A write made for an older decision is
    # skipped: a cancelled reconcile's thread (threads cannot be cancelled) must not put a
    # stale weight on top of a newer rollback.
    decisions: dict[str, int] = field(default_factory=dict)
    # Releases being deleted: their daemon stops, the deletion handler reverts the traffic.
    deleting: set[str] = field(default_factory=set)
    # One reconcile or revert of a release at a time, within this process.
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def decide(self, uid: str) -> int:
        self.decisions[uid] = self.decisions.get(uid, 0) + 1
        return self.decisions[uid]

    def superseded(self, uid: str, decision: int) -> bool:
        return self.decisions.get(uid) != decision

    def lock(self, uid: str) -> asyncio.Lock:
        return self.locks.setdefault(uid, asyncio.Lock())

    def gone(self, uid: str) -> None:
        """The object no longer exists."""
        self.forget(uid)
        self.notifier.gone(uid)
        self.deleting.discard(uid)
        self.locks.pop(uid, None)

    def forget(self, uid: str) -> None:
        """A release that ended or went away leaves nothing behind in this process."""
        for memory in (
            self.applied,
            self.action_errors,
            self.fatal_errors,
            self.last_written,
            self.route53_verified,
            self.partial,
            self.decisions,
        ):
            memory.pop(uid, None)


def _waiting(spec: SprintReleaseSpec, status: SprintReleaseStatus) -> Waiting | None:
    """The step's wait for its traffic, if it is still on."""
    if status.bake_started_at is not None or status.step_started_at is None:
        return None
    since = parse_timestamp(status.step_started_at).timestamp()
    return Waiting(since, status.target_weight or 0, spec.analysis.traffic_tolerance)


def _drifted(where: str, found: Weights | None, want: Weights) -> str:
    had = f"even={found.even} odd={found.odd}" if found else "an incomplete pair"
    return f"drift: {where} had {had}, not the step's even={want.even} odd={want.odd}"


def describe(exc: BaseException) -> str:
    """A short, safe message: never a kubeconfig, a credential or a request body."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code, message = err.get("Code", "?"), err.get("Message", "")
        return f"Route 53 {exc.operation_name}: {code}: {message}".strip()
    if isinstance(exc, BotoCoreError):
        return f"Route 53 unreachable ({type(exc).__name__})"
    if isinstance(exc, ApiException):
        return f"Kubernetes API: HTTP {exc.status} {exc.reason}"
    if isinstance(exc, ValidationError):
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:3])
        count = exc.error_count()
        return f"stored object does not match the API ({count} error{'s' * (count > 1)} at {where})"
    if isinstance(exc, EXPLAINED_ERRORS):
        return str(exc)
    # Anything else may carry a request or a credential in its text: the type only.
    return f"internal error ({type(exc).__name__}); the operator log has the traceback"


class Reconciler:
    def __init__(self, rt: Runtime, emit: EmitFn) -> None:
        self.rt = rt
        self.emit = emit
        self.custom = client.CustomObjectsApi(rt.mgmt)

    async def once(
        self, namespace: str, name: str, competitor: str | None, successor: str | None = None
    ) -> float | None:
        """Returns seconds until the release wants another look (None: nothing pending)."""
        obj = await asyncio.to_thread(self.get, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            # Deletion bumps the generation: read as an edit, a finished release would retry.
            # The deletion handler owns what happens now.
            return None
        uid: str = obj["metadata"]["uid"]
        spec = SprintReleaseSpec.model_validate(obj["spec"])
        stored = obj.get("status") or {}
        status = SprintReleaseStatus.model_validate(stored)
        obs = await self._observe(obj, spec, status, competitor, successor)
        with metrics.PLAN_SECONDS.time():
            result = plan(spec, status, obs)
        result, events = self._outbox(obj, spec, status, result, timestamp(obs.now))
        if result.status != status:
            written = await asyncio.to_thread(self._write_status, obj, result.status, stored)
            if written is None:
                return 0  # someone else changed it since we read it: look again
            obj = written
            # Counted once the write landed: a conflict must not count a rollback twice.
            metrics.record((namespace, name), status, result.status)
        # Notices out of the outbox for good: only now may this process forget them.
        left = {n.key for n in status.outbox} - {n.key for n in result.status.outbox}
        self.rt.notifier.forget(uid, left)
        if result.status != status or result.actions:
            self._log(obj, spec, result)
        self._deliver(obj, spec, result.status)
        for event in events:
            self.emit(obj, event)
        for action in result.actions:
            try:
                await self._act(obj, spec, result.status, action)
            except (*HOLDING_ERRORS, *PERMANENT_ERRORS) as exc:
                permanent = isinstance(exc, PERMANENT_ERRORS) or error_code(exc) in PERMANENT_CODES
                (self.rt.fatal_errors if permanent else self.rt.action_errors)[uid] = describe(exc)
                log.warning(
                    "action failed release=%s/%s action=%s error=%s",
                    namespace,
                    name,
                    type(action).__name__,
                    describe(exc),
                )
                return 0
        if result.status.outbox:  # looked at again to empty it, never later than the plan
            wait = result.requeue_after
            return OUTBOX_POLL if wait is None else min(wait, OUTBOX_POLL)
        if result.requeue_after is None:
            self.rt.forget(uid)
        return result.requeue_after

    # --- notifying
    def _outbox(
        self,
        obj: dict[str, Any],
        spec: SprintReleaseSpec,
        before: SprintReleaseStatus,
        result: Plan,
        now: str,
    ) -> tuple[Plan, list[Emit]]:
        """The round's notices join the outbox in the same write as the transition; notices
        every receiver took (or gave up on) leave it, the give-ups recorded."""
        uid = obj["metadata"]["uid"]
        done = self.rt.notifier.done.get(uid, {})
        outbox = [n for n in result.status.outbox if n.key not in done]
        failed = [why for n in result.status.outbox for why in done.get(n.key, [])]
        new = notifications.notices(uid, before, result, now)
        # Only what someone will hear: a notice with nowhere to go costs a status write.
        outbox += [n for n in new if self._deliveries(spec, n.event)]
        _, unknown = self.rt.notifier.endpoints.receivers_for(spec.notifications.receivers)
        for name in unknown if new else ():
            why = f"receiver {name!r} is not defined in the operator's configuration"
            if why not in result.status.notification_errors:
                failed.append(why)
        outbox = outbox[-notifications.OUTBOX :]
        if outbox == result.status.outbox and not failed:
            return result, []
        errors = [*result.status.notification_errors, *failed][-10:]
        status = result.status.model_copy(update={"outbox": outbox, "notification_errors": errors})
        events = [Emit("Warning", "NotificationFailed", why) for why in failed]
        return replace(result, status=status), events

    def _deliveries(self, spec: SprintReleaseSpec, event: str) -> list[tuple[str, Any, bool]]:
        """Where a notice of `event` goes: the receivers, and post-rollout gates (they
        inform) after a success."""
        endpoints = self.rt.notifier.endpoints
        chosen, _ = endpoints.receivers_for(spec.notifications.receivers)
        out: list[tuple[str, Any, bool]] = [
            (n, endpoints.receivers[n], endpoints.receivers[n].type == "slack") for n in chosen
        ]
        if event == "release.succeeded":
            for gate in spec.gates:
                target = endpoints.gates.get(gate.webhook or "")
                if gate.type == "post-rollout" and target is not None:
                    out.append((f"gate {gate.name}", target, False))
        return out

    def _deliver(
        self, obj: dict[str, Any], spec: SprintReleaseSpec, status: SprintReleaseStatus
    ) -> None:
        uid = obj["metadata"]["uid"]
        for notice in status.outbox:
            if self.rt.notifier.submitted(uid, notice.key):
                continue  # delivering, or delivered: nothing to build again every round
            body = notifications.payload(notice, obj["metadata"], spec, status)
            deliveries = [
                Delivery(name, endpoint, body, slack)
                for name, endpoint, slack in self._deliveries(spec, notice.event)
            ]
            self.rt.notifier.submit(uid, notice.key, deliveries)

    async def report(self, namespace: str, name: str, exc: BaseException) -> None:
        """An error the plan could not take: its redacted text goes to status.message and a
        Warning Event, once per distinct error."""
        why = describe(exc)
        try:
            obj = await asyncio.to_thread(self.get, namespace, name)
            if obj is None or (obj.get("status") or {}).get("message") == why:
                return
            meta = obj["metadata"]
            path = object_path(f"{api.GROUP}/{api.VERSION}", api.KIND, namespace, name)
            await asyncio.to_thread(
                merge_patch, self.rt.mgmt, path + "/status", {"status": {"message": why}}
            )
            self.emit(obj, Emit("Warning", "ReconcileError", why))
            log.warning("release=%s/%s uid=%s error=%s", namespace, name, meta["uid"], why)
        except Exception:  # reporting must never be what breaks the loop
            log.exception("cannot report the error of release=%s/%s", namespace, name)

    async def revert(self, obj: dict[str, Any]) -> None:
        """For a deletion: traffic that moved goes back to the previous cluster (Route 53,
        then every copy that answers) before the object may go. Finished releases and
        releases whose traffic never moved are left as they are."""
        stored = obj.get("status") or {}
        if stored.get("phase") not in ("Progressing", "Paused", "RollingBack"):
            return
        status = SprintReleaseStatus.model_validate(stored)
        if status.weights is None or status.target_cluster is None:
            return
        spec = SprintReleaseSpec.model_validate(obj["spec"])
        meta = obj["metadata"]
        previous = status.previous_cluster or api.other(status.target_cluster)
        weights = Weights.split(previous, 100)
        self.emit(
            obj,
            Emit(
                "Warning",
                "RollingBackOnDelete",
                f"deleted at step {status.step} ({status.phase}): moving all traffic back to "
                f"{previous} before the release goes",
            ),
        )
        pending = await self.retreat(spec, meta["namespace"], meta["uid"], weights)
        if pending:
            left = "; ".join(f"VirtualService in {c}: {why}" for c, why in pending)
            why = f"Route 53 carries all traffic on {previous}; not reverted: {left}"
            self.emit(obj, Emit("Warning", "RolledBackOnDelete", why))
        else:
            why = f"all traffic back on {previous} in Route 53 and every VirtualService copy"
            self.emit(obj, Emit("Normal", "RolledBackOnDelete", why))
        log.info("release=%s/%s deleted in flight: %s", meta["namespace"], meta["name"], why)

    # --- observing
    async def _observe(
        self,
        obj: dict[str, Any],
        spec: SprintReleaseSpec,
        status: SprintReleaseStatus,
        competitor: str | None,
        successor: str | None,
    ) -> Observations:
        uid = obj["metadata"]["uid"]
        now = dt.datetime.now(dt.UTC)
        partial = self.rt.partial.get(uid)
        obs = Observations(
            now=now,
            generation=obj["metadata"].get("generation", 1),
            applied=self.rt.applied.get(uid),
            # An action error is reported once; the next plan retries the action.
            blocker=self.rt.action_errors.pop(uid, None),
            fatal=self.rt.fatal_errors.pop(uid, None),
            pending=partial[1] if partial and partial[0] == status.weights else (),
            requests=requests_of(obj),
            frozen=self.rt.frozen(),
        )
        namespace = obj["metadata"]["namespace"]
        if _abort_pending(obs.requests, status):
            # Nothing to read before a rollback: the new cluster may be what is broken.
            return obs
        # Gates are asked beside the round's reads: a slow one delays the round by its
        # timeout at most (30 s, endpoints.TIMEOUT_RANGE).
        asking = asyncio.ensure_future(self._ask_gates(obj, spec, status))
        try:
            if status.phase in (None, "Pending"):
                live = await self.rt.route53.read_async(spec.traffic.route53)
                obs = replace(obs, competitor=competitor, live=live)
            elif status.phase == "Deploying" and status.target_cluster:
                workload = await self._workload(spec, namespace, status.target_cluster)
                target = await asyncio.to_thread(workload.observe, spec.service)
                obs = replace(obs, target=target)
            elif status.target_cluster and checks_due(spec, status, now):
                obs = await self._check_round(obs, spec, namespace, status)
            elif status.phase == "Succeeded" and _due(status.scale_down_at, now):
                obs = await self._before_scale_down(obs, spec, namespace, status)
                obs = replace(obs, successor=successor)
            if not obs.drift and route53_readback_due(
                spec, status, now, self.rt.route53_verified.get(uid)
            ):
                drift = await self._route53_drift(spec, status, uid)
                obs = replace(obs, drift=drift)
        except PERMANENT_ERRORS as exc:
            obs = replace(obs, fatal=describe(exc))
        except HOLDING_ERRORS as exc:
            obs = replace(obs, blocker=describe(exc))
        return replace(obs, gate_answers=await asking)

    async def _ask_gates(
        self, obj: dict[str, Any], spec: SprintReleaseSpec, status: SprintReleaseStatus
    ) -> tuple[GateAnswer, ...]:
        """The answers of the webhook gates a gate hold waits for (none otherwise)."""
        gates = clearance.to_ask(spec, status)
        if not gates or status.hold is None:
            return ()
        step, meta = status.hold.step, obj["metadata"]
        answers = await asyncio.gather(
            *(
                ask(
                    self.rt.notifier.session,
                    self.rt.notifier.endpoints,
                    gate.name,
                    gate.webhook or "",
                    notifications.gate_request(gate, step, meta, spec, status),
                )
                for gate in gates
            )
        )
        return tuple(answers)

    async def _check_round(
        self,
        obs: Observations,
        spec: SprintReleaseSpec,
        namespace: str,
        status: SprintReleaseStatus,
    ) -> Observations:
        """The VirtualService copies, the new Deployment and the checks, read side by side:
        a cluster that does not answer holds the release, but never hides what Prometheus
        says about it (failing checks still roll back)."""
        target = status.target_cluster or "even"

        async def observe_target() -> TargetDeployment | None:
            workload = await self._workload(spec, namespace, target)
            return await asyncio.to_thread(workload.observe, spec.service)

        # The comparison looks at the step so far, the old cluster over the same time.
        since = parse_timestamp(status.step_started_at or timestamp(obs.now)).timestamp()
        previous = status.previous_cluster or api.other(target)
        try:
            sources = await asyncio.to_thread(self._sources, spec, namespace, (target, previous))
        except HOLDING_ERRORS as exc:
            return replace(obs, blocker=describe(exc))
        drift, seen, checks, compared, traffic = await asyncio.gather(
            asyncio.to_thread(self._drift, spec, namespace, status),
            observe_target(),
            asyncio.to_thread(run_checks, sources[0], spec, self._query_range(spec)),
            asyncio.to_thread(
                run_comparison,
                sources,
                spec,
                self._query_range(spec),
                (since, obs.now.timestamp()),
            ),
            asyncio.to_thread(
                observe_traffic,
                sources,
                spec,
                self._query_range(spec),
                _waiting(spec, status),
                obs.now.timestamp(),
            ),
            return_exceptions=True,
        )
        if isinstance(checks, BaseException):
            raise checks
        if isinstance(compared, BaseException):
            raise compared
        if isinstance(traffic, BaseException):
            raise traffic
        blockers = []
        for found in (drift, seen):
            if isinstance(found, HOLDING_ERRORS):
                blockers.append(describe(found))
            elif isinstance(found, BaseException):
                raise found
        return replace(
            obs,
            checks=(*checks, *compared),
            traffic=traffic,
            target=None if isinstance(seen, BaseException) else seen,
            target_error=describe(seen) if isinstance(seen, BaseException) else None,
            drift=drift if isinstance(drift, str) else None,
            blocker="; ".join(blockers) if blockers else obs.blocker,
        )

    async def _before_scale_down(
        self,
        obs: Observations,
        spec: SprintReleaseSpec,
        namespace: str,
        status: SprintReleaseStatus,
    ) -> Observations:
        """The previous cluster's Deployment and every way traffic can still reach it."""
        previous = status.previous_cluster or api.other(status.target_cluster or "even")
        workload = await self._workload(spec, namespace, previous)
        seen = await asyncio.to_thread(workload.observe, spec.service)
        obs = replace(obs, previous=seen, scaled_down=seen is None or seen.replicas == 0)
        if obs.scaled_down:
            return obs
        pair = await self.rt.route53.read_async(spec.traffic.route53)
        copies = await asyncio.to_thread(self._copies, spec, namespace)
        weights = [w.of(previous) for w in (pair, *copies) if w is not None]
        return replace(obs, previous_traffic=max(weights) if pair is not None else None)

    def _copies(self, spec: SprintReleaseSpec, namespace: str) -> list[Weights]:
        istio, out = spec.traffic.istio, []
        for cluster in istio.clusters:
            vs = VirtualServices(self.rt.secrets.for_cluster(spec, namespace, cluster), cluster)
            with translated(f"cannot read the VirtualService in cluster {cluster}"):
                out.append(vs.check(istio))
        return out

    def _drift(
        self, spec: SprintReleaseSpec, namespace: str, status: SprintReleaseStatus
    ) -> str | None:
        """Every VirtualService copy must still carry the step's weights (cheap reads,
        once per check round)."""
        copies = self._copies(spec, namespace)
        for cluster, found in zip(spec.traffic.istio.clusters, copies, strict=True):
            if status.weights is not None and found != status.weights:
                return _drifted(f"VirtualService in {cluster}", found, status.weights)
        return None

    async def _route53_drift(
        self, spec: SprintReleaseSpec, status: SprintReleaseStatus, uid: str
    ) -> str | None:
        want, started = status.weights, status.step_started_at
        if want is None or started is None:  # not in a step: nothing to compare with
            return None
        live = await self.rt.route53.read_async(spec.traffic.route53)
        if live != want:
            return _drifted("Route 53", live, want)
        self.rt.route53_verified[uid] = route53_readback_key(status) or started
        return None

    def _sources(
        self, spec: SprintReleaseSpec, namespace: str, clusters: tuple[Cluster, Cluster]
    ) -> tuple[Source, Source]:
        """Each cluster's metrics: its own Prometheus, else the release's, else the
        operator's; under its mesh name, else its key."""

        def source(cluster: Cluster) -> Source:
            ref = getattr(spec.clusters, cluster)
            prometheus = ref.prometheus or spec.analysis.prometheus
            if prometheus is None:
                return Source(cluster, self.rt.prometheus_url, ref.mesh_cluster or cluster)
            secret = prometheus.bearer_token_secret_ref
            token = self.rt.secrets.token(namespace, secret) if secret is not None else None
            return Source(cluster, prometheus.address, ref.mesh_cluster or cluster, token)

        return source(clusters[0]), source(clusters[1])

    def _query_range(self, spec: SprintReleaseSpec) -> str:
        """The rate() window: the check interval, but never shorter than a few scrapes,
        or a short interval would see too few samples to compute a rate."""
        interval = seconds(spec.analysis.interval)
        return f"{max(interval, self.rt.min_query_range):g}s"

    async def _workload(self, spec: SprintReleaseSpec, namespace: str, cluster: str) -> Workload:
        apiclient = await asyncio.to_thread(self.rt.secrets.for_cluster, spec, namespace, cluster)
        return Workload(apiclient, cluster)

    # --- acting
    async def _act(
        self,
        obj: dict[str, Any],
        spec: SprintReleaseSpec,
        status: SprintReleaseStatus,
        action: Action,
    ) -> None:
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        uid = obj["metadata"]["uid"]
        match action:
            case Emit():
                self.emit(obj, action)
            case Deploy(cluster=cluster):
                await asyncio.to_thread(self._distinct_clusters, spec, namespace)
                workload = await self._workload(spec, namespace, cluster)
                await asyncio.to_thread(
                    workload.deploy, spec.service, spec.sprint, name, rollout_hash(spec)
                )
            case SetWeights(weights=weights, retreat=True):
                await self.retreat(spec, namespace, uid, weights)
            case SetWeights(weights=weights):
                # A rise may write Route 53: a pending retreat must write it again.
                self.rt.partial.pop(uid, None)
                if await self._set_weights(spec, namespace, uid, weights):
                    self.rt.applied[uid] = weights
            case ScaleDown(cluster=cluster, sprint=sprint):
                workload = await self._workload(spec, namespace, cluster)
                await asyncio.to_thread(workload.scale_to_zero, spec.service, sprint)
            case _:
                assert_never(action)

    def _distinct_clusters(self, spec: SprintReleaseSpec, namespace: str) -> None:
        """Two Secrets that reach one cluster would make a release deploy over live traffic:
        nothing is written until they are known to be two clusters."""
        uids = {c: self.rt.secrets.cluster_uid(spec, namespace, c) for c in api.CLUSTERS}
        if uids["even"] == uids["odd"]:
            refs = spec.clusters
            raise SameClusterError(
                f"Secrets {refs.even.kubeconfig_secret_ref.name} (even) and "
                f"{refs.odd.kubeconfig_secret_ref.name} (odd) reach the same cluster "
                f"(kube-system uid {uids['even']}); refusing to deploy over the live one"
            )

    async def _set_weights(
        self, spec: SprintReleaseSpec, namespace: str, uid: str, weights: Weights
    ) -> bool:
        """More traffic to the new cluster: Route 53 (one batch, then INSYNC) and every
        VirtualService copy. Every copy is checked first, so a bad VirtualService leaves
        Route 53 untouched. Returns False if a newer decision overtook it."""
        decision = self.rt.decide(uid)
        await asyncio.to_thread(self._copies, spec, namespace)
        if self.rt.superseded(uid, decision):
            return False
        written = await self.rt.route53.write_async(spec.traffic.route53, weights)
        await self.insync(written)
        for cluster in spec.traffic.istio.clusters:
            await asyncio.to_thread(
                self._set_copy, spec, namespace, cluster, weights, (uid, decision)
            )
        return not self.rt.superseded(uid, decision)

    async def insync(self, change_id: str, poll: float = 1.0) -> None:
        """Waits for INSYNC in the event loop: a propagation that takes minutes holds no
        worker thread, so other releases' reads and status writes do not queue behind it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + INSYNC_TIMEOUT
        while not await asyncio.to_thread(self.rt.route53.insync, change_id, poll):
            if loop.time() > deadline:
                raise TimeoutError(
                    f"Route 53 change {change_id} not INSYNC after {INSYNC_TIMEOUT:.0f}s"
                )
            await asyncio.sleep(poll)

    async def retreat(
        self, spec: SprintReleaseSpec, namespace: str, uid: str, weights: Weights
    ) -> tuple[tuple[Cluster, str], ...]:
        """Traffic back to the previous cluster without needing the new one: Route 53 first
        (DNS is what moves clients), then every copy side by side. A copy that does not
        answer is remembered as pending and retried alone; returns the pending copies."""
        decision = self.rt.decide(uid)
        partial = self.rt.partial.get(uid)
        if partial is not None and partial[0] == weights:
            todo = [c for c, _ in partial[1]]
        else:
            # Read first: weights already back need no write (and a Route 53 that refuses
            # every write must not hold a rollback that has nothing left to do).
            current = await asyncio.to_thread(self.rt.route53.read_at_once, spec.traffic.route53)
            if current != weights:
                written = await self.rt.route53.write_async(spec.traffic.route53, weights)
                await self.insync(written)
            todo = list(spec.traffic.istio.clusters)
        results = await asyncio.gather(
            *(
                asyncio.to_thread(self._set_copy, spec, namespace, c, weights, (uid, decision))
                for c in todo
            ),
            return_exceptions=True,
        )
        pending: list[tuple[Cluster, str]] = []
        for cluster, result in zip(todo, results, strict=True):
            if isinstance(result, HOLDING_ERRORS):
                pending.append((cluster, describe(result)))
            elif isinstance(result, BaseException):
                raise result
        if pending:
            self.rt.partial[uid] = (weights, tuple(pending))
            left = "; ".join(f"{c}: {why}" for c, why in pending)
            log.warning("retreat pending uid=%s copies=%s", uid, left)
        else:
            self.rt.partial.pop(uid, None)
            self.rt.applied[uid] = weights
        return tuple(pending)

    def _set_copy(
        self,
        spec: SprintReleaseSpec,
        namespace: str,
        cluster: Cluster,
        weights: Weights,
        decided: tuple[str, int],
    ) -> None:
        if self.rt.superseded(*decided):
            return  # a newer decision moves this traffic now
        with translated(f"cannot update the VirtualService in cluster {cluster}"):
            api_client = self.rt.secrets.for_cluster(spec, namespace, cluster)
            VirtualServices(api_client, cluster).set(spec.traffic.istio, weights)

    # --- the mgmt cluster
    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name, _request_timeout=10
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def _write_status(
        self, obj: dict[str, Any], status: SprintReleaseStatus, stored: dict[str, Any]
    ) -> dict[str, Any] | None:
        meta = obj["metadata"]
        path = object_path(f"{api.GROUP}/{api.VERSION}", api.KIND, meta["namespace"], meta["name"])
        body = {
            "metadata": {"resourceVersion": meta["resourceVersion"]},
            "status": status.merge_patch(stored),
        }
        try:
            written = merge_patch(self.rt.mgmt, path + "/status", body)
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise
        self.rt.last_written[meta["uid"]] = written["metadata"]["resourceVersion"]
        return written

    def _log(self, obj: dict[str, Any], spec: SprintReleaseSpec, result: Plan) -> None:
        s = result.status
        w = s.weights
        actions = ",".join(type(a).__name__ for a in result.actions if not isinstance(a, Emit))
        events = ",".join(a.reason for a in result.actions if isinstance(a, Emit))
        log.info(
            "release=%s/%s sprint=%s phase=%s step=%s weights=even:%s,odd:%s actions=%s events=%s",
            obj["metadata"]["namespace"],
            obj["metadata"]["name"],
            spec.sprint,
            s.phase,
            s.step,
            w.even if w else "-",
            w.odd if w else "-",
            actions or "-",
            events or "-",
        )


def requests_of(obj: dict[str, Any]) -> Controls:
    """Manual requests: annotations `sprintops.io/pause|resume|abort|promote` holding tokens."""
    annotations = obj["metadata"].get("annotations") or {}
    return Controls.model_validate(
        {verb: annotations.get(controls.PREFIX + verb) for verb in Controls.model_fields}
    )


def _abort_pending(requests: Controls, status: SprintReleaseStatus) -> bool:
    """An abort the plan will act on (a finished release ignores one)."""
    handled = status.controls or Controls()
    pending = requests.abort is not None and requests.abort != handled.abort
    return pending and status.phase not in api.TERMINAL_PHASES


def _due(moment: str | None, now: dt.datetime) -> bool:
    return moment is not None and parse_timestamp(moment) <= now
