"""The step-lag distributions of `make bench-peers`, one PNG (docs/peers-step-lag.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # no display: a file only

import matplotlib.pyplot as plt  # after the backend is chosen

LABELS = {
    "argo": "Argo Rollouts",
    "sprintops": "sprintops\n(as it is)",
    "sprintops_argo_scope": (
        "sprintops in Argo's scope\n(one VirtualService copy,\nbake from the write)"
    ),
}
COLOURS = {"argo": "#ef7b45", "sprintops": "#2a6f97", "sprintops_argo_scope": "#61a5c2"}


def step_lag(results: dict[str, Any], out: Path) -> None:
    """Each tool's lags from a hold's end to the next weight: every sample, and a box."""
    lag = results["step_lag"]
    tools = [t for t in LABELS if t in lag]
    samples = [[v / 1000 for v in lag[t]["samples_ms"]] for t in tools]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    ax.boxplot(
        samples,
        orientation="horizontal",
        widths=0.5,
        showfliers=False,
        medianprops={"color": "black"},
    )
    for row, (tool, values) in enumerate(zip(tools, samples, strict=True), start=1):
        jitter = [row + 0.12 * ((i % 5) - 2) / 2 for i in range(len(values))]
        ax.scatter(values, jitter, s=22, color=COLOURS[tool], alpha=0.8, zorder=3)
        median = lag[tool]["lag_ms"]["median"] / 1000
        ax.annotate(
            f"median {median:.2f} s",
            (max(values), row),
            xytext=(8, 0),
            textcoords="offset points",
            va="center",
            fontsize=9,
        )
    ax.set_yticks(range(1, len(tools) + 1), [LABELS[t] for t in tools])
    ax.set_xlabel(
        "seconds from a hold's end to the next weight on the VirtualService\n"
        "(a hold ends its length after its weight appeared; linear to 1 s, log beyond)"
    )
    ax.axvline(0, color="grey", linewidth=1, linestyle=":")
    # Linear within a second, where most steps are; logarithmic beyond, for the stalls.
    ax.set_xscale("symlog", linthresh=1.0, linscale=2.0)
    top = max(max(v) for v in samples)
    ticks = [t for t in (-1, -0.5, 0, 0.5, 1, 2, 5, 10, 20, 50, 100) if t <= max(1, top * 1.5)]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_xlim(min(-1.0, *[min(v) for v in samples]), max(1.0, top) * 1.6)
    ax.grid(axis="x", alpha=0.3)
    machine, argo = results["machine"], results["argo_rollouts"]
    n = lag[tools[0]]["lag_ms"]["n"]
    ax.set_title(
        f"Step lag, weights 10/50/100 with a 6 s hold: sprintops vs Argo Rollouts "
        f"{argo['version']}\n{n} step transitions per tool, {machine['cores']} cores, "
        "one run, measured by an outside watcher",
        fontsize=10,
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
