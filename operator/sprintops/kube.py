"""Small helpers over the kubernetes client: clients from kubeconfig, server-side apply."""

from __future__ import annotations

from typing import Any

import urllib3
import yaml
from kubernetes import client, config

FIELD_MANAGER = "sprintops"
# Connections kept per cluster: more than the operator's worker threads (32), or every thread
# beyond the pool pays a new TLS handshake per request (the default is 5 per core).
POOL_SIZE = 64

# The kinds sprintops applies, so no discovery round trip is needed: kind -> (plural, namespaced).
_KINDS: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False),
    "Secret": ("secrets", True),
    "Service": ("services", True),
    "ServiceAccount": ("serviceaccounts", True),
    "Node": ("nodes", False),
    "Deployment": ("deployments", True),
    "CustomResourceDefinition": ("customresourcedefinitions", False),
    "ClusterRole": ("clusterroles", False),
    "ClusterRoleBinding": ("clusterrolebindings", False),
    "FlowSchema": ("flowschemas", False),
    "Role": ("roles", True),
    "RoleBinding": ("rolebindings", True),
    "VirtualService": ("virtualservices", True),
    "SprintRelease": ("sprintreleases", True),
}


def client_from_kubeconfig(
    kubeconfig: str | dict[str, Any], context: str | None = None
) -> client.ApiClient:
    """An ApiClient from kubeconfig text or dict, never touching the process's default config."""
    data = yaml.safe_load(kubeconfig) if isinstance(kubeconfig, str) else kubeconfig
    if not isinstance(data, dict):
        raise ValueError("kubeconfig is not a YAML mapping")
    cfg = client.Configuration()
    config.load_kube_config_from_dict(data, context=context, client_configuration=cfg)
    return pooled(cfg)


def pooled(cfg: client.Configuration) -> client.ApiClient:
    cfg.connection_pool_maxsize = POOL_SIZE
    # A request that timed out is not sent again: every call has its own timeout, and a
    # cluster that accepts connections but never answers must cost one timeout, not four.
    cfg.retries = urllib3.Retry(total=1, connect=1, read=0, status=0, other=0)
    return client.ApiClient(cfg)


def object_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    plural, namespaced = _KINDS[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced:
        if not namespace:
            raise ValueError(f"{kind} needs a namespace")
        base += f"/namespaces/{namespace}"
    path = f"{base}/{plural}"
    return f"{path}/{name}" if name else path


def apply(
    api: client.ApiClient,
    obj: dict[str, Any],
    *,
    field_manager: str = FIELD_MANAGER,
    force: bool = True,
) -> dict[str, Any]:
    """Server-side apply of one object; returns the object as the server stored it."""
    meta = obj["metadata"]
    path = object_path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
    query = [("fieldManager", field_manager), ("force", str(force).lower())]
    # JSON is YAML, so the apply patch can be sent as the client serialises it.
    return _patch(api, path, obj, "application/apply-patch+yaml", query)


def merge_patch(api: client.ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch; with metadata.resourceVersion in `body` it is compare-and-set
    (the apiserver answers 409 when the object changed since)."""
    return _patch(api, path, body, "application/merge-patch+json", [])


def json_patch(api: client.ApiClient, path: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSON patch: its `test` operations make it conditional, all or nothing."""
    return _patch(api, path, ops, "application/json-patch+json", [])


def _patch(
    api: client.ApiClient,
    path: str,
    body: dict[str, Any] | list[dict[str, Any]],
    content_type: str,
    query: list[tuple[str, str]],
) -> dict[str, Any]:
    response = api.call_api(
        path,
        "PATCH",
        query_params=query,
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        response_types_map={200: "object", 201: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
        _request_timeout=15,
    )
    result: dict[str, Any] = response
    return result


def mgmt_client() -> client.ApiClient:
    """In a pod: the ServiceAccount. Elsewhere: KUBECONFIG's current context, as kopf uses."""
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)
    except config.ConfigException:
        config.load_kube_config(client_configuration=cfg)
    return pooled(cfg)
