"""The product wheel holds the operator and nothing of the harness that proves it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import REPO

HARNESS = ("localenv", "sprintops_dev", "bench", "chaos", "moto", "cryptography", "pytest")


def test_the_product_wheel_carries_no_harness(tmp_path: Path) -> None:
    # Built from a copy of what the Dockerfile copies: setuptools writes build/ beside it.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "operator",
        source / "operator",
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("sprintops-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = next(archive.read(n).decode() for n in names if n.endswith("/METADATA"))
        entry_points = next(
            archive.read(n).decode() for n in names if n.endswith("entry_points.txt")
        )
    assert "sprintops/plan.py" in names and "sprintops/handlers.py" in names  # it is the product
    leaked = [n for n in names if any(word in n for word in HARNESS)]
    assert not leaked, leaked
    requires = [
        line
        for line in metadata.splitlines()
        if line.startswith(("Requires-Dist", "Provides-Extra"))
    ]
    assert any("kopf" in line for line in requires), requires
    assert not [line for line in requires if any(word in line for word in HARNESS)], requires
    assert "sprintops-dev" not in entry_points


def test_the_product_cli_runs_and_prints_the_crd_only() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sprintops.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    commands = result.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert sorted(commands) == ["crds", "run", "version"], result.stdout
