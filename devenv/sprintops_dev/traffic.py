"""What a release's traffic is, read from outside: Route 53's pair and each VirtualService
copy. The demo, the watchers, the bench and the tests all read it this one way."""

from __future__ import annotations

from kubernetes import client

from sprintops.api import SprintReleaseSpec, Weights
from sprintops.traffic.istio import GROUP, PLURAL, VERSION, weights_of
from sprintops.traffic.route53 import Route53Pairs


def copy_weights(api: client.ApiClient, spec: SprintReleaseSpec, timeout: float = 10) -> Weights:
    """The weights on one cluster's copy of the release's VirtualService route."""
    ref = spec.traffic.istio.virtual_service
    vs = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, ref.namespace, PLURAL, ref.name, _request_timeout=timeout
    )
    return weights_of(vs, spec.traffic.istio)


def read(
    apis: dict[str, client.ApiClient],
    spec: SprintReleaseSpec,
    route53: Route53Pairs | None = None,
) -> tuple[Weights | None, dict[str, Weights]]:
    """Route 53's pair (None: missing), then every copy's weights by cluster."""
    pair = (route53 or Route53Pairs()).read(spec.traffic.route53)
    return pair, {c: copy_weights(apis[c], spec) for c in spec.traffic.istio.clusters}
