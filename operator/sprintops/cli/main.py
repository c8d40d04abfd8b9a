"""`sprintops`: run the operator, or print its CRD."""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path


def _crds(args: argparse.Namespace) -> int:
    from sprintops import crd

    text = crd.render()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
    return 0


def _version(_args: argparse.Namespace) -> int:
    print(f"sprintops {metadata.version('sprintops')}")
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
    sub.add_parser("version", help="print the version").set_defaults(func=_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
