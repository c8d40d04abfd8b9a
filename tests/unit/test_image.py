"""The image, as far as it can be checked without a Docker engine."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import REPO


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            stages.append([])
        if stages and line and not line.startswith("#"):
            stages[-1].append(line)
    return stages


def test_final_stage_is_slim_non_root_and_runs_the_operator() -> None:
    stages = _stages()
    assert len(stages) >= 2, "multi-stage"
    final = stages[-1]
    assert final[0].startswith("FROM python:3.11-slim")
    user = next(line for line in final if line.startswith("USER ")).split()[1].split(":")[0]
    assert user.isdigit() and int(user) != 0
    assert 'ENTRYPOINT ["sprintops", "run"]' in final
    assert not any("[dev]" in line for stage in stages for line in stage), "dev extra in the image"


def test_build_context_has_what_the_dockerfile_copies() -> None:
    for line in "\n".join("\n".join(s) for s in _stages()).splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), source
    ignored = (REPO / ".dockerignore").read_text().split()
    for local_state in (".venv", ".sprintops", ".git", "tests", "devenv"):
        assert local_state in ignored


def test_docker_build_where_an_engine_exists() -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "info"], capture_output=True, check=False).returncode != 0
    ):
        pytest.skip("no Docker engine on this machine: `make image` cannot build here")
    result = subprocess.run(
        [docker, "build", "-q", str(REPO)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
