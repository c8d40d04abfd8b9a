"""Gate asks and notification delivery against a real HTTP server on loopback: answers,
refusals, silence, 429 with Retry-After, give-ups, and no URL or token in what is said."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sprintops.endpoints import Endpoint, Endpoints, Receiver
from sprintops.webhooks import Delivery, Notifier, ask

SECRET = "path-s3cret"  # noqa: S105 (a test value that must not leak)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _serve(handler: Handler, check: Callable[[str], Awaitable[None]]) -> None:
    async def main() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        async with TestServer(app, host="127.0.0.1") as server:
            await check(str(server.make_url(f"/{SECRET}")))

    asyncio.run(main())


def _gate(url: str, timeout: str = "1s") -> Endpoints:
    return Endpoints.model_validate({"gates": {"cab": {"url": url, "timeout": timeout}}})


@pytest.mark.parametrize(
    ("status", "verdict", "detail"),
    [
        (200, "approved", "HTTP 200"),
        (204, "approved", "HTTP 204"),
        (403, "refused", "HTTP 403"),
        (500, "unanswered", "HTTP 500"),
        (302, "unanswered", "HTTP 302"),
    ],
)
def test_a_gate_answer_is_its_status_code(status: int, verdict: str, detail: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": "http://169.254.169.254/"})

    async def check(url: str) -> None:
        async with aiohttp.ClientSession() as session:
            answer = await ask(session, _gate(url), "change-board", "cab", {"q": 1})
        assert (answer.name, answer.verdict, answer.detail) == ("change-board", verdict, detail)

    _serve(handler, check)


def test_a_silent_gate_is_no_answer_and_its_url_is_never_said() -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    async def check(url: str) -> None:
        async with aiohttp.ClientSession() as session:
            slow = await ask(session, _gate(url, "500ms"), "g", "cab", {})
            gone = await ask(session, _gate("http://127.0.0.1:9/" + SECRET), "g", "cab", {})
            undefined = await ask(session, _gate(url), "g", "metadata-server", {})
        assert (slow.verdict, slow.detail) == ("unanswered", "no answer within 500ms")
        assert gone.verdict == "unanswered" and gone.detail.startswith("cannot reach cab (")
        assert undefined.verdict == "unanswered" and "not defined" in undefined.detail
        for answer in (slow, gone, undefined):
            assert SECRET not in answer.detail and "127.0.0.1" not in answer.detail

    _serve(handler, check)


def _deliver(
    handler: Handler, receiver: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> tuple[dict[str, list[str]], list[web.Request]]:
    seen: list[web.Request] = []

    async def recording(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        await request.read()
        return await handler(request)

    done: dict[str, list[str]] = {}

    async def check(url: str) -> None:
        endpoint = Receiver.model_validate({**receiver, "url": url})
        notifier = Notifier(Endpoints(), backoff=0.01)
        body = {"event": "step.applied", "idempotencyKey": "k1", "message": "m"}
        notifier.submit("uid", "k1", [Delivery("hook", endpoint, body)])
        notifier.submit("uid", "k1", [Delivery("hook", endpoint, body)])  # once per process
        for _ in range(500):
            if "k1" in notifier.done.get("uid", {}):
                break
            await asyncio.sleep(0.01)
        done.update(notifier.done["uid"])
        await notifier.close()

    with caplog.at_level(logging.INFO, logger="sprintops.webhooks"):
        _serve(recording, check)
    assert SECRET not in caplog.text and "t0ken" not in caplog.text
    return done, seen


def test_a_429_waits_for_retry_after_then_delivers(caplog: pytest.LogCaptureFixture) -> None:
    answers = [429, 503, 200]

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=answers.pop(0), headers={"Retry-After": "0"})

    done, seen = _deliver(handler, {"type": "webhook", "bearerToken": "t0ken"}, caplog)
    assert done == {"k1": []} and len(seen) == 3
    assert seen[0].headers["Authorization"] == "Bearer t0ken"
    assert "notified receiver=hook event=step.applied key=k1" in caplog.text


def test_a_refusal_is_given_up_at_once_and_silence_after_six_tries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=404)

    done, seen = _deliver(refuse, {"type": "slack"}, caplog)
    assert len(seen) == 1
    assert done == {"k1": ["receiver hook: step.applied given up after 1 attempt: HTTP 404"]}

    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=500)

    done, seen = _deliver(fail, {"type": "webhook"}, caplog)
    assert len(seen) == 6
    assert done == {"k1": ["receiver hook: step.applied given up after 6 attempts: HTTP 500"]}


def test_a_slack_receiver_gets_words_not_the_payload(caplog: pytest.LogCaptureFixture) -> None:
    bodies: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.Response()

    async def check(url: str) -> None:
        notifier = Notifier(Endpoints())
        body = {
            "event": "release.rolledBack",
            "idempotencyKey": "k2",
            "release": {"service": "documents/docs", "sprint": 42},
            "targetCluster": "even",
            "previousCluster": "odd",
            "step": "1/3",
            "weights": {"even": 0, "odd": 100},
            "verdict": "rolledBack",
            "failing": ["request-success-rate"],
            "message": "step 1: request-success-rate = 80 (want >= 99)",
        }
        notifier.submit(
            "u", "k2", [Delivery("chat", Endpoint.model_validate({"url": url}), body, True)]
        )
        while "k2" not in notifier.done.get("u", {}):
            await asyncio.sleep(0.01)
        await notifier.close()

    _serve(handler, check)
    [message] = bodies
    assert message["text"].startswith(":rewind: documents/docs sprint 42: release.rolledBack")
    assert "failing: request-success-rate" in message["text"] and message["idempotencyKey"] == "k2"


def test_a_receiver_hears_notices_in_order_even_after_a_retry() -> None:
    heard: list[str] = []
    answers = [503]

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        if answers:
            return web.Response(status=answers.pop())
        heard.append(body["event"])
        return web.Response()

    async def check(url: str) -> None:
        notifier = Notifier(Endpoints(), backoff=0.05)
        endpoint = Endpoint.model_validate({"url": url})
        for key, event in enumerate(("release.started", "step.applied", "release.succeeded")):
            body = {"event": event, "idempotencyKey": str(key)}
            notifier.submit("u", str(key), [Delivery("hook", endpoint, body)])
        while len(notifier.done.get("u", {})) < 3:
            await asyncio.sleep(0.01)
        await notifier.close()

    _serve(handler, check)
    assert heard == ["release.started", "step.applied", "release.succeeded"]
