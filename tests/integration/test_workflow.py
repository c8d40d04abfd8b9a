"""The release manager's workflow against the local environment: notifications to a real
HTTP receiver on loopback, gates answered by it, manual approval, change windows and the
global freeze. The operator's endpoints file points at this receiver (conftest)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from sprintops import api
from sprintops.api import SprintReleaseSpec, Weights
from sprintops.cli import plugin
from sprintops_dev.seed import OPERATOR_NAMESPACE
from sprintops_dev.watcher import InvariantWatcher, Watched
from tests.integration.conftest import (
    HOOK_SECRET,
    HOOK_TOKEN,
    Env,
    Operator,
    wait_events,
    wait_phase,
    wait_status,
)

ReleaseOf = Callable[..., tuple[dict[str, Any], SprintReleaseSpec]]
NS = "releases"
FAST = {"analysis__bakeTime": "2s", "analysis__interval": "1s"}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Hooks:
    """A loopback HTTP server: records every request; answers per path prefix."""

    seen: list[Seen] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, prefix: str, release: str | None = None) -> list[Seen]:
        with self.lock:
            return [
                s
                for s in self.seen
                if s.path.startswith(prefix)
                and (release is None or _release_name(s.body) == release)
            ]


def _release_name(body: dict[str, Any]) -> str | None:
    release = body.get("release")
    return str(release["name"]) if isinstance(release, dict) else None


@pytest.fixture(scope="module")
def hooks(hooks_port: int) -> Iterator[Hooks]:
    state = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = {"raw": raw.decode(errors="replace")}
            with state.lock:
                state.seen.append(Seen(self.path, dict(self.headers), body))
                code = next((c for p, c in state.answers.items() if self.path.startswith(p)), 200)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", hooks_port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _plugin(env: Env, *args: str) -> int:
    return plugin.main(["--kubeconfig", str(env.layout.kubeconfig), "--context", "mgmt", *args])


def _events_of(hooks: Hooks, name: str) -> list[str]:
    return [s.body["event"] for s in hooks.of("/hooks/", name)]


def test_notifications_of_a_full_release_and_a_rolled_back_one(
    env: Env, operator: Operator, release_of: ReleaseOf, hooks: Hooks
) -> None:
    good, _ = release_of(
        "notified",
        **FAST,
        traffic__steps=[50, 100],
        notifications={"receivers": ["recorder", "chat"]},
    )
    bad, _ = release_of(
        "notified-bad", **FAST, traffic__steps=[50, 100], notifications={"receivers": ["recorder"]}
    )
    bad["spec"]["service"]["template"]["metadata"]["annotations"]["sim.sprintops.io/error-rate"] = (
        "0.3"
    )
    env.create(good)
    env.create(bad)
    names = (good["metadata"]["name"], bad["metadata"]["name"])
    assert wait_phase(env, names[0], {"Succeeded"}, timeout=90)["status"]["phase"] == "Succeeded"
    assert wait_phase(env, names[1], {"RolledBack"}, timeout=90)["status"]["phase"] == "RolledBack"
    # The outbox empties once every receiver took its notices.
    for name in names:
        wait_status(env, name, lambda s: not s.get("outbox"), timeout=30)

    assert _events_of(hooks, names[0]) == [
        "release.started",
        "step.applied",
        "step.applied",
        "release.succeeded",
    ]
    bodies = [s.body for s in hooks.of("/hooks/", names[0])]
    assert {b["apiVersion"] for b in bodies} == {"sprintops.io/notification/v1"}
    assert len({b["idempotencyKey"] for b in bodies}) == len(bodies)
    assert [b["weights"] for b in bodies[1:3]] == [{"even": 50, "odd": 50}, {"even": 100, "odd": 0}]
    assert bodies[-1]["verdict"] == "succeeded" and bodies[-1]["targetCluster"] == "even"
    assert bodies[0]["release"]["service"] == "documents/notified"
    # The receiver's token travels as a header, to the receiver only.
    headers = hooks.of("/hooks/", names[0])[0].headers
    assert headers["Authorization"] == f"Bearer {HOOK_TOKEN}"

    rolled = [s.body for s in hooks.of("/hooks/", names[1])]
    assert [b["event"] for b in rolled][-1] == "release.rolledBack", rolled
    assert rolled[-1]["verdict"] == "rolledBack"
    assert "request-success-rate" in rolled[-1]["failing"]
    assert rolled[-1]["weights"] == {"even": 0, "odd": 100}

    # Slack-compatible: a readable line naming service, sprint, cluster, step and weights.
    chat = [s.body["text"] for s in hooks.of("/slack/") if "documents/notified " in s.body["text"]]
    assert len(chat) == 4, chat
    assert "documents/notified sprint 42: release.succeeded" in chat[-1]
    assert "cluster even" in chat[-1] and "weights even=100 odd=0" in chat[-1]

    # No secret anywhere a person or a log reader sees.
    log = operator.log.read_text()
    events = wait_events(env, names[0], lambda es: True)
    status = json.dumps([env.status(n) for n in names])
    for secret in (HOOK_SECRET, HOOK_TOKEN):
        assert secret not in log
        assert secret not in status
        assert all(secret not in (e.message or "") for e in events)


def test_confirm_promotion_gate_holds_until_it_answers_yes(
    env: Env, operator: Operator, release_of: ReleaseOf, hooks: Hooks
) -> None:
    doc, spec = release_of(
        "gated",
        **FAST,
        gates=[{"name": "change-board", "type": "confirm-promotion", "webhook": "cab"}],
    )
    name = doc["metadata"]["name"]
    hooks.answers["/gates/cab/"] = 403
    try:
        with InvariantWatcher(env.apis, [Watched(NS, name, spec)]) as watcher:
            env.create(doc)
            held = wait_status(
                env,
                name,
                lambda s: "refused: HTTP 403" in (s.get("message") or ""),
                timeout=90,
            )
            # Held before 100%, at the step before it; the gate is asked again and again.
            assert held["hold"]["reason"] == "gate" and held["stepIndex"] == 1, held
            assert held["weights"] == {"even": 50, "odd": 50}
            assert held["phase"] == "Progressing"
            asked = len(hooks.of("/gates/cab/", name))
            time.sleep(2.5)
            assert len(hooks.of("/gates/cab/", name)) > asked
            question = hooks.of("/gates/cab/", name)[-1].body
            assert question["type"] == "confirm-promotion" and question["toWeight"] == 100
            assert env.status(name)["weights"] == {"even": 50, "odd": 50}
            hooks.answers["/gates/cab/"] = 200
            done = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=60)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        assert not watcher.violations, watcher.violations
    finally:
        hooks.answers.pop("/gates/cab/", None)
    decisions = [(d["name"], d["verdict"], d["step"]) for d in done["status"]["decisions"]]
    # Each distinct answer is audited once, however often it was given.
    assert decisions == [("change-board", "refused", 3), ("change-board", "approved", 3)]
    reasons = [e.reason for e in wait_events(env, name, lambda es: True)]
    assert "GateRefused" in reasons and "GateApproved" in reasons


def test_manual_approval_holds_until_kubectl_sprint_approve(
    env: Env, operator: Operator, release_of: ReleaseOf, capsys: pytest.CaptureFixture[str]
) -> None:
    doc, _ = release_of(
        "approved",
        **FAST,
        traffic__steps=[50, 100],
        gates=[{"name": "release-manager", "type": "confirm-promotion", "manual": True}],
    )
    name = doc["metadata"]["name"]
    env.create(doc)
    # Refused while it does not wait for one: an early approval never counts.
    assert _plugin(env, "-n", NS, "approve", name) == plugin.EXIT_ERROR
    held = wait_status(env, name, lambda s: (s.get("hold") or {}).get("reason") == "approval", 90)
    assert "kubectl sprint approve" in held["message"] and held["weights"]["even"] == 50
    time.sleep(3)  # no one approved: it still holds, and never rolls back for the wait
    assert env.status(name)["hold"]["reason"] == "approval"
    assert _plugin(env, "-n", NS, "approve", name) == plugin.EXIT_OK
    assert "approved by" in capsys.readouterr().out
    done = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=30)
    assert done["status"]["phase"] == "Succeeded"
    approval = [d for d in done["status"]["decisions"] if d["kind"] == "approval"]
    assert len(approval) == 1 and approval[0]["verdict"] == "approved"
    assert approval[0]["by"] and approval[0]["by"] != "unknown"
    assert approval[0]["time"]


def _window(hours_from_now: int) -> dict[str, Any]:
    """A window every day, an hour long, starting `hours_from_now` from now (UTC)."""
    start = dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours_from_now)
    end = start + dt.timedelta(hours=1)
    return {
        "days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
        "start": start.strftime("%H:00"),
        "end": end.strftime("%H:00"),
        "timeZone": "UTC",
    }


def _patch(env: Env, name: str, spec: dict[str, Any]) -> None:
    env.custom().patch_namespaced_custom_object(
        api.GROUP, api.VERSION, NS, api.PLURAL, name, {"spec": spec}
    )


def test_closed_window_holds_increases_but_never_a_rollback(
    env: Env, operator: Operator, release_of: ReleaseOf
) -> None:
    doc, spec = release_of("windowed", **FAST, schedule={"windows": [_window(3)]})
    name = doc["metadata"]["name"]
    with InvariantWatcher(env.apis, [Watched(NS, name, spec)]) as watcher:
        env.create(doc)
        held = wait_status(env, name, lambda s: (s.get("hold") or {}).get("reason") == "window")
        # Before the first increase: nothing moved.
        assert held["phase"] == "Deploying" and "weights" not in held, held
        assert "outside change window" in held["message"] and "next opens in" in held["message"]
        # Opening the window by editing it continues the release.
        _patch(env, name, {"schedule": {"windows": [_window(0)]}})
        wait_status(env, name, lambda s: s.get("stepIndex") == 0 and bool(s.get("stepStartedAt")))
        # Closed again: held before step 2, and an abort still rolls back at once.
        _patch(env, name, {"schedule": {"windows": [_window(3)]}})
        held = wait_status(
            env, name, lambda s: (s.get("hold") or {}).get("reason") == "window", timeout=60
        )
        assert held["weights"] == {"even": 10, "odd": 90} and held["stepIndex"] == 0
        started = time.monotonic()
        assert _plugin(env, "-n", NS, "abort", name) == plugin.EXIT_OK
        done = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=30)
        took = time.monotonic() - started
    assert done["status"]["phase"] == "RolledBack", done["status"]
    assert took < 20, took
    assert env.route53().read(spec.traffic.route53) == Weights(even=0, odd=100)
    assert not watcher.violations, watcher.violations
    kinds = [(d["kind"], d["verdict"]) for d in done["status"]["decisions"]]
    assert ("window", "held") in kinds and ("window", "cleared") in kinds


def test_global_freeze_holds_two_releases_and_lifting_it_continues_both(
    env: Env, operator: Operator, release_of: ReleaseOf, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        client.CoreV1Api(env.apis["mgmt"]).create_namespace(
            {"metadata": {"name": OPERATOR_NAMESPACE}}
        )
    except ApiException as exc:
        assert exc.status == 409
    docs = [release_of(f"frozen-{i}", **FAST, traffic__steps=[50, 100])[0] for i in (1, 2)]
    names = [d["metadata"]["name"] for d in docs]
    freeze = ("freeze", "--operator-namespace", OPERATOR_NAMESPACE)
    assert _plugin(env, *freeze, "on") == plugin.EXIT_ERROR  # a freeze says why
    assert _plugin(env, *freeze, "on", "--reason", "incident INC-42") == plugin.EXIT_OK
    try:
        for doc in docs:
            env.create(doc)
        for name in names:
            held = wait_status(
                env, name, lambda s: (s.get("hold") or {}).get("reason") == "freeze", 60
            )
            assert "incident INC-42" in held["message"] and "weights" not in held
        capsys.readouterr()
        assert _plugin(env, *freeze, "status") == plugin.EXIT_OK
        assert "frozen: incident INC-42" in capsys.readouterr().out
    finally:
        assert _plugin(env, *freeze, "off") == plugin.EXIT_OK
    for name in names:
        done = wait_phase(env, name, set(api.TERMINAL_PHASES), timeout=60)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        kinds = [(d["kind"], d["verdict"]) for d in done["status"]["decisions"]]
        assert kinds[:2] == [("freeze", "held"), ("freeze", "cleared")]


def test_a_gate_the_admin_did_not_define_is_never_called(
    env: Env, operator: Operator, release_of: ReleaseOf, hooks: Hooks
) -> None:
    doc, _ = release_of(
        "unlisted",
        **FAST,
        gates=[{"name": "outside", "type": "pre-rollout", "webhook": "metadata-server"}],
    )
    name = doc["metadata"]["name"]
    before = len(hooks.seen)
    env.create(doc)
    held = wait_status(
        env,
        name,
        lambda s: "not defined in the operator's configuration" in (s.get("message") or ""),
    )
    assert held["phase"] == "Deploying" and "weights" not in held
    assert held["hold"]["counts"] is True  # past progressDeadline it fails, untouched
    assert len(hooks.seen) == before
    # A URL in its place never reaches the operator: the API refuses it, naming the field.
    bad = json.loads(json.dumps(doc))
    bad["metadata"]["name"] = "unlisted-url"
    bad["spec"]["gates"][0]["webhook"] = "http://169.254.169.254/latest"
    with pytest.raises(ApiException) as refused:
        env.create(bad)
    assert refused.value.status == 422
    assert "spec.gates[0].webhook" in (refused.value.body or "")
