"""A smoke run of `make bench`: the scenarios run and produce figures (no timing asserted)."""

from __future__ import annotations

from sprintops_dev import bench
from tests.integration.conftest import Env, Operator


def test_bench_smoke(env: Env, operator: Operator) -> None:
    throughput = bench.plan_throughput(env.layout.repo, runs=1, evaluations=2_000)
    assert throughput["states"] > 10 and throughput["evals_per_second"]["n"] == 1
    operator.stop()  # the bench brings its own operator
    try:
        overhead = bench.step_overhead(env.layout, runs=1)
        fleet = bench.fleet_100(env.layout, count=3, runs=1, pending=1)
    finally:
        operator.start()
    assert overhead["overhead_ms_operator"]["n"] == 2  # two step transitions per release
    assert overhead["overhead_ms_operator"]["median"] > 0
    assert overhead["overhead_ms_watcher"]["n"] >= 1
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
