"""The local control plane through kwokctl's binary runtime: per cluster an etcd, a
kube-apiserver and a kube-controller-manager, plus kube-scheduler and kwok on the workload
clusters so Deployments become Available. kwokctl owns the certificates (one CA per cluster),
the process supervision and the clean-up; this module only says how to run it."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterable
from contextlib import suppress
from pathlib import Path
from typing import Any

import yaml

from sprintops_dev.processes import alive, free_port

CLUSTERS = ("mgmt", "even", "odd")
WORKLOAD_CLUSTERS = ("even", "odd")
# Controllers a Deployment needs to become Available, plus clean-up of namespaces and owners.
WORKLOAD_CONTROLLERS = (
    "deployment,replicaset,serviceaccount,serviceaccount-token,namespace,garbagecollector"
)
MGMT_CONTROLLERS = "serviceaccount,serviceaccount-token,namespace"
OPERATOR_USER = "sprintops-operator"
# Everything but etcd: what an outage of a cluster's control-plane node takes down.
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")
MGMT_DISABLED = ("kube-scheduler", "kwok-controller")  # mgmt runs no pods


def _patches(cluster: str) -> list[dict[str, Any]]:
    """kube-controller-manager and kube-scheduler run alone: leader election would only make
    them stop during an outage. Their client rate is raised (not through kwokctl's
    --disable-qps-limits, which also turns off the apiserver's priority and fairness, and
    the bench counts requests through its FlowSchemas)."""
    controllers = MGMT_CONTROLLERS if cluster == "mgmt" else WORKLOAD_CONTROLLERS
    args = {
        # Nothing here needs to survive a power cut.
        "etcd": {"unsafe-no-fsync": "true"},
        "kube-controller-manager": {
            "leader-elect": "false",
            "controllers": controllers,
            "kube-api-qps": "500",
            "kube-api-burst": "1000",
            # The defaults (5 Deployments at a time) take 15 s to bring up a 100-service fleet.
            "concurrent-deployment-syncs": "25",
            "concurrent-replicaset-syncs": "25",
        },
        "kube-scheduler": {
            "leader-elect": "false",
            "kube-api-qps": "500",
            "kube-api-burst": "1000",
        },
        # The not-ready taint it adds is lifted by the node-lifecycle controller, which the fake
        # node does not need: kwok marks it Ready itself.
        "kube-apiserver": {
            "disable-admission-plugins": "TaintNodesByCondition",
            "profiling": "false",
            # The default /24 holds about 250 Services, which a fleet_1000 overruns.
            "service-cluster-ip-range": "10.0.0.0/16",
        },
    }
    if cluster == "mgmt":
        del args["kube-scheduler"]
    # In the configuration file: the --extra-args flag splits a value at its commas.
    return [
        {"name": component, "extraArgs": [{"key": k, "value": v} for k, v in pairs.items()]}
        for component, pairs in args.items()
    ]


def _config(cluster: str) -> dict[str, Any]:
    """Every port chosen here: clusters created side by side otherwise pick the same ones."""
    ports = {
        name: free_port()
        for name in (
            "etcdPort",
            "etcdPeerPort",
            "kubeApiserverPort",
            "kwokControllerPort",
            "kubeControllerManagerPort",
            "kubeSchedulerPort",
        )
    }
    return {
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "kind": "KwokctlConfiguration",
        "options": {"bindAddress": "127.0.0.1", **ports},
        "componentsPatches": _patches(cluster),
    }


class Kwokctl:
    """One kwokctl work directory holding the three clusters."""

    def __init__(self, bins: dict[str, Path], workdir: Path) -> None:
        self.bins = bins
        self.workdir = workdir

    def _env(self) -> dict[str, str]:
        # Without KWOK_KUBECTL_BINARY it looks for (or downloads) a kubectl of its own.
        return {
            **os.environ,
            "KWOK_WORKDIR": str(self.workdir),
            "KWOK_KUBECTL_BINARY": str(self.bins["kubectl"]),
        }

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.bins["kwokctl"]), *args],
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kwokctl {' '.join(args[:2])} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def create(self, clusters: Iterable[str]) -> None:
        """Creates the clusters side by side; returns once every process has started."""
        jobs = {c: self._create(c) for c in clusters}
        failed = [c for c, job in jobs.items() if job.wait() != 0]
        if failed:
            raise RuntimeError(
                f"kwokctl create cluster failed for {', '.join(failed)}; "
                f"logs in {self.workdir / 'create-*.log'} and {self.workdir / 'clusters'}"
            )

    def _create(self, cluster: str) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / f"{cluster}.yaml"
        config.write_text(yaml.safe_dump(_config(cluster)))
        disabled = [f"--disable={','.join(MGMT_DISABLED)}"] if cluster == "mgmt" else []
        b = self.bins
        with (self.workdir / f"create-{cluster}.log").open("wb") as log:
            return subprocess.Popen(
                [
                    str(b["kwokctl"]),
                    "create",
                    "cluster",
                    f"--name={cluster}",
                    f"--config={config}",
                    "--runtime=binary",
                    # An empty path: leave the user's own kubeconfig alone.
                    "--kubeconfig=",
                    f"--etcd-binary={b['etcd']}",
                    f"--kube-apiserver-binary={b['kube-apiserver']}",
                    f"--kube-controller-manager-binary={b['kube-controller-manager']}",
                    f"--kube-scheduler-binary={b['kube-scheduler']}",
                    f"--kwok-controller-binary={b['kwok']}",
                    # A restarted kwok otherwise leaves new pods Pending until the old node
                    # lease runs out.
                    "--node-lease-duration-seconds=0",
                    *disabled,
                ],
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def delete(self, cluster: str) -> None:
        """Stops every process of the cluster. kwokctl needs a real kubeconfig path here to
        remove its context from: with an empty one it leaves the processes running."""
        dummy = self.workdir / "no-kubeconfig"
        dummy.touch()
        self._run("delete", "cluster", f"--name={cluster}", f"--kubeconfig={dummy}")

    def start(self, cluster: str) -> None:
        """Starts whatever of the cluster is not running, on the same ports."""
        self._run("start", "cluster", f"--name={cluster}")

    def kill(self, cluster: str, components: Iterable[str] = CONTROL_PLANE) -> None:
        """SIGKILL, as a machine that dies: the apiserver takes a minute to drain on SIGTERM.

        Returns once the processes are gone. Until its parent reaps it a killed process is a
        zombie, which `kwokctl start` takes for a running one (a signal 0 reaches it): it
        would then start nothing and wait two minutes for an apiserver that is not there."""
        killed = []
        for component in components:
            with suppress(FileNotFoundError, ProcessLookupError):
                pid = self.pid(cluster, component)
                os.kill(pid, signal.SIGKILL)
                killed.append((component, pid))
        deadline = time.monotonic() + 10
        for component, pid in killed:
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists():  # never reaped: forget it, so it is restarted
                (self.dir(cluster) / "pids" / f"{component}.pid").unlink(missing_ok=True)

    def dead(self, cluster: str) -> list[str]:
        """The cluster's components that are not running, each with its log's last line."""
        skipped = MGMT_DISABLED if cluster == "mgmt" else ()
        out = []
        for component in ("etcd", *(c for c in CONTROL_PLANE if c not in skipped)):
            try:
                if alive(self.pid(cluster, component)):
                    continue
            except (FileNotFoundError, ValueError):
                pass
            log = self.dir(cluster) / "logs" / f"{component}.log"
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            out.append(f"{cluster}/{component}: {lines[-1] if lines else 'no log'}")
        return out

    def pid(self, cluster: str, component: str) -> int:
        return int((self.dir(cluster) / "pids" / f"{component}.pid").read_text())

    def dir(self, cluster: str) -> Path:
        return self.workdir / "clusters" / cluster

    def kubeconfig(self, cluster: str, user: str | None = None, group: str = "") -> dict[str, Any]:
        """The cluster's admin kubeconfig, or one for `user` (in `group`) signed by its CA."""
        signed = ["--user", user, "--group", group or user] if user else []
        data: dict[str, Any] = yaml.safe_load(
            self._run("get", "kubeconfig", f"--name={cluster}", *signed)
        )
        return data

    def healthy(self, cluster: str, timeout: float = 2.0) -> bool:
        pki = self.dir(cluster) / "pki"
        try:
            ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
            ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
            with urllib.request.urlopen(
                f"{self.server(cluster)}/readyz", context=ctx, timeout=timeout
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def server(self, cluster: str) -> str:
        config = yaml.safe_load((self.dir(cluster) / "kubeconfig.yaml").read_text())
        server: str = config["clusters"][0]["cluster"]["server"]
        return server


def merge(configs: dict[str, dict[str, Any]], *, current: str | None = None) -> dict[str, Any]:
    """One kubeconfig with a context per cluster, each named for its cluster."""

    def only(config: dict[str, Any], kind: str) -> Any:
        (entry,) = config[kind]
        return entry[kind.removesuffix("s")]

    names = list(configs)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": n, "cluster": only(configs[n], "clusters")} for n in names],
        "users": [{"name": n, "user": only(configs[n], "users")} for n in names],
        "contexts": [{"name": n, "context": {"cluster": n, "user": n}} for n in names],
        "current-context": current or names[0],
    }


def write_kubeconfig(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path
