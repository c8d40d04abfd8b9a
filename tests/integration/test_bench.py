"""A smoke run of `make bench`: the scenarios run and produce figures (no timing asserted)."""

from __future__ import annotations

from sprintops.localenv import bench
from tests.integration.conftest import Env, Operator


def test_bench_smoke(env: Env, operator: Operator) -> None:
    throughput = bench.plan_throughput(env.layout.repo, runs=1, evaluations=2_000)
    assert throughput["states"] > 10 and throughput["evals_per_second"]["n"] == 1
    operator.stop()  # the bench brings its own operator
    try:
        overhead = bench.step_overhead(env.layout, runs=1)
    finally:
        operator.start()
    assert overhead["overhead_ms_operator"]["n"] == 2  # two step transitions per release
    assert overhead["overhead_ms_operator"]["median"] > 0
    assert overhead["overhead_ms_watcher"]["n"] >= 1
