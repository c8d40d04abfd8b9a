"""Shared paths for all tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def canonical_doc() -> dict:
    return yaml.safe_load((REPO / "examples/sprintrelease.yaml").read_text())
