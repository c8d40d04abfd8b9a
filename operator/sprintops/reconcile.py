"""One reconcile of one SprintRelease: observe, plan, write status (compare-and-set), act.

The adapters are blocking clients; each call runs in a worker thread so the event loop
never waits on the network.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sprintops import api, controls, metrics
from sprintops.api import Controls, SprintReleaseSpec, SprintReleaseStatus, Weights
from sprintops.clusters import ClusterError, KubeconfigSecrets, Workload, translated
from sprintops.durations import parse_timestamp, seconds
from sprintops.health.prometheus import run_checks
from sprintops.kube import merge_patch, object_path
from sprintops.plan import (
    Deploy,
    Emit,
    Observations,
    Plan,
    ScaleDown,
    SetWeights,
    checks_due,
    plan,
)
from sprintops.traffic.istio import IstioError, VirtualServices
from sprintops.traffic.route53 import Route53Pairs, WeightError

log = logging.getLogger("sprintops.rollout")

# Route 53 answers that no retry can change: the release cannot go on.
PERMANENT_ROUTE53 = frozenset(
    {"InvalidChangeBatch", "InvalidInput", "NoSuchHostedZone", "AccessDenied", "InvalidArgument"}
)
# Failures of the outside world that hold a release (and say why) instead of crashing it.
HOLDING_ERRORS = (ClusterError, IstioError, WeightError, BotoCoreError, ClientError, ApiException)
EmitFn = Callable[[dict[str, Any], Emit], None]


@dataclass
class Runtime:
    """What one operator process shares between releases. Nothing here is the truth:
    `applied` only spares a re-assert of weights this process already confirmed."""

    mgmt: client.ApiClient
    route53: Route53Pairs
    secrets: KubeconfigSecrets
    prometheus_url: str
    min_query_range: float = 10.0
    applied: dict[str, Weights] = field(default_factory=dict)
    action_errors: dict[str, str] = field(default_factory=dict)
    fatal_errors: dict[str, str] = field(default_factory=dict)
    last_written: dict[str, str] = field(default_factory=dict)
    # uid -> the step (its start time) whose Route 53 weights were read back after its bake.
    route53_verified: dict[str, str] = field(default_factory=dict)


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
    return str(exc)


class Reconciler:
    def __init__(self, rt: Runtime, emit: EmitFn) -> None:
        self.rt = rt
        self.emit = emit
        self.custom = client.CustomObjectsApi(rt.mgmt)

    async def once(self, namespace: str, name: str, competitor: str | None) -> float | None:
        """Returns seconds until the release wants another look (None: nothing pending)."""
        obj = await asyncio.to_thread(self._get, namespace, name)
        if obj is None:
            return None
        uid: str = obj["metadata"]["uid"]
        spec = SprintReleaseSpec.model_validate(obj["spec"])
        stored = obj.get("status") or {}
        status = SprintReleaseStatus.model_validate(stored)
        obs = await self._observe(obj, spec, status, competitor)
        with metrics.PLAN_SECONDS.time():
            result = plan(spec, status, obs)
        metrics.record((namespace, name), status, result.status)
        if result.status != status:
            written = await asyncio.to_thread(self._write_status, obj, result.status, stored)
            if written is None:
                return 0  # someone else changed it since we read it: look again
            obj = written
        if result.status != status or result.actions:
            self._log(obj, spec, result)
        for action in result.actions:
            try:
                await self._act(obj, spec, result.status, action)
            except HOLDING_ERRORS as exc:
                permanent = (
                    isinstance(exc, ClientError)
                    and exc.response.get("Error", {}).get("Code") in PERMANENT_ROUTE53
                )
                (self.rt.fatal_errors if permanent else self.rt.action_errors)[uid] = describe(exc)
                log.warning(
                    "action failed release=%s/%s action=%s error=%s",
                    namespace,
                    name,
                    type(action).__name__,
                    describe(exc),
                )
                return 0
        return result.requeue_after

    # --- observing
    async def _observe(
        self,
        obj: dict[str, Any],
        spec: SprintReleaseSpec,
        status: SprintReleaseStatus,
        competitor: str | None,
    ) -> Observations:
        uid = obj["metadata"]["uid"]
        now = dt.datetime.now(dt.UTC)
        facts: dict[str, Any] = {
            "now": now,
            "generation": obj["metadata"].get("generation", 1),
            "applied": self.rt.applied.get(uid),
            # An action error is reported once; the next plan retries the action.
            "blocker": self.rt.action_errors.pop(uid, None),
            "fatal": self.rt.fatal_errors.pop(uid, None),
        }
        namespace = obj["metadata"]["namespace"]
        facts["requests"] = requests_of(obj)
        try:
            if status.phase in (None, "Pending"):
                facts["competitor"] = competitor
                facts["live"] = await asyncio.to_thread(self.rt.route53.read, spec.traffic.route53)
            elif status.phase == "Deploying" and status.target_cluster:
                workload = await self._workload(spec, namespace, status.target_cluster)
                facts["target"] = await asyncio.to_thread(workload.observe, spec.service)
            elif status.target_cluster and checks_due(spec, status, now):
                facts["drift"] = await asyncio.to_thread(self._drift, spec, namespace, status)
                workload = await self._workload(spec, namespace, status.target_cluster)
                facts["target"] = await asyncio.to_thread(workload.observe, spec.service)
                facts["checks"] = tuple(
                    await asyncio.to_thread(
                        run_checks,
                        self._prometheus(spec),
                        spec,
                        status.target_cluster,
                        self._query_range(spec),
                    )
                )
            elif status.phase == "Succeeded" and _due(status.scale_down_at, now):
                previous = status.previous_cluster or api.other(status.target_cluster or "even")
                workload = await self._workload(spec, namespace, previous)
                replicas = await asyncio.to_thread(workload.replicas, spec.service)
                facts["scaled_down"] = not replicas
            if not facts.get("drift") and self._route53_due(spec, status, now, uid):
                facts["drift"] = await asyncio.to_thread(self._route53_drift, spec, status, uid)
        except HOLDING_ERRORS as exc:
            facts["blocker"] = describe(exc)
        return Observations(**facts)

    def _drift(
        self, spec: SprintReleaseSpec, namespace: str, status: SprintReleaseStatus
    ) -> str | None:
        """Every VirtualService copy must still carry the step's weights (cheap reads,
        once per check round)."""
        istio = spec.traffic.istio
        for cluster in istio.clusters:
            vs = VirtualServices(self.rt.secrets.for_cluster(spec, namespace, cluster), cluster)
            with translated(f"cannot read the VirtualService in cluster {cluster}"):
                found = vs.check(istio)
            if status.weights is not None and found != status.weights:
                return _drifted(f"VirtualService in {cluster}", found, status.weights)
        return None

    def _route53_due(
        self, spec: SprintReleaseSpec, status: SprintReleaseStatus, now: dt.datetime, uid: str
    ) -> bool:
        """Route 53 is read back once per step, once its bake is over, before the gate can
        pass: more traffic never moves on top of a hand edit, and the API budget holds (a
        fleet's reads of one zone share a listing)."""
        started = status.step_started_at
        return (
            status.phase == "Progressing"
            and status.weights is not None
            and started is not None
            and self.rt.route53_verified.get(uid) != started
            and (now - parse_timestamp(started)).total_seconds() >= seconds(spec.analysis.bake_time)
        )

    def _route53_drift(
        self, spec: SprintReleaseSpec, status: SprintReleaseStatus, uid: str
    ) -> str | None:
        want, started = status.weights, status.step_started_at
        if want is None or started is None:  # not in a step: nothing to compare with
            return None
        live = self.rt.route53.read(spec.traffic.route53)
        if live != want:
            return _drifted("Route 53", live, want)
        self.rt.route53_verified[uid] = started
        return None

    def _prometheus(self, spec: SprintReleaseSpec) -> str:
        own = spec.analysis.prometheus
        return own.address if own is not None else self.rt.prometheus_url

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
        self, obj: dict[str, Any], spec: SprintReleaseSpec, status: SprintReleaseStatus, action: Any
    ) -> None:
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        if isinstance(action, Emit):
            self.emit(obj, action)
        elif isinstance(action, Deploy):
            workload = await self._workload(spec, namespace, action.cluster)
            await asyncio.to_thread(workload.deploy, spec.service, spec.sprint, name)
        elif isinstance(action, SetWeights):
            await asyncio.to_thread(self._set_weights, spec, namespace, action.weights)
            self.rt.applied[obj["metadata"]["uid"]] = action.weights
        elif isinstance(action, ScaleDown):
            workload = await self._workload(spec, namespace, action.cluster)
            await asyncio.to_thread(workload.scale_to_zero, spec.service)

    def _set_weights(self, spec: SprintReleaseSpec, namespace: str, weights: Weights) -> None:
        """Route 53 (one batch, then INSYNC) and every VirtualService copy. Every copy is
        checked first, so a bad VirtualService leaves Route 53 untouched."""
        istio = spec.traffic.istio
        copies = [
            VirtualServices(self.rt.secrets.for_cluster(spec, namespace, c), c)
            for c in istio.clusters
        ]
        for vs in copies:
            with translated(f"cannot read the VirtualService in cluster {vs.cluster}"):
                vs.check(istio)
        self.rt.route53.wait_insync(self.rt.route53.write(spec.traffic.route53, weights))
        for vs in copies:
            with translated(f"cannot update the VirtualService in cluster {vs.cluster}"):
                vs.set(istio, weights)

    # --- the mgmt cluster
    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
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


def _due(moment: str | None, now: dt.datetime) -> bool:
    return moment is not None and parse_timestamp(moment) <= now
