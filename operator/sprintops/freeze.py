"""The global freeze: one ConfigMap in the operator's namespace that holds every release.

A ConfigMap, not a resource of our own: an on-call person can set it with the plugin or
plain kubectl, Argo CD does not manage it, RBAC can grant exactly this one object
(resourceNames), and there is no second CRD to install and upgrade. The operator watches
that one object (a field selector on its name), so a freeze or its end is seen at once.

If its state cannot be read, the freeze is taken as on: holding an increase is always safe,
and rollbacks are never held.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from sprintops.durations import timestamp

NAME = "sprintops-freeze"
log = logging.getLogger("sprintops.freeze")


def describe(data: dict[str, str] | None) -> str | None:
    """Why releases are frozen, from the ConfigMap's data; None when they are not."""
    if not data or data.get("frozen", "").lower() != "true":
        return None
    reason = data.get("reason") or "no reason given"
    extras = [f"{k} {data[k]}" for k in ("by", "since") if data.get(k)]
    return f"{reason} ({', '.join(extras)})" if extras else reason


def set_freeze(
    api: client.ApiClient,
    namespace: str,
    *,
    on: bool,
    reason: str,
    by: str,
    now: dt.datetime | None = None,
) -> dict[str, str]:
    """Turns the freeze on or off (the ConfigMap stays, with its last reason, for the
    record); returns its data."""
    data = {
        "frozen": "true" if on else "false",
        "reason": reason,
        "by": by,
        "since": timestamp(now or dt.datetime.now(dt.UTC)),
    }
    core = client.CoreV1Api(api)
    body = {"metadata": {"name": NAME, "namespace": namespace}, "data": data}
    try:
        core.patch_namespaced_config_map(NAME, namespace, body)
    except ApiException as exc:
        if exc.status != 404:
            raise
        core.create_namespaced_config_map(namespace, body)
    return data


class FreezeWatch:
    """The freeze as last seen, kept current by a watch in a thread."""

    def __init__(
        self, api: client.ApiClient, namespace: str, changed: Callable[[], object]
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.changed = changed
        self._state: str | None = "freeze state not read yet"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="freeze-watch", daemon=True)

    @property
    def state(self) -> str | None:
        return self._state

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _set(self, state: str | None) -> None:
        if state != self._state:
            self._state = state
            log.info("global freeze %s", f"on: {state}" if state else "off")
            self.changed()

    def _run(self) -> None:
        selector = f"metadata.name={NAME}"
        backoff = 1.0
        while not self._stop.is_set():
            try:
                found = self.core.list_namespaced_config_map(
                    self.namespace, field_selector=selector
                )
            except Exception as exc:  # any failure: the state is unknown, so it holds
                why = exc.status if isinstance(exc, ApiException) else type(exc).__name__
                self._set(f"freeze state unknown (cannot read ConfigMap {NAME}: {why})")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            items = found.items or []
            self._set(describe(items[0].data) if items else None)
            backoff = 1.0
            try:
                stream = watch.Watch().stream(
                    self.core.list_namespaced_config_map,
                    self.namespace,
                    field_selector=selector,
                    resource_version=found.metadata.resource_version,
                    timeout_seconds=240,
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    obj: Any = event["object"]
                    gone = event["type"] == "DELETED"
                    self._set(None if gone else describe(obj.data))
            except Exception:  # an expired or broken watch: list again
                log.debug("freeze watch ended; listing again", exc_info=True)
                self._stop.wait(1.0)
