"""The plan is pure: neither it nor anything it imports reaches kopf, a client or the network."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "operator"
IO_MODULES = {
    "kopf",
    "kubernetes",
    "boto3",
    "botocore",
    "urllib",
    "urllib3",
    "http",
    "socket",
    "requests",
    "aiohttp",
    "subprocess",
    "prometheus_client",
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def _closure(module: str) -> set[str]:
    """Every module `module` imports, following the package's own modules."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = PACKAGE / (name.replace(".", "/") + ".py")
        if not path.exists():
            path = PACKAGE / name.replace(".", "/") / "__init__.py"
        if path.exists():
            todo += [m for m in _imports(path) if m.startswith("sprintops")]
            seen |= {m for m in _imports(path) if not m.startswith("sprintops")}
    return seen


def test_plan_imports_no_io() -> None:
    reached = {m.split(".")[0] for m in _closure("sprintops.plan")}
    assert not reached & IO_MODULES, reached & IO_MODULES
    assert "sprintops" in reached  # it did follow the package's own imports


def test_the_check_is_able_to_see_io() -> None:
    assert {"kopf"} <= {m.split(".")[0] for m in _closure("sprintops.handlers")}
