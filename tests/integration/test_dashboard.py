"""`kubectl sprint dashboard` in a real browser (Debian's Chromium, driven by Playwright)
against the local environment: the list, the live weight chart, the actions through the
user's own identity, read-only mode, and an identity RBAC allows only to read."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from playwright.sync_api import Browser, Page, sync_playwright

from sprintops.api import SprintReleaseSpec
from sprintops_dev import environment
from sprintops_dev.controlplane import merge, write_kubeconfig
from sprintops_dev.processes import free_port
from tests.conftest import REPO
from tests.integration.conftest import Env, Operator, first_step_started, wait_phase

ReleaseOf = Callable[..., tuple[dict[str, Any], SprintReleaseSpec]]
SHOTS = REPO / ".sprintops" / "screenshots"
VIEWER = "sprint-viewer"


def chromium() -> str:
    """Debian's package (`make chromium`), or SPRINTOPS_CHROMIUM; Playwright's own browser
    download does not work on these machines."""
    found = os.environ.get("SPRINTOPS_CHROMIUM") or shutil.which("chromium")
    assert found, "no chromium on PATH: run `make chromium` (Debian's package)"
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


@contextmanager
def dashboard(kubeconfig: Path, *flags: str) -> Iterator[str]:
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "kubectl-sprint"),
        "dashboard",
        "--kubeconfig",
        str(kubeconfig),
        "--context",
        "mgmt",
        "--port",
        str(port),
        *flags,
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(url + "/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dashboard did not start: {proc.stdout}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def kept_on_failure(page: Page, name: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        raise


def _phase(env: Env, name: str) -> str:
    """As kubectl reads it."""
    found = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(env.layout.kubeconfig),
            "--context",
            "mgmt",
            "-n",
            "releases",
            "get",
            "sprintrelease",
            name,
            "-o",
            "jsonpath={.status.phase}",
        ],
        capture_output=True,
        text=True,
        check=True,
        # kubectl caches discovery under $HOME, or under the working directory without one.
        env={"PATH": f"{env.state.bin_dir}:/usr/bin:/bin", "HOME": str(env.layout.root)},
    )
    return found.stdout


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def _viewer_kubeconfig(env: Env, path: Path) -> Path:
    """An identity that may read SprintReleases and Events in mgmt, and nothing else."""
    rbac = client.RbacAuthorizationV1Api(env.apis["mgmt"])
    role = {
        "metadata": {"name": VIEWER},
        "rules": [
            {
                "apiGroups": ["sprintops.io"],
                "resources": ["sprintreleases"],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "list"]},
        ],
    }
    binding = {
        "metadata": {"name": VIEWER},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": VIEWER},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": VIEWER}],
    }
    for create, body in (
        (rbac.create_cluster_role, role),
        (rbac.create_cluster_role_binding, binding),
    ):
        try:
            create(body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    plane = environment.control_plane(env.layout, env.state)
    return write_kubeconfig(path, merge({"mgmt": plane.kubeconfig("mgmt", user=VIEWER)}))


def test_the_dashboard_follows_a_rollout_and_acts_as_the_user(
    env: Env, operator: Operator, release_of: ReleaseOf, browser: Browser, tmp_path: Path
) -> None:
    doc, _ = release_of("dashboard", analysis__bakeTime="6s", analysis__interval="2s")
    name = doc["metadata"]["name"]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    with dashboard(env.layout.kubeconfig) as url, kept_on_failure(page, "dashboard"):
        env.create(doc)
        page.goto(url + "/")
        page.get_by_role("link", name=name).wait_for(timeout=15_000)
        page.get_by_role("link", name=name).click()
        page.wait_for_url(f"{url}/releases/releases/{name}")
        points = page.locator("#weight-chart circle.set")
        _wait(lambda: points.count() >= 2, 30, "the weight chart shows the first step")
        first = points.count()
        _wait(lambda: points.count() > first, 40, "the chart gains points as steps advance")
        page.screenshot(path=str(REPO / ".sprintops" / "dashboard-rollout.png"), full_page=True)
        page.get_by_role("button", name="Pause", exact=True).click()
        _wait(lambda: _phase(env, name) == "Paused", 30, "Pause makes the release Paused")
        page.get_by_text("pause requested").wait_for(timeout=5_000)
        page.get_by_role("button", name="Resume", exact=True).click()
        assert wait_phase(env, name, {"Succeeded"}, timeout=90)
        assert _phase(env, name) == "Succeeded"

    # Read-only: nothing to press, and the action endpoint refuses even the page's own
    # request (its Origin and CSRF token included).
    with dashboard(env.layout.kubeconfig, "--read-only") as url, kept_on_failure(page, "ro"):
        page.goto(f"{url}/releases/releases/{name}")
        page.get_by_text("read-only").first.wait_for(timeout=10_000)
        assert page.get_by_role("button").count() == 0
        refused = page.evaluate(
            """async (target) => {
                const csrf = document.querySelector('meta[name="sprintops-csrf"]').content;
                const r = await fetch(`/api/releases/${target}/pause`, {method: "POST",
                  headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
                  body: "{}"});
                return [r.status, await r.text()];
            }""",
            f"releases/{name}",
        )
        assert refused[0] == 403 and "read-only" in refused[1], refused
    page.close()


def test_an_identity_that_may_only_read_is_told_why_pause_fails(
    env: Env, operator: Operator, release_of: ReleaseOf, browser: Browser, tmp_path: Path
) -> None:
    doc, _ = release_of("dashboard-viewer", analysis__bakeTime="30s", analysis__interval="2s")
    name = doc["metadata"]["name"]
    env.create(doc)
    first_step_started(env, name)
    viewer = _viewer_kubeconfig(env, tmp_path / "viewer")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    with dashboard(viewer) as url, kept_on_failure(page, "viewer"):
        page.goto(f"{url}/releases/releases/{name}")
        page.get_by_role("heading", name=f"releases/{name}").wait_for(timeout=15_000)
        page.get_by_role("button", name="Pause", exact=True).click()
        refusal = page.locator("#result")
        _wait(lambda: "refused" in refusal.inner_text(), 10, "the refusal is shown")
        text = refusal.inner_text()
        assert "HTTP 403" in text and "forbidden by RBAC" in text and VIEWER in text, text
    assert env.status(name)["phase"] == "Progressing"  # nothing was paused
    page.close()
