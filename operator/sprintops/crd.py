"""Generates the SprintRelease CRD from the pydantic models in `api.py`.

pydantic emits JSON Schema with $refs, nullable unions and titles; a CRD needs a
structural OpenAPI v3 schema with everything inlined. This module does that conversion.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from sprintops import api

# Keys of pydantic's JSON Schema that a structural schema keeps as they are.
_KEPT = {
    "type",
    "description",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "format",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inlines $ref (keeping sibling keys, which refine the referenced schema)."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        merged = dict(_resolve(target, defs))
        # A field's own description wins over the model's docstring.
        if "x-kubernetes-validations" in siblings and "x-kubernetes-validations" in merged:
            siblings["x-kubernetes-validations"] = (
                merged["x-kubernetes-validations"] + siblings["x-kubernetes-validations"]
            )
        merged.update(siblings)
        return merged
    if "allOf" in node and len(node["allOf"]) == 1:
        rest = {k: v for k, v in node.items() if k != "allOf"}
        return _resolve({**node["allOf"][0], **rest}, defs)
    return node


def _without_null(node: dict[str, Any]) -> dict[str, Any]:
    """`X | None` becomes X: an optional field is simply absent, never null."""
    options = node.get("anyOf")
    if options is None:
        return node
    kept = [o for o in options if o.get("type") != "null"]
    if len(kept) != 1:
        raise ValueError(f"unions are not structural: {node}")
    rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
    return {**kept[0], **rest}


def _without_nones(value: Any) -> Any:
    """Defaults must validate against the schema, where optional fields are absent, not null."""
    if isinstance(value, dict):
        return {k: _without_nones(v) for k, v in value.items() if v is not None}
    return value


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Converts one pydantic JSON Schema node into a structural OpenAPI v3 schema."""
    node = _resolve(_without_null(_resolve(node, defs)), defs)
    out: dict[str, Any] = {k: v for k, v in node.items() if k in _KEPT}
    # JSON Schema's numeric exclusive bounds are OpenAPI v3.0's boolean flags.
    for bound, flag in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if flag in node:
            out[bound], out[flag] = node[flag], True
    if "const" in node:
        out["enum"] = [node["const"]]
    if "default" in node and node["default"] is not None:
        out["default"] = _without_nones(node["default"])
    kind = node.get("type")
    if kind == "object" or "properties" in node:
        out["type"] = "object"
        props = node.get("properties")
        if props:
            out["properties"] = {name: structural(p, defs) for name, p in props.items()}
            if node.get("required"):
                out["required"] = list(node["required"])
        elif node.get("additionalProperties", True) is True:
            # Free-form (the pod template): kept as the user wrote it.
            out["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        out["items"] = structural(node["items"], defs)
    elif kind == "number":
        out["type"] = "number"
    return out


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return structural(raw, defs)


def crd() -> dict[str, Any]:
    spec = schema_of(api.SprintReleaseSpec)
    status = schema_of(api.SprintReleaseStatus)
    root = {
        "type": "object",
        "description": "A sprint's release of one service across the even and odd clusters.",
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of the object."},
            "kind": {"type": "string", "description": "Kind of the object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "required": ["spec"],
        **api.OBJECT_RULES,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": ["sprintops"],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {"name": "Sprint", "type": "integer", "jsonPath": ".spec.sprint"},
                        {"name": "Target", "type": "string", "jsonPath": ".status.targetCluster"},
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Step", "type": "string", "jsonPath": ".status.step"},
                        {
                            "name": "Weight",
                            "type": "integer",
                            "description": "Percent of traffic on the new cluster",
                            "jsonPath": ".status.targetWeight",
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render() -> str:
    header = "# Generated from operator/sprintops/api.py by `make crds`; do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)
