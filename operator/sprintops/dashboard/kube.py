"""The dashboard's view of Kubernetes, through the user's kubeconfig: the SprintReleases and
their Events on the management cluster, each workload cluster's Deployment through the
context named for it, and actions through the same annotations as the plugin."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from sprintops import api, controls
from sprintops.cli.plugin import PluginError, Session, _api_message, whoami
from sprintops.controls import Verb
from sprintops.dashboard.server import Refused
from sprintops.dashboard.views import Deployment
from sprintops.manifests import LABEL_SPRINT

WATCH_SECONDS = 300


class KubeBackend:
    def __init__(
        self, session: Session, kubeconfig: str | None, cluster_contexts: dict[str, str]
    ) -> None:
        self.session = session
        self.kubeconfig = kubeconfig
        self.cluster_contexts = cluster_contexts
        self._apps: dict[str, client.AppsV1Api] = {}

    def _do(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except ApiException as exc:
            raise Refused(exc.status or 502, _plain(what, exc)) from None
        except PluginError as exc:
            raise Refused(502, str(exc)) from None

    def releases(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._do("sprintreleases", self.session.releases)
        return result

    def release(self, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self._do(
            f"sprintrelease {namespace}/{name}",
            lambda: self.session.custom.get_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name
            ),
        )
        return obj

    def events(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        meta = obj["metadata"]
        selector = f"involvedObject.uid={meta['uid']}"
        found = self._do(
            "events",
            lambda: self.session.core.list_namespaced_event(
                meta["namespace"], field_selector=selector
            ),
        )
        items = sorted(
            found.items,
            key=lambda e: e.event_time or e.last_timestamp or e.metadata.creation_timestamp,
        )
        return [
            {
                "time": str(e.event_time or e.last_timestamp or ""),
                "type": e.type,
                "reason": e.reason,
                "message": e.message,
            }
            for e in items[-20:]
        ]

    def deployments(self, obj: dict[str, Any]) -> dict[str, Deployment | str | None]:
        service = obj["spec"]["service"]
        out: dict[str, Deployment | str | None] = {}
        for cluster in api.CLUSTERS:
            context = self.cluster_contexts.get(cluster)
            if context is None:
                out[cluster] = "no kubeconfig context for this cluster (--cluster-context)"
                continue
            try:
                apps = self._apps.get(cluster) or client.AppsV1Api(
                    config.new_client_from_config(config_file=self.kubeconfig, context=context)
                )
                self._apps[cluster] = apps
                found = apps.read_namespaced_deployment(
                    service["name"], service["namespace"], _request_timeout=5
                )
            except ApiException as exc:
                out[cluster] = None if exc.status == 404 else _plain(f"context {context}", exc)
                continue
            except Exception as exc:  # unreachable, bad context: say so, keep the page
                out[cluster] = f"cannot read it through context {context} ({type(exc).__name__})"
                continue
            containers = found.spec.template.spec.containers or []
            out[cluster] = Deployment(
                sprint=(found.metadata.labels or {}).get(LABEL_SPRINT, "-"),
                image=containers[0].image if containers else "-",
                ready=found.status.ready_replicas or 0,
                desired=found.spec.replicas or 0,
            )
        return out

    def request(self, namespace: str, name: str, verb: Verb, force: bool) -> str:
        by = None
        if verb == "approve":  # as the plugin: only a release that waits for one
            hold = (self.release(namespace, name).get("status") or {}).get("hold") or {}
            if hold.get("reason") != "approval":
                raise Refused(409, f"{namespace}/{name} is not waiting for an approval")
            by = whoami(self.session)  # audited with who gave it
        token: str = self._do(
            f"{verb} {namespace}/{name}",
            lambda: controls.request(self.session.api, namespace, name, verb, force=force, by=by),
        )
        return token

    def watch(self, stop: threading.Event, changed: Callable[[dict[str, Any]], None]) -> None:
        """Streams every change until `stop`, resuming after each timeout or error."""
        custom = self.session.custom
        while not stop.is_set():
            w = watch.Watch()
            if self.session.all_namespaces:
                lister: Callable[..., Any] = custom.list_cluster_custom_object
                args: tuple[str, ...] = (api.GROUP, api.VERSION, api.PLURAL)
            else:
                lister = custom.list_namespaced_custom_object
                args = (api.GROUP, api.VERSION, self.session.namespace, api.PLURAL)
            try:
                for event in w.stream(lister, *args, timeout_seconds=WATCH_SECONDS):
                    if stop.is_set():
                        w.stop()
                        break
                    obj = event.get("object")
                    if isinstance(obj, dict) and "metadata" in obj:
                        changed(obj)
            except Exception:  # the apiserver went away: back off, watch again
                time.sleep(2)


def _plain(what: str, exc: ApiException) -> str:
    if exc.status in (401, 403):
        return f"{what}: forbidden by RBAC ({_api_message(exc)})"
    return f"{what}: HTTP {exc.status} {_api_message(exc)}"


def default_contexts(kubeconfig: str | None) -> dict[str, str]:
    """Contexts named for the clusters (`even`, `odd`), when the kubeconfig has them."""
    try:
        contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError):
        return {}
    names = {c["name"] for c in contexts}
    return {c: c for c in api.CLUSTERS if c in names}
