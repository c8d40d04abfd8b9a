"""Small helpers over the kubernetes client: clients from kubeconfig, server-side apply."""

from __future__ import annotations

from typing import Any

import yaml
from kubernetes import client, config

FIELD_MANAGER = "sprintops"

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
    api: client.ApiClient = config.new_client_from_config_dict(data, context=context)
    return api


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
    response = api.call_api(
        path,
        "PATCH",
        query_params=[("fieldManager", field_manager), ("force", str(force).lower())],
        header_params={
            "Content-Type": "application/apply-patch+yaml",
            "Accept": "application/json",
        },
        body=obj,
        response_types_map={200: "object", 201: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    result: dict[str, Any] = response
    return result
