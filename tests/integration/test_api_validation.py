"""Every rejection rule of the SprintRelease API, applied to the real mgmt apiserver.

Creates are server-side dry runs: the apiserver runs schema and CEL validation in full
and stores nothing, so the cases are independent and leave no clean-up.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from sprintops import api
from sprintops_dev import fleet
from tests.integration.conftest import Env

Doc = dict[str, Any]
NS = "releases"


def _create(env: Env, doc: Doc, dry_run: bool = True) -> Doc:
    if dry_run:
        doc = {**doc, "metadata": {**doc["metadata"], "name": f"dry-run-{uuid.uuid4().hex[:8]}"}}
    kwargs = {"dry_run": "All"} if dry_run else {}
    result: Doc = env.custom().create_namespaced_custom_object(
        api.GROUP, api.VERSION, NS, api.PLURAL, doc, **kwargs
    )
    return result


def _rejection(env: Env, doc: Doc) -> str:
    with pytest.raises(ApiException) as info:
        _create(env, doc)
    assert info.value.status == 422, info.value.body
    return str(info.value.body)


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, leaf = path.split(".")
        node = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        node[int(leaf) if leaf.isdigit() else leaf] = value

    return mutate


def _delete(path: str) -> Callable[[Doc], None]:
    def mutate(doc: Doc) -> None:
        *parents, leaf = path.split(".")
        node = doc
        for p in parents:
            node = node[p]
        del node[leaf]

    return mutate


R53 = "spec.traffic.route53"
ANALYSIS = "spec.analysis"
METRICS = "spec.analysis.metrics"

# (id, mutation, field path the message must name, words the message must contain)
WINDOW = {"days": ["Mon"], "start": "09:00", "end": "17:00", "timeZone": "Europe/Berlin"}

CASES: list[tuple[str, Callable[[Doc], None], str, str]] = [
    (
        "gate-names-a-url",
        _set("spec.gates", [{"name": "g", "type": "pre-rollout", "webhook": "http://10.0.0.1/"}]),
        "spec.gates[0].webhook",
        "should match",
    ),
    (
        "gate-webhook-and-manual",
        _set(
            "spec.gates", [{"name": "g", "type": "confirm-step", "webhook": "cab", "manual": True}]
        ),
        "spec.gates[0]",
        "exactly one of webhook and manual",
    ),
    (
        "gate-neither-webhook-nor-manual",
        _set("spec.gates", [{"name": "g", "type": "confirm-step"}]),
        "spec.gates[0]",
        "exactly one of webhook and manual",
    ),
    (
        "gate-post-rollout-manual",
        _set("spec.gates", [{"name": "g", "type": "post-rollout", "manual": True}]),
        "spec.gates[0].manual",
        "cannot be manual",
    ),
    (
        "gate-unknown-type",
        _set("spec.gates", [{"name": "g", "type": "rollout", "webhook": "cab"}]),
        "spec.gates[0].type",
        "Unsupported value",
    ),
    (
        "gate-names-repeated",
        _set(
            "spec.gates",
            [
                {"name": "g", "type": "confirm-step", "webhook": "cab"},
                {"name": "g", "type": "pre-rollout", "webhook": "cab"},
            ],
        ),
        "spec.gates[1]",
        "Duplicate value",
    ),
    (
        "window-unknown-time-zone",
        _set("spec.schedule", {"windows": [{**WINDOW, "timeZone": "Europe/Berln"}]}),
        "spec.schedule.windows[0].timeZone",
        "must be an IANA time zone",
    ),
    (
        "window-offset-not-a-zone",
        _set("spec.schedule", {"windows": [{**WINDOW, "timeZone": "+05:30"}]}),
        "spec.schedule.windows[0].timeZone",
        "should match",
    ),
    (
        "window-local-not-a-zone",
        _set("spec.schedule", {"windows": [{**WINDOW, "timeZone": "Local"}]}),
        "spec.schedule.windows[0].timeZone",
        "must be an IANA time zone",
    ),
    (
        "window-bad-clock",
        _set("spec.schedule", {"windows": [{**WINDOW, "start": "9:00"}]}),
        "spec.schedule.windows[0].start",
        "should match",
    ),
    (
        "window-hour-25",
        _set("spec.schedule", {"windows": [{**WINDOW, "end": "25:00"}]}),
        "spec.schedule.windows[0].end",
        "should match",
    ),
    (
        "window-empty",
        _set("spec.schedule", {"windows": [{**WINDOW, "end": "09:00"}]}),
        "spec.schedule.windows[0].end",
        "must differ from start",
    ),
    (
        "window-bad-day",
        _set("spec.schedule", {"windows": [{**WINDOW, "days": ["Monday"]}]}),
        "spec.schedule.windows[0].days[0]",
        "Unsupported value",
    ),
    (
        "window-no-day",
        _set("spec.schedule", {"windows": [{**WINDOW, "days": []}]}),
        "spec.schedule.windows[0].days",
        "at least 1",
    ),
    (
        "receiver-names-a-url",
        _set("spec.notifications", {"receivers": ["https://evil.example/hook"]}),
        "spec.notifications.receivers[0]",
        "should match",
    ),
    ("steps-empty", _set("spec.traffic.steps", []), "spec.traffic.steps", "at least 1"),
    (
        "deadline-without-room-for-the-bake",
        _set(f"{ANALYSIS}.progressDeadline", "5s"),
        f"{ANALYSIS}.progressDeadline",
        "must leave room for one interval and the bake",
    ),
    (
        "cluster-prometheus-not-http",
        _set("spec.clusters.even.prometheus", {"address": "prom-even:9090"}),
        "spec.clusters.even.prometheus.address",
        "should match",
    ),
    (
        "cluster-prometheus-token-without-name",
        _set("spec.clusters.odd.prometheus", {"address": "http://p", "bearerTokenSecretRef": {}}),
        "spec.clusters.odd.prometheus.bearerTokenSecretRef.name",
        "Required value",
    ),
    (
        "steps-not-increasing",
        _set("spec.traffic.steps", [50, 10, 100]),
        "spec.traffic.steps",
        "strictly increasing",
    ),
    (
        "steps-repeated",
        _set("spec.traffic.steps", [10, 10, 100]),
        "spec.traffic.steps",
        "strictly increasing",
    ),
    ("steps-zero", _set("spec.traffic.steps", [0, 50, 100]), "spec.traffic.steps[0]", ">= 1"),
    (
        "steps-negative",
        _set("spec.traffic.steps", [-10, 50, 100]),
        "spec.traffic.steps[0]",
        "greater than or equal to 1",
    ),
    (
        "steps-over-100",
        _set("spec.traffic.steps", [10, 50, 150]),
        "spec.traffic.steps[2]",
        "less than or equal to 100",
    ),
    (
        "steps-last-not-100",
        _set("spec.traffic.steps", [10, 50]),
        "spec.traffic.steps",
        "end at 100",
    ),
    (
        "steps-too-many",
        _set("spec.traffic.steps", [*range(1, 11), 100]),
        "spec.traffic.steps",
        "at most 10",
    ),
    ("sprint-negative", _set("spec.sprint", -1), "spec.sprint", "greater than or equal to 0"),
    ("sprint-not-integer", _set("spec.sprint", 4.5), "spec.sprint", "integer"),
    ("sprint-string", _set("spec.sprint", "forty-two"), "spec.sprint", "integer"),
    (
        "service-name-not-dns1123",
        _set("spec.service.name", "Document_Service"),
        "spec.service.name",
        "should match",
    ),
    (
        "service-namespace-not-dns1123",
        _set("spec.service.namespace", "docs.prod"),
        "spec.service.namespace",
        "should match",
    ),
    ("service-replicas-zero", _set("spec.service.replicas", 0), "spec.service.replicas", ">= 1"),
    (
        "hosted-zone-neither",
        _set(f"{R53}.hostedZone", {}),
        f"{R53}.hostedZone",
        "exactly one of id and name",
    ),
    (
        "hosted-zone-both",
        _set(f"{R53}.hostedZone", {"id": "Z0123456789ABC", "name": "sprintops.test."}),
        f"{R53}.hostedZone",
        "exactly one of id and name",
    ),
    ("ttl-negative", _set(f"{R53}.ttl", -1), f"{R53}.ttl", "greater than or equal to 0"),
    ("ttl-too-long", _set(f"{R53}.ttl", 172801), f"{R53}.ttl", "less than or equal to 172800"),
    ("record-type-txt", _set(f"{R53}.recordType", "TXT"), f"{R53}.recordType", "Unsupported value"),
    ("records-even-missing", _delete(f"{R53}.records.even"), f"{R53}.records.even", "Required"),
    ("records-odd-missing", _delete(f"{R53}.records.odd"), f"{R53}.records.odd", "Required"),
    (
        "set-identifier-empty",
        _set(f"{R53}.records.even.setIdentifier", ""),
        f"{R53}.records.even.setIdentifier",
        "at least 1",
    ),
    (
        "set-identifier-equal",
        _set(f"{R53}.records.odd.setIdentifier", "even"),
        f"{R53}.records.odd.setIdentifier",
        "must differ",
    ),
    (
        "record-value-and-alias",
        _set(
            f"{R53}.records.even.alias",
            {"dnsName": "lb.example.com", "hostedZoneId": "Z1", "evaluateTargetHealth": False},
        ),
        f"{R53}.records.even",
        "exactly one of value and alias",
    ),
    (
        "record-neither-value-nor-alias",
        _delete(f"{R53}.records.odd.value"),
        f"{R53}.records.odd",
        "exactly one of value and alias",
    ),
    (
        "alias-needs-a-or-aaaa",
        lambda d: (
            _delete(f"{R53}.records.even.value")(d),
            _set(
                f"{R53}.records.even.alias",
                {"dnsName": "lb.example.com", "hostedZoneId": "Z1", "evaluateTargetHealth": True},
            )(d),
        ),
        f"{R53}.recordType",
        "A or AAAA for an alias",
    ),
    (
        "istio-vs-name-missing",
        _delete("spec.traffic.istio.virtualService.name"),
        "spec.traffic.istio.virtualService.name",
        "Required",
    ),
    (
        "istio-vs-namespace-missing",
        _delete("spec.traffic.istio.virtualService.namespace"),
        "spec.traffic.istio.virtualService.namespace",
        "Required",
    ),
    (
        "istio-clusters-empty",
        _set("spec.traffic.istio.clusters", []),
        "spec.traffic.istio.clusters",
        "at least 1",
    ),
    (
        "istio-clusters-unknown",
        _set("spec.traffic.istio.clusters", ["even", "blue"]),
        "spec.traffic.istio.clusters[1]",
        "Unsupported value",
    ),
    (
        "duration-unparsable",
        _set(f"{ANALYSIS}.progressDeadline", "5 minutes"),
        f"{ANALYSIS}.progressDeadline",
        "should match",
    ),
    (
        "interval-longer-than-bake",
        _set(f"{ANALYSIS}.interval", "1m"),
        f"{ANALYSIS}.interval",
        "must not be longer than spec.analysis.bakeTime",
    ),
    ("failure-limit-zero", _set(f"{ANALYSIS}.failureLimit", 0), f"{ANALYSIS}.failureLimit", ">= 1"),
    ("no-data-unknown", _set(f"{ANALYSIS}.noData", "ignore"), f"{ANALYSIS}.noData", "Unsupported"),
    (
        "metric-without-threshold",
        _set(f"{METRICS}.0", {"name": "request-success-rate"}),
        f"{METRICS}[0]",
        "min or spec.analysis.metrics[].max is required",
    ),
    (
        "custom-metric-without-query",
        _set(f"{METRICS}.2", {"name": "server-errors-per-second", "max": 5}),
        f"{METRICS}[2]",
        "query is required",
    ),
    (
        "unknown-builtin-without-query",
        _set(f"{METRICS}.0", {"name": "request-success-ratio", "min": 99}),
        f"{METRICS}[0]",
        "query is required",
    ),
    (
        "metric-names-duplicate",
        _set(f"{METRICS}.1", {"name": "request-success-rate", "min": 98}),
        f"{METRICS}[1]",
        "Duplicate value",
    ),
    (
        "comparison-marginal-above-pass",
        _set(
            f"{ANALYSIS}.comparison",
            {"pass": 80, "marginal": 90, "metrics": [{"name": "request-success-rate"}]},
        ),
        f"{ANALYSIS}.comparison.marginal",
        "must not be above spec.analysis.comparison.pass",
    ),
    (
        "comparison-custom-metric-without-query",
        _set(f"{ANALYSIS}.comparison", {"metrics": [{"name": "queue-depth"}]}),
        f"{ANALYSIS}.comparison.metrics[0]",
        "query is required",
    ),
    (
        "comparison-effect-size-below-one",
        _set(
            f"{ANALYSIS}.comparison",
            {"metrics": [{"name": "request-duration-p99", "effectSize": {"allowedIncrease": 0.5}}]},
        ),
        f"{ANALYSIS}.comparison.metrics[0].effectSize.allowedIncrease",
        ">= 1",
    ),
    ("clusters-even-missing", _delete("spec.clusters.even"), "spec.clusters.even", "Required"),
    ("clusters-odd-missing", _delete("spec.clusters.odd"), "spec.clusters.odd", "Required"),
    (
        "clusters-even-without-secret-ref",
        _set("spec.clusters.even", {}),
        "spec.clusters.even.kubeconfigSecretRef",
        "Required",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "path", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rejected_with_field_path(
    env: Env, canonical_doc: Doc, mutate: Callable[[Doc], None], path: str, words: str
) -> None:
    doc = copy.deepcopy(canonical_doc)
    mutate(doc)
    message = _rejection(env, doc)
    assert path in message, message
    assert words.replace(">=", "greater than or equal to") in message, message


def test_canonical_example_accepted_unchanged(env: Env, canonical_doc: Doc) -> None:
    created = _create(env, copy.deepcopy(canonical_doc))
    assert created["spec"]["sprint"] == 42

    # Nothing the manifest says is pruned or rewritten by the schema (defaults may add).
    def said(manifest: Any, stored: Any, path: str) -> None:
        if isinstance(manifest, dict):
            for key, value in manifest.items():
                assert key in stored, f"{path}.{key} pruned"
                said(value, stored[key], f"{path}.{key}")
        else:
            assert stored == manifest, path

    said(canonical_doc["spec"], created["spec"], "spec")


def test_defaults_fill_optional_fields(env: Env, canonical_doc: Doc) -> None:
    doc = copy.deepcopy(canonical_doc)
    del doc["spec"]["idle"], doc["spec"]["rollback"], doc["spec"]["traffic"]["steps"]
    created = _create(env, doc)
    assert created["spec"]["traffic"]["steps"] == [10, 50, 100]
    assert created["spec"]["rollback"] == {"automatic": True}
    assert created["spec"]["idle"] == {"scaleDownAfter": "1h"}


@pytest.mark.parametrize(
    ("path", "value"), [("spec.sprint", 44), ("spec.service.name", "other-service")]
)
def test_immutable_after_creation(env: Env, canonical_doc: Doc, path: str, value: Any) -> None:
    # Its own service and record: an operator that sees it must not touch the canonical pair.
    doc = fleet.release_doc(canonical_doc, f"immutable-{uuid.uuid4().hex[:8]}")
    created = _create(env, doc, dry_run=False)
    try:
        _set(path, value)(created)
        with pytest.raises(ApiException) as info:
            env.custom().replace_namespaced_custom_object(
                api.GROUP, api.VERSION, NS, api.PLURAL, doc["metadata"]["name"], created
            )
        assert info.value.status == 422
        assert f"{path} is immutable" in str(info.value.body)
    finally:
        fleet.remove(env.custom(), doc["metadata"]["name"], NS)


def test_status_fields_are_kept(env: Env, canonical_doc: Doc) -> None:
    """Undeclared status fields would be pruned silently; every declared one must survive."""
    doc = fleet.release_doc(canonical_doc, f"status-{uuid.uuid4().hex[:8]}")
    name = doc["metadata"]["name"]
    _create(env, doc, dry_run=False)
    status = {
        "phase": "Progressing",
        "targetCluster": "even",
        "previousCluster": "odd",
        "stepIndex": 1,
        "step": "2/3",
        "targetWeight": 50,
        "weights": {"even": 50, "odd": 50},
        "stepStartedAt": "2026-11-25T10:00:00Z",
        "analysis": [
            {
                "metric": "request-success-rate",
                "value": 99.9,
                "threshold": ">= 99",
                "passed": True,
                "verdict": "pass",
                "time": "2026-11-25T10:00:02Z",
            }
        ],
        "conditions": [{"type": "Progressing", "status": "True", "reason": "Stepping"}],
        "observedGeneration": 1,
        "message": "step 2/3",
    }
    try:
        env.custom().patch_namespaced_custom_object_status(
            api.GROUP, api.VERSION, NS, api.PLURAL, name, {"status": status}
        )
        stored = env.custom().get_namespaced_custom_object(
            api.GROUP, api.VERSION, NS, api.PLURAL, name
        )
        for key in status:
            assert key in stored["status"], key
        assert stored["status"]["weights"] == {"even": 50, "odd": 50}
        assert stored["status"]["analysis"][0]["threshold"] == ">= 99"
    finally:
        fleet.remove(env.custom(), name, NS)


def test_oversized_specs_are_bounded(env: Env, canonical_doc: Doc) -> None:
    ten = copy.deepcopy(canonical_doc)
    ten["spec"]["traffic"]["steps"] = [5, 10, 20, 30, 40, 50, 60, 70, 80, 100]
    assert _create(env, ten)["spec"]["traffic"]["steps"][-1] == 100
    many = copy.deepcopy(canonical_doc)
    many["spec"]["analysis"]["metrics"] = [
        {"name": f"m{i}", "query": "vector(1)", "max": 2} for i in range(50)
    ]
    message = _rejection(env, many)
    assert "spec.analysis.metrics" in message and "must have at most 20 items" in message
    huge = copy.deepcopy(canonical_doc)
    huge["spec"]["service"]["template"]["metadata"]["annotations"]["blob"] = "x" * (3 * 1024 * 1024)
    with pytest.raises(ApiException) as info:
        _create(env, huge)
    assert info.value.status in (413, 422), info.value.status
