"""`make bench-peers`: sprintops and Argo Rollouts side by side, in one run, on the same local
control plane, Istio CRDs, Prometheus and simulator; runs alternate between the tools so
that machine noise hits both. Figures, never assertions: bench/peers.json and a table.

Scenarios:
- step_lag: one release, weights 10/50/100, a 6 s hold at each, gated on the success rate.
  An outside watcher (a watch on the VirtualServices, its own clock) notes when each weight
  appears; a hold ends `hold` seconds after its weight appeared, and the lag is the time from
  there to the next weight. Also the whole release's wall time minus the configured holds.
- idle: controller RSS and CPU seconds over 60 s with N finished objects.
- fleet: N releases at once: controller peak RSS and CPU seconds, apiserver requests (the
  apiservers' own FlowSchema counts), and how far the fleet overran the configured holds.

sprintops is reported as it is (Route 53 and the VirtualService copies in both clusters; a
bake starts when Prometheus sees the step's traffic arrive) and in Argo's scope, through its
spec, not a bench switch: one VirtualService copy (`istio.clusters: [even]`) and the bake
from the weight's write (`analysis.trafficTolerance: 100`), as Argo counts its pause. Route 53
has no off switch: a step of sprintops is always one change batch plus its INSYNC poll.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from rich.console import Console
from rich.table import Table

from sprintops import api
from sprintops.health.checks import BUILTIN_QUERIES, render
from sprintops.kube import apply, client_from_kubeconfig
from sprintops.traffic.istio import GROUP as ISTIO_GROUP
from sprintops.traffic.istio import PLURAL as VS_PLURAL
from sprintops.traffic.istio import VERSION as ISTIO_VERSION
from sprintops_dev import apicount, bench, environment, fleet, rollouts, seed
from sprintops_dev.operator_process import OperatorProcess

WEIGHTS = (10, 50, 100)
HOLD_SECONDS = 6
INTERVAL = "2s"  # between success-rate checks, both tools
# Only the success-rate gate, as the Argo side has: the same query on the same Prometheus.
GATE = [{"name": "request-success-rate", "min": 99}]
ARGO_SCOPE = {"traffic__istio__clusters": ["even"], "analysis__trafficTolerance": 100}
# The service whose live traffic Argo's analysis reads: the simulator's traffic follows
# Route 53, which Argo does not move, so its canary has no simulated requests of its own.
GATED = {"cluster": environment.LIVE, "namespace": "documents", "service": "document-service"}
EXTRA_NODE = "kwok-node-argo"  # room on the even cluster for Argo's pods beside sprintops'
# Argo's own defaults (10 rollout workers, 40 requests/s, burst 80) were raised for fleets of
# hundreds to thousands (argo-rollouts#120, #1679); its docs name no larger values, so a
# fleet of 100 gets the same, set explicitly.
FLEET_SETTINGS: dict[str, Any] = {"rollout_threads": 10, "qps": 40, "burst": 80}
TOOLS = ("argo", "sprintops", "sprintops_argo_scope")


@dataclass
class Rig:
    layout: environment.Layout
    state: environment.State
    apis: dict[str, client.ApiClient]
    built: Path  # rollouts-controller and its CRDs
    argo_kubeconfig: Path
    hold: int = HOLD_SECONDS
    tools: tuple[str, ...] = TOOLS
    warm_up: float = 20.0  # before an idle controller is measured
    # Names of this run's own: resetting a service that just took all the traffic leaves
    # the simulator's 503s for it in the success rate's window, and fails the next release.
    tag: str = field(default_factory=lambda: secrets.token_hex(2))

    @classmethod
    def up(cls, layout: environment.Layout, **settings: Any) -> Rig:
        built = rollouts.build(layout.repo)
        state = environment.up(layout, say=lambda _m: None)
        admin = layout.kubeconfig.read_text()
        apis = {c: client_from_kubeconfig(admin, c) for c in ("mgmt", "even", "odd")}
        kubeconfig = rollouts.install(
            apis["even"], built, layout.kubeconfig, layout.root / "argo-kubeconfig"
        )
        apply(apis["even"], seed.fake_node(EXTRA_NODE))
        query = render(BUILTIN_QUERIES["request-success-rate"], {**GATED, "interval": "10s"})
        template = rollouts.analysis_template(state.prometheus_url, query, INTERVAL)
        rollouts.create(apis["even"], template)
        return cls(layout, state, apis, built, kubeconfig, **settings)

    @property
    def even(self) -> client.ApiClient:
        return self.apis["even"]

    def controller(self, log: str, **settings: Any) -> rollouts.Controller:
        return rollouts.Controller(
            self.even, self.built, self.argo_kubeconfig, self.layout.root / "logs" / log, **settings
        )

    def operator(self, log: str) -> OperatorProcess:
        return OperatorProcess(
            environment.environment_variables(self.layout, self.state),
            self.layout.root / "logs" / log,
        )

    def base(self) -> dict[str, Any]:
        return fleet.canonical_doc(self.layout.repo)

    @property
    def holds(self) -> int:
        return len(WEIGHTS) * self.hold

    def changes(self, tool: str) -> dict[str, Any]:
        """A sprintops release with the same hold and gate as Argo's, in `tool`'s scope."""
        return {
            "analysis__interval": INTERVAL,
            "analysis__bakeTime": f"{self.hold}s",
            "analysis__metrics": GATE,
            **(ARGO_SCOPE if tool == "sprintops_argo_scope" else {}),
        }

    def order(self, run: int) -> tuple[str, ...]:
        """Alternating, so that machine noise hits every tool alike."""
        return self.tools if run % 2 == 0 else self.tools[::-1]


# --- the outside watcher


@dataclass
class WeightWatch:
    """Watches the VirtualServices of one namespace; notes, with this process's clock, when
    each (VirtualService, weight of the new side) was first seen."""

    api: client.ApiClient
    namespace: str
    new_side: Callable[[dict[str, Any]], bool]  # which destination is the new side
    seen: dict[str, dict[int, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="weight-watch")

    def __enter__(self) -> WeightWatch:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("the VirtualService watch did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        custom = client.CustomObjectsApi(self.api)
        args = (ISTIO_GROUP, ISTIO_VERSION, self.namespace, VS_PLURAL)
        listed = custom.list_namespaced_custom_object(*args)
        version = listed["metadata"]["resourceVersion"]
        self._ready.set()
        while not self._stop.is_set():
            stream = watch.Watch().stream(
                custom.list_namespaced_custom_object,
                *args,
                resource_version=version,
                timeout_seconds=1,
                allow_watch_bookmarks=True,
            )
            for event in stream:
                now = time.time()
                obj = event["object"]
                version = obj["metadata"]["resourceVersion"]
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._note(obj, now)

    def _note(self, vs: dict[str, Any], now: float) -> None:
        for route in vs["spec"].get("http", []):
            for dest in route.get("route", []):
                if self.new_side(dest["destination"]):
                    weight = int(dest.get("weight", 0))
                    self.seen.setdefault(vs["metadata"]["name"], {}).setdefault(weight, now)

    def lags_ms(self, name: str, hold: float) -> list[float]:
        """From the end of each hold (its weight seen + `hold`) to the next weight seen."""
        seen = self.seen.get(name, {})
        return [
            (seen[nxt] - seen[prev] - hold) * 1000
            for prev, nxt in itertools.pairwise(WEIGHTS)
            if prev in seen and nxt in seen
        ]


# --- step_lag


def sprintops_step_lag(rig: Rig, run: int, tool: str) -> tuple[list[float], float]:
    custom = client.CustomObjectsApi(rig.apis["mgmt"])
    doc = fleet.release_doc(
        rig.base(), f"lag-{rig.tag}-{TOOLS.index(tool)}-{run}", **rig.changes(tool)
    )
    spec = fleet.prepare(rig.layout, rig.apis, doc)
    name = doc["metadata"]["name"]
    namespace = spec.traffic.istio.virtual_service.namespace
    with WeightWatch(rig.even, namespace, lambda d: d.get("subset") == "even") as seen:
        started = time.time()
        custom.create_namespaced_custom_object(api.GROUP, api.VERSION, bench.NS, api.PLURAL, doc)
        obj = bench.wait_terminal(custom, {name}, timeout=180)[name]
        wall = time.time() - started
    fleet.remove(custom, name, wait=False, lift_finalizer=False)
    if obj["status"]["phase"] != "Succeeded":
        raise RuntimeError(f"{name} ended {obj['status']['phase']}: {obj['status'].get('message')}")
    return seen.lags_ms(spec.traffic.istio.virtual_service.name, rig.hold), wall - rig.holds


def argo_step_lag(rig: Rig, run: int) -> tuple[list[float], float]:
    name = "lag"
    with WeightWatch(
        rig.even, rollouts.NAMESPACE, lambda d: d["host"] == rollouts.canary_host(name)
    ) as seen:
        started = time.time()
        rollouts.release(rig.even, name, str(run))
        rollouts.wait_done(rig.even, {name}, timeout=180)
        wall = time.time() - started
    return seen.lags_ms(name, rig.hold), wall - rig.holds


def argo_fleet_ready(rig: Rig, names: list[str], *, replicas: int, routed: bool = True) -> None:
    """Rollouts at their first revision (Argo skips the steps for it), done."""
    template = seed.previous_service(fleet_spec(rig)).template
    routing = [o for name in names if routed for o in rollouts.service_objects(name, 8080)]
    objs = [
        rollouts.rollout(name, template, replicas, WEIGHTS, f"{rig.hold}s", routed=routed)
        for name in names
    ]
    with ThreadPoolExecutor(8) as pool:
        # The Services first: a Rollout naming one that does not exist yet is invalid.
        list(pool.map(lambda o: rollouts.create(rig.even, o), routing))
        list(pool.map(lambda o: rollouts.create(rig.even, o), objs))
    rollouts.wait_done(rig.even, set(names), timeout=600)


def fleet_spec(rig: Rig) -> api.SprintReleaseSpec:
    return api.SprintReleaseSpec.model_validate(rig.base()["spec"])


def step_lag(rig: Rig, runs: int) -> dict[str, Any]:
    lags: dict[str, list[float]] = {tool: [] for tool in rig.tools}
    extra: dict[str, list[float]] = {tool: [] for tool in rig.tools}
    operator = rig.operator("operator-peers.log")
    operator.start()
    try:
        bench.wait_serving(operator)
        with rig.controller("rollouts-lag.log"):
            argo_fleet_ready(rig, ["lag"], replicas=3)
            for run in range(runs):
                for tool in rig.order(run):
                    if tool == "argo":
                        got = argo_step_lag(rig, run + 1)
                    else:
                        got = sprintops_step_lag(rig, run, tool)
                    lags[tool] += got[0]
                    extra[tool].append(got[1])
    finally:
        operator.stop()
        rollouts.delete_all(rig.even)
    return {
        tool: {
            "lag_ms": bench.summary(lags[tool]),
            "wall_minus_holds_s": bench.summary(extra[tool]),
            "samples_ms": [round(v, 1) for v in lags[tool]],
        }
        for tool in rig.tools
    }


# --- idle


def argo_idle(rig: Rig, count: int, settle: float) -> dict[str, Any]:
    """Finished Rollouts (0 replicas, no traffic routing: nothing left to do but watch)."""
    with rig.controller("rollouts-idle.log") as controller:
        try:
            argo_fleet_ready(rig, [f"idle-{i}" for i in range(count)], replicas=0, routed=False)
            assert controller.proc is not None
            return bench.idle_cost(controller.proc.pid, settle, rig.warm_up)
        finally:
            rollouts.delete_all(rig.even)


def idle(rig: Rig, count: int, settle: float) -> dict[str, Any]:
    out = {"argo": argo_idle(rig, count, settle)}
    mine = bench.idle_1000(rig.layout, count, settle, rig.warm_up)
    out["sprintops"] = {k: mine[k] for k in out["argo"]}
    return out


# --- fleet


def argo_fleet(rig: Rig, names: list[str], run: int) -> dict[str, float]:
    controller = rig.controller("rollouts-fleet.log", **FLEET_SETTINGS)
    pid = controller.start()
    try:
        # Leading, its caches filled with the fleet at rest, then counted: as the operator
        # is in bench.fleet_100.
        time.sleep(min(5.0, rig.warm_up))
        before = apicount.dispatched(rig.even, rollouts.FLOW_SCHEMA)
        sampler = bench.Sampler(pid)
        sampler.start()
        started = time.time()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda n: rollouts.release(rig.even, n, f"fleet-{run}"), names))
        finished = rollouts.wait_done(rig.even, set(names), timeout=900)
        sampler.stop.set()
        sampler.join()
    finally:
        controller.stop()
    return {
        "overrun_s": max(finished.values()) - started - rig.holds,
        "kube_requests_per_release": (apicount.dispatched(rig.even, rollouts.FLOW_SCHEMA) - before)
        / len(names),
        "peak_rss_mb": sampler.peak_rss_mb,
        "cpu_seconds": sampler.cpu_seconds,
    }


def sprintops_fleet(rig: Rig, count: int, tool: str) -> dict[str, float]:
    got = bench.fleet_100(rig.layout, count=count, runs=1, pending=0, changes=rig.changes(tool))
    return {
        "overrun_s": got["wall_s"]["median"] - rig.holds,
        "kube_requests_per_release": got["kube_requests_per_release"]["median"],
        "peak_rss_mb": got["operator_peak_rss_mb"]["median"],
        "cpu_seconds": got["operator_cpu_seconds"]["median"],
        "route53_requests": got["route53_requests"]["median"],
    }


def fleet_run(rig: Rig, count: int, runs: int) -> dict[str, Any]:
    names = [f"fleet-{i:03d}" for i in range(count)]
    figures: dict[str, dict[str, list[float]]] = {tool: {} for tool in rig.tools}
    try:
        with rig.controller("rollouts-fleet-setup.log", **FLEET_SETTINGS):
            argo_fleet_ready(rig, names, replicas=3)
        for run in range(runs):
            for tool in rig.order(run):
                if tool == "argo":
                    got = argo_fleet(rig, names, run)
                else:
                    got = sprintops_fleet(rig, count, tool)
                for key, value in got.items():
                    figures[tool].setdefault(key, []).append(value)
    finally:
        rollouts.delete_all(rig.even)
    return {
        tool: {key: bench.summary(values) for key, values in got.items()}
        for tool, got in figures.items()
    }


# --- the report


def run(
    layout: environment.Layout,
    out: Path,
    *,
    lag_runs: int = 5,
    idle_count: int = 1000,
    fleet_count: int = 100,
    fleet_runs: int = 1,
    settle: float = 60.0,
    plot: Path | None = None,
    console: Console | None = None,
    **settings: Any,
) -> dict[str, Any]:
    """`settings` go to the Rig (hold, tools, warm_up): the smoke test makes a tiny run."""
    rig = Rig.up(layout, **settings)
    results: dict[str, Any] = {
        "machine": {
            "cores": bench.cores(),
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "argo_rollouts": {
            "version": rollouts.version(rig.built),
            "fleet_settings": FLEET_SETTINGS,
        },
    }
    scenarios: dict[str, Callable[[], dict[str, Any]]] = {
        "step_lag": lambda: step_lag(rig, lag_runs),
        f"idle_{idle_count}": lambda: idle(rig, idle_count, settle),
        f"fleet_{fleet_count}": lambda: fleet_run(rig, fleet_count, fleet_runs),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, scenario in scenarios.items():
        results[name] = scenario()
        # Written as it goes: a scenario that fails keeps the figures of those before it.
        out.write_text(json.dumps(results, indent=2) + "\n")
    if plot is not None:
        from sprintops_dev import peers_plot  # matplotlib: a dev-only dependency, loaded late

        peers_plot.step_lag(results, plot)
    (console or bench.wide_console()).print(table(results))
    return results


def table(results: dict[str, Any]) -> Table:
    """Each figure for both tools and the ratio sprintops / Argo (below 1: sprintops less)."""
    machine, argo = results["machine"], results["argo_rollouts"]
    out = Table(
        title=f"sprintops vs Argo Rollouts {argo['version']} ({machine['cores']} cores); "
        "ratio = sprintops / Argo"
    )
    columns = ("scenario", "figure", "stat", "Argo", "sprintops", "ratio", "Argo's scope", "ratio")
    for column in columns:
        out.add_column(column, justify="left" if column in ("scenario", "figure") else "right")
    for scenario, by_tool in results.items():
        if scenario in ("machine", "argo_rollouts"):
            continue
        figures = {f: v for t in TOOLS for f, v in by_tool.get(t, {}).items()}
        for figure, value in figures.items():
            if figure.startswith("samples"):
                continue
            for stat in ("median", "p95") if isinstance(value, dict) else ("value",):
                cells = [_stat(by_tool.get(t, {}).get(figure), stat) for t in TOOLS]
                out.add_row(
                    scenario,
                    figure,
                    stat,
                    _fmt(cells[0]),
                    _fmt(cells[1]),
                    _ratio(cells[1], cells[0]),
                    _fmt(cells[2]),
                    _ratio(cells[2], cells[0]),
                )
    return out


def _stat(value: Any, stat: str) -> float | None:
    if value is None:
        return None
    return float(value[stat] if isinstance(value, dict) else value)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _ratio(mine: float | None, theirs: float | None) -> str:
    if mine is None or theirs is None or theirs <= 0 or mine < 0:
        return ""
    return f"{mine / theirs:.2f}"
