"""Istio VirtualService weights: the named http route's even/odd destinations, nothing else."""

from __future__ import annotations

import copy
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sprintops.api import CLUSTERS, Cluster, Istio, Weights

GROUP, VERSION, PLURAL = "networking.istio.io", "v1", "virtualservices"
CONFLICT_RETRIES = 5


class IstioError(Exception):
    """A VirtualService that cannot carry the split; the message is safe for status."""


def locate(vs: dict[str, Any], spec: Istio) -> tuple[int, dict[Cluster, int]]:
    """Index of the named route, and of each cluster's destination inside it."""
    where = f"VirtualService {spec.virtual_service.namespace}/{spec.virtual_service.name}"
    http = (vs.get("spec") or {}).get("http") or []
    index = next((i for i, r in enumerate(http) if r.get("name") == spec.route), None)
    if index is None:
        raise IstioError(f"{where} has no http route named {spec.route!r}")
    routes = http[index].get("route") or []
    found: dict[Cluster, int] = {}
    for cluster in CLUSTERS:
        want = getattr(spec.destinations, cluster)
        for j, entry in enumerate(routes):
            dest = entry.get("destination") or {}
            if dest.get("host") == want.host and (
                want.subset is None or dest.get("subset") == want.subset
            ):
                found[cluster] = j
                break
        else:
            subset = f" subset {want.subset}" if want.subset else ""
            raise IstioError(
                f"route {spec.route!r} of {where} has no destination {want.host}{subset} "
                f"for cluster {cluster}"
            )
    return index, found


def weights_of(vs: dict[str, Any], spec: Istio) -> Weights:
    index, found = locate(vs, spec)
    routes = vs["spec"]["http"][index]["route"]
    w = {c: int(routes[j].get("weight", 0)) for c, j in found.items()}
    return Weights.model_construct(even=w["even"], odd=w["odd"])


def with_weights(vs: dict[str, Any], spec: Istio, weights: Weights) -> dict[str, Any]:
    """A copy of `vs` with only the named route's two destination weights changed."""
    index, found = locate(vs, spec)
    out = copy.deepcopy(vs)
    for cluster, j in found.items():
        out["spec"]["http"][index]["route"][j]["weight"] = weights.of(cluster)
    return out


class VirtualServices:
    """One VirtualService copy in one cluster."""

    def __init__(self, api: client.ApiClient, cluster: Cluster) -> None:
        self.api = client.CustomObjectsApi(api)
        self.cluster = cluster

    def get(self, spec: Istio) -> dict[str, Any]:
        ref = spec.virtual_service
        try:
            vs: dict[str, Any] = self.api.get_namespaced_custom_object(
                GROUP, VERSION, ref.namespace, PLURAL, ref.name, _request_timeout=10
            )
        except ApiException as exc:
            if exc.status == 404:
                raise IstioError(
                    f"VirtualService {ref.namespace}/{ref.name} not found in cluster {self.cluster}"
                ) from None
            raise
        return vs

    def check(self, spec: Istio) -> Weights:
        """Fails with a clear IstioError unless the route can carry the split."""
        return weights_of(self.get(spec), spec)

    def set(self, spec: Istio, weights: Weights) -> bool:
        """Sets the weights; resourceVersion is the precondition, so a concurrent edit is
        re-read and merged, never overwritten. Returns whether anything changed."""
        ref = spec.virtual_service
        for _ in range(CONFLICT_RETRIES):
            vs = self.get(spec)
            if weights_of(vs, spec) == weights:
                return False
            try:
                self.api.replace_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    ref.namespace,
                    PLURAL,
                    ref.name,
                    with_weights(vs, spec, weights),
                    _request_timeout=10,
                )
                return True
            except ApiException as exc:
                if exc.status != 409:
                    raise
        raise IstioError(
            f"VirtualService {ref.namespace}/{ref.name} in {self.cluster} kept changing "
            f"({CONFLICT_RETRIES} conflicts in a row)"
        )
