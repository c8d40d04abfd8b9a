"""Traffic simulator: Istio-standard metrics for every simulated service in even and odd.

Per service, the request rate of each cluster follows the service's live Route 53 weights,
through its clients' DNS caches (`resolvers.py`) when `dns` is set. Its error rate and
latency come from the `sim.sprintops.io/*` annotations on the pod template of the Deployment
running there, with log-normal noise per tick, plus an environment-wide
`incident_error_rate` from the config. A cluster that gets traffic without an Available
Deployment answers 503. Series carry each cluster's mesh name. Prometheus scrapes the result.

Run: python -m sprintops_dev.simulator CONFIG.json
CONFIG: {"port", "kubeconfig", "mesh": {key: mesh cluster name}, "incident_error_rate",
         "dns": DNS, "routes": [{service, namespace, route53: <spec.traffic.route53>, "dns": DNS}]}
DNS: {"time_scale": TTL seconds per second (0: clients follow the weights at once),
      "keepalive_share", "keepalive_seconds"}; a route's own overrides the global one.
The file is re-read on every poll, so tests and benchmarks can change it while it runs.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client, watch

from sprintops.api import CLUSTERS, Route53
from sprintops.kube import client_from_kubeconfig
from sprintops.manifests import is_available
from sprintops.traffic.route53 import Route53Pairs
from sprintops_dev.resolvers import Resolvers

ANNOTATION_ERROR_RATE = "sim.sprintops.io/error-rate"
ANNOTATION_LATENCY = "sim.sprintops.io/latency-ms"
REQUESTS_PER_SECOND = 100.0
# Istio's default request-duration buckets, in milliseconds.
BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
# How a cluster's latency spreads around its configured value: (share of requests, factor).
SPREAD = ((0.5, 0.8), (0.49, 1.2), (0.01, 2.0))
UNAVAILABLE_LATENCY_MS = 1.0
# Spread (sigma of a log-normal factor) of the error rate per tick; latency gets half.
NOISE = 0.2
# How long after a route's weights move its backends with traffic are read past the watch.
FRESH_AFTER_MOVE = 5.0

log = logging.getLogger("sprintops.simulator")


@dataclass(frozen=True)
class Backend:
    available: bool
    error_rate: float
    latency_ms: float


Key = tuple[str, str, str]  # cluster, namespace, service


class Traffic:
    """Accumulates requests as floats, so low rates still move the counters smoothly."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[Key, str], float] = defaultdict(float)
        self.buckets: dict[Key, list[float]] = {}
        self.sums: dict[Key, float] = defaultdict(float)
        self.exposition = self.render()

    def add(self, key: Key, count: float, backend: Backend, incident: float = 0.0) -> None:
        """`incident`: an error rate every backend shares (a bad hour, not a bad build)."""
        if count <= 0:
            return
        if backend.available:
            # Real metrics are noisy: a comparison must tell a shift from the noise.
            rate = (backend.error_rate + incident) * random.lognormvariate(0, NOISE)
            latency = backend.latency_ms * random.lognormvariate(0, NOISE / 2)
            errors, code_err = count * min(rate, 1.0), "500"
        else:
            errors, code_err, latency = count, "503", UNAVAILABLE_LATENCY_MS
        with self.lock:
            self.requests[(key, "200")] += count - errors
            self.requests[(key, code_err)] += errors
            counts = self.buckets.setdefault(key, [0.0] * (len(BUCKETS) + 1))
            for share, factor in SPREAD:
                value = latency * factor
                index = next((i for i, b in enumerate(BUCKETS) if value <= b), len(BUCKETS))
                counts[index] += count * share
                self.sums[key] += value * count * share

    def publish(self, at: float) -> None:
        """Renders the counters for scrapes to serve as they are, stamped `at`: the time the
        tick's counts run up to (its start; stamped at its end, a slow poll swung irate()
        0.2-5x). The counters move only once a tick, so rendering here costs one rendering a
        tick instead of one a scrape (at 1,000 services scrapes rendered on demand passed
        the operator Prometheus's 250 ms timeout). The stamp matters when ticks are slower
        than scrapes (2.5 s at 1,000 services on 2 cores): unstamped, two scrapes of one
        tick are two samples with no increase, and irate() read no traffic at all."""
        self.exposition = self.render(at)

    def render(self, at: float | None = None) -> bytes:
        """The exposition text. Written here, not by prometheus_client: a fleet's 4,000
        series took its renderer 90 ms; formatting them directly takes a few. Label values
        are Kubernetes names and mesh cluster names: nothing in them needs escaping. `at`:
        the samples' time (epoch seconds); Prometheus keeps one sample per stamp."""
        stamp = "" if at is None else f" {int(at * 1000)}"
        lines = [
            "# HELP istio_requests_total Requests (simulated)",
            "# TYPE istio_requests_total counter",
        ]
        with self.lock:
            requests = sorted(self.requests.items())
            histograms = [(k, list(c), self.sums[k]) for k, c in sorted(self.buckets.items())]
        for ((cluster, ns, svc), code), value in requests:
            labels = f'{_labels(cluster, ns, svc)},response_code="{code}"'
            lines.append(f"istio_requests_total{{{labels}}} {value!r}{stamp}")
        lines += [
            "# HELP istio_request_duration_milliseconds Request duration in ms (simulated)",
            "# TYPE istio_request_duration_milliseconds histogram",
        ]
        name = "istio_request_duration_milliseconds"
        for (cluster, ns, svc), counts, total in histograms:
            labels, acc = _labels(cluster, ns, svc), 0.0
            for bound, count in zip(BOUNDS, counts, strict=True):
                acc += count
                lines.append(f'{name}_bucket{{{labels},le="{bound}"}} {acc!r}{stamp}')
            lines.append(f"{name}_count{{{labels}}} {acc!r}{stamp}")
            lines.append(f"{name}_sum{{{labels}}} {total!r}{stamp}")
        return ("\n".join(lines) + "\n").encode()


BOUNDS = [*(repr(float(b)) for b in BUCKETS), "+Inf"]


def _labels(cluster: str, ns: str, svc: str) -> str:
    return (
        f'reporter="destination",destination_cluster="{cluster}",'
        f'destination_workload_namespace="{ns}",destination_workload="{svc}",'
        f'destination_service="{svc}.{ns}.svc.cluster.local"'
    )


def serve(traffic: Traffic, port: int) -> None:
    """/metrics on loopback, in a thread of its own."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = traffic.exposition
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def _backend(body: dict[str, Any]) -> Backend:
    template = body["spec"]["template"].get("metadata") or {}
    annotations = template.get("annotations") or {}
    return Backend(
        available=is_available(body),
        error_rate=float(annotations.get(ANNOTATION_ERROR_RATE, "0")),
        latency_ms=float(annotations.get(ANNOTATION_LATENCY, "10")),
    )


class Deployments:
    """A cluster's Deployments as backends, kept by a watch: listing a fleet of 1,000 twice a
    second cost the simulator, and the apiserver, most of a core. Raw JSON throughout: the
    client's model classes cost more CPU than the rest."""

    def __init__(self, api: client.ApiClient) -> None:
        self._apps = client.AppsV1Api(api)
        self._lock = threading.Lock()
        self._backends: dict[tuple[str, str], Backend] = {}
        threading.Thread(target=self._run, daemon=True).start()

    def backends(self) -> dict[tuple[str, str], Backend]:
        with self._lock:
            return dict(self._backends)

    def fresh(self, namespace: str, name: str) -> Backend | None:
        """One Deployment as the apiserver has it now, ahead of the watch: for this poll only
        (kept, it could outlive a deletion the watch has already seen)."""
        try:
            raw = self._apps.read_namespaced_deployment(
                name, namespace, _request_timeout=5, _preload_content=False
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _backend(json.loads(raw.data))

    def _run(self) -> None:
        while True:
            try:
                self._list_and_watch()
            except Exception as exc:
                # An apiserver down (chaos), or an ERROR event (410 Gone), which the client
                # raises on with raw events: list again, on the last known state meanwhile.
                log.warning("watching deployments failed: %s", exc)
                time.sleep(0.5)

    def _list_and_watch(self) -> None:
        listing = json.loads(
            self._apps.list_deployment_for_all_namespaces(
                _request_timeout=5, _preload_content=False
            ).data
        )
        with self._lock:
            self._backends = {_key(body): _backend(body) for body in listing["items"]}
        for event in watch.Watch().stream(
            self._apps.list_deployment_for_all_namespaces,
            resource_version=listing["metadata"]["resourceVersion"],
            timeout_seconds=120,
            deserialize=False,
        ):
            body = event["object"]
            with self._lock:
                if event["type"] == "DELETED":
                    self._backends.pop(_key(body), None)
                else:
                    self._backends[_key(body)] = _backend(body)


def _read_again(
    deployments: dict[str, Deployments],
    backends: dict[str, dict[tuple[str, str], Backend]],
    key: tuple[str, str],
    split: dict[str, int],
) -> None:
    """A backend given traffic that the watch has not seen Available, as the apiserver has
    it now; if that fails, the watch's view stands (the other routes go on)."""
    for side in CLUSTERS:
        seen = backends[side].get(key)
        if split[side] and (seen is None or not seen.available):
            try:
                fresh = deployments[side].fresh(*key)
            except Exception as exc:
                log.warning("reading %s/%s in %s failed: %s", *key, side, exc)
                continue
            if fresh is not None:
                backends[side][key] = fresh


def _key(body: dict[str, Any]) -> tuple[str, str]:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def run(config_path: Path, poll_seconds: float = 0.5, tick_seconds: float = 0.25) -> None:
    config = json.loads(config_path.read_text())
    apis = {c: client_from_kubeconfig(Path(config["kubeconfig"]).read_text(), c) for c in CLUSTERS}
    route53 = Route53Pairs()
    traffic = Traffic()
    serve(traffic, config["port"])
    log.info("serving metrics on 127.0.0.1:%s", config["port"])

    weights: dict[tuple[str, str], dict[str, int]] = {}
    routes: list[dict[str, Any]] = []
    deployments: dict[str, Deployments] = {c: Deployments(apis[c]) for c in CLUSTERS}
    moved: dict[tuple[str, str], float] = {}  # when each route's weights last changed
    backends: dict[str, dict[tuple[str, str], Backend]] = {c: {} for c in CLUSTERS}
    clients: dict[tuple[str, str], Clients] = {}
    last_poll, last_tick, incident, mesh = 0.0, time.monotonic(), 0.0, {}
    while True:
        now, wall = time.monotonic(), time.time()
        if now - last_poll >= poll_seconds:
            last_poll = now
            try:
                current = json.loads(config_path.read_text())
                routes = current["routes"]
                incident = float(current.get("incident_error_rate", 0.0))
                mesh = current.get("mesh", {})
                for r in routes:
                    key = (r["namespace"], r["service"])
                    dns = {**current.get("dns", {}), **r.get("dns", {})}
                    clients.setdefault(key, Clients()).configure(dns, r["route53"]["ttl"])
                # Route 53 before the backends: weights the operator wrote only after a
                # Deployment was Available must not meet an older view of that Deployment,
                # so for a while after its weights move, a backend with traffic that the
                # watch has not seen Available is read again. One listing per hosted zone,
                # however many services it serves.
                pairs = route53.read_many([Route53.model_validate(r["route53"]) for r in routes])
                for cluster in CLUSTERS:
                    backends[cluster] = deployments[cluster].backends()
                for r, pair in zip(routes, pairs, strict=True):
                    if pair is None:
                        continue
                    key = (r["namespace"], r["service"])
                    split = {"even": pair.even, "odd": pair.odd}
                    if weights.get(key) != split:
                        weights[key], moved[key] = split, now
                    if now - moved[key] < FRESH_AFTER_MOVE:
                        _read_again(deployments, backends, key, split)
            except Exception as exc:  # keep simulating on the last known state
                log.warning("poll failed: %s", exc)
        elapsed, last_tick = now - last_tick, now
        for (ns, svc), split in weights.items():
            shares = clients[(ns, svc)].shares(elapsed, split)
            for cluster in CLUSTERS:
                count = REQUESTS_PER_SECOND * elapsed * shares[cluster]
                backend = backends[cluster].get((ns, svc), Backend(False, 1.0, 0.0))
                traffic.add((mesh.get(cluster, cluster), ns, svc), count, backend, incident)
        traffic.publish(wall)  # the counts cover the traffic up to the tick's start
        time.sleep(tick_seconds)


class Clients:
    """One service's clients: at once on the weights, or through DNS caches on a clock of
    their own (TTL seconds pass `time_scale` times faster than real ones)."""

    def __init__(self) -> None:
        self.scale = 0.0
        self.ttl = 60.0
        self.clock = 0.0
        self.resolvers = Resolvers()

    def configure(self, dns: dict[str, float], ttl: float) -> None:
        self.scale, self.ttl = float(dns.get("time_scale", 0.0)), float(ttl)
        share, seconds = dns.get("keepalive_share", 0.0), dns.get("keepalive_seconds", 0.0)
        if (share, seconds) != (self.resolvers.keepalive_share, self.resolvers.keepalive_seconds):
            self.resolvers = Resolvers(keepalive_share=share, keepalive_seconds=seconds)

    def shares(self, elapsed: float, weights: dict[str, int]) -> dict[str, float]:
        if not self.scale:
            total = sum(weights.values()) or 1
            return {c: w / total for c, w in weights.items()}
        self.clock += elapsed * self.scale
        return self.resolvers.shares(self.clock, weights, self.ttl)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
