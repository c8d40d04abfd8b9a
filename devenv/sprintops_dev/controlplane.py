"""The local control plane: one etcd, an apiserver per cluster, and for the workload
clusters kube-controller-manager, kube-scheduler and kwok so Deployments become Available."""

from __future__ import annotations

import base64
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
import yaml

from sprintops_dev.certs import CertificateAuthority, KeyPair
from sprintops_dev.processes import free_port, spawn, wait_for

CLUSTERS = ("mgmt", "even", "odd")
WORKLOAD_CLUSTERS = ("even", "odd")
SERVICE_CIDR = "10.96.0.0/16"
# Controllers a Deployment needs to become Available, plus clean-up of namespaces and owners.
WORKLOAD_CONTROLLERS = (
    "deployment,replicaset,serviceaccount,serviceaccount-token,namespace,garbagecollector"
)
MGMT_CONTROLLERS = "serviceaccount,serviceaccount-token,namespace"
OPERATOR_USER = "sprintops-operator"
# Client rate of the controllers and scheduler: one local apiserver can take far more.
CLIENT_RATE = ("--kube-api-qps=500", "--kube-api-burst=1000")


@dataclass(frozen=True)
class Credentials:
    ca: KeyPair
    serving: KeyPair
    admin: KeyPair
    operator: KeyPair
    service_accounts: KeyPair

    @staticmethod
    def create(directory: Path) -> Credentials:
        ca = CertificateAuthority(directory)
        return Credentials(
            ca=ca.pair,
            serving=ca.issue("apiserver", "kube-apiserver"),
            admin=ca.issue("admin", "admin", org="system:masters"),
            operator=ca.issue("operator", OPERATOR_USER),
            # Token signing: the apiserver reads the public key from the certificate.
            service_accounts=ca.issue("sa", "service-accounts", key_type=trustme.KeyType.RSA),
        )

    @staticmethod
    def load(directory: Path) -> Credentials:
        def pair(stem: str) -> KeyPair:
            return KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")

        return Credentials(
            ca=pair("ca"),
            serving=pair("apiserver"),
            admin=pair("admin"),
            operator=pair("operator"),
            service_accounts=pair("sa"),
        )


def kubeconfig(
    servers: dict[str, str], creds: Credentials, user: KeyPair, *, current: str | None = None
) -> dict[str, Any]:
    """A self-contained kubeconfig (data embedded) with one context per cluster."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    names = list(servers)
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": n,
                "cluster": {
                    "server": servers[n],
                    "certificate-authority-data": b64(creds.ca.cert_pem()),
                },
            }
            for n in names
        ],
        "users": [
            {
                "name": "user",
                "user": {
                    "client-certificate-data": b64(user.cert_pem()),
                    "client-key-data": b64(user.key_pem()),
                },
            }
        ],
        "contexts": [{"name": n, "context": {"cluster": n, "user": "user"}} for n in names],
        "current-context": current or names[0],
    }


def write_kubeconfig(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return path


def _ssl_context(creds: Credentials) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(creds.ca.cert))
    ctx.load_cert_chain(str(creds.admin.cert), str(creds.admin.key))
    return ctx


def healthy(url: str, creds: Credentials, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(
            f"{url}/readyz", context=_ssl_context(creds), timeout=timeout
        ) as r:
            return bool(r.status == 200)
    except OSError:
        return False


class ControlPlane:
    """Starts the processes; the caller records their pids and ports."""

    def __init__(self, root: Path, bins: dict[str, Path], creds: Credentials) -> None:
        self.root = root
        self.bins = bins
        self.creds = creds
        self.logs = root / "logs"

    def start_etcd(self) -> tuple[int, int]:
        port, peer = free_port(), free_port()
        log = self.logs / "etcd.log"
        pid = spawn(
            [
                str(self.bins["etcd"]),
                "--data-dir",
                str(self.root / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{peer}",
                "--initial-cluster",
                f"default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ],
            log,
        )

        def ready() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                return b'"true"' in r.read()

        wait_for("etcd", ready, 30, pid=pid, log=log)
        return pid, port

    def start_apiserver(
        self, cluster: str, etcd_port: int, port: int | None = None
    ) -> tuple[int, int]:
        """Starts (or, with `port`, restarts on the same address) one cluster's apiserver."""
        port = port or free_port()
        c = self.creds
        pid = spawn(
            [
                str(self.bins["kube-apiserver"]),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                f"--etcd-prefix=/{cluster}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--tls-cert-file={c.serving.cert}",
                f"--tls-private-key-file={c.serving.key}",
                f"--client-ca-file={c.ca.cert}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={c.service_accounts.cert}",
                f"--service-account-signing-key-file={c.service_accounts.key}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                # The not-ready taint it adds is lifted by the node-lifecycle controller, which
                # the fake node does not need; kwok marks it Ready itself.
                "--disable-admission-plugins=TaintNodesByCondition",
                f"--cert-dir={self.root / 'certs' / cluster}",
            ],
            self.logs / f"apiserver-{cluster}.log",
        )
        return pid, port

    def wait_apiserver(self, cluster: str, pid: int, port: int) -> None:
        url = f"https://127.0.0.1:{port}"
        wait_for(
            f"kube-apiserver ({cluster})",
            lambda: healthy(url, self.creds),
            90,
            pid=pid,
            log=self.logs / f"apiserver-{cluster}.log",
        )

    def start_controllers(self, cluster: str, admin_kubeconfig: Path) -> dict[str, int]:
        """Their pids by name: kube-controller-manager everywhere, kube-scheduler and kwok
        on the workload clusters."""
        c = self.creds
        controllers = MGMT_CONTROLLERS if cluster == "mgmt" else WORKLOAD_CONTROLLERS
        pids = {
            "controller-manager": spawn(
                [
                    str(self.bins["kube-controller-manager"]),
                    f"--kubeconfig={admin_kubeconfig}",
                    "--secure-port=0",
                    "--leader-elect=false",
                    f"--controllers={controllers}",
                    f"--service-account-private-key-file={c.service_accounts.key}",
                    f"--root-ca-file={c.ca.cert}",
                    f"--service-cluster-ip-range={SERVICE_CIDR}",
                    # The defaults (20 requests/s, 5 Deployments at a time) take 15 s to bring
                    # up the pods of a 100-service fleet.
                    *CLIENT_RATE,
                    "--concurrent-deployment-syncs=25",
                    "--concurrent-replicaset-syncs=25",
                ],
                self.logs / f"controller-manager-{cluster}.log",
            )
        }
        if cluster == "mgmt":
            return pids
        pids["scheduler"] = spawn(
            [
                str(self.bins["kube-scheduler"]),
                f"--kubeconfig={admin_kubeconfig}",
                "--secure-port=0",
                "--leader-elect=false",
                *CLIENT_RATE,
            ],
            self.logs / f"scheduler-{cluster}.log",
        )
        pids["kwok"] = spawn(
            [
                str(self.bins["kwok"]),
                f"--kubeconfig={admin_kubeconfig}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--cidr=10.244.0.1/16",
                "--node-ip=10.244.0.1",
                f"--server-address=127.0.0.1:{free_port()}",
            ],
            self.logs / f"kwok-{cluster}.log",
        )
        return pids
