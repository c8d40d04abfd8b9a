"""`kubectl sprint`: inspect and steer SprintReleases."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("kubectl sprint: not yet; use `kubectl get sr -A`", file=sys.stderr)
    return 2
