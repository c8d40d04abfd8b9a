"""Rich renderings of a SprintRelease: the live progress panel and the final summary."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from sprintops.api import SprintReleaseStatus, Weights
from sprintops.durations import parse_timestamp

PHASE_STYLE = {
    "Succeeded": "bold green",
    "Failed": "bold red",
    "RolledBack": "bold red",
    "RollingBack": "yellow",
    "Paused": "yellow",
}


def _weights(w: Weights | None) -> str:
    return "-" if w is None else f"even {w.even:>3}%  odd {w.odd:>3}%"


def observed(status: SprintReleaseStatus) -> str:
    """The share of requests that arrived, as even/odd percent; `-` where unknown."""
    seen = status.observed_traffic
    if seen is None or seen.even is None or seen.odd is None:
        return "-"
    return f"{seen.even:.1f}/{seen.odd:.1f}"


def progress_panel(
    obj: dict[str, Any],
    traffic: dict[str, Weights | None] | None = None,
    elapsed: float | None = None,
) -> Panel:
    """Phase, step, weights (status and, when given, as read back from each system)."""
    meta, spec = obj["metadata"], obj["spec"]
    status = SprintReleaseStatus.model_validate(obj.get("status") or {})
    steps: list[int] = spec["traffic"]["steps"]
    done = (
        (status.step_index + 1) if status.step_index is not None and status.step_started_at else 0
    )
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    phase = status.phase or "New"
    table.add_row("release", f"{meta['namespace']}/{meta['name']}  (sprint {spec['sprint']})")
    table.add_row("phase", Text(phase, style=PHASE_STYLE.get(phase, "cyan")))
    table.add_row(
        "target",
        f"{status.target_cluster or '?'}  (previous: {status.previous_cluster or '?'})",
    )
    table.add_row("step", f"{done}/{len(steps)}  ({' → '.join(f'{s}%' for s in steps)})")
    table.add_row(
        "traffic",
        Group(
            Text(f"{status.target_weight or 0}% on the new cluster"),
            ProgressBar(total=100, completed=status.target_weight or 0, width=40),
        ),
    )
    table.add_row("status weights", _weights(status.weights))
    seen = status.observed_traffic
    if seen is not None:
        share = (
            "no requests" if seen.even is None else f"even {seen.even:5.1f}%  odd {seen.odd:5.1f}%"
        )
        table.add_row("observed", f"{share}  (at {seen.time})")
    for source, w in (traffic or {}).items():
        table.add_row(source, _weights(w))
    if status.message:  # plain text: "[...]" in a message is not markup
        table.add_row("message", Text(status.message))
    title = "sprintops" + (f"  {elapsed:5.1f}s" if elapsed is not None else "")
    return Panel(table, title=title, expand=False)


def summary(obj: dict[str, Any], traffic: dict[str, Weights | None]) -> Group:
    """Time per step, then the final weights as read back from each system."""
    status = SprintReleaseStatus.model_validate(obj.get("status") or {})
    steps = Table(title=f"{obj['metadata']['name']}: {status.phase}")
    for column in ("step", "weight", "started", "traffic arrived (s)", "baked (s)"):
        steps.add_column(column, justify="right" if column != "started" else "left")

    def between(since: str | None, until: str | None) -> str:
        if since is None or until is None:
            return "-"
        return f"{(parse_timestamp(until) - parse_timestamp(since)).total_seconds():.2f}"

    for i, step in enumerate(status.steps, 1):
        steps.add_row(
            f"{i}/{len(status.steps)}",
            f"{step.weight}%",
            step.started_at,
            between(step.started_at, step.baked_from),
            between(step.baked_from, step.completed_at),
        )
    final = Table(title="final weights, read back")
    final.add_column("source")
    final.add_column("even", justify="right")
    final.add_column("odd", justify="right")
    for source, w in traffic.items():
        final.add_row(source, "-" if w is None else str(w.even), "-" if w is None else str(w.odd))
    return Group(steps, final)
