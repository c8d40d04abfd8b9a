"""A smoke run of `make bench`: the scenarios run and produce figures (no timing asserted)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from sprintops_dev import bench, peers
from tests.integration.conftest import Env, Operator


def test_bench_smoke(env: Env, operator: Operator) -> None:
    throughput = bench.plan_throughput(env.layout.repo, runs=1, evaluations=2_000)
    assert throughput["states"] > 10 and throughput["evals_per_second"]["n"] == 1
    operator.stop()  # the bench brings its own operator
    try:
        overhead = bench.step_overhead(env.layout, runs=1, steps=3, floor_rounds=3)
        fleet = bench.fleet_100(env.layout, count=3, runs=1, pending=1)
    finally:
        operator.start()
    assert overhead["overhead_ms_operator"]["n"] == 2  # two step transitions per release
    assert overhead["overhead_ms_operator"]["median"] > 0
    assert overhead["overhead_ms_watcher"]["n"] >= 1
    assert overhead["floor_ms"]["n"] == 3 and overhead["floor_ms"]["median"] > 0
    assert set(overhead["overhead_to_floor"]) == {"median", "p95"}
    assert fleet["releases"] == 3 and fleet["runs"] == 1
    figures = {k: v for k, v in fleet.items() if isinstance(v, dict) and k != "targets"}
    assert set(figures) >= {
        "wall_s",
        "route53_change_batches",
        "route53_peak_per_second",
        "route53_throttled",
        "kube_requests_per_release",
        "operator_peak_rss_mb",
    }
    assert all(set(f) == {"median", "p95", "n"} and f["n"] == 1 for f in figures.values())
    # Three releases of three steps: some writes (at most one per step, and a retry or so),
    # and the apiservers counted the operator.
    assert 1 <= figures["route53_change_batches"]["median"] <= 12
    assert figures["kube_requests_per_release"]["median"] > 0


def test_bench_peers_smoke(env: Env, operator: Operator, tmp_path: Path) -> None:
    """A tiny `make bench-peers`: both tools through every scenario, well-formed output."""
    operator.stop()  # the bench brings its own operator
    try:
        results = peers.run(
            env.layout,
            tmp_path / "peers.json",
            lag_runs=1,
            idle_count=2,
            fleet_count=2,
            settle=1,
            plot=tmp_path / "lag.png",
            console=Console(file=io.StringIO(), width=160),
            hold=2,
            tools=("argo", "sprintops"),
            warm_up=0,
        )
    finally:
        operator.start()
    assert json.loads((tmp_path / "peers.json").read_text()) == results
    assert (tmp_path / "lag.png").read_bytes().startswith(b"\x89PNG")
    assert results["argo_rollouts"]["version"].startswith("v1.")
    lag = results["step_lag"]
    for tool in ("argo", "sprintops"):
        assert set(lag[tool]) == {"lag_ms", "wall_minus_holds_s", "samples_ms"}
        assert lag[tool]["lag_ms"]["n"] == len(lag[tool]["samples_ms"]) == 2  # 10→50→100
        assert set(results["idle_2"][tool]) == {"rss_mb", "cpu_seconds_over_60s", "quiet_after_s"}
        fleet = results["fleet_2"][tool]
        assert {"overrun_s", "kube_requests_per_release", "peak_rss_mb", "cpu_seconds"} <= set(
            fleet
        )
        assert all(f["n"] == 1 for f in fleet.values())
        assert fleet["kube_requests_per_release"]["median"] > 0  # the apiserver counted it
    rendered = Console(file=io.StringIO(), width=160)
    rendered.print(peers.table(results))
    assert "fleet_2" in rendered.file.getvalue()  # type: ignore[attr-defined]
