"""Where each cluster's metrics are read: its own Prometheus (with a bearer token) and its
name in the mesh, else the release's Prometheus and the key."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest
from kubernetes import client

from sprintops.api import SprintReleaseSpec, TokenSecretRef
from sprintops.clusters import ClusterError, KubeconfigSecrets
from sprintops.health.checks import looked_for
from sprintops.health.prometheus import (
    PrometheusError,
    Source,
    instant_query,
    run_checks,
    run_comparison,
)
from sprintops.reconcile import Reconciler, Runtime
from sprintops.traffic.route53 import Route53Pairs
from tests.unit.world import canonical_spec

TOKEN = "CANARY-token-3f9a"  # noqa: S105 (a test token)


class _Prometheus(BaseHTTPRequestHandler):
    """Answers only with the bearer token; series only for destination_cluster="mesh-even"."""

    def do_POST(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(401, {"status": "error", "error": "unauthorized"})
            return
        length = int(self.headers["Content-Length"])
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        query = form["query"][0]
        found = 'destination_cluster="mesh-even"' in query
        if self.path.endswith("/query_range"):
            values = [[1000.0 + i, "1"] for i in range(10)]
            data = {"resultType": "matrix", "result": [{"metric": {}, "values": values}]}
        else:
            data = {"resultType": "vector", "result": [{"metric": {}, "value": [1000.0, "100"]}]}
        if not found:
            data["result"] = []
        self._answer(200, {"status": "success", "data": data})

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def prometheus() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _spec(**clusters: dict[str, Any]) -> SprintReleaseSpec:
    data = canonical_spec().model_dump(by_alias=True, exclude_none=True)
    for key, extra in clusters.items():
        data["clusters"][key].update(extra)
    data["analysis"]["comparison"] = {"metrics": [{"name": "request-success-rate"}]}
    return SprintReleaseSpec.model_validate(data)


class _Secrets:
    def token(self, namespace: str, ref: TokenSecretRef) -> str:
        assert (namespace, ref.name, ref.key) == ("releases", "prom-even", "token")
        return TOKEN


def _reconciler() -> Reconciler:
    runtime = Runtime(
        mgmt=client.ApiClient(),
        route53=cast(Route53Pairs, None),
        secrets=cast(KubeconfigSecrets, _Secrets()),
        prometheus_url="http://operator-default:9090",
    )
    return Reconciler(runtime, lambda _o, _e: None)


def test_each_cluster_reads_its_own_prometheus_under_its_mesh_name() -> None:
    spec = _spec(
        even={
            "prometheus": {
                "address": "http://prom-even:9090",
                "bearerTokenSecretRef": {"name": "prom-even"},
            },
            "meshCluster": "prod-even-eks",
        }
    )
    new, old = _reconciler()._sources(spec, "releases", ("even", "odd"))
    assert new == Source("even", "http://prom-even:9090", "prod-even-eks", TOKEN)
    # Nothing named for odd: the operator's Prometheus, under the key.
    assert old == Source("odd", "http://operator-default:9090", "odd")
    assert TOKEN not in repr(new) and TOKEN not in str(new)


def test_the_release_prometheus_is_the_default_for_both_clusters() -> None:
    data = _spec().model_dump(by_alias=True, exclude_none=True)
    data["analysis"]["prometheus"] = {"address": "http://shared:9090"}
    spec = SprintReleaseSpec.model_validate(data)
    sources = _reconciler()._sources(spec, "releases", ("odd", "even"))
    assert sources == (
        Source("odd", "http://shared:9090", "odd"),
        Source("even", "http://shared:9090", "even"),
    )


def test_the_token_goes_with_every_query_and_a_missing_one_is_an_error(prometheus: str) -> None:
    spec = _spec()
    checks = run_checks(Source("even", prometheus, "mesh-even", TOKEN), spec, "30s")
    assert [c.value for c in checks] == [100.0, 100.0, 100.0], checks
    refused = run_checks(Source("even", prometheus, "mesh-even"), spec, "30s")
    assert {c.outcome for c in refused} == {"error"}
    assert all("HTTP 401" in c.note for c in refused), refused


def test_a_cluster_under_the_wrong_name_says_which_series_it_looked_for(prometheus: str) -> None:
    spec = _spec()
    checks = run_checks(Source("even", prometheus, "even", TOKEN), spec, "30s")
    rate = next(c for c in checks if c.metric == "request-success-rate")
    assert rate.outcome == "noData"
    assert rate.note.startswith("no samples for istio_requests_total{")
    assert 'destination_cluster="even"' in rate.note
    # The comparison says which side had nothing, and what it asked for.
    compared = run_comparison(
        (Source("even", prometheus, "mesh-even", TOKEN), Source("odd", prometheus, "odd", TOKEN)),
        spec,
        "30s",
        (1000.0, 1010.0),
    )
    judged = compared[0]
    assert judged.outcome == "noData"
    assert judged.note.startswith("odd: no samples for istio_requests_total{"), judged.note
    assert 'destination_cluster="odd"' in judged.note and "even:" not in judged.note


def test_an_unanswered_query_names_its_first_selector() -> None:
    assert looked_for('sum(rate(up{job="a"}[1m])) / sum(rate(up{job="b"}[1m]))') == (
        ' for up{job="a"}'
    )
    assert looked_for("vector(1)") == " for vector(1)"
    assert looked_for("") == ""


def test_prometheus_errors_never_carry_the_token(prometheus: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    for source in (Source("even", closed, "x", TOKEN), Source("even", prometheus, "x", "wrong")):
        with pytest.raises(PrometheusError) as caught:
            instant_query(source, "up")
        assert TOKEN not in str(caught.value) and "wrong" not in str(caught.value)


def test_a_token_that_would_break_its_header_is_refused_without_quoting_it() -> None:
    secrets = KubeconfigSecrets(client.ApiClient())
    for bad in ("", "CANARY-a\nb", "CANARY a", "CANARY\x00"):
        secrets._read = lambda *_a, bad=bad: ("1", bad)  # type: ignore[method-assign]
        with pytest.raises(ClusterError) as caught:
            secrets.token("releases", TokenSecretRef(name="prom", key="token"))
        assert "CANARY" not in str(caught.value) and "bearer token" in str(caught.value)
    secrets._read = lambda *_a: ("2", "  CANARY-ok\n")  # type: ignore[method-assign]
    assert secrets.token("releases", TokenSecretRef(name="prom2")) == "CANARY-ok"


def test_a_broken_header_never_quotes_the_token(prometheus: str) -> None:
    with pytest.raises(PrometheusError) as caught:
        instant_query(Source("even", prometheus, "x", "CANARY-a\nb"), "up")
    assert "CANARY" not in str(caught.value)
