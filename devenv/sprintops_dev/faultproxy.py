"""A fault-injecting HTTP proxy in front of moto's Route 53: what moto cannot do itself.

It throttles (Throttling / PriorRequestNotComplete), keeps changes PENDING for a while,
rejects change batches, enforces a request rate, and counts every request by second.
"""

from __future__ import annotations

import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_ERROR = (
    '<?xml version="1.0"?>\n<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
    "<Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
    "<RequestId>fault-proxy</RequestId></ErrorResponse>"
)
_CHANGE_ID = re.compile(rb"<ChangeInfo>\s*<Id>(?:/change/)?([^<]+)</Id>")


@dataclass
class Faults:
    """What to inject; tests change it while the proxy runs."""

    error_ratio: float = 0.0  # share of requests answered with a throttling error
    errors_until: float = 0.0  # monotonic time the errors stop
    pending_seconds: float = 0.0  # GetChange says PENDING this long after a change
    reject_changes: str | None = None  # error code for every ChangeResourceRecordSets
    max_rate: float | None = None  # requests per second above which Throttling is answered
    seed: int = 0


@dataclass
class Stats:
    per_second: Counter[int] = field(default_factory=Counter)
    by_operation: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)

    def peak_rate(self) -> int:
        return max(self.per_second.values(), default=0)


class FaultProxy:
    def __init__(self, upstream: str, faults: Faults | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults or Faults()
        self.stats = Stats()
        self.lock = threading.Lock()
        self.random = random.Random(self.faults.seed)  # noqa: S311 - seeded faults, not crypto
        self.changes: dict[bytes, float] = {}
        self.recent: list[float] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reset(self) -> None:
        """Forgets what was counted so far."""
        with self.lock:
            self.stats = Stats()
            self.recent.clear()

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def operation(method: str, path: str) -> str:
        if "/rrset" in path:
            return "ChangeResourceRecordSets" if method == "POST" else "ListResourceRecordSets"
        if "/change/" in path:
            return "GetChange"
        if "hostedzonesbyname" in path:
            return "ListHostedZonesByName"
        return f"{method} {path.split('?', 1)[0]}"

    def _fault(self, operation: str) -> tuple[str, str] | None:
        """The error to answer instead of forwarding, if any."""
        now = time.monotonic()
        f = self.faults
        with self.lock:
            self.stats.per_second[int(time.time())] += 1
            self.stats.by_operation[operation] += 1
            if f.max_rate is not None:
                self.recent = [t for t in self.recent if now - t < 1.0]
                if len(self.recent) >= f.max_rate:
                    return "Throttling", "Rate exceeded"
                self.recent.append(now)
            if now < f.errors_until and self.random.random() < f.error_ratio:
                if operation == "ChangeResourceRecordSets" and self.random.random() < 0.5:
                    return (
                        "PriorRequestNotComplete",
                        "Route 53 is still processing a prior request",
                    )
                return "Throttling", "Rate exceeded"
        if operation == "ChangeResourceRecordSets" and f.reject_changes:
            return f.reject_changes, "Injected: the change batch was rejected"
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                return

            def _forward(self) -> None:
                operation = proxy.operation(self.command, self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = proxy._fault(operation)
                if fault is not None:
                    with proxy.lock:
                        proxy.stats.injected[fault[0]] += 1
                    self._reply(400, _ERROR.format(code=fault[0], message=fault[1]).encode())
                    return
                request = urllib.request.Request(
                    proxy.upstream + self.path,
                    data=body or None,
                    method=self.command,
                    headers={
                        # urllib would call a bodied POST a form; Route 53 speaks XML.
                        "Content-Type": self.headers.get("Content-Type", "application/xml"),
                        **{
                            k: v
                            for k, v in self.headers.items()
                            if k.lower() not in ("host", "content-length", "content-type")
                        },
                    },
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        status, payload = response.status, response.read()
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                payload = proxy._rewrite(operation, payload)
                self._reply(status, payload)

            def _reply(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = _forward

        return Handler

    def _rewrite(self, operation: str, payload: bytes) -> bytes:
        """moto is INSYNC at once; real Route 53 is PENDING for a while. moto also gives
        every change batch one id, where Route 53 gives each its own: each gets its own here
        (moto's GetChange answers any id), so a change's status is its own."""
        match = _CHANGE_ID.search(payload)
        if match is None:
            return payload
        now = time.monotonic()
        change = match.group(1)
        with self.lock:
            if operation == "ChangeResourceRecordSets":
                change = b"CFAULTPROXY%08d" % len(self.changes)
                payload = payload.replace(match.group(1), change, 1)
                self.changes[change] = now
            submitted = self.changes.get(change, now)
        if now - submitted < self.faults.pending_seconds:
            with self.lock:
                self.stats.injected["PENDING"] += 1
            return payload.replace(b"<Status>INSYNC</Status>", b"<Status>PENDING</Status>")
        return payload
