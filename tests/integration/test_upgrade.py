"""An operator upgrade in the middle of a release: the status an older version wrote must
stay readable, and the new status fields take their defaults. Keep this test for every
later change to status: upgrades happen during releases."""

from __future__ import annotations

import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sprintops import api
from sprintops.api import SprintReleaseSpec
from sprintops_dev import environment
from sprintops_dev.operator_process import OperatorProcess
from tests.conftest import REPO
from tests.integration.conftest import Env, Operator, wait_phase, wait_status

ReleaseOf = Callable[..., tuple[dict[str, Any], SprintReleaseSpec]]
# The last commit before status gained specHash, pausedAt, blockedSince, pendingCopies...
OLD = "e34de9d"


def _old_operator(tmp_path: Path) -> Path:
    """The package as it was at OLD, taken from git history."""
    archive = tmp_path / "old.tar"
    try:
        subprocess.run(
            ["git", "-C", str(REPO), "archive", "-o", str(archive), OLD, "operator"],
            check=True,
            capture_output=True,
        )
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"commit {OLD} is not in this clone's history (a shallow clone?): {exc}")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "operator"


def test_a_release_started_by_the_older_operator_is_finished_by_this_one(
    env: Env, operator: Operator, release_of: ReleaseOf, tmp_path: Path
) -> None:
    old_code = _old_operator(tmp_path)
    doc, _ = release_of("upgrade", analysis__bakeTime="4s")
    name = doc["metadata"]["name"]
    variables = {
        **environment.environment_variables(env.layout, env.state),
        "PYTHONPATH": str(old_code),
    }
    old = OperatorProcess(variables, env.layout.root / "logs" / "operator-old.log")
    operator.stop()
    old.start()
    try:
        env.create(doc)
        at_50 = wait_status(
            env, name, lambda s: s.get("stepIndex") == 1 and bool(s.get("stepStartedAt")), 60
        )
        old.stop()
    finally:
        old.stop()
        operator.start()
    # (pendingCopies is there: the API server defaults it from the new CRD)
    assert "specHash" not in at_50 and "pausedAt" not in at_50, "not the old operator"
    obj = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=90)
    status = obj["status"]
    assert status["phase"] == "Succeeded", status
    assert [s["weight"] for s in status["steps"]] == [10, 50, 100]
    assert status["steps"][0]["startedAt"] == at_50["steps"][0]["startedAt"]  # not restarted
    assert status.get("specHash")  # adopted, not treated as an edit
