"""`kubectl sprint`, run the way a person runs it: through the built kubectl, as a plugin."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from sprintops.api import SprintReleaseSpec
from sprintops_dev import environment
from sprintops_dev.controlplane import OPERATOR_USER, merge, write_kubeconfig
from sprintops_dev.processes import free_port
from tests.integration.conftest import (
    Env,
    Operator,
    first_step_started,
    wait_events,
    wait_phase,
    wait_status,
)

ReleaseOf = Callable[..., tuple[dict[str, Any], SprintReleaseSpec]]


def kubectl_sprint(
    env: Env, *args: str, kubeconfig_path: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    config = str(kubeconfig_path or env.layout.kubeconfig)
    flags = ["--kubeconfig", config, "--context", "mgmt", "-n", "releases"]
    return _run(env, ["sprint", *flags, *args], timeout, {"COLUMNS": "200"})


def typed(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    """As a kubectl user types it, off a terminal: global flags after the command."""
    return _run(env, ["sprint", *args, "--kubeconfig", str(env.layout.kubeconfig)], 60, {})


def _run(
    env: Env, argv: list[str], timeout: float, extra: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(
        [str(Path(sys.executable).parent), env.state.bin_dir, os.environ["PATH"]]
    )
    environ = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return subprocess.run(
        ["kubectl", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**environ, "PATH": path, **extra},
        check=False,
    )


def test_list_status_history(env: Env, operator: Operator, release_of: ReleaseOf) -> None:
    doc, _ = release_of("plugin-basics-with-a-name-long-enough-to-be-cut", analysis__bakeTime="2s")
    name = doc["metadata"]["name"]
    env.create(doc)
    wait_phase(env, name, {"Succeeded"}, timeout=90)
    wait_events(env, name, lambda es: any(e.reason == "Succeeded" for e in es))
    listed = kubectl_sprint(env, "list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if name in line)
    assert "Succeeded" in line and "even" in line and "3/3" in line and "100/0" in line
    rows = json.loads(kubectl_sprint(env, "-o", "json", "list").stdout)
    mine = next(r for r in rows if r["name"] == name)
    assert mine["weights"] == {"even": 100, "odd": 0} and mine["sprint"] == 42
    status = kubectl_sprint(env, "status", name)
    assert status.returncode == 0, status.stderr
    for words in ("Succeeded", "3/3", "request-success-rate", ">= 99", "StepApplied", "Ready"):
        assert words in status.stdout, (words, status.stdout)
    data = yaml.safe_load(kubectl_sprint(env, "-o", "yaml", "status", name).stdout)
    assert data["phase"] == "Succeeded"
    assert {c["metric"] for c in data["checks"]} >= {"request-success-rate", "deployment-available"}
    assert [e["reason"] for e in data["events"]][-1] == "Succeeded"
    history = json.loads(kubectl_sprint(env, "-o", "json", "history", name).stdout)
    assert len({r["time"] for r in history}) >= 3  # at least one round per step
    assert all(r["verdict"] in {"pass", "hold"} for r in history)
    table = kubectl_sprint(env, "history", name)
    assert "request-duration-p99" in table.stdout and "<= 500" in table.stdout
    # Flags after the command; nothing cut, off a terminal 80 columns wide.
    wide = typed(env, "list", "--context", "mgmt", "-n", "releases", "-o", "wide")
    assert wide.returncode == 0, wide.stderr
    line = next(line for line in wide.stdout.splitlines() if name in line)
    assert "…" not in wide.stdout and "sprint 42 takes all traffic on even" in line, line
    assert len(line) > 80
    history_typed = typed(env, "history", name, "-n", "releases", "--context", "mgmt")
    assert history_typed.returncode == 0, history_typed.stderr
    assert "…" not in history_typed.stdout
    stamps = re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z", history_typed.stdout)
    assert len(stamps) >= 3 and "server-errors-per-second" in history_typed.stdout
    as_json = typed(env, "status", name, "-o", "json", "--context", "mgmt", "-n", "releases")
    assert json.loads(as_json.stdout)["phase"] == "Succeeded", as_json.stderr
    # Completion through kubectl's own (what its bash and zsh scripts call): release names
    # from the namespace and context typed so far.
    flags = ["--kubeconfig", str(env.layout.kubeconfig), "--context", "mgmt", "-n", "releases"]
    completed = _run(env, ["__complete", "sprint", "status", *flags, name[:20]], 60, {})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.splitlines() == [name, ":4"], completed.stdout
    verbs = _run(env, ["__complete", "sprint", "pa"], 60, {}).stdout.splitlines()
    assert verbs[0].startswith("pause\t") and verbs[-1] == ":4", verbs


def test_watch_exit_codes(env: Env, operator: Operator, release_of: ReleaseOf) -> None:
    good, _ = release_of("watch-good", analysis__bakeTime="2s")
    bad, _ = release_of("watch-bad")
    bad["spec"]["service"]["template"]["metadata"]["annotations"]["sim.sprintops.io/error-rate"] = (
        "0.3"
    )
    env.create(good)
    env.create(bad)
    ok = kubectl_sprint(env, "watch", good["metadata"]["name"], "--timeout", "90")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Succeeded" in ok.stdout
    failed = kubectl_sprint(env, "watch", bad["metadata"]["name"], "--timeout", "90")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "RolledBack" in failed.stdout


def test_controls(env: Env, operator: Operator, release_of: ReleaseOf) -> None:
    doc, _ = release_of("plugin-controls", analysis__bakeTime="30s")
    name = doc["metadata"]["name"]
    env.create(doc)
    first_step_started(env, name)
    paused = kubectl_sprint(env, "pause", name)
    assert paused.returncode == 0 and "sprintops.io/pause=" in paused.stdout, paused.stderr
    wait_status(env, name, lambda s: s.get("phase") == "Paused", 15)
    assert kubectl_sprint(env, "resume", name).returncode == 0
    wait_status(env, name, lambda s: s.get("phase") == "Progressing", 15)
    assert kubectl_sprint(env, "promote", name, "--force").returncode == 0
    status = wait_phase(env, name, {"Succeeded"}, timeout=60)["status"]
    assert status["promotion"] == "force"
    other, _ = release_of("plugin-abort", analysis__bakeTime="30s")
    env.create(other)
    wait_status(env, other["metadata"]["name"], lambda s: bool(s.get("stepStartedAt")), 60)
    assert kubectl_sprint(env, "abort", other["metadata"]["name"]).returncode == 0
    assert wait_phase(env, other["metadata"]["name"], {"RolledBack"}, timeout=30)


def test_clear_errors(env: Env, tmp_path: Path) -> None:
    missing = kubectl_sprint(env, "status", "no-such-release")
    assert missing.returncode == 2
    assert 'sprintrelease "no-such-release": not found in namespace' in missing.stderr
    plane = environment.control_plane(env.layout, env.state)
    # A user the apiserver knows but RBAC grants nothing in mgmt.
    nobody = write_kubeconfig(
        tmp_path / "nobody", merge({"mgmt": plane.kubeconfig("mgmt", user=OPERATOR_USER)})
    )
    denied = kubectl_sprint(env, "list", kubeconfig_path=nobody)
    assert denied.returncode == 2 and "forbidden by RBAC" in denied.stderr, denied.stderr
    admin = merge({"mgmt": plane.kubeconfig("mgmt")})
    admin["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    closed = write_kubeconfig(tmp_path / "closed", admin)
    unreachable = kubectl_sprint(env, "list", kubeconfig_path=closed, timeout=60)
    assert unreachable.returncode == 2 and "cannot reach the cluster" in unreachable.stderr, (
        unreachable.stderr
    )
