"""Calls to gate endpoints and notification receivers (aiohttp, on the event loop).

Never logged, posted or written to status: a URL, a token, or an error's text (aiohttp
puts the URL in it). What is said is the endpoint's name, an HTTP status or a timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sprintops.clearance import GateAnswer
from sprintops.durations import seconds
from sprintops.endpoints import Endpoint, Endpoints, Receiver
from sprintops.notifications import slack

log = logging.getLogger("sprintops.webhooks")
ATTEMPTS = 6
BACKOFF = 1.0  # doubled after each failed attempt: 1, 2, 4, 8, 16 s
RETRY_AFTER_MAX = 30.0


def _headers(endpoint: Endpoint) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "sprintops"}
    if endpoint.bearer_token is not None:
        headers["Authorization"] = f"Bearer {endpoint.bearer_token.get_secret_value()}"
    return headers


async def _post(
    session: aiohttp.ClientSession, endpoint: Endpoint, body: dict[str, Any]
) -> tuple[int, float | None]:
    """The answer's status and, for a 429, the seconds its Retry-After asks for. The body
    is never read: it could be any size."""
    timeout = aiohttp.ClientTimeout(total=seconds(endpoint.timeout))
    async with asyncio.timeout(seconds(endpoint.timeout) + 1):  # whatever aiohttp does
        async with session.post(
            endpoint.url.get_secret_value(),
            data=json.dumps(body),
            headers=_headers(endpoint),
            timeout=timeout,
            allow_redirects=False,  # a redirect could point anywhere
        ) as answer:
            if answer.status != 429:
                return answer.status, None
            try:
                asked = float(answer.headers.get("Retry-After", ""))
            except ValueError:
                return answer.status, None
            if not math.isfinite(asked) or asked < 0:
                return answer.status, None
            return answer.status, min(asked, RETRY_AFTER_MAX)


def _failure(exc: Exception, endpoint: Endpoint, name: str) -> str:
    """What went wrong, by type only: an error's text can hold the URL."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {endpoint.timeout}"
    return f"cannot reach {name} ({type(exc).__name__})"


async def ask(
    session: aiohttp.ClientSession,
    endpoints: Endpoints,
    name: str,
    webhook: str,
    body: dict[str, Any],
) -> GateAnswer:
    """A gate's answer: 2xx is go, 4xx a refusal, anything else no answer."""
    endpoint = endpoints.gates.get(webhook)
    if endpoint is None:
        detail = (
            f"gate endpoint {webhook!r} is not defined in the operator's configuration; "
            "a release can only name one its admin defined"
        )
        return GateAnswer(name, "unanswered", detail)
    try:
        status, _ = await _post(session, endpoint, body)
    except Exception as exc:  # any failure is no answer; the round goes on
        return GateAnswer(name, "unanswered", _failure(exc, endpoint, webhook))
    if 200 <= status < 300:
        return GateAnswer(name, "approved", f"HTTP {status}")
    if 400 <= status < 500:
        return GateAnswer(name, "refused", f"HTTP {status}")
    return GateAnswer(name, "unanswered", f"HTTP {status}")


@dataclass(frozen=True)
class Delivery:
    """One notice to one receiver."""

    receiver: str
    endpoint: Receiver | Endpoint
    body: dict[str, Any]
    slack: bool = False


@dataclass
class Notifier:
    """Delivers in the background: a rollout never waits for a receiver. Retries with
    backoff, honours a 429's Retry-After, and gives up after ATTEMPTS."""

    endpoints: Endpoints
    # uid -> key of each notice whose deliveries all ended -> the receivers that gave up,
    # with why.
    done: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    _started: set[tuple[str, str]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # One delivery at a time per release and receiver, in the order submitted (asyncio's
    # locks are first come, first served): a retried notice is never overtaken.
    _queues: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    backoff: float = BACKOFF

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    def submitted(self, uid: str, key: str) -> bool:
        """Whether this process is delivering the notice, or did."""
        return (uid, key) in self._started

    def submit(self, uid: str, key: str, deliveries: list[Delivery]) -> None:
        """Starts delivering a notice unless this process already is (or did)."""
        if self.submitted(uid, key):
            return
        self._started.add((uid, key))
        task = asyncio.ensure_future(self._deliver_all(uid, key, deliveries))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget(self, uid: str, keys: set[str]) -> None:
        """Notices gone from the outbox: nothing more to remember about them."""
        for key in keys:
            self.done.get(uid, {}).pop(key, None)
        self._started.difference_update((uid, k) for k in keys)

    def gone(self, uid: str) -> None:
        """A release that no longer exists."""
        self.done.pop(uid, None)
        self._started = {(u, k) for u, k in self._started if u != uid}
        for queue in [q for q in self._queues if q[0] == uid]:
            if not self._queues[queue].locked():
                del self._queues[queue]

    async def _deliver_all(self, uid: str, key: str, deliveries: list[Delivery]) -> None:
        try:
            failed = await asyncio.gather(*(self._in_order(uid, d, key) for d in deliveries))
            given_up = [f for f in failed if f is not None]
        except Exception as exc:  # never a notice stuck in the outbox for good
            log.exception("notification failed key=%s", key)
            given_up = [f"{key}: internal error ({type(exc).__name__})"]
        self.done.setdefault(uid, {})[key] = given_up

    async def _in_order(self, uid: str, delivery: Delivery, key: str) -> str | None:
        async with self._queues.setdefault((uid, delivery.receiver), asyncio.Lock()):
            return await self._deliver(delivery, key)

    async def _deliver(self, delivery: Delivery, key: str) -> str | None:
        """None once taken; why, when given up."""
        body = slack(delivery.body) if delivery.slack else delivery.body
        event = delivery.body.get("event")
        wait = self.backoff
        for attempt in range(1, ATTEMPTS + 1):
            why, retry_after = await self._attempt(delivery, body)
            if why is None:
                log.info("notified receiver=%s event=%s key=%s", delivery.receiver, event, key)
                return None
            permanent = why.startswith("HTTP 4") and why not in ("HTTP 408", "HTTP 429")
            if permanent or attempt == ATTEMPTS:
                log.warning(
                    "notification given up receiver=%s event=%s key=%s attempts=%d last=%s",
                    delivery.receiver,
                    event,
                    key,
                    attempt,
                    why,
                )
                tried = f"{attempt} attempt{'s' * (attempt > 1)}"
                return f"receiver {delivery.receiver}: {event} given up after {tried}: {why}"
            # A receiver that asks for time gets at least that, never less than the backoff.
            await asyncio.sleep(max(wait, retry_after or 0.0))
            wait *= 2
        raise AssertionError("unreachable: the last attempt returns")

    async def _attempt(
        self, delivery: Delivery, body: dict[str, Any]
    ) -> tuple[str | None, float | None]:
        """None when taken; otherwise why not, and the receiver's Retry-After."""
        try:
            status, retry_after = await _post(self.session, delivery.endpoint, body)
        except Exception as exc:  # any failure is retried, by type only in the log
            return _failure(exc, delivery.endpoint, delivery.receiver), None
        if 200 <= status < 300:
            return None, None
        return f"HTTP {status}", retry_after

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()
