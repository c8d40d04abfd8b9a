"""`sprintops`: run the operator, generate the CRD, manage the local environment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def repo_root() -> Path:
    """The checkout this command runs in (the local environment lives beside its code)."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "hack/testenv/build.sh").is_file():
            return candidate
    raise SystemExit("not inside a sprintops checkout (no hack/testenv/build.sh above the cwd)")


def _crds(args: argparse.Namespace) -> int:
    from sprintops import crd, reference

    text = crd.render()
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    Path(args.output).write_text(text)
    # The chart ships the same CRD, and the README its reference.
    root = repo_root()
    (root / "charts/sprintops/crds/sprintrelease.yaml").write_text(text)
    readme = root / "README.md"
    readme.write_text(reference.update(readme.read_text()))
    return 0


def _env(args: argparse.Namespace) -> int:
    from sprintops.localenv import environment

    layout = environment.Layout(repo_root())
    if args.action == "up":
        environment.up(layout)
    elif args.action == "down":
        environment.down(layout)
    else:
        running = environment.is_running(layout)
        print("running" if running else "not running")
        return 0 if running else 1
    return 0


def _run(args: argparse.Namespace) -> int:
    import logging

    import kopf

    from sprintops import handlers  # noqa: F401 - registers the handlers
    from sprintops.config import Config

    config = Config(
        **({"namespaces": args.namespace} if args.namespace else {}),
        **({"prometheus_url": args.prometheus_url} if args.prometheus_url else {}),
        **({"workers": args.workers} if args.workers else {}),
    )
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if not args.verbose:
        logging.getLogger("kopf").setLevel(logging.WARNING)
    kopf.run(
        # One replica (the chart's Recreate) needs no peering; several elect one by priority.
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority,
        namespaces=config.namespaces,
        clusterwide=not config.namespaces,
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(config=config),
    )
    return 0


def _demo(_args: argparse.Namespace) -> int:
    from sprintops.cli import demo

    return demo.run(repo_root())


def _chaos(args: argparse.Namespace) -> int:
    from sprintops.localenv import chaos, environment

    layout = environment.Layout(repo_root())
    failed = False
    for seed in args.seed:
        report = chaos.run(layout, seed=seed, releases=args.releases, kills=args.kills)
        print(report.summary(), flush=True)
        for line in report.violations[:20] + report.stuck + report.wrong:
            print(f"  {line}")
        failed |= not report.ok
    return 1 if failed else 0


def _bench(_args: argparse.Namespace) -> int:
    from sprintops.localenv import bench, environment

    root = repo_root()
    bench.run(environment.Layout(root), root / "bench/results.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sprintops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    crds = sub.add_parser("crds", help="print or write the SprintRelease CRD")
    crds.add_argument("-o", "--output", default="-", help="file to write, or - for stdout")
    crds.set_defaults(func=_crds)
    run = sub.add_parser("run", help="run the operator against KUBECONFIG's current context")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        help="namespace to watch (repeatable; default: all, or SPRINTOPS_NAMESPACES)",
    )
    run.add_argument("--prometheus-url", help="default Prometheus (env SPRINTOPS_PROMETHEUS_URL)")
    run.add_argument("--workers", type=int, help="threads for blocking API calls (default 32)")
    run.add_argument("--liveness", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument(
        "--peering",
        help="kopf peering name, for several replicas: only the highest --priority one acts",
    )
    run.add_argument("--priority", type=int, default=0)
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=_run)
    demo = sub.add_parser("demo", help="local environment + operator + the canonical release")
    demo.set_defaults(func=_demo)
    chaos = sub.add_parser("chaos", help="releases under random SIGKILLs, invariants watched")
    chaos.add_argument("--seed", type=int, action="append", required=True)
    chaos.add_argument("--releases", type=int, default=20)
    chaos.add_argument("--kills", type=int, default=30)
    chaos.set_defaults(func=_chaos)
    sub.add_parser("bench", help="measure plan throughput and step overhead").set_defaults(
        func=_bench
    )
    env = sub.add_parser("env", help="the local environment (control plane, Route 53, Prometheus)")
    env.add_argument("action", choices=["up", "down", "status"])
    env.set_defaults(func=_env)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
