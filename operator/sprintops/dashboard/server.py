"""`kubectl sprint dashboard`: a local web page over the user's own kubeconfig.

Every read and every action is the user's Kubernetes identity, so RBAC applies as it does to
kubectl. The page updates from one watch of the SprintReleases, pushed to browsers as
server-sent events; nothing polls the apiserver. Requests must name an allowed Host (no DNS
rebinding), and an action must come from the page itself: same Origin, and the page's CSRF
token in a header, which another site can neither read nor send.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import re
import secrets
import threading
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from html import escape
from importlib import resources
from string import Template
from typing import Any, Protocol

from aiohttp import web

from sprintops.controls import Verb
from sprintops.dashboard.views import Deployment, Seen, release_view, releases_table

VERBS: tuple[Verb, ...] = ("pause", "resume", "abort", "promote", "approve")
SEEN_KEPT = 2000  # observations per release kept in memory for the weight chart


class Refused(Exception):
    """The apiserver said no; `status` is its HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Backend(Protocol):
    def releases(self) -> list[dict[str, Any]]: ...
    def release(self, namespace: str, name: str) -> dict[str, Any]: ...
    def events(self, obj: dict[str, Any]) -> list[dict[str, Any]]: ...
    def deployments(self, obj: dict[str, Any]) -> dict[str, Deployment | str | None]: ...
    def request(self, namespace: str, name: str, verb: Verb, force: bool) -> str: ...
    def watch(self, stop: threading.Event, changed: Callable[[dict[str, Any]], None]) -> None: ...


@dataclass
class Settings:
    read_only: bool = False
    # Host headers the server answers to: its own address, by default loopback only.
    hosts: frozenset[str] = frozenset()
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))


@dataclass
class _State:
    backend: Backend
    settings: Settings
    subscribers: set[asyncio.Queue[str]] = field(default_factory=set)
    seen: dict[tuple[str, str], deque[Seen]] = field(
        default_factory=lambda: defaultdict(lambda: deque(maxlen=SEEN_KEPT))
    )

    def record(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        observed = (obj.get("status") or {}).get("observedTraffic") or {}
        even, odd, time = observed.get("even"), observed.get("odd"), observed.get("time")
        if not isinstance(even, int | float) or not isinstance(odd, int | float) or not time:
            return  # nothing usable: the chart shows what was usable
        kept = self.seen[(meta["namespace"], meta["name"])]
        if not kept or kept[-1].time != time:
            kept.append(Seen(str(time), float(even), float(odd)))


STATE: web.AppKey[_State] = web.AppKey("state", _State)


@functools.cache
def _template() -> Template:
    """Read once: not on the event loop at every page load."""
    return Template(resources.files(__package__).joinpath("static/page.html").read_text())


def _page(kind: str, settings: Settings, title: str, target: str = "") -> str:
    template = _template()
    actions = "" if settings.read_only or kind != "release" else ACTIONS
    return template.substitute(
        kind=kind,
        title=escape(title),
        target=escape(target),
        csrf=settings.csrf,
        read_only="true" if settings.read_only else "false",
        actions=actions,
    )


# Only where they may be used: a read-only page has no action to press.
ACTIONS = """<nav aria-label="actions" id="actions">
    <button type="button" data-verb="pause">Pause</button>
    <button type="button" data-verb="resume">Resume</button>
    <button type="button" data-verb="abort">Abort</button>
    <button type="button" data-verb="promote">Promote</button>
    <button type="button" data-verb="promote" data-force="true">Promote --force</button>
    <button type="button" data-verb="approve">Approve</button>
    <p id="result" role="status" aria-live="assertive"></p>
  </nav>"""


@web.middleware
async def _guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answers only to its own Host names; actions only from its own page."""
    state = request.app[STATE]
    if request.host not in state.settings.hosts:
        raise web.HTTPForbidden(text=f"unexpected Host {request.host!r}")
    if request.method not in ("GET", "HEAD"):
        origin = request.headers.get("Origin")
        if origin not in {f"http://{h}" for h in state.settings.hosts}:
            raise web.HTTPForbidden(text="cross-origin request refused")
        token = request.headers.get("X-CSRF-Token", "").encode(errors="replace")
        if not secrets.compare_digest(token, state.settings.csrf.encode()):
            raise web.HTTPForbidden(text="missing or wrong CSRF token")
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


async def _index(request: web.Request) -> web.Response:
    page = _page("releases", request.app[STATE].settings, "SprintReleases")
    return web.Response(text=page, content_type="text/html")


def _target(request: web.Request) -> tuple[str, str]:
    """The release a path names, refused unless both parts are Kubernetes names: a decoded
    `%2F` or `..` must never reach an apiserver path."""
    ns, name = request.match_info["namespace"], request.match_info["name"]
    if not (_LABEL.fullmatch(ns) and _SUBDOMAIN.fullmatch(name)):
        raise web.HTTPNotFound(text="not a SprintRelease's namespace and name")
    return ns, name


async def _release_page(request: web.Request) -> web.Response:
    ns, name = _target(request)
    page = _page("release", request.app[STATE].settings, f"{ns}/{name}", f"{ns}/{name}")
    return web.Response(text=page, content_type="text/html")


async def _releases_fragment(request: web.Request) -> web.Response:
    state = request.app[STATE]
    items = await _call(state.backend.releases)
    return web.Response(text=releases_table(items), content_type="text/html")


async def _release_fragment(request: web.Request) -> web.Response:
    state = request.app[STATE]
    ns, name = _target(request)
    obj = await _call(state.backend.release, ns, name)
    state.record(obj)
    events, deployments = await asyncio.gather(
        _call(state.backend.events, obj), _call(state.backend.deployments, obj)
    )
    html = release_view(
        obj, deployments, events, list(state.seen[(ns, name)]), dt.datetime.now(dt.UTC)
    )
    return web.Response(text=html, content_type="text/html")


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args)
    except Refused as exc:
        raise _http(exc) from None


def _http(exc: Refused) -> web.HTTPException:
    kinds: dict[int, type[web.HTTPException]] = {
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
    }
    return kinds.get(exc.status, web.HTTPBadGateway)(text=str(exc))


async def _action(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if state.settings.read_only:
        raise web.HTTPForbidden(text="read-only dashboard: actions are turned off")
    ns, name = _target(request)
    verb = request.match_info["verb"]
    if verb not in VERBS:
        raise web.HTTPNotFound(text=f"no action {verb!r}")
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    force = verb == "promote" and body.get("force") is True
    try:
        token = await asyncio.to_thread(state.backend.request, ns, name, verb, force)
    except Refused as exc:
        return web.json_response({"error": str(exc)}, status=exc.status)
    what = "promote --force" if force else verb
    return web.json_response({"message": f"{what} requested for {ns}/{name} ({token})"})


async def _events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the namespace/name of every SprintRelease that changed."""
    state = request.app[STATE]
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    if request.method == "HEAD":
        return web.Response(headers=headers)
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1000)
    state.subscribers.add(queue)
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                message = ""  # a comment line keeps proxies from closing the stream
            await response.write(f"data: {message}\n\n".encode() if message else b": ping\n\n")
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        state.subscribers.discard(queue)
    return response


async def _watching(app: web.Application) -> AsyncIterator[None]:
    """One watch for every browser: each change is recorded, then pushed to each page."""
    state = app[STATE]
    loop = asyncio.get_running_loop()
    stop = threading.Event()

    def publish(obj: dict[str, Any]) -> None:
        state.record(obj)
        meta = obj["metadata"]
        message = json.dumps({"namespace": meta["namespace"], "name": meta["name"]})
        for queue in list(state.subscribers):
            if not queue.full():
                queue.put_nowait(message)

    def changed(obj: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(publish, obj)

    # A daemon thread, not the loop's executor: a watch blocks in a read the server must not
    # wait for when it stops (Ctrl-C would hang until the watch's own timeout).
    watcher = threading.Thread(
        target=state.backend.watch, args=(stop, changed), name="watch", daemon=True
    )
    watcher.start()
    yield
    stop.set()


def make_app(backend: Backend, settings: Settings) -> web.Application:
    app = web.Application(middlewares=[_guard])
    app[STATE] = _State(backend, settings)
    static = resources.files(__package__).joinpath("static")
    app.add_routes(
        [
            web.get("/", _index),
            web.get("/releases/{namespace}/{name}", _release_page),
            web.get("/fragments/releases", _releases_fragment),
            web.get("/fragments/releases/{namespace}/{name}", _release_fragment),
            web.get("/api/events", _events),
            web.post("/api/releases/{namespace}/{name}/{verb}", _action),
            web.static("/static", str(static)),
        ]
    )
    app.cleanup_ctx.append(_watching)
    return app


def hosts_for(address: str, port: int, extra: tuple[str, ...] = ()) -> frozenset[str]:
    """The Host headers a browser sends to this server: its address (and `localhost` for
    loopback), with the port (none for 80), IPv6 in brackets, plus any names the user adds
    (a Service, say)."""
    names = {address, *extra}
    if address in ("127.0.0.1", "::1", "localhost"):
        names |= {"127.0.0.1", "localhost", "::1"}
    hosts = set()
    for name in names:
        host = f"[{name}]" if ":" in name else name
        hosts.add(f"{host}:{port}")
        if port == 80:
            hosts.add(host)
    return frozenset(hosts)


_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
