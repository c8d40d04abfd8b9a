"""Identities other than the local environment's admin: for tests and the bench that must
run the operator as someone in particular."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client


def token_kubeconfig(admin_kubeconfig: Path, cluster: str, token: str, namespace: str) -> str:
    """A kubeconfig for one cluster of the local environment that authenticates with `token`."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    entry = next(c for c in admin["clusters"] if c["name"] == cluster)
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [entry],
            "users": [{"name": "token", "user": {"token": token}}],
            "contexts": [
                {
                    "name": cluster,
                    "context": {"cluster": cluster, "user": "token", "namespace": namespace},
                }
            ],
            "current-context": cluster,
        }
    )


def service_account_token(api: client.ApiClient, namespace: str, name: str) -> str:
    """A real token from the TokenRequest API."""
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}
    answer = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
    return str(answer.status.token)
