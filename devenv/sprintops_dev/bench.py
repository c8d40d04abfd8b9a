"""`make bench`: measured figures, never timed assertions. Medians and p95 over runs.

Scenarios: plan_throughput (the pure core), step_overhead (what sprintops adds to a step on
top of the configured bake, over 50+ steps, beside the floor of a step's writes made
directly), fleet_10 and fleet_100 (services released at once, one hosted zone, Route 53
behind a proxy that enforces 5 requests/s) and idle_1000 (the cost of watching finished
releases); `--scale` adds fleet_1000 and idle_10000, so the table shows how cost grows.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import secrets
import statistics
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from sprintops import api
from sprintops.api import SprintReleaseSpec, SprintReleaseStatus, Weights
from sprintops.durations import parse_timestamp, seconds
from sprintops.health.checks import CheckOutcome, threshold
from sprintops.kube import apply, client_from_kubeconfig
from sprintops.plan import Deploy, Observations, SetWeights, TargetDeployment, checks_due, plan
from sprintops.traffic.istio import VirtualServices
from sprintops.traffic.route53 import Route53Pairs
from sprintops_dev import apicount, environment, fleet, seed, traffic
from sprintops_dev.faultproxy import FaultProxy, Faults
from sprintops_dev.operator_process import OperatorProcess

NS = "releases"


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": round(statistics.median(ordered), 3), "p95": round(p95, 3), "n": len(ordered)}


# --- plan_throughput


def realistic_states(spec: SprintReleaseSpec) -> list[tuple[SprintReleaseStatus, Observations]]:
    """The (status, observations) pairs of a whole canonical rollout, as the operator sees them."""
    now = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    status, applied, deployed = SprintReleaseStatus(), None, False
    states = []
    for _ in range(200):
        checks = None
        if checks_due(spec, status, now):
            checks = tuple(
                CheckOutcome(m.name, 1.0, threshold(m), "pass") for m in spec.analysis.metrics
            )
        obs = Observations(
            now=now,
            live=Weights(even=0, odd=100),
            target=TargetDeployment(spec.sprint, True) if deployed else None,
            applied=applied,
            checks=checks,
        )
        states.append((status, obs))
        result = plan(spec, status, obs)
        status = result.status
        for action in result.actions:
            deployed |= isinstance(action, Deploy)
            if isinstance(action, SetWeights):
                applied = action.weights
        if status.phase == "Succeeded":
            break
        now += dt.timedelta(seconds=result.requeue_after or 0.5)
    return states


def plan_throughput(repo: Path, runs: int = 5, evaluations: int = 20_000) -> dict[str, Any]:
    spec = SprintReleaseSpec.model_validate(fleet.canonical_doc(repo)["spec"])
    states = realistic_states(spec)
    rates = []
    for _ in range(runs):
        started = time.perf_counter()
        for i in range(evaluations):
            status, obs = states[i % len(states)]
            plan(spec, status, obs)
        rates.append(evaluations / (time.perf_counter() - started))
    return {
        "evals_per_second": summary(rates),
        "states": len(states),
        "targets": {"evals_per_second.median": ">= 20000"},
    }


# --- step_overhead


class StepWatcher(threading.Thread):
    """From outside: when Route 53, every VirtualService copy and status all show a step."""

    def __init__(
        self, apis: dict[str, client.ApiClient], spec: SprintReleaseSpec, name: str
    ) -> None:
        super().__init__(daemon=True)
        self.apis, self.spec, self.name = apis, spec, name
        self.seen: dict[int, float] = {}  # step index -> wall time all three showed it
        self.stop = threading.Event()

    def run(self) -> None:
        route53 = Route53Pairs()
        steps = self.spec.traffic.steps
        while not self.stop.is_set():
            w, by_cluster = traffic.read(self.apis, self.spec, route53)
            copies = list(by_cluster.values())
            obj = client.CustomObjectsApi(self.apis["mgmt"]).get_namespaced_custom_object(
                api.GROUP, api.VERSION, NS, api.PLURAL, self.name
            )
            st = SprintReleaseStatus.model_validate(obj.get("status") or {})
            now = time.time()
            for i, pct in enumerate(steps):
                want = Weights.split("even", pct)
                recorded = st.step_index is not None and st.step_index >= i and st.step_started_at
                if i not in self.seen and w == want and all(c == want for c in copies) and recorded:
                    self.seen[i] = now
            time.sleep(0.01)


def step_overhead(
    layout: environment.Layout, runs: int = 6, steps: int = 10, floor_rounds: int = 50
) -> dict[str, Any]:
    """Releases of `steps` steps, each baked for one check interval: at least 50 step
    transitions by default, so that the p95 is not nearly the maximum. Then, in the same
    run, the floor a step stands on: what the writes of a step cost made directly."""
    state = environment.up(layout, say=lambda _m: None)
    apis = {
        c: client_from_kubeconfig(layout.kubeconfig.read_text(), c) for c in ("mgmt", "even", "odd")
    }
    custom = client.CustomObjectsApi(apis["mgmt"])
    base = fleet.canonical_doc(layout.repo)
    interval = base["spec"]["analysis"]["interval"]
    operator = OperatorProcess(
        environment.environment_variables(layout, state),
        layout.root / "logs" / "operator-bench.log",
    )
    operator.start()
    weights = [round(100 * (i + 1) / steps) for i in range(steps)]
    inside, outside, extra, floor = [], [], [], []
    # Names of this run's own: a service reset right after it took all the traffic leaves
    # the simulator's 503s in the success rate's window, and the next release rolls back.
    tag = secrets.token_hex(2)
    try:
        for run in range(runs):
            doc = fleet.release_doc(
                base, f"bench-step-{tag}-{run}", analysis__bakeTime=interval, traffic__steps=weights
            )
            spec = fleet.prepare(layout, apis, doc)
            name = doc["metadata"]["name"]
            watcher = StepWatcher(apis, spec, name)
            watcher.start()
            started = time.time()
            custom.create_namespaced_custom_object(api.GROUP, api.VERSION, NS, api.PLURAL, doc)
            obj = wait_terminal(custom, {name}, timeout=120)[name]
            watcher.stop.set()
            watcher.join()
            status = SprintReleaseStatus.model_validate(obj["status"])
            if status.phase != "Succeeded":
                raise RuntimeError(f"bench release {name} ended {status.phase}: {status.message}")
            for prev, nxt, i in zip(
                status.steps, status.steps[1:], range(1, len(status.steps)), strict=False
            ):
                gate = parse_timestamp(prev.completed_at or prev.started_at)
                inside.append((parse_timestamp(nxt.started_at) - gate).total_seconds() * 1000)
                if i in watcher.seen:
                    outside.append(watcher.seen[i] * 1000 - gate.timestamp() * 1000)
            bake = len(spec.traffic.steps) * seconds(interval)
            extra.append(time.time() - started - bake)
            if run == runs - 1:
                floor = step_floor(apis, spec, name, floor_rounds)
            custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, NS, api.PLURAL, name)
    finally:
        operator.stop()
    overhead, base_ms = summary(inside), summary(floor)
    return {
        "overhead_ms_operator": overhead,
        "overhead_ms_watcher": summary(outside),
        "floor_ms": base_ms,
        "overhead_to_floor": {
            stat: round(overhead[stat] / base_ms[stat], 2) for stat in ("median", "p95")
        },
        "wall_minus_bake_s": summary(extra),
        "runs": runs,
        "targets": {"overhead_ms_operator.p95": "<= 250"},
    }


def step_floor(
    apis: dict[str, client.ApiClient], spec: SprintReleaseSpec, name: str, rounds: int
) -> list[float]:
    """Milliseconds for what one step must write, done directly and in turn: a status patch
    of the (finished) release, its VirtualService in one cluster (read, then replaced, as
    the operator does it) and one Route 53 change batch, unpaced."""
    custom = client.CustomObjectsApi(apis["mgmt"])
    copy = VirtualServices(apis["even"], "even")
    route53 = Route53Pairs()
    out = []
    for i in range(rounds):
        weights = Weights.split("even", 100 - i % 2)
        started = time.perf_counter()
        custom.patch_namespaced_custom_object_status(
            api.GROUP, api.VERSION, NS, api.PLURAL, name, {"status": {"message": f"floor {i}"}}
        )
        copy.set(spec.traffic.istio, weights)
        route53.write(spec.traffic.route53, weights)
        out.append((time.perf_counter() - started) * 1000)
    return out


# --- fleet_100

ROUTE53_BUDGET = 5  # requests/s: the conservative per-account limit, enforced by the proxy
FLEET_SPACING = 3.0  # seconds: the README's advice for a fleet that shares a hosted zone
PENDING_SECONDS = 20.0  # real Route 53 propagates a change in tens of seconds


class Sampler(threading.Thread):
    """Peak RSS and CPU seconds of a process, sampled from /proc."""

    def __init__(self, pid: int, period: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak_rss_mb, self.cpu_start = proc_stats(pid)
        self.cpu_seconds = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                rss, cpu = proc_stats(self.pid)
            except ProcessLookupError:  # it ended: its last sample stands
                return
            self.peak_rss_mb = max(self.peak_rss_mb, rss)
            self.cpu_seconds = cpu - self.cpu_start
            time.sleep(self.period)


def fleet_100(
    layout: environment.Layout,
    count: int = 100,
    runs: int = 3,
    pending: float = PENDING_SECONDS,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`count` services, each with its own release, record pair (one hosted zone) and
    VirtualService, applied at once; Route 53 behind a proxy that throttles above the budget
    and answers PENDING for `pending` seconds after each change, as real Route 53 does (the
    operator waits for INSYNC in its event loop, so a fleet's waits hold no thread).
    `changes` edit every release's spec (see `fleet.release_doc`)."""
    state = environment.up(layout, say=lambda _m: None)
    apis = {
        c: client_from_kubeconfig(layout.kubeconfig.read_text(), c) for c in ("mgmt", "even", "odd")
    }
    custom = client.CustomObjectsApi(apis["mgmt"])
    base = fleet.canonical_doc(layout.repo)
    docs = [fleet.release_doc(base, f"fleet-{i:03d}", **(changes or {})) for i in range(count)]
    # The fake node takes 1,000 pods: a larger fleet's old and new Deployments need more.
    for extra in range(count * base["spec"]["service"]["replicas"] // 1000):
        for cluster in ("even", "odd"):
            apply(apis[cluster], seed.fake_node(f"{seed.NODE_NAME}-fleet-{extra}"))
    kubeconfig = apicount.install(apis, layout.kubeconfig, layout.root / "bench-kubeconfig")
    bakes = len(base["spec"]["traffic"]["steps"]) * seconds(base["spec"]["analysis"]["bakeTime"])
    figures: dict[str, list[float]] = {}
    steps = len(base["spec"]["traffic"]["steps"])
    faults = Faults(max_rate=ROUTE53_BUDGET, pending_seconds=pending)
    with FaultProxy(state.route53_url, faults) as proxy:
        operator = OperatorProcess(
            {
                **environment.environment_variables(layout, state),
                "KUBECONFIG": str(kubeconfig),
                "AWS_ENDPOINT_URL_ROUTE_53": proxy.url,
                "SPRINTOPS_ROUTE53_MAX_RATE": str(ROUTE53_BUDGET),
                "SPRINTOPS_ROUTE53_WRITE_SPACING": str(FLEET_SPACING),
                "SPRINTOPS_ROUTE53_READ_SPACING": str(FLEET_SPACING),
            },
            layout.root / "logs" / "operator-fleet.log",
        )
        operator.start()
        try:
            wait_serving(operator)
            rig = FleetRig(layout, apis, docs, proxy, operator)
            for _ in range(runs):
                for name, value in rig.run().items():
                    figures.setdefault(name, []).append(value)
        finally:
            operator.stop()
            for doc in docs:
                fleet.remove(custom, doc["metadata"]["name"], wait=False)
    return {
        **{name: summary(values) for name, values in figures.items()},
        "configured_bakes_s": bakes,
        "pending_per_change_s": pending,
        "route53_spacing_s": FLEET_SPACING,
        "releases": count,
        "runs": runs,
        "targets": {
            # the configured bakes and INSYNC waits (Route 53's own time), plus 10 s for a
            # hundred releases and 60 s for a thousand
            "wall_s.p95": f"<= {bakes + steps * pending + (10 if count <= 100 else 60):g}",
            "route53_requests.p95": f"<= {60 * max(1, count // 100)}",
            "route53_peak_per_second.p95": f"<= {ROUTE53_BUDGET}",
            "route53_throttled.p95": "<= 0",
            "operator_peak_rss_mb.p95": "<= 250",
        },
    }


@dataclass
class FleetRig:
    layout: environment.Layout
    apis: dict[str, client.ApiClient]
    docs: list[dict[str, Any]]
    proxy: FaultProxy
    operator: OperatorProcess

    def run(self) -> dict[str, float]:
        """One release of the whole fleet, from the baseline, with fresh counters."""
        custom = client.CustomObjectsApi(self.apis["mgmt"])
        for doc in self.docs:
            fleet.remove(custom, doc["metadata"]["name"], lift_finalizer=False)
        fleet.prepare_many(self.layout, self.apis, self.docs)
        assert self.operator.proc is not None
        self.proxy.reset()
        before = {c: apicount.dispatched(server) for c, server in self.apis.items()}
        own_before = _operator_metrics(self.operator)
        sampler = Sampler(self.operator.proc.pid)
        sampler.start()
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda d: custom.create_namespaced_custom_object(
                        api.GROUP, api.VERSION, NS, api.PLURAL, d
                    ),
                    self.docs,
                )
            )
        # A fleet of 1,000 takes minutes just for its Deployments here (3,000 fake pods).
        names = {d["metadata"]["name"] for d in self.docs}
        objs = wait_terminal(custom, names, timeout=max(600.0, 3.0 * len(names)))
        wall = time.monotonic() - started
        sampler.stop.set()
        sampler.join()
        requests = sum(apicount.dispatched(s) - before[c] for c, s in self.apis.items())
        phases = {n: o["status"]["phase"] for n, o in objs.items()}
        if set(phases.values()) != {"Succeeded"}:
            raise RuntimeError(f"fleet releases did not all succeed: {phases}")
        stats = self.proxy.stats
        own = {k: v - own_before.get(k, 0.0) for k, v in _operator_metrics(self.operator).items()}
        batches = own.get("sprintops_route53_batch_changes_count", 0.0)
        return {
            "wall_s": wall,
            "route53_requests": sum(stats.by_operation.values()),
            "route53_change_batches": stats.by_operation["ChangeResourceRecordSets"],
            "route53_change_polls": stats.by_operation["GetChange"],
            "route53_listings": stats.by_operation["ListResourceRecordSets"],
            "route53_peak_per_second": stats.peak_rate(),
            "route53_throttled": stats.injected["Throttling"],
            "route53_releases_per_batch": (
                own.get("sprintops_route53_batch_changes_sum", 0.0) / 2 / batches if batches else 0
            ),
            "route53_pacing_wait_s_total": own.get("sprintops_route53_pacing_seconds_total", 0.0),
            "reconcile_mean_ms": 1000
            * own.get("sprintops_reconcile_duration_seconds_sum", 0.0)
            / max(1.0, own.get("sprintops_reconcile_duration_seconds_count", 0.0)),
            "kube_requests_per_release": requests / len(self.docs),
            "operator_peak_rss_mb": sampler.peak_rss_mb,
            "operator_cpu_seconds": sampler.cpu_seconds,
            **_timeline(list(objs.values())),
        }


def _operator_metrics(operator: OperatorProcess) -> dict[str, float]:
    """The operator's own unlabelled counters and histogram sums, from its /metrics."""
    url = f"http://127.0.0.1:{operator.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def wait_serving(operator: OperatorProcess, timeout: float = 60) -> None:
    """Until the operator's startup handler has run (it serves /metrics last)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=2
            ):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_terminal(
    custom: client.CustomObjectsApi, names: set[str], timeout: float = 600
) -> dict[str, dict[str, Any]]:
    """The releases' objects once every one of them is in a terminal phase. A watch, not a
    poll: listing a hundred releases several times a second would load the apiserver the
    operator is being measured against."""
    deadline = time.monotonic() + timeout
    latest: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        stream = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            NS,
            api.PLURAL,
            timeout_seconds=max(1, int(deadline - time.monotonic())),
        )
        try:
            for event in stream:
                obj = event["object"]
                if obj["metadata"]["name"] in names:
                    latest[obj["metadata"]["name"]] = obj
                if len(latest) == len(names) and all(
                    (o.get("status") or {}).get("phase") in api.TERMINAL_PHASES
                    for o in latest.values()
                ):
                    return latest
        except ApiException as exc:
            # A loaded apiserver's watch cache falls behind (504 "Too large resource
            # version") or forgets (410): watch again from a fresh listing.
            if exc.status not in (410, 504):
                raise
            time.sleep(1)
    raise TimeoutError(f"fleet not finished after {timeout:.0f}s")


def _timeline(objs: list[dict[str, Any]]) -> dict[str, float]:
    """Where a fleet's time went, from the releases' own status: medians over releases."""
    pending, deploy, gaps, overruns = [], [], [], []
    for obj in objs:
        spec = SprintReleaseSpec.model_validate(obj["spec"])
        status = SprintReleaseStatus.model_validate(obj["status"])
        steps = status.steps
        created = parse_timestamp(obj["metadata"]["creationTimestamp"])
        deploying = parse_timestamp(status.deploy_started_at or steps[0].started_at)
        pending.append((deploying - created).total_seconds())
        deploy.append((parse_timestamp(steps[0].started_at) - deploying).total_seconds())
        bake = seconds(spec.analysis.bake_time)
        for prev, nxt in itertools.pairwise(steps):
            done = parse_timestamp(prev.completed_at or prev.started_at)
            gaps.append((parse_timestamp(nxt.started_at) - done).total_seconds() * 1000)
        for step in steps:
            if step.completed_at:
                baked = parse_timestamp(step.completed_at) - parse_timestamp(step.started_at)
                overruns.append(baked.total_seconds() - bake)
    return {
        "create_to_deploy_s": statistics.median(pending),
        "deploy_to_first_step_s": statistics.median(deploy),
        "step_gap_ms": statistics.median(gaps),
        "bake_overrun_s": statistics.median(overruns),
    }


# --- idle_1000


def proc_stats(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds) of a process, from /proc; ProcessLookupError once it has
    ended (gone, or a zombie, which has no VmRSS)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    rss_kb = next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), None)
    if rss_kb is None:
        raise ProcessLookupError(pid)
    ticks = os.sysconf("SC_CLK_TCK")
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / ticks


def idle_1000(
    layout: environment.Layout, count: int = 1000, settle: float = 60.0, warm_up: float = 20.0
) -> dict[str, Any]:
    """Succeeded releases with nothing left to do, watched by one operator: what it costs."""
    state = environment.up(layout, say=lambda _m: None)
    mgmt = client_from_kubeconfig(layout.kubeconfig.read_text(), "mgmt")
    custom = client.CustomObjectsApi(mgmt)
    base = fleet.canonical_doc(layout.repo)
    done = SprintReleaseStatus(
        phase="Succeeded",
        target_cluster="even",
        previous_cluster="odd",
        step_index=2,
        step="3/3",
        target_weight=100,
        weights=Weights(even=100, odd=0),
        observed_generation=1,
        scale_down_at="2026-01-01T00:00:00.000Z",
        scaled_down_at="2026-01-01T00:00:00.000Z",
        message="idle",
    ).merge_patch(None)
    names = []
    for i in range(count):
        doc = fleet.release_doc(base, f"idle-{i}")
        names.append(doc["metadata"]["name"])
        custom.create_namespaced_custom_object(api.GROUP, api.VERSION, NS, api.PLURAL, doc)
        custom.patch_namespaced_custom_object_status(
            api.GROUP, api.VERSION, NS, api.PLURAL, doc["metadata"]["name"], {"status": done}
        )
    operator = OperatorProcess(
        environment.environment_variables(layout, state), layout.root / "logs" / "operator-idle.log"
    )
    operator.start()
    assert operator.proc is not None
    try:
        figures = idle_cost(operator.proc.pid, settle, warm_up)
    finally:
        operator.stop()
        for name in names:
            fleet.remove(custom, name, wait=False)
    return {
        **figures,
        "releases": count,
        "targets": {
            "rss_mb.p95": "<= 150" if count <= 1000 else "<= 400",
            "cpu_seconds_over_60s": "<= 1",
        },
    }


def idle_cost(pid: int, settle: float = 60.0, warm_up: float = 20.0) -> dict[str, Any]:
    """RSS (sampled every 5 s) and CPU seconds of a controller over `settle` seconds, once
    it has seen every object and gone quiet: at least `warm_up` seconds, then until it used
    under 5% of a core for 5 s (at most 10 minutes; a fixed wait measured a start-up still
    working through 10,000 objects). A `warm_up` of 0 (the smoke test) does not wait."""
    started = time.monotonic()
    time.sleep(warm_up)
    cpu = proc_stats(pid)[1]
    while warm_up and time.monotonic() - started < 600:
        time.sleep(5)
        cpu, before = proc_stats(pid)[1], cpu
        if cpu - before < 0.25:
            break
    warmed = time.monotonic() - started
    rss_start, cpu_start = proc_stats(pid)
    samples = []
    deadline = time.monotonic() + settle
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(5.0, left))
        samples.append(proc_stats(pid)[0])
    rss_end, cpu_end = proc_stats(pid)
    return {
        "rss_mb": summary([rss_start, *samples, rss_end]),
        "cpu_seconds_over_60s": round(cpu_end - cpu_start, 2),
        "quiet_after_s": round(warmed, 1),
    }


def run(
    layout: environment.Layout,
    out: Path,
    console: Console | None = None,
    *,
    scale: bool = False,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """`scale` adds the slow end of the cost curve: a fleet of 1,000 and 10,000 idle; `only`
    names the scenarios to run, of all of them."""
    console = console or wide_console()
    results: dict[str, Any] = {
        "machine": {
            "cores": cores(),
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
    }
    measured: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("plan_throughput", lambda: plan_throughput(layout.repo)),
        ("step_overhead", lambda: step_overhead(layout)),
        ("fleet_10", lambda: fleet_100(layout, count=10)),
        ("fleet_100", lambda: fleet_100(layout)),
        ("idle_1000", lambda: idle_1000(layout)),
        ("idle_10000", lambda: idle_1000(layout, count=10_000)),
        ("fleet_1000", lambda: fleet_100(layout, count=1000, runs=1)),
    ]
    slow = {"idle_10000", "fleet_1000"}
    if unknown := set(only or ()) - {name for name, _ in measured}:
        raise SystemExit(f"no such scenario: {', '.join(sorted(unknown))}")
    measured = [
        (name, measure)
        for name, measure in measured
        if (name in only if only else scale or name not in slow)
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    for name, measure in measured:
        console.print(f"bench: {name}")
        try:
            results[name] = measure()
        except Exception as exc:  # the table says which scenario failed and why; the rest run
            console.print_exception()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
        # Written after each scenario: a long run that fails late keeps what it measured.
        out.write_text(json.dumps(results, indent=2) + "\n")
    table = Table(title=f"sprintops bench ({results['machine']['cores']} cores)")
    for column in ("scenario", "figure", "median", "p95", "n", "target", ""):
        table.add_column(column)
    for scenario, figures in results.items():
        if scenario == "machine":
            continue
        if "error" in figures:
            table.add_row(scenario, "[bold red]failed[/]", figures["error"], "", "", "", "")
            continue
        targets: dict[str, str] = figures.get("targets", {})
        for figure, value in figures.items():
            if figure == "targets":
                continue
            stats = value if isinstance(value, dict) else {"median": value}
            goal = next(
                ((key, t) for key, t in targets.items() if key.split(".")[0] == figure), None
            )
            verdict = ""
            if goal is not None:
                stat = goal[0].partition(".")[2] or "median"
                verdict = "met" if meets(stats[stat], goal[1]) else "[bold red]NOT met[/]"
            table.add_row(
                scenario,
                figure,
                str(stats["median"]),
                str(stats.get("p95", "")),
                str(stats.get("n", "")),
                f"{goal[0].partition('.')[2] or 'value'} {goal[1]}" if goal else "",
                verdict,
            )
    console.print(table)
    console.print(f"written to {out}")
    return results


def meets(value: float, target: str) -> bool:
    """`target` is "<= N" or ">= N"."""
    op, bound = target.split()
    return value <= float(bound) if op == "<=" else value >= float(bound)


def wide_console() -> Console:
    console = Console()
    if not console.is_terminal:  # a log or a pipe: do not squeeze a table into 80 columns
        console = Console(width=120)
    return console


def cores() -> int:
    return os.cpu_count() or 0
