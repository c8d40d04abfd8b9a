"""`make demo`: a fresh local environment, the operator, and the canonical release, live.

The demo has an environment of its own (`.sprintops/demo/`), so it neither disturbs nor
depends on one a developer keeps running; it is torn down at the end either way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from rich.console import Console
from rich.live import Live

from sprintops import api
from sprintops.api import SprintReleaseSpec, Weights
from sprintops.cli.display import progress_panel, summary
from sprintops.kube import client_from_kubeconfig
from sprintops_dev import environment, traffic
from sprintops_dev.operator_process import OperatorProcess

TIMEOUT = 300.0
# The canonical TTL of 60 s would make the demo a few minutes long: the clients' clock runs
# ten times faster, so each step's traffic arrives over about 6 s.
DEMO_CLIENTS = environment.Dns(time_scale=10, keepalive_share=0.1, keepalive_seconds=90)


def read_traffic(
    apis: dict[str, client.ApiClient], spec: SprintReleaseSpec
) -> dict[str, Weights | None]:
    pair, copies = traffic.read(apis, spec)
    out: dict[str, Weights | None] = {"Route 53": pair}
    out.update({f"VirtualService ({cluster})": w for cluster, w in copies.items()})
    return out


def run(repo: Path, console: Console | None = None) -> int:
    console = console or Console()
    os.environ["SPRINTOPS_ENV_DIR"] = str(repo / ".sprintops/demo")
    layout = environment.Layout(repo)
    if layout.root.exists():
        environment.down(layout, say=lambda _m: None)
    operator: OperatorProcess | None = None
    try:
        state = environment.up(layout, say=console.print)
        os.environ.update(environment.environment_variables(layout, state))
        environment.dns(layout, DEMO_CLIENTS)
        console.print(
            "clients resolve through DNS caches (TTL 60 s, a tenth on keep-alive for 90 s), "
            f"time running {DEMO_CLIENTS.time_scale:g}x faster for them"
        )
        kubeconfig = layout.kubeconfig.read_text()
        apis = {c: client_from_kubeconfig(kubeconfig, c) for c in ("mgmt", "even", "odd")}
        log = layout.root / "logs" / "operator.log"
        console.print(f"starting the operator (log: {log})")
        operator = OperatorProcess({}, log)
        operator.start()
        doc = yaml.safe_load((repo / "examples/sprintrelease.yaml").read_text())
        spec = SprintReleaseSpec.model_validate(doc["spec"])
        custom = client.CustomObjectsApi(apis["mgmt"])
        ns, name = doc["metadata"]["namespace"], doc["metadata"]["name"]
        custom.create_namespaced_custom_object(api.GROUP, api.VERSION, ns, api.PLURAL, doc)
        console.print(f"applied examples/sprintrelease.yaml ({ns}/{name})")
        obj = _follow(console, custom=custom, apis=apis, spec=spec, ns=ns, name=name)
        phase = (obj.get("status") or {}).get("phase")
        console.print(summary(obj, read_traffic(apis, spec)))
        if phase != "Succeeded":
            console.print(
                f"[bold red]release ended {phase}: {(obj.get('status') or {}).get('message')}"
            )
            return 1
        console.print("[bold green]Succeeded[/]: sprint 42 is live on even; odd is idle.")
        return 0
    finally:
        if operator is not None:
            operator.stop()
        console.print("tearing down the demo environment")
        environment.down(layout, say=lambda _m: None)


def _follow(
    console: Console,
    *,
    custom: client.CustomObjectsApi,
    apis: dict[str, client.ApiClient],
    spec: SprintReleaseSpec,
    ns: str,
    name: str,
) -> dict[str, Any]:
    started = time.monotonic()
    obj: dict[str, Any] = {}
    with Live(console=console, refresh_per_second=8) as live:
        while time.monotonic() - started < TIMEOUT:
            obj = custom.get_namespaced_custom_object(api.GROUP, api.VERSION, ns, api.PLURAL, name)
            traffic = read_traffic(apis, spec)
            live.update(progress_panel(obj, traffic, time.monotonic() - started))
            if (obj.get("status") or {}).get("phase") in api.TERMINAL_PHASES:
                return obj
            time.sleep(0.25)
    return obj
