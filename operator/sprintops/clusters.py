"""The workload clusters: clients from kubeconfig Secrets, the service's Deployment there."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import urllib3
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sprintops import eks, manifests
from sprintops.api import ServiceSpec, SprintReleaseSpec, TokenSecretRef
from sprintops.kube import apply, client_from_kubeconfig, json_patch, object_path
from sprintops.manifests import LABEL_SPRINT
from sprintops.plan import TargetDeployment


class ClusterError(Exception):
    """Why a workload cluster cannot be used. The message is safe for status and Events:
    it never holds the Secret's content."""


class SameClusterError(ClusterError):
    """The even and odd Secrets reach one cluster: no retry can make that safe."""


class KubeconfigSecrets:
    """Clients for the kubeconfigs in Secrets, cached until the Secret changes.

    A Secret is re-read at most every `fresh` seconds: a fleet's releases share two Secrets,
    and reading them on every call was a fifth of the operator's time under a fleet. A rotated
    kubeconfig is therefore picked up within `fresh` seconds."""

    def __init__(self, mgmt: client.ApiClient, fresh: float = 10.0) -> None:
        self.core = client.CoreV1Api(mgmt)
        self.fresh = fresh
        self._cache: dict[tuple[str, str, str], tuple[str, client.ApiClient, float]] = {}
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        # A Secret's version -> the uid of its cluster's kube-system namespace.
        self._uids: dict[tuple[str, str, str, str], str] = {}

    def api_client(self, namespace: str, name: str, key: str) -> client.ApiClient:
        cached = self._cache.get((namespace, name, key))
        if cached and time.monotonic() - cached[2] < self.fresh:
            return cached[1]
        where = f"Secret {namespace}/{name}"
        version, text = self._read(namespace, name, key)
        if cached and cached[0] == version:
            self._cache[(namespace, name, key)] = (version, cached[1], time.monotonic())
            return cached[1]
        try:
            api = _client_from_secret_text(text)
        except Exception as exc:  # the loader raises many types on garbage
            # Only the exception's type: its text may quote the Secret.
            raise ClusterError(
                f"{where} key {key!r} does not hold a usable kubeconfig ({type(exc).__name__})"
            ) from None
        self._cache[(namespace, name, key)] = (version, api, time.monotonic())
        return api

    def token(self, namespace: str, ref: TokenSecretRef) -> str:
        """A bearer token (for a cluster's Prometheus), re-read at most every `fresh` s."""
        cached = self._tokens.get((namespace, ref.name, ref.key))
        if cached and time.monotonic() - cached[1] < self.fresh:
            return cached[0]
        token = self._read(namespace, ref.name, ref.key)[1].strip()
        if not token or any(c.isspace() or not c.isprintable() for c in token):
            # Never the value: it would reach status through the error.
            raise ClusterError(
                f"Secret {namespace}/{ref.name} key {ref.key!r} does not hold a bearer token "
                "(empty, or whitespace or control characters inside)"
            )
        self._tokens[(namespace, ref.name, ref.key)] = (token, time.monotonic())
        return token

    def _read(self, namespace: str, name: str, key: str) -> tuple[str, str]:
        """A Secret's version and the text under `key`."""
        where = f"Secret {namespace}/{name}"
        try:
            secret = self.core.read_namespaced_secret(name, namespace, _request_timeout=10)
        except ApiException as exc:
            if exc.status == 404:
                raise ClusterError(f"{where} not found") from None
            if exc.status == 403:
                raise ClusterError(f"not allowed to read {where}") from None
            raise ClusterError(f"cannot read {where}: HTTP {exc.status}") from None
        data = (secret.data or {}).get(key)
        if data is None:
            raise ClusterError(f"{where} has no key {key!r}")
        try:
            text = base64.b64decode(data).decode()
        except ValueError:  # UnicodeDecodeError and binascii.Error both are
            raise ClusterError(f"{where} key {key!r} is not text") from None
        return secret.metadata.resource_version or "", text

    def for_cluster(
        self, spec: SprintReleaseSpec, namespace: str, cluster: str
    ) -> client.ApiClient:
        ref = getattr(spec.clusters, cluster).kubeconfig_secret_ref
        return self.api_client(namespace, ref.name, ref.key)

    def cluster_uid(self, spec: SprintReleaseSpec, namespace: str, cluster: str) -> str:
        """Which cluster a Secret really reaches: its kube-system namespace's uid, cached
        per version of the Secret."""
        ref = getattr(spec.clusters, cluster).kubeconfig_secret_ref
        api = self.api_client(namespace, ref.name, ref.key)
        version = self._cache[(namespace, ref.name, ref.key)][0]
        key = (namespace, ref.name, ref.key, version)
        if key not in self._uids:
            with translated(f"cannot identify cluster {cluster}"):
                found = client.CoreV1Api(api).read_namespace("kube-system", _request_timeout=10)
            self._uids[key] = str(found.metadata.uid)
        return self._uids[key]


def _client_from_secret_text(text: str) -> client.ApiClient:
    """A plain kubeconfig, or an EKS cluster document whose tokens sprintops mints itself."""
    data = yaml.safe_load(text)
    if eks.is_cluster_secret(data):
        auth = data["awsAuthConfig"]
        region = auth.get("region") or os.environ.get("AWS_REGION") or "us-east-1"
        return eks.client_for(data, region)
    return client_from_kubeconfig(data)


class Workload:
    """The service's Deployment and Service in one cluster."""

    def __init__(self, api: client.ApiClient, cluster: str) -> None:
        self.api = api
        self.apps = client.AppsV1Api(api)
        self.cluster = cluster

    def deploy(self, service: ServiceSpec, sprint: int, release: str, spec_hash: str) -> None:
        with self._errors("apply the Deployment"):
            apply(self.api, manifests.deployment(service, sprint, release, spec_hash))
            apply(self.api, manifests.service_object(service, sprint, release))

    def observe(self, service: ServiceSpec) -> TargetDeployment | None:
        body = self._read(service)
        if body is None:
            return None
        sprint = (body["metadata"].get("labels") or {}).get(LABEL_SPRINT)
        return TargetDeployment(
            sprint=int(sprint) if sprint and sprint.isdigit() else None,
            available=manifests.is_available(body),
            replicas=int(body["spec"].get("replicas", 0)),
            spec_hash=(body["metadata"].get("annotations") or {}).get(
                manifests.ANNOTATION_SPEC_HASH
            ),
        )

    def _read(self, service: ServiceSpec) -> dict[str, Any] | None:
        with self._errors("read the Deployment"):
            try:
                dep = self.apps.read_namespaced_deployment(
                    service.name, service.namespace, _request_timeout=10
                )
            except ApiException as exc:
                if exc.status == 404:
                    return None
                raise
        body: dict[str, Any] = self.api.sanitize_for_serialization(dep)
        return body

    def scale_to_zero(self, service: ServiceSpec, sprint: int) -> None:
        """Scales to 0 only if the Deployment still belongs to `sprint`: the label test and
        the new replica count are one JSON patch, so a newer sprint's deploy in between
        makes it fail instead of scaling the newer sprint down."""
        label = "/metadata/labels/" + LABEL_SPRINT.replace("~", "~0").replace("/", "~1")
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": label, "value": str(sprint)},
            {"op": "replace", "path": "/spec/replicas", "value": 0},
        ]
        path = object_path("apps/v1", "Deployment", service.namespace, service.name)
        with self._errors("scale the Deployment"):
            try:
                json_patch(self.api, path, patch)
            except ApiException as exc:
                if exc.status != 404:  # already gone is as idle as it gets
                    raise

    def _errors(self, doing: str) -> AbstractContextManager[None]:
        return translated(f"cannot {doing} in cluster {self.cluster}")


@contextmanager
def translated(prefix: str) -> Iterator[None]:
    """API and connection errors become a ClusterError with a short, safe message."""
    try:
        yield
    except ApiException as exc:
        raise ClusterError(f"{prefix}: HTTP {exc.status} {exc.reason}") from None
    except (OSError, urllib3.exceptions.HTTPError) as exc:
        raise ClusterError(f"{prefix}: unreachable ({type(exc).__name__})") from None
