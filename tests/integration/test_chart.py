"""The Helm chart: lint, render, server-side dry-run, and its RBAC proven on the real apiserver."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sprintops.api import SprintReleaseSpec
from sprintops_dev import environment
from sprintops_dev.identities import service_account_token, token_kubeconfig
from sprintops_dev.operator_process import OperatorProcess
from tests.conftest import REPO
from tests.integration.conftest import Env, Operator, wait_phase
from tests.integration.test_dashboard import dashboard

CHART = REPO / "charts/sprintops"
NAMESPACE = "sprintops-system"
SA = f"system:serviceaccount:{NAMESPACE}:sp-sprintops"
ReleaseOf = Callable[..., tuple[dict[str, Any], SprintReleaseSpec]]


@pytest.fixture(scope="module")
def helm() -> str:
    return subprocess.run(
        ["bash", str(REPO / "hack/testenv/tools.sh"), "helm"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def _render(helm: str, *sets: str, crds: bool = False) -> str:
    argv = [
        helm,
        "template",
        "sp",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        "1.34.3",
        *(["--include-crds"] if crds else []),
    ]
    for s in sets:
        argv += ["--set", s]
    result = _run(*argv)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _kubectl(env: Env, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return _run(
        f"{env.state.bin_dir}/kubectl",
        "--kubeconfig",
        str(env.layout.kubeconfig),
        "--context",
        "mgmt",
        *args,
        stdin=stdin,
    )


def test_lint(helm: str) -> None:
    result = _run(helm, "lint", "--strict", str(CHART), "--kube-version", "1.34.3")
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_every_option(helm: str) -> None:
    plain = list(yaml.safe_load_all(_render(helm)))
    assert {d["kind"] for d in plain} == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
    }
    full = list(
        yaml.safe_load_all(
            _render(
                helm,
                "metrics.serviceMonitor.enabled=true",
                "dashboard.enabled=true",
                "aws.irsaRoleArn=arn:aws:iam::123456789012:role/sprintops",
                "aws.existingSecret=aws-credentials",
                "watchNamespaces={releases,team-b}",
            )
        )
    )
    kinds = [d["kind"] for d in full]
    # One per watched namespace, and the freeze reader.
    assert kinds.count("Role") == 3 and "ServiceMonitor" in kinds and "ConfigMap" in kinds
    sa = next(d for d in full if d["kind"] == "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/sprintops")
    deployment = next(d for d in full if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "aws-credentials"}}]
    assert "--namespace=team-b" in container["args"]
    dashboard = next(d for d in full if d["kind"] == "ConfigMap")
    assert '"title": "sprintops"' in dashboard["data"]["sprintops.json"]


def test_endpoints_and_freeze_editors(helm: str) -> None:
    """Receivers and gates go to a Secret mounted as the operator's endpoints file; the
    freeze's editors may patch that one ConfigMap."""
    docs = list(
        yaml.safe_load_all(
            _render(
                helm,
                "endpoints.gates.cab.url=https://cab.example.com/hook",
                "endpoints.receivers.chat.url=https://hooks.example.com/T/B/X",
                "endpoints.receivers.chat.type=slack",
                "endpoints.receivers.chat.default=true",
                "freeze.editors[0].kind=Group",
                "freeze.editors[0].name=oncall",
            )
        )
    )
    secret = next(d for d in docs if d["kind"] == "Secret")
    loaded = yaml.safe_load(secret["stringData"]["endpoints.yaml"])
    assert loaded["receivers"]["chat"] == {
        "url": "https://hooks.example.com/T/B/X",
        "type": "slack",
        "default": True,
    }
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["SPRINTOPS_ENDPOINTS_FILE"]["value"] == "/etc/sprintops/endpoints/endpoints.yaml"
    assert env["SPRINTOPS_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert any(
        v.get("secret", {}).get("secretName") == secret["metadata"]["name"] for v in pod["volumes"]
    )
    # No URL in the pod spec: only its checksum, which changes with it.
    assert "hooks.example.com" not in yaml.safe_dump(deployment)
    editor = next(
        d for d in docs if d["metadata"]["name"].endswith("freeze-editor") and d["kind"] == "Role"
    )
    named = [r for r in editor["rules"] if r.get("resourceNames")]
    assert named == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": ["sprintops-freeze"],
            "verbs": ["get", "list", "watch", "patch"],
        }
    ]
    for bad in ("endpoints.gates.cab.url=ftp://x", "endpoints.receivers.Bad.url=http://x"):
        result = _run(helm, "template", "sp", str(CHART), "--kube-version", "1.34.3", "--set", bad)
        assert result.returncode != 0, bad


def test_values_schema_rejects_bad_values(helm: str) -> None:
    for bad in (
        "replicaCount=2",
        "prometheus.url=prometheus:9090",
        "watchNamespaces={Bad_NS}",
        "imageTag=x",
    ):
        result = _run(helm, "template", "sp", str(CHART), "--kube-version", "1.34.3", "--set", bad)
        assert result.returncode != 0, bad
        assert "values don't meet the specifications of the schema" in result.stderr, result.stderr


def test_pod_security(helm: str) -> None:
    deployment = next(d for d in yaml.safe_load_all(_render(helm)) if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert (
        pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    )
    container = pod["containers"][0]["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_chart_crd_is_the_generated_one() -> None:
    assert (CHART / "crds/sprintrelease.yaml").read_text() == (
        REPO / "crds/sprintrelease.yaml"
    ).read_text()


def test_server_side_dry_run(env: Env, helm: str) -> None:
    _kubectl(env, "create", "namespace", NAMESPACE)
    rendered = _render(helm, crds=True)
    result = _kubectl(env, "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=rendered)
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/sp-sprintops serverside-applied (server dry run)" in result.stdout


@pytest.fixture(scope="module")
def installed_rbac(env: Env, helm: str) -> str:
    """The chart's ServiceAccount, Roles and RoleBindings, applied for real."""
    _kubectl(env, "create", "namespace", NAMESPACE)
    rbac = [
        d
        for d in yaml.safe_load_all(_render(helm))
        if d["kind"]
        in {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}
    ]
    result = _kubectl(env, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    assert result.returncode == 0, result.stderr
    return SA


ALLOWED = [
    ("get", "sprintreleases.sprintops.io", "releases"),
    ("list", "sprintreleases.sprintops.io", "releases"),
    ("watch", "sprintreleases.sprintops.io", "releases"),
    ("patch", "sprintreleases.sprintops.io", "releases"),
    ("patch", "sprintreleases.sprintops.io/status", "releases"),
    ("create", "events", "releases"),
    ("get", "secrets", "releases"),
    ("list", "namespaces", ""),
    ("watch", "namespaces", ""),
    ("list", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("get", "configmaps/sprintops-freeze", NAMESPACE),
    ("watch", "configmaps/sprintops-freeze", NAMESPACE),
]
DENIED = [
    ("get", "secrets", "kube-system"),
    ("get", "secrets", "default"),
    ("list", "secrets", "releases"),
    ("watch", "secrets", "releases"),
    ("delete", "namespaces", ""),
    ("create", "namespaces", ""),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("get", "secrets", ""),
    ("delete", "sprintreleases.sprintops.io", "releases"),
    ("update", "sprintreleases.sprintops.io", "releases"),
    ("create", "deployments.apps", "releases"),
    ("get", "sprintreleases.sprintops.io", "default"),
    ("create", "clusterroles.rbac.authorization.k8s.io", ""),
    ("impersonate", "users", ""),
    ("*", "*", "releases"),
    ("get", "configmaps", NAMESPACE),
    ("patch", "configmaps/sprintops-freeze", NAMESPACE),
    ("get", "configmaps/sprintops-freeze", "releases"),
]


@pytest.mark.parametrize(("verb", "resource", "namespace"), ALLOWED + DENIED)
def test_rbac_can_i(
    env: Env, installed_rbac: str, verb: str, resource: str, namespace: str
) -> None:
    where = ["-n", namespace] if namespace else []
    result = _kubectl(env, "auth", "can-i", verb, resource, *where, "--as", installed_rbac)
    expected = "yes" if (verb, resource, namespace) in ALLOWED else "no"
    assert result.stdout.strip() == expected, (
        verb,
        resource,
        namespace,
        result.stdout,
        result.stderr,
    )


def test_operator_runs_with_only_the_charts_rbac(
    env: Env, installed_rbac: str, operator: Operator, release_of: ReleaseOf, tmp_path: Path
) -> None:
    """The proof that the Role holds every verb the operator uses: run it as that
    ServiceAccount (a real token from the TokenRequest API) and roll a release out."""
    token = service_account_token(env.apis["mgmt"], NAMESPACE, "sp-sprintops")
    kubeconfig = tmp_path / "sa-kubeconfig"
    kubeconfig.write_text(token_kubeconfig(env.layout.kubeconfig, "mgmt", token, "releases"))
    variables = {
        **environment.environment_variables(env.layout, env.state),
        "KUBECONFIG": str(kubeconfig),
        "SPRINTOPS_NAMESPACE": NAMESPACE,  # as the chart's downward API sets it
    }
    log = tmp_path / "operator-chart-rbac.log"
    restricted = OperatorProcess(variables, log, "--namespace", "releases")
    doc, _ = release_of("rbac-proof", analysis__bakeTime="2s")
    operator.stop()  # the admin operator must not be the one doing the work
    restricted.start()
    try:
        env.create(doc)
        obj = wait_phase(
            env, doc["metadata"]["name"], {"Succeeded", "Failed", "RolledBack"}, timeout=90
        )
    finally:
        restricted.stop()
        operator.start()
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    text = log.read_text()
    # A bare "403" would also match a timestamp's milliseconds.
    assert not re.search(r"Forbidden|(?<!,)\b403\b", text), text[-2000:]
    assert "sprintops started" in text
    assert "freeze state unknown" not in text and "global freeze off" in text


def _dashboard_docs(helm: str) -> list[dict[str, Any]]:
    rendered = _render(
        helm, "webDashboard.enabled=true", "webDashboard.allowHosts={sprint.example}"
    )
    return [d for d in yaml.safe_load_all(rendered) if d["metadata"]["name"] == DASHBOARD]


DASHBOARD = "sp-sprintops-dashboard"


def test_the_in_cluster_dashboard_is_read_only_and_apart(helm: str) -> None:
    """webDashboard.enabled: its own ServiceAccount, read-only verbs, its own pod labels."""
    mine = _dashboard_docs(helm)
    assert {d["kind"] for d in mine} == {
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
    }
    deployment = next(d for d in mine if d["kind"] == "Deployment")
    operator_pods = next(d for d in yaml.safe_load_all(_render(helm)) if d["kind"] == "Deployment")
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector != operator_pods["spec"]["selector"]["matchLabels"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["command"] == ["kubectl-sprint"]
    assert "--read-only" in container["args"] and "--allow-host=sprint.example" in container["args"]
    role = next(d for d in mine if d["kind"] == "ClusterRole")
    assert {v for rule in role["rules"] for v in rule["verbs"]} <= {"get", "list", "watch"}


def test_the_in_cluster_dashboard_shows_releases_and_refuses_actions_as_its_account(
    env: Env, helm: str, operator: Operator, release_of: ReleaseOf, tmp_path: Path
) -> None:
    """The chart's RBAC applied for real, and the server run with the chart's own arguments
    (on loopback here) under a token of its ServiceAccount."""
    mine = _dashboard_docs(helm)
    rbac = [d for d in mine if d["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}]
    _kubectl(env, "create", "namespace", NAMESPACE)
    applied = _kubectl(env, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(rbac))
    assert applied.returncode == 0, applied.stderr
    who = f"system:serviceaccount:{NAMESPACE}:{DASHBOARD}"
    for verb, resource, answer in (
        ("list", "sprintreleases.sprintops.io", "yes"),
        ("patch", "sprintreleases.sprintops.io", "no"),
        ("get", "secrets", "no"),
    ):
        said = _kubectl(env, "auth", "can-i", verb, resource, "-n", "releases", "--as", who)
        assert said.stdout.strip() == answer, (verb, resource, said.stdout)
    doc, _ = release_of("in-cluster-dashboard", analysis__bakeTime="2s")
    name = doc["metadata"]["name"]
    env.create(doc)
    token = service_account_token(env.apis["mgmt"], NAMESPACE, DASHBOARD)
    kubeconfig = tmp_path / "dashboard-sa"
    kubeconfig.write_text(token_kubeconfig(env.layout.kubeconfig, "mgmt", token, "releases"))
    args = next(d for d in mine if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    flags = [a for a in args if a != "dashboard" and not a.startswith(("--address", "--port"))]
    with dashboard(kubeconfig, *flags) as url:
        deadline = time.monotonic() + 20
        listed = ""
        while name not in listed and time.monotonic() < deadline:
            with urllib.request.urlopen(url + "/fragments/releases", timeout=5) as r:
                listed = r.read().decode()
        assert name in listed, listed
        action = urllib.request.Request(
            f"{url}/api/releases/releases/{name}/pause",
            data=b"{}",
            headers={"Origin": url, "Content-Type": "application/json"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(action, timeout=5)
        assert refused.value.code == 403
