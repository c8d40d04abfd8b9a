"""`sprintops-dev`: the local environment, the demo, chaos and bench; regenerating the CRD."""

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


def _crds(_args: argparse.Namespace) -> int:
    from sprintops import crd, reference

    text = crd.render()
    root = repo_root()
    # One CRD, three copies: the install manifest, the chart's, and the README's reference.
    (root / "crds/sprintrelease.yaml").write_text(text)
    (root / "charts/sprintops/crds/sprintrelease.yaml").write_text(text)
    readme = root / "README.md"
    readme.write_text(reference.update(readme.read_text()))
    return 0


def _env(args: argparse.Namespace) -> int:
    from sprintops_dev import environment

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


def _demo(_args: argparse.Namespace) -> int:
    from sprintops_dev import demo

    return demo.run(repo_root())


def _chaos(args: argparse.Namespace) -> int:
    from sprintops_dev import chaos, environment

    layout = environment.Layout(repo_root())
    failed = False
    for seed in args.seed:
        report = chaos.run(layout, seed=seed, releases=args.releases, kills=args.kills)
        print(report.summary(), flush=True)
        for line in report.violations[:20] + report.stuck + report.wrong:
            print(f"  {line}")
        failed |= not report.ok
    return 1 if failed else 0


def _bench(args: argparse.Namespace) -> int:
    from sprintops_dev import bench, environment

    root = repo_root()
    bench.run(
        environment.Layout(root), root / "bench/results.json", scale=args.scale, only=args.only
    )
    return 0


def _bench_peers(args: argparse.Namespace) -> int:
    from sprintops_dev import environment, peers

    root = repo_root()
    peers.run(
        environment.Layout(root),
        root / "bench/peers.json",
        lag_runs=args.lag_runs,
        idle_count=args.idle,
        fleet_count=args.fleet,
        fleet_runs=args.fleet_runs,
        plot=root / "docs/peers-step-lag.png",
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sprintops-dev", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "crds", help="regenerate crds/, the chart's CRD and the README reference"
    ).set_defaults(func=_crds)
    demo = sub.add_parser("demo", help="local environment + operator + the canonical release")
    demo.set_defaults(func=_demo)
    chaos = sub.add_parser("chaos", help="releases under random SIGKILLs, invariants watched")
    chaos.add_argument("--seed", type=int, action="append", required=True)
    chaos.add_argument("--releases", type=int, default=20)
    chaos.add_argument("--kills", type=int, default=30)
    chaos.set_defaults(func=_chaos)
    bench = sub.add_parser("bench", help="measure plan throughput, step overhead and scale")
    bench.add_argument(
        "--scale", action="store_true", help="also a fleet of 1,000 and 10,000 idle (slow)"
    )
    bench.add_argument(
        "--only", action="append", metavar="SCENARIO", help="run just this scenario (repeatable)"
    )
    bench.set_defaults(func=_bench)
    peers = sub.add_parser("bench-peers", help="sprintops and Argo Rollouts side by side")
    peers.add_argument("--lag-runs", type=int, default=5, help="releases per tool in step_lag")
    peers.add_argument("--idle", type=int, default=1000, help="finished objects in idle")
    peers.add_argument("--fleet", type=int, default=100, help="concurrent releases in fleet")
    peers.add_argument("--fleet-runs", type=int, default=1)
    peers.set_defaults(func=_bench_peers)
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
