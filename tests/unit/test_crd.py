"""The CRD is generated from the pydantic models, structural, and committed as generated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from sprintops import api, crd
from tests.conftest import REPO

SHARED_EXAMPLE = REPO.parent / "shared/api/sprintrelease.yaml"


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")


def _root() -> dict[str, Any]:
    schema: dict[str, Any] = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crd_matches_the_models() -> None:
    committed = (REPO / "crds/sprintrelease.yaml").read_text()
    assert committed == crd.render(), "crds/ drifted from api.py: run `make crds`"


def test_schema_is_structural() -> None:
    for path, node in _walk(_root()):
        for banned in ("$ref", "anyOf", "allOf", "oneOf", "title", "additionalProperties"):
            assert banned not in node, f"{path} has {banned}"
        if path == ".metadata":
            continue
        assert "type" in node, f"{path} has no type"
        if node["type"] == "object":
            assert "properties" in node or node.get("x-kubernetes-preserve-unknown-fields"), path


def test_every_traffic_field_is_described() -> None:
    spec = _root()["properties"]["spec"]
    for path, node in _walk(spec["properties"]["traffic"], "spec.traffic"):
        if path.endswith("[]") and node["type"] != "object":
            continue  # a list of scalars is described by the list field itself
        assert node.get("description"), f"{path} has no description for kubectl explain"


def test_status_subresource_and_printer_columns() -> None:
    version = crd.crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Sprint", "Target", "Phase", "Step", "Weight", "Age"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for field in (
        "phase",
        "targetCluster",
        "previousCluster",
        "stepIndex",
        "weights",
        "stepStartedAt",
        "analysis",
        "conditions",
        "observedGeneration",
        "message",
    ):
        assert field in status, field
    # Every printer column reads a declared field, or it would always print empty.
    for column in version["additionalPrinterColumns"]:
        top, _, leaf = column["jsonPath"].lstrip(".").partition(".")
        if top == "status":
            assert leaf in status, column


def test_every_cel_message_names_its_field() -> None:
    for path, node in _walk(_root()):
        for rule in node.get("x-kubernetes-validations", []):
            assert rule["message"].startswith("spec."), (path, rule)


def test_canonical_example_parses_and_is_the_shared_one() -> None:
    doc = yaml.safe_load((REPO / "examples/sprintrelease.yaml").read_text())
    spec = api.SprintReleaseSpec.model_validate(doc["spec"])
    assert spec.sprint == 42
    assert spec.traffic.steps == [10, 50, 100]
    assert [m.name for m in spec.analysis.metrics][:2] == list(api.BUILTIN_METRICS)
    if not SHARED_EXAMPLE.exists():
        pytest.skip(f"{SHARED_EXAMPLE} is not beside this checkout")
    assert (REPO / "examples/sprintrelease.yaml").read_bytes() == SHARED_EXAMPLE.read_bytes()


def test_readme_reference_is_generated_from_the_models() -> None:
    from sprintops import reference

    readme = (REPO / "README.md").read_text()
    assert reference.START in readme, "README has no generated reference section"
    assert reference.update(readme) == readme, "README reference drifted: run `make crds`"
    assert (
        "`spec.traffic.steps`" in readme
        and "spec.traffic.steps must be strictly increasing" in readme
    )
