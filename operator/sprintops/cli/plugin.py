"""`kubectl sprint`: inspect and steer SprintReleases, the way kubectl users expect.

    kubectl sprint list [-A]
    kubectl sprint status NAME        kubectl sprint history NAME
    kubectl sprint watch NAME         (exit 0 on Succeeded, 1 on RolledBack/Failed)
    kubectl sprint pause|resume|abort NAME
    kubectl sprint promote NAME [--force]
    kubectl sprint approve NAME       (the manual gate the release waits for)
    kubectl sprint freeze on|off|status [--reason TEXT]   (every release holds)
    kubectl sprint dashboard [--read-only] [--port 3100]   (a web page, live)

Global flags, before or after the command: --kubeconfig, --context, -n/--namespace,
-o/--output table|wide|json|yaml. Tables are never cut: names, times and notes print whole
(a terminal wraps long lines; a pipe gets them as they are).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from rich.console import Console
from rich.live import Live
from rich.table import Table

from sprintops import api, controls, freeze
from sprintops.api import SprintReleaseStatus
from sprintops.cli.display import observed, progress_panel

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
# Rich cuts a table to the console's width (80 off a terminal); kubectl never does.
UNBOUNDED = 1 << 16
TABLES = ("table", "wide")


def _table(*columns: str) -> Table:
    """A kubectl-style table: no box, no padding at the edges, no column ever cut."""
    table = Table(box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


class PluginError(Exception):
    """A message for the user; exits 2."""


class Session:
    def __init__(self, args: argparse.Namespace, timeout: float = 30.0) -> None:
        self.timeout = timeout
        try:
            self.api = config.new_client_from_config(
                config_file=args.kubeconfig, context=args.context
            )
            _, active = config.list_kube_config_contexts(config_file=args.kubeconfig)
            if args.context:
                contexts, _ = config.list_kube_config_contexts(config_file=args.kubeconfig)
                active = next(c for c in contexts if c["name"] == args.context)
            default = active["context"].get("namespace")
        except (config.ConfigException, OSError, StopIteration) as exc:
            if args.kubeconfig or "KUBERNETES_SERVICE_HOST" not in os.environ:
                raise PluginError(f"no usable kubeconfig: {exc}") from None
            # In a pod with no kubeconfig (the chart's read-only dashboard): its ServiceAccount.
            incluster = client.Configuration()
            config.load_incluster_config(client_configuration=incluster)
            self.api, default = client.ApiClient(incluster), None
        self.namespace: str = args.namespace or default or "default"
        self.all_namespaces: bool = getattr(args, "all_namespaces", False)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.server = self.api.configuration.host

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        """Runs one API call and turns failures into messages a person can act on."""
        try:
            return fn()
        except ApiException as exc:
            if exc.status == 404:
                raise PluginError(f"{what}: not found in namespace {self.namespace!r}") from None
            if exc.status in (401, 403):
                reason = _api_message(exc)
                raise PluginError(f"{what}: forbidden by RBAC ({reason})") from None
            raise PluginError(f"{what}: HTTP {exc.status} {_api_message(exc)}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise PluginError(
                f"{what}: cannot reach the cluster at {self.server} ({type(exc).__name__})"
            ) from None

    def get(self, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.call(
            f'sprintrelease "{name}"',
            lambda: self.custom.get_namespaced_custom_object(
                api.GROUP, api.VERSION, self.namespace, api.PLURAL, name
            ),
        )
        return obj

    def releases(self) -> list[dict[str, Any]]:
        if self.all_namespaces:
            items = self.call(
                "sprintreleases",
                lambda: self.custom.list_cluster_custom_object(
                    api.GROUP, api.VERSION, api.PLURAL, _request_timeout=self.timeout
                ),
            )
        else:
            items = self.call(
                "sprintreleases",
                lambda: self.custom.list_namespaced_custom_object(
                    api.GROUP,
                    api.VERSION,
                    self.namespace,
                    api.PLURAL,
                    _request_timeout=self.timeout,
                ),
            )
        result: list[dict[str, Any]] = items["items"]
        return result

    def events(self, obj: dict[str, Any], limit: int = 10) -> list[dict[str, Any]]:
        selector = f"involvedObject.uid={obj['metadata']['uid']}"
        found = self.call(
            "events",
            lambda: self.core.list_namespaced_event(self.namespace, field_selector=selector),
        )
        items = sorted(
            found.items,
            key=lambda e: e.event_time or e.last_timestamp or e.metadata.creation_timestamp,
        )
        return [
            {
                "type": e.type,
                "reason": e.reason,
                "message": e.message,
                "time": str(e.event_time or e.last_timestamp),
            }
            for e in items[-limit:]
        ]


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", exc.reason))
    except ValueError:
        return str(exc.reason)


def _emit(data: Any, output: str, console: Console) -> None:
    if output == "json":
        console.print_json(json.dumps(data, default=str))
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def _status(obj: dict[str, Any]) -> SprintReleaseStatus:
    return SprintReleaseStatus.model_validate(obj.get("status") or {})


def cmd_list(s: Session, args: argparse.Namespace, console: Console) -> int:
    items = s.releases()
    rows = []
    for obj in items:
        st = _status(obj)
        rows.append(
            {
                "namespace": obj["metadata"]["namespace"],
                "name": obj["metadata"]["name"],
                "sprint": obj["spec"]["sprint"],
                "target": st.target_cluster,
                "phase": st.phase,
                "step": st.step,
                "weights": st.weights.model_dump() if st.weights else None,
                "observed": st.observed_traffic.model_dump(exclude_none=True)
                if st.observed_traffic
                else None,
                "_observed": observed(st),
            }
        )
    if args.output not in TABLES:
        rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        _emit(rows, args.output, console)
        return EXIT_OK
    if not rows:
        console.print(f"No sprintreleases in namespace {s.namespace!r}.")
        return EXIT_OK
    wide = args.output == "wide"
    columns = ["NAMESPACE", "NAME", "SPRINT", "TARGET", "PHASE", "STEP", "WEIGHTS (even/odd)"]
    columns.append("OBSERVED % (even/odd)")
    if wide:
        columns += ["PREVIOUS", "STEP STARTED", "MESSAGE"]
    table = _table(*columns)
    for r, obj in zip(rows, items, strict=True):
        w = r["weights"]
        cells = [
            r["namespace"],
            r["name"],
            str(r["sprint"]),
            r["target"] or "-",
            r["phase"] or "New",
            r["step"] or "-",
            f"{w['even']}/{w['odd']}" if w else "-",
            r["_observed"],
        ]
        if wide:
            st = _status(obj)
            cells += [st.previous_cluster or "-", st.step_started_at or "-", st.message or ""]
        table.add_row(*cells)
    console.print(table)
    return EXIT_OK


def _latest_checks(st: SprintReleaseStatus) -> list[dict[str, Any]]:
    if not st.analysis:
        return []
    last = st.analysis[-1].time
    return [r.model_dump(by_alias=True, exclude_none=True) for r in st.analysis if r.time == last]


def cmd_status(s: Session, args: argparse.Namespace, console: Console) -> int:
    obj = s.get(args.name)
    st = _status(obj)
    events = s.events(obj)
    if args.output not in TABLES:
        _emit(
            {
                "name": obj["metadata"]["name"],
                "namespace": obj["metadata"]["namespace"],
                "phase": st.phase,
                "step": st.step,
                "weights": st.weights.model_dump() if st.weights else None,
                "observed": st.observed_traffic.model_dump(exclude_none=True)
                if st.observed_traffic
                else None,
                "checks": _latest_checks(st),
                "conditions": [
                    c.model_dump(by_alias=True, exclude_none=True) for c in st.conditions
                ],
                "message": st.message,
                "hold": st.hold.model_dump(by_alias=True) if st.hold else None,
                "decisions": [d.model_dump(by_alias=True, exclude_none=True) for d in st.decisions],
                "events": events,
            },
            args.output,
            console,
        )
        return EXIT_OK
    console.print(progress_panel(obj))
    checks = _table("METRIC", "VALUE", "THRESHOLD", "VERDICT", "NOTE")
    checks.title = "last checks"
    for r in _latest_checks(st):
        value = "-" if r.get("value") is None else f"{r['value']:.4g}"
        checks.add_row(r["metric"], value, r["threshold"], r["verdict"], r.get("note", ""))
    console.print(checks)
    conditions = _table("TYPE", "STATUS", "REASON", "MESSAGE")
    conditions.title = "conditions"
    for c in st.conditions:
        conditions.add_row(c.type, c.status, c.reason, c.message)
    console.print(conditions)
    if st.decisions:
        decided = _table("TIME", "STEP", "KIND", "NAME", "VERDICT", "BY", "MESSAGE")
        decided.title = "decisions"
        for d in st.decisions[-10:]:
            decided.add_row(d.time, str(d.step), d.kind, d.name, d.verdict, d.by or "", d.message)
        console.print(decided)
    recent = _table("TIME", "TYPE", "REASON", "MESSAGE")
    recent.title = "events"
    for e in events:
        recent.add_row(e["time"], e["type"], e["reason"], e["message"])
    console.print(recent)
    return EXIT_OK


def cmd_history(s: Session, args: argparse.Namespace, console: Console) -> int:
    st = _status(s.get(args.name))
    rows = [r.model_dump(by_alias=True, exclude_none=True) for r in st.analysis]
    if args.output not in TABLES:
        _emit(rows, args.output, console)
        return EXIT_OK
    table = _table("TIME", "STEP", "METRIC", "VALUE", "THRESHOLD", "VERDICT", "NOTE")
    for r in rows:
        value = "-" if r.get("value") is None else f"{r['value']:.4g}"
        step = "-" if r.get("stepIndex") is None else str(r["stepIndex"] + 1)
        note = r.get("note") or ""  # a comparison's judgment: estimate, interval, score
        table.add_row(r["time"], step, r["metric"], value, r["threshold"], r["verdict"], note)
    console.print(table)
    return EXIT_OK


def cmd_watch(s: Session, args: argparse.Namespace, console: Console) -> int:
    started = time.monotonic()
    obj = s.get(args.name)
    with Live(progress_panel(obj), console=console, refresh_per_second=4) as live:
        while True:
            phase = _status(obj).phase
            if phase in api.TERMINAL_PHASES:
                break
            if args.timeout and time.monotonic() - started > args.timeout:
                console.print(f"timed out after {args.timeout}s in phase {phase}")
                return EXIT_FAILED
            time.sleep(args.interval)
            obj = s.get(args.name)
            live.update(progress_panel(obj, elapsed=time.monotonic() - started))
    st = _status(obj)
    console.print(f"{obj['metadata']['name']}: {st.phase}: {st.message or ''}")
    return EXIT_OK if st.phase == "Succeeded" else EXIT_FAILED


def cmd_dashboard(s: Session, args: argparse.Namespace, console: Console) -> int:
    """Serves the dashboard until interrupted (imported here: no other command needs it)."""
    from aiohttp import web

    from sprintops.dashboard.kube import KubeBackend, default_contexts
    from sprintops.dashboard.server import Settings, hosts_for, make_app

    contexts = default_contexts(args.kubeconfig)
    for pair in args.cluster_context or []:
        cluster, _, context = pair.partition("=")
        if cluster not in api.CLUSTERS or not context:
            raise PluginError(f"--cluster-context {pair!r}: expected even=CONTEXT or odd=CONTEXT")
        contexts[cluster] = context
    if args.namespace is None:  # every namespace, unless one is named
        s.all_namespaces = True
    settings = Settings(
        read_only=args.read_only,
        hosts=hosts_for(args.address, args.port, tuple(args.allow_host or ())),
    )
    app = make_app(KubeBackend(s, args.kubeconfig, contexts), settings)
    mode = " (read-only)" if args.read_only else ""
    scope = "all namespaces" if s.all_namespaces else f"namespace {s.namespace}"
    console.print(f"sprintops dashboard{mode} on http://{args.address}:{args.port}/ ({scope})")
    # Open event streams would otherwise hold a stop for a minute: they reconnect anyway.
    web.run_app(app, host=args.address, port=args.port, print=None, shutdown_timeout=1)
    return EXIT_OK


def _control(verb: controls.Verb) -> Callable[[Session, argparse.Namespace, Console], int]:
    def run(s: Session, args: argparse.Namespace, console: Console) -> int:
        force = bool(getattr(args, "force", False))
        s.get(args.name)  # a clear "not found" before anything is written
        token = s.call(
            f'sprintrelease "{args.name}"',
            lambda: controls.request(s.api, s.namespace, args.name, verb, force=force),
        )
        console.print(
            f'sprintrelease "{args.name}" {verb} requested ({controls.annotation(verb)}={token})'
        )
        return EXIT_OK

    return run


def whoami(s: Session) -> str:
    """The user the apiserver authenticates this client as, for the audit trail; best
    effort (SelfSubjectReview is GA from Kubernetes 1.28): never what stops a request."""
    try:
        review = client.AuthenticationV1Api(s.api).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
            _request_timeout=s.timeout,
        )
    except (ApiException, urllib3.exceptions.HTTPError):
        return "unknown"
    return str(review.status.user_info.username or "unknown")


def cmd_approve(s: Session, args: argparse.Namespace, console: Console) -> int:
    st = _status(s.get(args.name))
    if st.hold is None or st.hold.reason != "approval":
        raise PluginError(
            f'sprintrelease "{args.name}" is not waiting for an approval '
            f"(phase {st.phase}: {st.message or '-'})"
        )
    by = whoami(s)
    token = s.call(
        f'sprintrelease "{args.name}"',
        lambda: controls.request(s.api, s.namespace, args.name, "approve", by=by),
    )
    console.print(f'sprintrelease "{args.name}" approved by {by} ({token})')
    return EXIT_OK


def cmd_freeze(s: Session, args: argparse.Namespace, console: Console) -> int:
    ns = args.operator_namespace
    if args.state == "status":
        found = s.call(
            f"configmap {freeze.NAME}",
            lambda: client.CoreV1Api(s.api).list_namespaced_config_map(
                ns, field_selector=f"metadata.name={freeze.NAME}"
            ),
        )
        why = freeze.describe(found.items[0].data) if found.items else None
        console.print(f"frozen: {why}" if why else f"not frozen (configmap {ns}/{freeze.NAME})")
        return EXIT_OK
    if args.state == "on" and not args.reason:
        raise PluginError("freeze on needs --reason: every release will say why it holds")
    by = whoami(s)
    data = s.call(
        f"configmap {ns}/{freeze.NAME}",
        lambda: freeze.set_freeze(
            s.api, ns, on=args.state == "on", reason=args.reason or "", by=by
        ),
    )
    said = "on: every release holds before its next increase" if args.state == "on" else "off"
    console.print(f"freeze {said} (configmap {ns}/{freeze.NAME}, {data['by']}, {data['since']})")
    return EXIT_OK


def _global_flags() -> argparse.ArgumentParser:
    """kubectl's global flags, accepted before and after the command. Only a flag given sets
    its value (SUPPRESS), so a command's copy never overwrites one given before it."""
    flags = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    flags.add_argument(
        "--kubeconfig", help="path to the kubeconfig (default: KUBECONFIG or ~/.kube/config)"
    )
    flags.add_argument("--context", help="kubeconfig context")
    flags.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    flags.add_argument(
        "-o", "--output", choices=["table", "wide", "json", "yaml"], help="default: table"
    )
    return flags


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl sprint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_global_flags()],
    )
    # On the top parser's own copy of the flags: parents share their actions, and the
    # commands' copies must keep SUPPRESS.
    parser.set_defaults(kubeconfig=None, context=None, namespace=None, output="table")
    flags = _global_flags()
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[flags], **kwargs)

    listing = command("list", help="releases with sprint, target, phase, step and weights")
    listing.add_argument("-A", "--all-namespaces", action="store_true")
    listing.set_defaults(func=cmd_list)
    for name, fn, text in (
        ("status", cmd_status, "phase, step, weights, last checks, conditions, events"),
        ("history", cmd_history, "check results over time"),
    ):
        p = command(name, help=text)
        p.add_argument("name")
        p.set_defaults(func=fn)
    watch = command("watch", help="live progress until a terminal phase; exit 0 only on Succeeded")
    watch.add_argument("name")
    watch.add_argument("--interval", type=float, default=0.5)
    watch.add_argument(
        "--timeout", type=float, default=0, help="give up after this many seconds (0: never)"
    )
    watch.set_defaults(func=cmd_watch)
    board = command("dashboard", help="a web page of the releases, live, with the actions")
    board.add_argument("--address", default="127.0.0.1", help="listen address (loopback)")
    board.add_argument("--port", type=int, default=3100)
    board.add_argument("--read-only", action="store_true", help="no actions: view only")
    board.add_argument(
        "--cluster-context",
        action="append",
        metavar="CLUSTER=CONTEXT",
        help="the kubeconfig context that reaches a workload cluster (default: contexts "
        "named even and odd)",
    )
    board.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="another Host name browsers use to reach it (a Service's, say)",
    )
    board.set_defaults(func=cmd_dashboard)
    verbs: tuple[tuple[controls.Verb, str], ...] = (
        ("pause", "hold at the current step"),
        ("resume", "continue a paused release (the bake restarts)"),
        ("abort", "roll back now"),
        ("promote", "skip the remaining bakes (never a failing check, unless --force)"),
    )
    for verb, text in verbs:
        p = command(verb, help=text)
        p.add_argument("name")
        if verb == "promote":
            p.add_argument("--force", action="store_true", help="also skip failing checks")
        p.set_defaults(func=_control(verb))
    approve = command("approve", help="approve the manual gate the release waits for")
    approve.add_argument("name")
    approve.set_defaults(func=cmd_approve)
    frozen = command("freeze", help="hold every release before its next increase, or stop")
    frozen.add_argument("state", choices=["on", "off", "status"])
    frozen.add_argument("--reason", help="why (shown in every held release's status)")
    frozen.add_argument(
        "--operator-namespace",
        default=os.environ.get("SPRINTOPS_NAMESPACE", "sprintops"),
        help="where the operator runs (default: SPRINTOPS_NAMESPACE or sprintops)",
    )
    frozen.set_defaults(func=cmd_freeze)
    return parser


def console_for(command: str, file: IO[str] | None = None) -> Console:
    """No markup: names, messages and notes come from the cluster, and "[...]" in them is
    text to print, not style to apply (or a markup error to crash on). Live progress redraws
    in place, so it keeps to the terminal; everything else prints whole, as kubectl does."""
    if command in ("watch", "dashboard"):
        return Console(file=file, markup=False)
    return Console(file=file, width=UNBOUNDED, markup=False)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Live progress redraws in place, so it keeps to the terminal; everything else prints
    # whole, as kubectl does.
    console = console_for(args.command)
    try:
        code: int = args.func(Session(args), args, console)
    except PluginError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}")
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
