"""`make env-up` / `make env-down`: the whole local environment, started once and reused.

State lives in `.sprintops/env/`: kwokctl's work directory (`kwok/`, with each cluster's
certificates, etcd data and logs), our own logs, kubeconfig, env.sh and state.json (pids and
addresses). `up` reuses a running environment as it is; `down` stops every
process and deletes the directory, so the next `up` starts from the seeded baseline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sprintops import api
from sprintops.api import Cluster, SprintReleaseSpec
from sprintops.kube import client_from_kubeconfig
from sprintops_dev import binaries, seed
from sprintops_dev.controlplane import (
    CLUSTERS,
    OPERATOR_USER,
    WORKLOAD_CLUSTERS,
    Kwokctl,
    merge,
    write_kubeconfig,
)
from sprintops_dev.processes import alive, free_port, spawn, stop, wait_for

DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}
LIVE: Cluster = "odd"  # sprint 41 is live in odd
# What each workload cluster's mesh calls it (Istio's destination_cluster): not the keys, so
# no default can hide a release that forgets to name them.
MESH = {"even": "kwok-even-mesh", "odd": "kwok-odd-mesh"}


@dataclass
class State:
    """`pids` are the processes started here; kwokctl keeps the control plane's own."""

    pids: dict[str, int] = field(default_factory=dict)
    servers: dict[str, str] = field(default_factory=dict)
    route53_url: str = ""
    prometheus_url: str = ""
    # Each workload cluster's own Prometheus (the one above holds both, under the keys).
    cluster_prometheus: dict[str, str] = field(default_factory=dict)
    simulator_port: int = 0
    bin_dir: str = ""
    bins: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Layout:
    repo: Path

    @property
    def root(self) -> Path:
        return Path(os.environ.get("SPRINTOPS_ENV_DIR", self.repo / ".sprintops/env")).resolve()

    @property
    def kwok(self) -> Path:
        """kwokctl's work directory: each cluster's certificates, etcd data, pids and logs."""
        return self.root / "kwok"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def env_sh(self) -> Path:
        return self.root / "env.sh"

    @property
    def simulator_config(self) -> Path:
        return self.root / "simulator.json"

    def load(self) -> State | None:
        if not self.state_file.exists():
            return None
        return State(**json.loads(self.state_file.read_text()))

    def save(self, state: State) -> None:
        self.state_file.write_text(json.dumps(asdict(state), indent=2))


def environment_variables(layout: Layout, state: State) -> dict[str, str]:
    return {
        "KUBECONFIG": str(layout.kubeconfig),
        "AWS_ENDPOINT_URL_ROUTE_53": state.route53_url,
        **DUMMY_AWS,
        "SPRINTOPS_PROMETHEUS_URL": state.prometheus_url,
        "SPRINTOPS_ENV_DIR": str(layout.root),
    }


def _write_env_sh(layout: Layout, state: State) -> None:
    lines = [f'export {k}="{v}"' for k, v in environment_variables(layout, state).items()]
    lines.append(f'export PATH="{state.bin_dir}:$PATH"')
    layout.env_sh.write_text("# Written by `make env-up`; source it.\n" + "\n".join(lines) + "\n")


def control_plane(layout: Layout, state: State) -> Kwokctl:
    return Kwokctl({n: Path(p) for n, p in state.bins.items()}, layout.kwok)


def is_running(layout: Layout) -> bool:
    state = layout.load()
    if state is None or not state.pids or not state.servers:
        return False
    if not all(alive(pid) for pid in state.pids.values()):
        return False
    plane = control_plane(layout, state)
    return all(plane.healthy(c) and not plane.dead(c) for c in CLUSTERS)


def down(layout: Layout, say: Callable[[str], None] = print) -> None:
    state = layout.load()
    if state is not None:
        # Reverse start order: clients first, the clusters last.
        for name, pid in reversed(list(state.pids.items())):
            stop(pid)
            say(f"stopped {name} (pid {pid})")
        if state.bins:
            plane = control_plane(layout, state)
            for cluster in CLUSTERS:
                if plane.dir(cluster).exists():
                    plane.delete(cluster)
                    say(f"deleted cluster {cluster}")
    if layout.root.exists():
        shutil.rmtree(layout.root)
        say(f"removed {layout.root}")


def up(layout: Layout, say: Callable[[str], None] = print) -> State:
    """Starts or reuses the environment; this process's environment variables then point
    at it, as `. env.sh` does for a shell."""
    started = time.monotonic()

    def step(msg: str) -> None:
        say(f"[{time.monotonic() - started:5.1f}s] {msg}")

    if is_running(layout):
        state = layout.load()
        assert state is not None
        _write_env_sh(layout, state)
        # The CRD is the one thing a developer changes between runs; keep it current.
        admin = layout.kubeconfig.read_text()
        seed.apply_crd(client_from_kubeconfig(admin, "mgmt"))
        step(f"local environment already running; reusing it ({layout.env_sh})")
        os.environ.update(environment_variables(layout, state))
        return state
    if layout.root.exists():
        step("cleaning up a partial environment")
        down(layout, say=lambda _m: None)
    layout.root.mkdir(parents=True)
    state = State()
    try:
        _start(layout, state, step)
    except BaseException:
        layout.save(state)
        step(f"start-up failed; logs are in {layout.root / 'logs'}")
        raise
    layout.save(state)
    _write_env_sh(layout, state)
    # This process is a client of it too (bench, chaos, tests): same variables as env.sh.
    os.environ.update(environment_variables(layout, state))
    step(f"local environment ready: source {layout.env_sh}")
    return state


def _start(layout: Layout, state: State, step: Callable[[str], None]) -> None:
    step("resolving control-plane binaries (built once, then cached)")
    bins = binaries.resolve(layout.repo)
    binaries.prometheus()  # fail early, before anything starts
    state.bin_dir = str(bins["kubectl"].parent)
    state.bins = {name: str(path) for name, path in bins.items()}
    layout.save(state)  # so `down` can clean up after a start that fails half-way
    logs = layout.root / "logs"

    route53_port = free_port()
    state.route53_url = f"http://127.0.0.1:{route53_port}"
    step(f"starting moto (Route 53) on {state.route53_url}")
    state.pids["moto"] = spawn(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(route53_port)],
        logs / "moto.log",
    )
    os.environ.update({"AWS_ENDPOINT_URL_ROUTE_53": state.route53_url, **DUMMY_AWS})

    plane = control_plane(layout, state)
    step("creating clusters mgmt, even, odd with kwokctl (binary runtime)")
    plane.create(CLUSTERS)
    for cluster in CLUSTERS:
        wait_for(
            f"kube-apiserver ({cluster})",
            lambda c=cluster: plane.healthy(c),  # type: ignore[misc]
            90,
            log=plane.dir(cluster) / "logs" / "kube-apiserver.log",
        )
        state.servers[cluster] = plane.server(cluster)
    # A component that died at start (its port taken) otherwise shows only as a Deployment
    # that never becomes Available.
    if dead := [d for c in CLUSTERS for d in plane.dead(c)]:
        raise RuntimeError("control-plane components not running:\n  " + "\n  ".join(dead))
    admin = merge({c: plane.kubeconfig(c) for c in CLUSTERS}, current="mgmt")
    write_kubeconfig(layout.kubeconfig, admin)
    step("control planes ready")

    wait_for("moto", lambda: _http_ok(state.route53_url + "/moto-api/"), 30, pid=state.pids["moto"])
    spec = seed.canonical(layout.repo)
    apis = {c: client_from_kubeconfig(admin, c) for c in CLUSTERS}
    secrets = {
        c: yaml.safe_dump(plane.kubeconfig(c, user=OPERATOR_USER)) for c in WORKLOAD_CLUSTERS
    }
    step(
        "seeding mgmt (CRD, namespace releases, kubeconfig Secrets), even and odd (Istio CRDs, "
        f"VirtualServices), Route 53 (odd=100, even=0) and sprint {seed.PREVIOUS_SPRINT} in {LIVE}"
    )
    with ThreadPoolExecutor(3) as pool:
        jobs = [
            pool.submit(seed.seed_mgmt, apis["mgmt"], secrets),
            *[
                pool.submit(seed.seed_workload, apis[c], spec, bins[binaries.ISTIO_CRDS])
                for c in WORKLOAD_CLUSTERS
            ],
        ]
        for job in jobs:
            job.result()
    seed.service_baseline({c: apis[c] for c in api.CLUSTERS}, spec, LIVE)

    state.simulator_port = free_port()
    layout.simulator_config.write_text(
        json.dumps(
            {
                "port": state.simulator_port,
                "kubeconfig": str(layout.kubeconfig),
                "mesh": MESH,
                "routes": [],
            }
        )
    )
    simulate(layout, spec)
    step(f"starting the traffic simulator on 127.0.0.1:{state.simulator_port}")
    state.pids["simulator"] = spawn(
        [sys.executable, "-m", "sprintops_dev.simulator", str(layout.simulator_config)],
        logs / "simulator.log",
    )
    state.cluster_prometheus = {c: f"http://127.0.0.1:{free_port()}" for c in WORKLOAD_CLUSTERS}
    state.prometheus_url = f"http://127.0.0.1:{free_port()}"
    for cluster in WORKLOAD_CLUSTERS:
        name = f"prometheus-{cluster}"
        config = _cluster_prometheus_config(state.simulator_port, MESH[cluster])
        (layout.root / f"{name}.yml").write_text(yaml.safe_dump(config))
    (layout.root / "prometheus.yml").write_text(
        yaml.safe_dump(_default_prometheus_config(state.simulator_port))
    )
    step(
        f"starting Prometheus for even ({state.cluster_prometheus['even']}) and odd "
        f"({state.cluster_prometheus['odd']}), under their mesh names, and the operator's "
        f"default one with both under the keys ({state.prometheus_url}, every 0.25 s)"
    )
    for cluster in WORKLOAD_CLUSTERS:
        start_prometheus(layout, state, cluster)
    start_prometheus(layout, state)


def start_prometheus(layout: Layout, state: State, cluster: str | None = None) -> None:
    """Starts (or, after `stop_prometheus`, restarts) a Prometheus on its recorded port:
    a workload cluster's own, or (None) the operator's default one."""
    name = f"prometheus-{cluster}" if cluster else "prometheus"
    url = state.cluster_prometheus[cluster] if cluster else state.prometheus_url
    log = layout.root / "logs" / f"{name}.log"
    state.pids[name] = spawn(
        [
            str(binaries.prometheus()),
            f"--config.file={layout.root / f'{name}.yml'}",
            f"--storage.tsdb.path={layout.root / name}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        log,
    )
    layout.save(state)
    wait_for(name, lambda: _http_ok(url + "/-/ready"), 60, pid=state.pids[name], log=log)


def stop_apiserver(layout: Layout, state: State, cluster: str) -> None:
    """For tests of an unreachable cluster: its control-plane node dies (apiserver and
    controllers, SIGKILL); its state stays in etcd."""
    control_plane(layout, state).kill(cluster)


def start_apiserver(layout: Layout, state: State, cluster: str) -> None:
    """Brings a stopped cluster back on its old address, so every kubeconfig still works.

    Its controllers restart with it, as on a control-plane node that comes back: after an
    outage their watches back off for up to a minute, and a Deployment created in that
    minute would wait for them, whatever the operator does."""
    plane = control_plane(layout, state)
    plane.start(cluster)
    wait_for(
        f"kube-apiserver ({cluster})",
        lambda: plane.healthy(cluster),
        90,
        log=plane.dir(cluster) / "logs" / "kube-apiserver.log",
    )


def pid(layout: Layout, state: State, process: str) -> int:
    """`process` is a key of `state.pids`, or `apiserver-<cluster>`."""
    if process in state.pids:
        return state.pids[process]
    cluster = process.removeprefix("apiserver-")
    return control_plane(layout, state).pid(cluster, "kube-apiserver")


def freeze(layout: Layout, state: State, process: str) -> None:
    """SIGSTOP: the process keeps its port, the kernel still accepts connections, and nothing
    answers them (a hung server, unlike a dead one)."""
    os.kill(pid(layout, state, process), signal.SIGSTOP)


def thaw(layout: Layout, state: State, process: str) -> None:
    os.kill(pid(layout, state, process), signal.SIGCONT)


def stop_prometheus(state: State) -> None:
    """For tests of an unreachable Prometheus."""
    stop(state.pids["prometheus"])


def simulate(layout: Layout, *specs: SprintReleaseSpec, dns: Dns | None = None) -> None:
    """Adds services to the traffic simulator (it re-reads its config on every poll);
    `dns` gives them clients of their own kind (see `dns`)."""
    config = json.loads(layout.simulator_config.read_text())
    routes = {(r["namespace"], r["service"]): r for r in config["routes"]}
    for spec in specs:
        route: dict[str, Any] = {
            "service": spec.service.name,
            "namespace": spec.service.namespace,
            "route53": spec.traffic.route53.model_dump(by_alias=True, exclude_none=True),
        }
        if dns is not None:
            route["dns"] = asdict(dns)
        routes[(spec.service.namespace, spec.service.name)] = route
    config["routes"] = list(routes.values())
    _write_simulator_config(layout, config)


@dataclass(frozen=True)
class Dns:
    """How clients find a service: through resolver caches that keep an answer for the
    record's TTL, TTL seconds passing `time_scale` times faster than real ones (0: clients
    follow the weights at once), and a `keepalive_share` that looks again only every
    `keepalive_seconds`."""

    time_scale: float = 0.0
    keepalive_share: float = 0.0
    keepalive_seconds: float = 0.0


def dns(layout: Layout, clients: Dns) -> None:
    """The kind of clients every service has unless `simulate` gave it its own."""
    config = json.loads(layout.simulator_config.read_text())
    config["dns"] = asdict(clients)
    _write_simulator_config(layout, config)


def incident(layout: Layout, error_rate: float) -> None:
    """An error rate that every service in both clusters shares: a bad hour, not a bad
    build (0 ends it)."""
    config = json.loads(layout.simulator_config.read_text())
    config["incident_error_rate"] = error_rate
    _write_simulator_config(layout, config)


def _write_simulator_config(layout: Layout, config: dict[str, Any]) -> None:
    tmp = layout.simulator_config.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(layout.simulator_config)


_EVERY_SECOND = {"scrape_interval": "1s", "evaluation_interval": "1s"}


def _cluster_prometheus_config(simulator_port: int, mesh_name: str) -> dict[str, Any]:
    """One cluster's Prometheus: only that cluster's series, as a Prometheus inside it has."""
    return {
        "global": _EVERY_SECOND,
        "scrape_configs": [
            {
                "job_name": "istio-mesh",
                "static_configs": [{"targets": [f"127.0.0.1:{simulator_port}"]}],
                "metric_relabel_configs": [
                    {
                        "source_labels": ["destination_cluster"],
                        "regex": re.escape(mesh_name),
                        "action": "keep",
                    }
                ],
            }
        ],
    }


def _default_prometheus_config(simulator_port: int) -> dict[str, Any]:
    """The operator's default Prometheus: both clusters' series, each mesh name rewritten to
    its key, which is what a release that names neither expects. It scrapes the simulator
    itself rather than federating the clusters' servers: one hop less of delay for the
    share of traffic that a step's bake waits for."""
    rename = [
        {
            "source_labels": ["destination_cluster"],
            "regex": re.escape(MESH[cluster]),
            "target_label": "destination_cluster",
            "replacement": cluster,
        }
        for cluster in WORKLOAD_CLUSTERS
    ]
    return {
        # Four times a second: a step's bake starts when this server sees its traffic
        # arrive, so its scrape interval is added to every step of every release.
        "global": {"scrape_interval": "250ms", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "istio-mesh",
                "static_configs": [{"targets": [f"127.0.0.1:{simulator_port}"]}],
                "metric_relabel_configs": rename,
            }
        ],
    }


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as r:
        return bool(r.status == 200)
