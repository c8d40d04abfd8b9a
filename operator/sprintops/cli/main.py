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
    from sprintops import crd

    text = crd.render()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sprintops", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    crds = sub.add_parser("crds", help="print or write the SprintRelease CRD")
    crds.add_argument("-o", "--output", default="-", help="file to write, or - for stdout")
    crds.set_defaults(func=_crds)
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
