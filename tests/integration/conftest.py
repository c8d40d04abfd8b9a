"""The local environment, started once per test session (or reused when already up).

An environment the tests started is stopped at the end; one that was running is left alone.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from sprintops.kube import client_from_kubeconfig
from sprintops.localenv import environment
from sprintops.traffic.route53 import Route53Pairs, make_client
from tests.conftest import REPO


@dataclass
class Env:
    layout: environment.Layout
    state: environment.State
    apis: dict[str, client.ApiClient]

    def custom(self, cluster: str = "mgmt") -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.apis[cluster])

    def apps(self, cluster: str) -> client.AppsV1Api:
        return client.AppsV1Api(self.apis[cluster])

    def core(self, cluster: str) -> client.CoreV1Api:
        return client.CoreV1Api(self.apis[cluster])

    def route53(self) -> Route53Pairs:
        return Route53Pairs(make_client())

    def promql(self, query: str) -> list[dict[str, Any]]:
        url = f"{self.state.prometheus_url}/api/v1/query?" + urllib.parse.urlencode(
            {"query": query}
        )
        with urllib.request.urlopen(url, timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@pytest.fixture(scope="session")
def env() -> Iterator[Env]:
    layout = environment.Layout(REPO)
    reused = environment.is_running(layout)
    state = environment.up(layout)
    saved = dict(os.environ)
    os.environ.update(environment.environment_variables(layout, state))
    kubeconfig = layout.kubeconfig.read_text()
    apis = {c: client_from_kubeconfig(kubeconfig, c) for c in ("mgmt", "even", "odd")}
    try:
        yield Env(layout, state, apis)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if not reused:
            environment.down(layout)
