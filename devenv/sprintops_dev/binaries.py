"""Finds the control plane's binaries: the user's own (envtest variables) or our pinned build."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

# envtest's variables first, so users with binaries already build nothing.
OVERRIDES = {
    "etcd": "TEST_ASSET_ETCD",
    "kube-apiserver": "TEST_ASSET_KUBE_APISERVER",
    "kubectl": "TEST_ASSET_KUBECTL",
    "kube-controller-manager": "TEST_ASSET_KUBE_CONTROLLER_MANAGER",
    "kube-scheduler": "TEST_ASSET_KUBE_SCHEDULER",
    "kwok": "TEST_ASSET_KWOK",
    "kwokctl": "TEST_ASSET_KWOKCTL",
}
ISTIO_CRDS = "istio-crds.yaml"


def resolve(repo: Path) -> dict[str, Path]:
    """Every binary plus the Istio CRD file, building only what no override provides."""
    found: dict[str, Path] = {}
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    for name, variable in OVERRIDES.items():
        if value := os.environ.get(variable):
            found[name] = Path(value)
        elif assets and (Path(assets) / name).is_file():
            found[name] = Path(assets) / name
    missing = [n for n in [*OVERRIDES, ISTIO_CRDS] if n not in found]
    if missing:
        built = (
            subprocess.run(
                ["bash", str(repo / "hack/testenv/build.sh"), *missing],
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        found.update({n: Path(built) / n for n in missing})
    return found


def prometheus() -> Path:
    configured = os.environ.get("SPRINTOPS_PROMETHEUS_BIN")
    path = configured or shutil.which("prometheus") or "/usr/bin/prometheus"
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"no Prometheus server at {path}: run `make prometheus` "
            "(Debian's package) or set SPRINTOPS_PROMETHEUS_BIN"
        )
    return Path(path)
