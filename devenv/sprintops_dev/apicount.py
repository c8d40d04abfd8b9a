"""The operator's Kubernetes API requests, as the apiservers themselves count them.

The bench runs the operator under identities nobody else uses: a ServiceAccount on mgmt, the
operator's client certificate on the workload clusters. A FlowSchema (API Priority and
Fairness) matching only those identities makes every apiserver count their requests, kopf's
and ours alike, in `apiserver_flowcontrol_dispatched_requests_total`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from sprintops.kube import apply
from sprintops_dev import seed
from sprintops_dev.controlplane import OPERATOR_USER
from sprintops_dev.identities import service_account_token, token_kubeconfig

FLOW_SCHEMA = "sprintops-bench"
SERVICE_ACCOUNT = ("releases", "sprintops-bench")
_DISPATCHED = "apiserver_flowcontrol_dispatched_requests_total"


def _flow_schema(subjects: list[dict[str, Any]], name: str = FLOW_SCHEMA) -> dict[str, Any]:
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            "matchingPrecedence": 500,
            "priorityLevelConfiguration": {"name": "workload-high"},
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": subjects,
                    "resourceRules": [
                        {
                            "verbs": ["*"],
                            "apiGroups": ["*"],
                            "resources": ["*"],
                            "clusterScope": True,
                            "namespaces": ["*"],
                        }
                    ],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                }
            ],
        },
    }


def install(apis: dict[str, client.ApiClient], admin_kubeconfig: Path, out: Path) -> Path:
    """Counts the operator's requests from now on; returns the kubeconfig it must use on mgmt."""
    for cluster in ("even", "odd"):
        apply(apis[cluster], _flow_schema([{"kind": "User", "user": {"name": OPERATOR_USER}}]))
    return install_service_account(
        apis["mgmt"], admin_kubeconfig, out, cluster="mgmt", account=SERVICE_ACCOUNT
    )


def install_service_account(
    api: client.ApiClient,
    admin_kubeconfig: Path,
    out: Path,
    *,
    cluster: str,
    account: tuple[str, str],
    flow_schema: str = FLOW_SCHEMA,
) -> Path:
    """A cluster-admin ServiceAccount whose requests `cluster`'s apiserver counts under
    `flow_schema`; returns a kubeconfig that authenticates as it."""
    namespace, name = account
    apply(api, seed.namespace(namespace))
    apply(
        api,
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        },
    )
    apply(
        api,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    )
    sa = {"kind": "ServiceAccount", "serviceAccount": {"name": name, "namespace": namespace}}
    apply(api, _flow_schema([sa], flow_schema))
    out.write_text(
        token_kubeconfig(
            admin_kubeconfig, cluster, service_account_token(api, namespace, name), namespace
        )
    )
    out.chmod(0o600)
    return out


def dispatched(api: client.ApiClient, flow_schema: str = FLOW_SCHEMA) -> float:
    """Requests of the counted identities this apiserver has dispatched since it started."""
    response = api.call_api(
        "/metrics",
        "GET",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
        _preload_content=False,
        _request_timeout=10,
    )
    text = response.data.decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == _DISPATCHED and sample.labels.get("flow_schema") == flow_schema
    )
