"""The dashboard server and its views, without a cluster: a fake backend behind the real
aiohttp application, requests from a real client."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from sprintops.api import CheckResult
from sprintops.cli.plugin import build_parser
from sprintops.controls import Verb
from sprintops.dashboard.server import Refused, Settings, hosts_for, make_app
from sprintops.dashboard.views import Seen, check_chart, release_view, weights_chart

NOW = dt.datetime(2026, 11, 30, 12, 0, 10, tzinfo=dt.UTC)


def _release(steps: int = 2, message: str = "step 2/3") -> dict[str, Any]:
    starts = ["2026-11-30T12:00:00Z", "2026-11-30T12:00:04Z", "2026-11-30T12:00:08Z"]
    weights = [10, 50, 100]
    return {
        "metadata": {"namespace": "releases", "name": "docs-sprint-42", "uid": "u1"},
        "spec": {"sprint": 42, "traffic": {"steps": weights}, "service": {"name": "docs"}},
        "status": {
            "phase": "Progressing",
            "targetCluster": "even",
            "previousCluster": "odd",
            "stepIndex": steps - 1,
            "step": f"{steps}/3",
            "targetWeight": weights[steps - 1],
            "stepStartedAt": starts[steps - 1],
            "weights": {"even": weights[steps - 1], "odd": 100 - weights[steps - 1]},
            "message": message,
            "steps": [{"weight": w, "startedAt": t} for w, t in zip(weights, starts, strict=True)][
                :steps
            ],
        },
    }


class FakeBackend:
    def __init__(self) -> None:
        self.requested: list[tuple[str, str, str, bool]] = []
        self.refuse: Refused | None = None
        self.changed: Callable[[dict[str, Any]], None] | None = None
        self.watching = threading.Event()

    def releases(self) -> list[dict[str, Any]]:
        return [_release()]

    def release(self, namespace: str, name: str) -> dict[str, Any]:
        if name != "docs-sprint-42":
            raise Refused(404, f"sprintrelease {namespace}/{name}: not found")
        return _release()

    def events(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"time": "t", "type": "Normal", "reason": "StepApplied", "message": "<b>x</b>"}]

    def deployments(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {"even": None, "odd": "cannot read it"}

    def request(self, namespace: str, name: str, verb: Verb, force: bool) -> str:
        if self.refuse is not None:
            raise self.refuse
        self.requested.append((namespace, name, verb, force))
        return "2026-11-30T12:00:00Z"

    def watch(self, stop: threading.Event, changed: Callable[[dict[str, Any]], None]) -> None:
        self.changed = changed
        self.watching.set()
        stop.wait()


HOST = "127.0.0.1:3100"


def _run(
    test: Callable[[TestClient[Any, Any], FakeBackend], Awaitable[None]], read_only: bool = False
) -> None:
    async def main() -> None:
        backend = FakeBackend()
        settings = Settings(read_only=read_only, hosts=hosts_for("127.0.0.1", 3100), csrf="T0K")
        async with TestClient(TestServer(make_app(backend, settings))) as client:
            await test(client, backend)

    asyncio.run(main())


GOOD = {"Host": HOST, "Origin": f"http://{HOST}", "X-CSRF-Token": "T0K"}


def test_actions_need_the_pages_origin_and_token() -> None:
    async def test(client: TestClient[Any, Any], backend: FakeBackend) -> None:
        url = "/api/releases/releases/docs-sprint-42/pause"
        for headers in (
            {"Host": HOST, "X-CSRF-Token": "T0K"},  # no Origin: not from a page of ours
            {**GOOD, "Origin": "http://evil.example"},
            {**GOOD, "X-CSRF-Token": "guess"},
            {"Host": HOST, "Origin": f"http://{HOST}"},
        ):
            refused = await client.post(url, headers=headers, json={})
            assert refused.status == 403, headers
        assert backend.requested == []
        ok = await client.post(url, headers=GOOD, json={})
        assert ok.status == 200 and "pause requested" in (await ok.json())["message"]
        forced = await client.post(
            url.replace("pause", "promote"), headers=GOOD, json={"force": True}
        )
        assert forced.status == 200
        assert backend.requested == [
            ("releases", "docs-sprint-42", "pause", False),
            ("releases", "docs-sprint-42", "promote", True),
        ]

    _run(test)


def test_a_foreign_host_gets_nothing() -> None:
    """DNS rebinding: a page on another name that resolves to 127.0.0.1 reads nothing."""

    async def test(client: TestClient[Any, Any], backend: FakeBackend) -> None:
        for path in ("/", "/fragments/releases", "/api/events"):
            response = await client.get(path, headers={"Host": "evil.example:3100"})
            assert response.status == 403, path
        page = await client.get("/", headers={"Host": "localhost:3100"})
        assert page.status == 200
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]

    _run(test)


def test_rbac_refusals_are_shown_not_swallowed() -> None:
    async def test(client: TestClient[Any, Any], backend: FakeBackend) -> None:
        backend.refuse = Refused(403, "pause releases/docs-sprint-42: forbidden by RBAC (no)")
        response = await client.post(
            "/api/releases/releases/docs-sprint-42/pause", headers=GOOD, json={}
        )
        assert response.status == 403
        assert "forbidden by RBAC" in (await response.json())["error"]
        missing = await client.get("/fragments/releases/releases/nope", headers={"Host": HOST})
        assert missing.status == 404 and "not found" in await missing.text()

    _run(test)


def test_read_only_has_no_buttons_and_refuses_actions() -> None:
    async def test(client: TestClient[Any, Any], backend: FakeBackend) -> None:
        page = await (await client.get("/releases/releases/docs-sprint-42", headers=GOOD)).text()
        assert "<button" not in page and 'data-read-only="true"' in page
        refused = await client.post("/api/releases/releases/docs-sprint-42/pause", headers=GOOD)
        assert refused.status == 403 and "read-only" in await refused.text()
        assert backend.requested == []

    _run(test, read_only=True)
    _run(_has_buttons)


async def _has_buttons(client: TestClient[Any, Any], backend: FakeBackend) -> None:
    page = await (await client.get("/releases/releases/docs-sprint-42", headers=GOOD)).text()
    assert page.count("<button") == 6 and 'content="T0K"' in page


def test_changes_are_pushed_to_every_page() -> None:
    async def test(client: TestClient[Any, Any], backend: FakeBackend) -> None:
        stream = await client.get("/api/events", headers={"Host": HOST})
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert await stream.content.readline() == b": connected\n"
        await asyncio.to_thread(backend.watching.wait, 5)
        assert backend.changed is not None
        backend.changed(_release(steps=3))
        lines = [await stream.content.readline() for _ in range(2)]
        assert b'data: {"namespace": "releases", "name": "docs-sprint-42"}\n' in lines
        stream.close()

    _run(test)


def test_views_escape_what_the_cluster_says() -> None:
    obj = _release(message='<img src=x onerror="alert(1)">')
    html = release_view(obj, {"even": None, "odd": "<script>"}, [], [], NOW)
    assert "<img" not in html and "<script>" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html


def test_the_weight_chart_gains_a_point_per_step_and_per_observation() -> None:
    two, three = weights_chart(_release(2), [], NOW), weights_chart(_release(3), [], NOW)
    assert three.count('class="set" cx=') > two.count('class="set" cx=') >= 4
    seen = [Seen("2026-11-30T12:00:05Z", 48.0, 52.0), Seen("2026-11-30T12:00:06Z", 50.1, 49.9)]
    assert weights_chart(_release(2), seen, NOW).count('class="observed" cx=') == 2
    assert 'aria-label="Weight on even over time' in two


def test_a_check_chart_draws_its_threshold_and_verdicts() -> None:
    results = [
        CheckResult(
            metric="request-success-rate",
            value=v,
            threshold=">= 99",
            passed=v >= 99,
            verdict="pass" if v >= 99 else "fail",
            time=f"2026-11-30T12:00:0{i}Z",
        )
        for i, v in enumerate([99.9, 98.0, 99.5])
    ]
    svg = check_chart("request-success-rate", results)
    assert svg.count('class="threshold"') == 1
    assert svg.count('class="verdict pass"') == 2 and svg.count('class="verdict fail"') == 1


def test_it_listens_on_loopback_unless_told_otherwise() -> None:
    args = build_parser().parse_args(["dashboard"])
    assert (args.address, args.port, args.read_only) == ("127.0.0.1", 3100, False)
    assert hosts_for("127.0.0.1", 3100) == {"127.0.0.1:3100", "localhost:3100", "[::1]:3100"}
    assert hosts_for("10.0.0.5", 443, ("sprintops.svc",)) == {"10.0.0.5:443", "sprintops.svc:443"}
    # Browsers leave out port 80 and bracket IPv6.
    assert "sprintops.svc" in hosts_for("10.0.0.5", 80, ("sprintops.svc",))
    assert "[::1]:3100" in hosts_for("::1", 3100)


def test_a_path_that_is_not_a_release_name_never_reaches_the_cluster() -> None:
    """A decoded %2F or .. must not become part of an apiserver path."""

    async def test(client: TestClient[Any, Any], backend: FakeBackend) -> None:
        evil = "x%2F..%2F..%2Fapi%2Fv1%2Fnamespaces%2Fkube-system%2Fconfigmaps%2Fcfg"
        for path in (
            f"/api/releases/prod/{evil}/pause",
            "/api/releases/Prod/docs/pause",
        ):
            refused = await client.post(path, headers=GOOD, json={})
            assert refused.status == 404, path
        page = await client.get(f"/releases/prod/{evil}", headers=GOOD)
        assert page.status == 404
        assert backend.requested == []
        for body in (b"not json", b"[1]"):
            bad = await client.post(
                "/api/releases/releases/docs-sprint-42/promote", headers=GOOD, data=body
            )
            assert bad.status == 400
        string_false = await client.post(
            "/api/releases/releases/docs-sprint-42/promote", headers=GOOD, json={"force": "false"}
        )
        assert string_false.status == 200
        assert backend.requested == [("releases", "docs-sprint-42", "promote", False)]
        odd_token = await client.post(
            "/api/releases/releases/docs-sprint-42/pause",
            headers={**GOOD, "X-CSRF-Token": "T0K\u00e9".encode().decode("latin-1")},
        )
        assert odd_token.status == 403

    _run(test)


def test_charts_skip_times_that_do_not_parse() -> None:
    obj = _release(3)
    obj["status"]["steps"][1]["startedAt"] = "not-a-time"
    obj["status"]["steps"][2]["startedAt"] = "2026-11-30T12:00:08"  # no zone
    html = release_view(obj, {}, [{"type": None, "reason": "R", "message": None}], [], NOW)
    assert "Weight on even" in html and ">None<" not in html
    bad = CheckResult(
        metric="m", value=1.0, threshold=">= inf", passed=True, verdict="pass", time="garbage"
    )
    good = bad.model_copy(update={"time": "2026-11-30T12:00:01Z", "threshold": ">= nan"})
    svg = check_chart("m", [bad, good])
    assert '="nan' not in svg and svg.count('class="verdict pass"') == 1
