"""An independent watcher that samples the real world and checks the rollout's invariants.

It reads what a release manager would read, in an order that makes the checks sound: traffic
first (Route 53, every VirtualService copy), then the release's status and the Deployment.
The operator writes status before it moves traffic, so status read after the weights is at
least as far along as the step those weights belong to. The invariants themselves are
`sprintops_dev.invariants`, the same ones the unit world checks.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import urllib3
from botocore.exceptions import BotoCoreError
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sprintops import api, manifests
from sprintops.api import Cluster, SprintReleaseSpec, SprintReleaseStatus, Weights
from sprintops.traffic.route53 import Route53Pairs
from sprintops_dev.invariants import Track, violations
from sprintops_dev.traffic import copy_weights

T = TypeVar("T")
TIMEOUT = 3  # seconds per read: a hung cluster must not stall the other sources


@dataclass(frozen=True)
class Watched:
    namespace: str
    name: str
    spec: SprintReleaseSpec


@dataclass
class InvariantWatcher:
    apis: dict[str, client.ApiClient]
    releases: list[Watched]
    period: float = 0.1
    samples: int = 0
    violations: list[str] = field(default_factory=list)
    errors: int = 0
    # Per source (route53, vs/<cluster>, status, deployment): reads that answered, and not.
    source_samples: Counter[str] = field(default_factory=Counter)
    source_errors: Counter[str] = field(default_factory=Counter)
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
                self.sample(release)
            time.sleep(self.period)

    def _read(self, source: str, read: Callable[[], T]) -> T | None:
        """One source of one sample; a source that does not answer is counted and skipped,
        so the others are still checked (that is when checking matters most)."""
        try:
            value = read()
        except (ApiException, OSError, urllib3.exceptions.HTTPError, BotoCoreError):
            self.source_errors[source] += 1
            self.errors += 1
            return None
        self.source_samples[source] += 1
        return value

    def sample(self, release: Watched) -> None:
        spec = release.spec
        key = f"{release.namespace}/{release.name}"
        traffic: dict[str, Weights | None] = {
            "route53": self._read("route53", lambda: self.route53.read(spec.traffic.route53))
        }
        for cluster in spec.traffic.istio.clusters:

            def copy(cluster: str = cluster) -> Weights:
                return copy_weights(self.apis[cluster], spec, TIMEOUT)

            traffic[f"vs/{cluster}"] = self._read(f"vs/{cluster}", copy)
        body = self._read(
            "status",
            lambda: client.CustomObjectsApi(self.apis["mgmt"]).get_namespaced_custom_object(
                api.GROUP,
                api.VERSION,
                release.namespace,
                api.PLURAL,
                release.name,
                _request_timeout=TIMEOUT,
            ),
        )
        if body is None:
            return  # without the status nothing can be judged
        status = SprintReleaseStatus.model_validate(body.get("status") or {})
        target: Cluster = api.parity_cluster(spec.sprint)
        available = self._read("deployment", lambda: self._available(target, spec))
        self.samples += 1
        track = self.tracks.setdefault(key, Track())
        for broken in violations(target, status, traffic, bool(available), track):
            self.violations.append(f"{key} at sample {self.samples}: {broken}")

    def _available(self, cluster: Cluster, spec: SprintReleaseSpec) -> bool:
        apiclient = self.apis[cluster]
        try:
            dep = client.AppsV1Api(apiclient).read_namespaced_deployment(
                spec.service.name, spec.service.namespace, _request_timeout=TIMEOUT
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return manifests.is_available(apiclient.sanitize_for_serialization(dep))
