"""The workflow's pure parts: change windows, the clearance of an increase (freeze, windows,
gates, approvals) through the plan, notices and their words, the endpoints file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from sprintops import endpoints, notifications
from sprintops.api import Controls, SprintReleaseStatus, Weights, Window
from sprintops.durations import timestamp
from sprintops.plan import Plan
from sprintops.schedule import closed, describe
from tests.unit.world import T0, World, canonical_spec

EVERY_DAY = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
ODD_LIVE = Weights(even=0, odd=100)


def _window(**fields: Any) -> Window:
    return Window.model_validate({"days": EVERY_DAY, "start": "09:00", "end": "17:00", **fields})


# --- windows (T0 is Wednesday 2026-11-25 12:00 UTC)


def test_a_window_is_open_inside_its_hours_in_its_own_time_zone() -> None:
    assert closed([_window(timeZone="Europe/Berlin")], T0) is None  # 13:00 in Berlin
    shut = closed([_window(timeZone="America/New_York")], T0)  # 07:00 in New York
    assert shut is not None and shut.opens_in == 2 * 3600
    assert shut.message == (
        "outside change window Mon-Sun 09:00-17:00 America/New_York; next opens in 2h"
    )


def test_the_next_opening_is_the_soonest_of_all_windows() -> None:
    windows = [
        _window(days=["Mon", "Tue", "Wed", "Thu", "Fri"], start="14:00", end="16:00"),
        _window(days=["Thu"], start="08:00", end="09:00"),
    ]
    shut = closed(windows, T0)
    assert shut is not None and shut.opens_in == 2 * 3600
    assert "Mon-Fri 14:00-16:00 UTC" in shut.message
    late = T0.replace(hour=17)  # Wednesday 17:00: Thursday 08:00 comes first
    shut = closed(windows, late)
    assert shut is not None and shut.opens_in == 15 * 3600 and "Thu 08:00-09:00" in shut.message


def test_a_window_past_midnight_is_open_on_both_sides_of_it() -> None:
    night = _window(days=["Wed"], start="22:00", end="02:00")
    assert closed([night], T0.replace(hour=23)) is None
    assert closed([night], T0.replace(hour=1) + dt.timedelta(days=1)) is None  # Thu 01:00
    assert closed([night], T0.replace(hour=3) + dt.timedelta(days=1)) is not None
    assert closed([night], T0.replace(hour=1)) is not None  # Wed 01:00: Tuesday is not listed


def test_no_window_is_always_open_and_an_unknown_zone_never_opens() -> None:
    assert closed([], T0) is None
    shut = closed([_window(timeZone="Mars/Olympus_Mons")], T0)
    assert shut is not None and shut.opens_in is None and "Mars/Olympus_Mons" in shut.message


def test_a_window_in_an_unknown_zone_never_hides_an_open_one() -> None:
    windows = [_window(timeZone="Mars/Olympus_Mons"), _window(timeZone="Europe/Berlin")]
    assert closed(windows, T0) is None
    shut = closed(windows, T0.replace(hour=20))
    assert shut is not None and "Europe/Berlin" in shut.message and shut.opens_in is not None


def test_days_print_as_ranges() -> None:
    assert describe(_window(days=["Sat", "Sun", "Mon"])).startswith("Mon,Sat,Sun")
    assert describe(_window(days=["Mon", "Tue", "Wed", "Fri"])).startswith("Mon-Wed,Fri")


# --- the plan, through the world model


def _gated(*gates: dict[str, Any], **changes: Any) -> World:
    spec = canonical_spec(gates=list(gates), analysis__bakeTime="6s", **changes)
    return World(spec)


def _run_until(world: World, holds: Any, limit: int = 400, max_wait: float = 30.0) -> None:
    for _ in range(limit):
        if holds(world.status):
            return
        wait = world.reconcile()
        world.now += dt.timedelta(seconds=min(wait if wait is not None else max_wait, max_wait))
    raise AssertionError(f"never held: {world.status.message}")


def test_a_refusing_gate_holds_before_100_percent_for_as_long_as_it_refuses() -> None:
    world = _gated({"name": "cab", "type": "confirm-promotion", "webhook": "cab"})
    world.gate_verdicts["cab"] = "refused"
    _run_until(world, lambda s: s.hold is not None and "refused" in (s.message or ""))
    assert world.status.step_index == 1 and world.route53 == Weights(even=50, odd=50)
    # Two hours of refusals: a deliberate hold, never a rollback, asked every interval.
    end = world.now + dt.timedelta(hours=2)
    while world.now < end:
        world.now += dt.timedelta(seconds=world.reconcile() or 1)
    assert world.status.phase == "Progressing" and world.route53 == Weights(even=50, odd=50)
    assert world.asked["cab"] > 100
    world.gate_verdicts["cab"] = "approved"
    world.run()
    assert world.status.phase == "Succeeded"
    audit = [(d.name, d.verdict, d.step, d.by) for d in world.status.decisions]
    assert audit == [("cab", "refused", 3, "cab"), ("cab", "approved", 3, "cab")]
    reasons = [e.reason for e in world.events]
    assert reasons.count("GateRefused") == 1 and "GateApproved" in reasons


def test_a_gate_that_never_answers_rolls_back_past_the_deadline() -> None:
    world = _gated(
        {"name": "smoke", "type": "confirm-step", "webhook": "smoke"},
        analysis__progressDeadline="2m",
    )
    world.gate_verdicts["smoke"] = "approved"
    _run_until(world, lambda s: s.step_index == 1)
    world.gate_verdicts["smoke"] = "unanswered"
    world.run()
    assert world.status.phase == "RolledBack", world.status.message
    assert "gate smoke (confirm-step) unanswered" in (world.status.message or "")
    assert world.route53 == ODD_LIVE


def test_a_failing_pre_rollout_gate_fails_the_release_without_touching_traffic() -> None:
    world = _gated(
        {"name": "change-ticket", "type": "pre-rollout", "webhook": "cab"},
        analysis__progressDeadline="2m",
    )
    world.gate_verdicts["change-ticket"] = "refused"
    world.run()
    assert world.status.phase == "Failed"
    assert "traffic was not touched" in (world.status.message or "")
    assert world.route53 == ODD_LIVE and world.status.weights is None


def test_a_closed_window_holds_for_hours_and_its_time_never_counts() -> None:
    # T0 is 12:00: it opens in 14 h; a minute is too short for a bake of two.
    night = _window(start="02:00", end="02:01")
    world = World(
        canonical_spec(
            schedule={"windows": [night.model_dump(by_alias=True)]},
            analysis__bakeTime="2m",
            analysis__progressDeadline="3m",
        )
    )
    _run_until(world, lambda s: s.hold is not None)
    assert world.status.phase == "Deploying" and world.route53 == ODD_LIVE
    assert "next opens in 13h" in (world.status.message or "")  # 13 h 59 m
    world.run(limit=10_000)
    assert world.status.phase == "Succeeded", world.status.message
    # Each step waited for the window (the next day's), never rolled back for it.
    assert world.now - T0 > dt.timedelta(days=2)
    kinds = [(d.kind, d.verdict) for d in world.status.decisions]
    assert kinds.count(("window", "held")) == 3 and kinds.count(("window", "cleared")) == 3


def test_a_freeze_holds_increases_but_failing_checks_still_roll_back() -> None:
    world = World(canonical_spec())
    _run_until(world, lambda s: s.step_index == 0 and s.bake_started_at is not None)
    world.frozen = "incident INC-7 (by alice)"
    _run_until(world, lambda s: s.hold is not None)
    assert "held by a global freeze: incident INC-7" in (world.status.message or "")
    world.health = "fail"
    world.run()
    assert world.status.phase == "RolledBack" and world.route53 == ODD_LIVE


def test_an_approval_counts_only_when_made_during_the_wait() -> None:
    world = _gated({"name": "rm", "type": "confirm-promotion", "manual": True})
    early = timestamp(T0 - dt.timedelta(minutes=1)) + "/by:mallory"
    world.requests = Controls(approve=early)
    _run_until(world, lambda s: s.hold is not None and s.hold.reason == "approval")
    for _ in range(5):
        world.now += dt.timedelta(seconds=world.reconcile() or 1)
    assert world.status.hold is not None and world.status.phase == "Progressing"
    world.requests = Controls(approve=timestamp(world.now) + "/by:alice")
    world.now += dt.timedelta(seconds=1)
    world.run()
    assert world.status.phase == "Succeeded"
    [approval] = [d for d in world.status.decisions if d.kind == "approval"]
    assert (approval.by, approval.verdict, approval.step) == ("alice", "approved", 3)


def test_an_abort_during_a_hold_rolls_back_at_once() -> None:
    world = _gated({"name": "rm", "type": "confirm-promotion", "manual": True})
    _run_until(world, lambda s: s.hold is not None)
    assert world.route53 == Weights(even=50, odd=50)
    world.requests = Controls(abort=timestamp(world.now))
    world.reconcile()
    assert world.status.phase == "RollingBack" and world.status.hold is None
    world.run()
    assert world.status.phase == "RolledBack" and world.route53 == ODD_LIVE


# --- notices and words


def _notices(world: World) -> list[str]:
    seen: list[str] = []
    for _ in range(400):
        before = world.status
        wait = world.reconcile()
        assert world.last is not None
        seen += [n.event for n in notifications.notices("uid", before, world.last, "t")]
        world.now += dt.timedelta(seconds=wait or 1)
        if world.status.phase in ("Succeeded", "RolledBack", "Failed"):
            return seen
    raise AssertionError("did not finish")


def test_a_release_notifies_its_start_steps_and_end() -> None:
    assert _notices(World(canonical_spec())) == [
        "release.started",
        "step.applied",
        "step.applied",
        "step.applied",
        "release.succeeded",
    ]
    failing = World(canonical_spec())
    failing.health = "fail"
    events = _notices(failing)
    assert events[0] == "release.started" and events[-1] == "release.rolledBack"


def test_a_notice_keeps_its_key_and_the_failing_checks() -> None:
    status = SprintReleaseStatus(phase="RolledBack", step="1/3", weights=ODD_LIVE)
    result = Plan(status.model_copy(update={"phase": "Failed", "message": "no"}))
    [notice] = notifications.notices("uid-1", status, result, "2026-11-30T10:00:00.000Z")
    again = notifications.notices("uid-1", status, result, "2026-11-30T10:00:00.000Z")
    assert again[0].key == notice.key and notice.event == "release.failed"
    spec = canonical_spec()
    body = notifications.payload(notice, {"name": "r", "namespace": "ns", "uid": "u"}, spec, status)
    assert body["apiVersion"] == "sprintops.io/notification/v1"
    assert body["idempotencyKey"] == notice.key and body["verdict"] == "failed"
    text = notifications.slack(body)["text"]
    assert "documents/document-service sprint 42: release.failed (failed)" in text
    assert "weights even=0 odd=100" in text and "step 1/3" in text


# --- the endpoints file


def test_endpoints_are_names_with_secret_urls(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(
        "gates: {cab: {url: 'http://cab/x?token=s3cret'}}\n"
        "receivers:\n"
        "  all: {type: slack, url: 'http://hooks/T/B/s3cret', default: true}\n"
        "  audit: {url: 'http://audit/s3cret', bearerToken: s3cret}\n"
    )
    loaded = endpoints.load(str(path))
    assert loaded.receivers_for(["audit", "nope"]) == (["all", "audit"], ["nope"])
    assert "s3cret" not in repr(loaded) and "s3cret" not in str(loaded)
    assert endpoints.load(None) == endpoints.Endpoints()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("gates: {cab: {url: 'http://cab/s3cret', method: GET}}", "gates.cab.<unknown key>: Extra"),
        (
            "gates: {cab: {url: 'http://cab/s3cret', tokn: s3cret}}",
            "gates.cab.<unknown key>: Extra",
        ),
        ("receivers: {r: {url: 'http://hooks/s3cret', type: mail}}", "receivers.r.type"),
        ("gates: {cab: {url: 'ftp://cab/s3cret'}}", "not an http(s) URL"),
        ("gates: {cab: {url: 'http://cab..example/s3cret'}}", "not a URL"),
        ("gates: {cab: {url: 'http://cab/s3cret', timeout: 0s}}", "between 0.5s and 30s"),
        ("gates: {cab: {url: 'http://cab/s3cret', timeout: 5m}}", "between 0.5s and 30s"),
        ('gates: {cab: {url: "http://cab/s3cret", bearerToken: "a\\nb"}}', "control character"),
        ("gates: {cab: {url: http://cab/s3cret, [", "not YAML at line"),
        # A lost colon makes a secret a key: it is never said.
        ("receivers: {chat: {type: slack, url https://hooks/s3cret}}", "<unknown key>"),
        ("gates: {cab: {url: 'http://cab:0/s3cret'}}", "not an http(s) URL"),
    ],
)
def test_a_bad_endpoints_file_says_where_never_its_secrets(
    tmp_path: Path, text: str, said: str
) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(text + "\n")
    with pytest.raises(endpoints.EndpointsError) as bad:
        endpoints.load(str(path))
    assert said in str(bad.value) and "s3cret" not in str(bad.value), str(bad.value)
    assert bad.value.__cause__ is None and bad.value.__suppress_context__


def test_a_token_loses_the_newline_a_file_leaves() -> None:
    loaded = endpoints.Endpoints.model_validate(
        {"gates": {"cab": {"url": "https://cab", "bearerToken": "t0ken\n"}}}
    )
    token = loaded.gates["cab"].bearer_token
    assert token is not None and token.get_secret_value() == "t0ken"
