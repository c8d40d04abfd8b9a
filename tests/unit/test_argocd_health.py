"""The Argo CD health check, run in a real Lua interpreter over Argo CD's own test layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import LuaRuntime

from tests.conftest import REPO

HERE = REPO / "charts/sprintops/argocd"
CASES = yaml.safe_load((HERE / "health_test.yaml").read_text())["tests"]


def _to_lua(lua: LuaRuntime, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def run_health(obj: dict[str, Any]) -> dict[str, str]:
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = _to_lua(lua, obj)
    # Argo CD runs the script as a chunk whose return value is the health table.
    result = lua.execute((HERE / "health.lua").read_text())
    return {"status": result["status"], "message": result["message"]}


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health(case: dict[str, Any]) -> None:
    obj = yaml.safe_load((HERE / case["inputPath"]).read_text())
    assert run_health(obj) == case["healthStatus"]


def test_every_testdata_file_has_a_case() -> None:
    listed = {Path(c["inputPath"]).name for c in CASES}
    assert listed == {p.name for p in (HERE / "testdata").glob("*.yaml")}
    statuses = {c["healthStatus"]["status"] for c in CASES}
    assert statuses == {"Healthy", "Progressing", "Suspended", "Degraded"}
