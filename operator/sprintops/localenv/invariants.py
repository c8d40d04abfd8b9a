"""An independent watcher that samples the real world and checks the rollout's invariants.

It reads what a release manager would read, in an order that makes the checks sound: traffic
first (Route 53, every VirtualService copy), then the release's status and the Deployment.
The operator writes status before it moves traffic, so status read after the weights is at
least as far along as the step those weights belong to.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sprintops import api, manifests
from sprintops.api import TERMINAL_PHASES, Cluster, SprintReleaseSpec, SprintReleaseStatus, Weights
from sprintops.traffic.istio import GROUP, PLURAL, VERSION, weights_of
from sprintops.traffic.route53 import Route53Pairs


@dataclass(frozen=True)
class Watched:
    namespace: str
    name: str
    spec: SprintReleaseSpec


@dataclass
class Track:
    """What the watcher remembers of one release between samples."""

    step_index: int = -1
    phase: str | None = None
    seen_available: bool = False
    max_target_weight: int = 0


@dataclass
class InvariantWatcher:
    apis: dict[str, client.ApiClient]
    releases: list[Watched]
    period: float = 0.1
    samples: int = 0
    violations: list[str] = field(default_factory=list)
    errors: int = 0
    tracks: dict[str, Track] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="invariant-watcher")
        self.route53 = Route53Pairs()

    def __enter__(self) -> InvariantWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for release in self.releases:
                try:
                    self.sample(release)
                except (ApiException, OSError, urllib3.exceptions.HTTPError) as exc:
                    # The world may be mid-restart (that is what chaos tests do); not a violation.
                    self.errors += 1
                    if self.errors > 1000:
                        self.violations.append(f"watcher cannot read the world: {exc}")
                        return
            time.sleep(self.period)

    def sample(self, release: Watched) -> None:
        spec = release.spec
        key = f"{release.namespace}/{release.name}"
        r53 = self.route53.read(spec.traffic.route53)
        copies: dict[str, Weights] = {}
        for cluster in spec.traffic.istio.clusters:
            ref = spec.traffic.istio.virtual_service
            vs = client.CustomObjectsApi(self.apis[cluster]).get_namespaced_custom_object(
                GROUP, VERSION, ref.namespace, PLURAL, ref.name
            )
            copies[cluster] = weights_of(vs, spec.traffic.istio)
        body = client.CustomObjectsApi(self.apis["mgmt"]).get_namespaced_custom_object(
            api.GROUP, api.VERSION, release.namespace, api.PLURAL, release.name
        )
        status = SprintReleaseStatus.model_validate(body.get("status") or {})
        target: Cluster = api.parity_cluster(spec.sprint)
        available = self._available(target, spec)
        self.samples += 1
        track = self.tracks.setdefault(key, Track())
        track.seen_available |= available

        def bad(what: str) -> None:
            self.violations.append(f"{key} at sample {self.samples}: {what}")

        traffic = {"route53": r53, **{f"vs/{c}": w for c, w in copies.items()}}
        # A release refused before it moved anything owns none of the traffic it sees.
        owns = not (status.phase in (None, "Pending", "Failed") and status.step_index is None)
        allowed = spec.traffic.steps[status.step_index] if status.step_index is not None else 0
        for where, w in traffic.items():
            if w is None:
                continue
            if w.even + w.odd != 100:
                bad(f"{where} weights sum to {w.even + w.odd} ({w})")
            new = w.of(target)
            if not owns or new == 0:
                continue
            if new > allowed:
                bad(f"{where} gives {target} {new}% but status is at step {status.step_index}")
            if status.deployment_available_at is None:
                bad(f"{where} gives {target} {new}% before the Deployment was recorded Available")
            if not track.seen_available:
                bad(f"{where} gives {target} {new}% before its Deployment was ever Available")
            track.max_target_weight = max(track.max_target_weight, new)
        index = -1 if status.step_index is None else status.step_index
        if index < track.step_index:
            bad(f"stepIndex went back {track.step_index} -> {index}")
        if track.phase in TERMINAL_PHASES and status.phase != track.phase:
            bad(f"terminal phase {track.phase} left for {status.phase}")
        track.step_index, track.phase = index, status.phase

    def _available(self, cluster: Cluster, spec: SprintReleaseSpec) -> bool:
        apiclient = self.apis[cluster]
        try:
            dep = client.AppsV1Api(apiclient).read_namespaced_deployment(
                spec.service.name, spec.service.namespace
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return manifests.is_available(apiclient.sanitize_for_serialization(dep))
